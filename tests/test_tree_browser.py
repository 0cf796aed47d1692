"""The tree of generations on the page, in Chromium, by gestures only: clicks on the tree's
tokens, keys in the tree, a pick after going back (a branch), the settings following the
node, a saved tree opened again (and a foreign one refused), and a tap on a phone."""

from __future__ import annotations

import json

import pytest

from testkit.page import Tab

pytestmark = pytest.mark.browser

TREE = "() => DP.state.tree"


def _settle(tab, check: str, arg=None):
    """Wait until `check(tree)` holds for the page's tree and no action is on its way."""
    tab.wait(f"a => {{ const t = DP.state.tree; return t && !DP.state.pending && !DP.state.queue.length"
             f" && !DP.state.drawing && ({check})(t, a); }}", arg)


def test_the_tree_branches_moves_by_click_and_keys_follows_settings_and_reopens(tab, browser, server, tmp_path):
    page = tab.page
    for n in range(1, 4):
        tab.click(".dp-step")
        _settle(tab, "(t, n) => t.path.length === n", n)
    first = page.evaluate(TREE)
    assert first["path"] == [1, 2, 3] and len(page.locator(".dp-tree .dp-node").all()) == 4

    # Click the first step's token in the tree: the text follows, the rest stays as a branch.
    page.locator('.dp-tree .dp-node[data-node="1"]').click()
    _settle(tab, "t => t.current === 1")
    assert tab.token_count() == 1 and len(page.evaluate(TREE)["nodes"]) == 4

    # With other settings, pick the top bar, back to the parent with ←, pick the second bar:
    # step 1 now has at least two children (the old child can equal only one of the picks).
    tab.set_number("top-k", "7")
    page.locator('.dp-tree .dp-node[data-node="1"]').focus()
    page.keyboard.press("1")
    _settle(tab, "t => t.path.length === 2")
    page.keyboard.press("ArrowLeft")  # the focus followed the current node into the tree
    _settle(tab, "t => t.current === 1")
    page.keyboard.press("2")
    _settle(tab, "t => t.path.length === 2")
    tree = page.evaluate(TREE)
    children = [i for i, n in enumerate(tree["nodes"]) if n[0] == 1]
    assert len(children) >= 2 and page.locator(".dp-tree .dp-tree-kids").count() >= 1

    # ↑ / ↓ move among the siblings; → from the old first child goes down the old path,
    # and the settings panel comes back to those the old path was made with.
    page.locator(".dp-tree .dp-current").focus()
    at = children.index(tree["current"])
    page.keyboard.press("ArrowUp" if at > 0 else "ArrowDown")
    want = children[at - 1 if at > 0 else at + 1]
    _settle(tab, "(t, w) => t.current === w", want)
    assert page.evaluate("() => document.activeElement.dataset.node") == str(want)
    page.locator('.dp-tree .dp-node[data-node="3"]').click()
    _settle(tab, "t => t.current === 3")
    assert page.input_value("#top-k input.dp-num") == "0" and tab.token_count() == 3

    # Export saves the tree; opening it in a fresh tab stands where this one stood, and a tree
    # made for another model is refused with the reason.
    saved = tab.export()
    assert len(saved["tree"]["nodes"]) == len(tree["nodes"]) and saved["tree"]["current"] == 3
    good, foreign = tmp_path / "tree.json", tmp_path / "foreign.json"
    good.write_text(json.dumps(saved))
    foreign.write_text(json.dumps(saved | {"model": "elsewhere"}))
    phone = Tab(browser, server, phone=True)
    try:
        phone.page.set_input_files(".dp-tree-file", str(foreign))
        phone.wait("() => [...document.querySelectorAll('.dp-toast')].some(t => "
                   "t.textContent.includes('This tree was made with the model'))")
        assert phone.page.evaluate(TREE)["nodes"] == [[-1, -1, 1.0]]
        phone.page.set_input_files(".dp-tree-file", str(good))
        _settle(phone, "(t, n) => t.nodes.length === n", len(saved["tree"]["nodes"]))
        assert phone.token_count() == 3 and phone.page.evaluate(TREE)["current"] == 3
        # A tap on the phone goes to a node, as a click does.
        node = phone.page.locator(f'.dp-tree .dp-node[data-node="{want}"]')
        node.scroll_into_view_if_needed()
        assert node.bounding_box()["height"] >= 32  # a finger-sized target
        node.tap()
        _settle(phone, "(t, w) => t.current === w", want)
        assert phone.token_count() == 2 and not phone.errors
    finally:
        phone.close()

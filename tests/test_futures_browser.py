"""Many futures in Chromium, by real gestures: Sample N× draws over the bars (mouse), the entropy
strip and its tokens point at each other (mouse, keyboard, touch), a continuation opens
as the text (click on a laptop, tap on a phone), and probability blocks zoom in and out
(click, keys, tap), expand from a block and open as the text."""

from __future__ import annotations

import json

import pytest

from testkit.page import Tab

pytestmark = pytest.mark.browser

STATS = "() => document.querySelector('.dp-sample-stats').textContent"
LINKED = "() => [...document.querySelectorAll('.dp-text .dp-tok.dp-linked')].map(s => Number(s.dataset.step))"
# Bars drawn with an overlay (the share of the draws on that token) above zero.
DRAWN = "document.querySelector('.dp-main').drawn.bars.filter(b => b.overlay > 0).length"
ON = "() => [...document.querySelectorAll('.dp-strip .dp-col')].findIndex(c => c.classList.contains('dp-col-on'))"


def _tv(tab) -> float:
    return float(tab.page.evaluate(STATS).split("TV distance")[1].split("·")[0])


def test_draws_strip_and_continuations_by_mouse_keyboard_and_touch(tab, browser, server):
    for n in range(1, 5):
        tab.click(".dp-step")
        tab.wait_steps(n)
    # Sample: the draws appear over the bars; more draws sit closer to the bars.
    tab.click(".dp-sample[data-n='100']")
    tab.wait(f"() => {DRAWN} > 0 && "
             "document.querySelector('.dp-sample-stats').textContent.includes('100 draws')")
    tv_100 = _tv(tab)
    tab.click(".dp-sample[data-n='10000']")
    tab.wait("() => document.querySelector('.dp-sample-stats').textContent.includes('10,000 draws')")
    assert _tv(tab) < tv_100
    # Another setting makes them stale: hidden, and the stats say so.
    tab.set_number("temperature", "0.5")
    tab.wait(f"() => {DRAWN} === 0 && "
             "document.querySelector('.dp-sample-stats').textContent.includes('sample again')")

    # The strip: one column per token; a column points at its token and a token at its column.
    assert tab.page.locator(".dp-strip .dp-col").count() == 4
    tab.hover(".dp-strip .dp-col", 2)
    tab.wait(LINKED.replace("() =>", "() => JSON.stringify(") + ") === '[2]'")
    tab.hover(".dp-text .dp-tok", 1)
    tab.wait(ON + " === 1")
    tab.page.focus(".dp-strip-cols")
    tab.page.keyboard.press("ArrowRight")
    tab.wait(ON + " === 2")
    assert tab.page.locator(".dp-text .dp-tok").count() == 4  # the arrow moved the strip, not Step

    # Continuations: 3 of 5 tokens; Open makes the third one the text.
    box = tab.page.locator(".dp-cont-n")
    box.click()
    tab.page.keyboard.press("Control+A")
    tab.page.keyboard.type("3")
    tab.page.keyboard.press("Enter")
    tab.page.locator(".dp-cont-m").fill("5")
    tab.page.locator(".dp-cont-m").dispatch_event("change")
    tab.click(".dp-cont-go")
    tab.wait("() => document.querySelectorAll('.dp-cont').length === 3")
    tab.page.locator(".dp-cont-open").nth(2).click()
    tab.wait_steps(9)
    assert tab.page.locator(".dp-strip .dp-col").count() == 9

    # On a phone: tap a column, then tap Open.
    phone = Tab(browser, server, phone=True)
    try:
        for n in range(1, 3):
            phone.tap(".dp-step")
            phone.wait_steps(n)
        phone.page.locator(".dp-strip .dp-col").nth(1).tap()
        phone.wait(LINKED.replace("() =>", "() => JSON.stringify(") + ") === '[1]'")
        phone.tap(".dp-cont-go")
        phone.wait("() => document.querySelectorAll('.dp-cont').length === 8")
        phone.page.locator(".dp-cont-open").nth(0).tap()
        phone.wait_steps(32)
        assert not phone.errors
    finally:
        phone.close()


# The generated token ids the address bar holds (link.js), as a JSON string.
LINK_IDS = "() => JSON.stringify(DP.decodeIds(new URLSearchParams(location.search).get('t') || ''))"
ZOOM = "DPBlocks.state.zoom"


def test_probability_blocks_zoom_by_click_keys_and_tap_expand_from_a_block_and_open_as_text(tab, browser, server):
    for n in range(1, 3):
        tab.click(".dp-step")
        tab.wait_steps(n)
    tab.click(".dp-blocks-box > summary")
    tab.type_into(".dp-blocks-threshold", "0.001")
    tab.click(".dp-blocks-go")
    tab.wait("() => DPBlocks.state.B !== null && DPBlocks.state.B.nodes.length > 4")
    B = tab.page.evaluate("() => DPBlocks.state.B")
    view_h = tab.box(".dp-blocks-view")["height"]
    # The root's children split its height by their probability, most likely on top.
    first = B["nodes"][0]["children"][0]
    assert tab.box(f".dp-block[data-node='{first}']")["height"] == pytest.approx(
        view_h * B["nodes"][first]["p"], abs=3)

    # A click zooms in: the block fills the height, its futures take the columns after it.
    tab.click(f".dp-block[data-node='{first}']")
    tab.wait(f"() => {ZOOM} === {first}")
    assert tab.box(f".dp-block[data-node='{first}']")["height"] == pytest.approx(view_h, abs=3)
    # Keys alone: → its most likely child, Enter zooms there, Esc back out, and again.
    child = B["nodes"][first]["children"][0]
    tab.page.keyboard.press("ArrowRight")
    tab.wait(f"() => document.activeElement.dataset.node === '{child}'")
    tab.page.keyboard.press("Enter")
    tab.wait(f"() => {ZOOM} === {child}")
    tab.page.keyboard.press("Escape")
    tab.wait(f"() => {ZOOM} === {first}")
    tab.page.keyboard.press("ArrowRight")
    tab.page.keyboard.press("Enter")
    tab.wait(f"() => {ZOOM} === {child}")
    assert tab.token_count() == 2  # the arrows moved among the blocks, not Step or Undo
    # Expand from here: the zoomed block's own futures, three levels below it.
    tab.click(".dp-blocks-here")
    tab.wait(f"() => {ZOOM} === {child} && DPBlocks.state.B.nodes.some(n => !n.gone && n.depth === 5)")
    # Open as text: the zoomed block's path follows the text, and the blocks, which start
    # from the text as it was, say so.
    assert tab.page.locator(".dp-blocks-stale").is_hidden()
    tab.click(".dp-blocks-open")
    tab.wait_steps(4)
    expected = B["base"] + B["nodes"][child]["path"]
    tab.wait(LINK_IDS + " === " + repr(json.dumps(expected, separators=(",", ":"))))
    tab.wait("() => document.querySelector('.dp-blocks-stale').textContent.includes('after 2 generated tokens')")

    # On a phone: tap Expand, tap a block to zoom in, tap the zoomed block to zoom out.
    phone = Tab(browser, server, phone=True)
    try:
        phone.tap(".dp-step")
        phone.wait_steps(1)
        phone.tap(".dp-blocks-box > summary")
        phone.tap(".dp-blocks-go")
        phone.wait("() => DPBlocks.state.B !== null && DPBlocks.state.B.nodes.length > 1")
        top = phone.page.evaluate("() => DPBlocks.state.B.nodes[0].children[0]")
        phone.tap(f".dp-block[data-node='{top}']")
        phone.wait(f"() => {ZOOM} === {top}")
        phone.tap(f".dp-block[data-node='{top}']")
        phone.wait(f"() => {ZOOM} === 0")
        assert not phone.errors
    finally:
        phone.close()

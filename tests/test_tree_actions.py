"""The tree of generations through the action layer, the page's handlers and the API: goto,
open_path keeping the old path, export and import (refused for another model or when
malformed, the current tree untouched), and the tree's limits."""

from __future__ import annotations

import copy

import pytest
from test_app import Page, ckpt, registry, settings  # noqa: F401 (fixtures)

from model.sampling import SamplingSettings
from testkit.models import make_tiny_checkpoint
from ui.actions import Limits
from ui.state import ModelRegistry


def _tree_state(page):
    s = page.session
    return (list(s.ids), s.node, len(s.tree), s.seed, page.user.prompt)


def test_undo_then_step_branches_and_the_page_goes_to_any_node(registry):  # noqa: F811
    page = Page(registry)
    page.start()
    for _ in range(3):
        page.send("step", settings=settings(temperature=0.9))
    first = list(page.session.ids)
    leaf = page.session.node
    page.send("undo")
    p = page.send("pick", token=(first[-1] + 1) % page.session.vocab_size, settings=settings())
    tree = p["tree"]
    assert len(tree["nodes"]) == 5 and tree["current"] == 4 and tree["path"] == [1, 2, 4]
    assert tree["nodes"][3][:2] == [2, first[-1]] and tree["nodes"][4][0] == 2
    p = page.send("goto", node=leaf)
    assert page.session.ids == first and p["tree"]["current"] == leaf
    assert [t["token"] for t in p["text"]["tokens"]] == first[page.session.prompt_len:]
    assert p["chart"]["step"] == 3  # the chart follows the node
    p = page.send("goto", node=99)
    assert "node must be a whole number from 0 to 4" in p["notice"]["text"]
    assert page.session.ids == first  # a refused jump leaves the session where it was


def test_open_path_keeps_the_old_path_as_a_branch(registry):  # noqa: F811
    page = Page(registry)
    page.start()
    for _ in range(4):
        page.send("step", settings=settings(temperature=0.9))
    old = [r.token for r in page.session.history]
    other = old[:1] + [(old[1] + 1) % page.session.vocab_size]
    assert page.actions.open_path(page.user, other, SamplingSettings()) == 1
    s = page.session
    assert [r.token for r in s.history] == other and len(s.tree) == 6
    assert s.tree.find(old) == [1, 2, 3, 4]  # the old path is still there, node by node
    assert page.actions.open_path(page.user, old, SamplingSettings()) == 0  # all known: a jump


def test_export_then_import_opens_the_same_tree_where_it_stood(registry):  # noqa: F811
    page = Page(registry)
    page.start(prompt="To be", seed=5)
    for _ in range(3):
        page.send("step", settings=settings(temperature=0.9))
    page.send("rewind", step=1)
    page.send("step", settings=settings(temperature=0.2, top_k=3))
    data = page.send("export")["export"]
    want = _tree_state(page)
    other = Page(registry)
    other.start(prompt="something else", seed=1)
    p = other.send("load_tree", data=data)
    assert "Opened a tree of 5 nodes" in p["notice"]["text"]
    assert _tree_state(other) == want
    assert p["prompt"] == "To be" and p["seed"] == 5 and p["tree"]["current"] == want[1]
    assert other.session.history[-1].settings["top_k"] == 3  # the records as they were made


def test_a_tree_for_another_model_or_malformed_is_refused_and_the_tree_is_untouched(registry, tmp_path):  # noqa: F811
    page = Page(registry)
    page.start()
    for _ in range(3):
        page.send("step", settings=settings(temperature=0.9))
    data = page.send("export")["export"]
    page.send("undo")
    before = _tree_state(page)
    bad = copy.deepcopy(data)
    bad["tree"]["nodes"][2]["record"]["token"] = 10**6
    p = page.send("load_tree", data=bad)
    assert "node 2: token must be a whole number" in p["notice"]["text"]
    assert "current tree is unchanged" in p["notice"]["text"]
    assert _tree_state(page) == before
    for junk in (None, [1], "tree", {"model": data["model"]}):
        p = page.send("load_tree", data=junk)
        assert p["notice"]["kind"] == "error" and _tree_state(page) == before

    wider = ModelRegistry([str(make_tiny_checkpoint(tmp_path / "other"))])  # the same shape, another model
    foreign = Page(wider)
    foreign.start()
    p = foreign.send("load_tree", data=data)
    message = p["notice"]["text"]
    assert "This tree was made with the model" in message and "Choose that model first" in message


def test_the_tree_stops_growing_at_its_node_limit(registry):  # noqa: F811
    page = Page(registry, Limits(tree_nodes=5))
    page.start()
    payloads = page.send("generate", n=10, settings=settings(temperature=0.9))
    assert len(page.session.tree) == 5 and "tree reached 5 nodes" in payloads[-1]["notice"]["text"]
    p = page.send("step", settings=settings())
    assert "tree holds 5 nodes; the limit is 5" in p["notice"]["text"]
    page.send("rewind", step=2)  # moving inside the tree is still free
    p = page.send("goto", node=4)
    assert p["tree"]["current"] == 4


def test_api_lists_the_tree_with_labels_and_moves_in_it(registry):  # noqa: F811
    page = Page(registry)
    page.start()
    api = page.api
    for _ in range(2):
        api.step(page.user, {"temperature": 0.9})
    api.undo(page.user)
    tree = api.tree(page.user)
    assert tree["current"] == 1 and len(tree["labels"]) == 3 and tree["labels"][0] is None
    out = api.goto(page.user, 2)
    assert out["node"] == 2 and out["replayed"] == 1 and out["steps"] == 2
    with pytest.raises(Exception, match="node must be a whole number"):
        api.goto(page.user, "2")
    data = api.export(page.user)
    assert api.load_tree(page.user, data)["nodes"] == 3
    with pytest.raises(Exception, match="not a tree of generations"):
        api.load_tree(page.user, data | {"tree": {"format": "x"}})

"""Probability blocks (model/blocks.py): every block's probability is what stepping the session
through its path gives, children and "other" add up to their parent, the threshold, the
children per node, the depth and the node budget hold, and the page and the API refuse what
the limits refuse."""

from __future__ import annotations

import math

import pytest

from model.blocks import SharedPrefixCache, expand
from model.sampling import SamplingSettings
from model.session import DecodingSession
from testkit.models import llama_config, random_gpt, tiny_config


def _session(bpe_tokenizer, config=tiny_config, prompt="ROMEO: But, soft!"):
    # A random model's distributions are nearly flat: low temperatures below make them peaked
    # enough for paths of several tokens to pass a threshold.
    gpt = random_gpt(config(block_size=64), seed=5, scale=3.0)
    s = DecodingSession(gpt, bpe_tokenizer, seed=7)
    s.reset(prompt)
    return s


def _stepped(session, path, settings):
    """Each token's probability when the session picks the path's tokens one at a time (then
    the session goes back where it stood)."""
    with session.lock:
        here = session.node
        probs = [session.pick(t, settings) for t in path]
        session.goto(here)
    return [(r.prob, r.raw_prob) for r in probs]


SETTINGS = [
    SamplingSettings(temperature=0.25),
    SamplingSettings(temperature=0.25, top_k=30, repetition_penalty=1.4, no_repeat_ngram_size=2),
    SamplingSettings(temperature=0.25, mirostat=2, mirostat_tau=3.0, mirostat_eta=0.5),
]


@pytest.mark.parametrize("config", [tiny_config, llama_config], ids=["gpt2", "llama"])
@pytest.mark.parametrize("settings", SETTINGS, ids=["plain", "penalties", "mirostat"])
def test_every_blocks_path_probability_is_the_product_of_what_stepping_its_tokens_gives(
        bpe_tokenizer, config, settings):
    s = _session(bpe_tokenizer, config)
    s.step(settings)  # a history: penalties and μ carry state into the blocks
    before = (list(s.ids), s.node, s.mirostat_mu, s.cache.pos, s.logits.clone())
    result = expand(s, settings, depth=3, top=4, threshold=0.002, max_nodes=500)
    assert (list(s.ids), s.node, s.mirostat_mu, s.cache.pos) == before[:4]  # nothing changed
    assert s.logits.equal(before[4])
    assert len(result.nodes) > 10 and result.forwards == 2
    for n in result.nodes[1:]:
        stepped = _stepped(s, result.path(n.id), settings)
        # The batched forward may differ from one row's in the last bits of float32 logits
        # (model/futures.py), which temperature 0.25 multiplies by 4.
        assert n.p == pytest.approx(stepped[-1][0], rel=1e-5), n
        assert n.raw_p == pytest.approx(stepped[-1][1], rel=1e-5), n
        assert n.path_p == pytest.approx(math.prod(p for p, _ in stepped), rel=1e-5), n


def test_a_single_row_is_stepping_bit_for_bit(bpe_tokenizer):
    settings = SamplingSettings(temperature=1.1)
    s = _session(bpe_tokenizer)
    result = expand(s, settings, depth=5, top=1, threshold=1e-12, max_nodes=10)
    assert [n.depth for n in result.nodes] == [0, 1, 2, 3, 4, 5]
    stepped = _stepped(s, result.path(5), settings)
    assert [n.p for n in result.nodes[1:]] == [p for p, _ in stepped]  # one row: one row's arithmetic


@pytest.mark.parametrize("threshold,top,depth", [(0.01, 4, 3), (0.001, 2, 4), (0.005, 10, 2)])
def test_children_and_other_add_up_to_their_parent_and_the_limits_hold(bpe_tokenizer, threshold, top, depth):
    s = _session(bpe_tokenizer)
    settings = SamplingSettings(temperature=0.3, top_p=0.95)
    result = expand(s, settings, depth=depth, top=top, threshold=threshold, max_nodes=500)
    nodes = result.nodes
    assert not result.budget_hit and len(nodes) > 3
    for n in nodes:
        assert len(n.children) <= top and n.depth <= depth
        assert n.id == 0 or n.path_p >= threshold
        kids = [nodes[c] for c in n.children]
        assert all(k.parent == n.id and k.depth == n.depth + 1 for k in kids)
        assert [k.p for k in kids] == sorted((k.p for k in kids), reverse=True)  # most likely first
        if n.depth < depth:  # expanded: its children and the rest are its whole probability
            assert n.other is not None and n.other >= 0
            assert sum(k.path_p for k in kids) + n.other == pytest.approx(n.path_p, abs=1e-12)
        else:
            assert n.other is None and not kids
    # What was left out really is below the threshold or past `top`: the next token's
    # distribution, ranked, gives exactly the root's children.
    probs = s.distribution(settings).probs
    ranked = [t for t in probs.argsort(descending=True, stable=True).tolist() if probs[t] >= threshold][:top]
    assert [nodes[c].token for c in nodes[0].children] == ranked


def test_the_node_budget_keeps_the_most_probable_blocks_of_a_level(bpe_tokenizer):
    s = _session(bpe_tokenizer)
    settings = SamplingSettings(temperature=0.5)
    full = expand(s, settings, depth=2, top=6, threshold=1e-4, max_nodes=500)
    level2 = sorted((n.path_p for n in full.nodes if n.depth == 2), reverse=True)
    small = expand(s, settings, depth=2, top=6, threshold=1e-4, max_nodes=9)
    assert small.budget_hit and len(small.nodes) == 10
    assert [n.path_p for n in small.nodes if n.depth == 2] == pytest.approx(level2[:3], rel=1e-9)


def test_a_stop_token_ends_its_path(bpe_tokenizer):
    s = _session(bpe_tokenizer)
    settings = SamplingSettings(temperature=1.0)
    first = expand(s, settings, depth=3, top=3, threshold=1e-6, max_nodes=500)
    stop = first.nodes[first.nodes[0].children[1]].token
    result = expand(s, settings, depth=3, top=3, threshold=1e-6, max_nodes=500, stop_tokens={stop})
    ending = result.nodes[result.nodes[0].children[1]]
    assert ending.ends and ending.children == [] and ending.other is None


def test_at_temperature_zero_only_the_greedy_path_has_blocks(bpe_tokenizer):
    s = _session(bpe_tokenizer)
    result = expand(s, SamplingSettings(temperature=0.0), depth=4, top=5, threshold=1e-4, max_nodes=50)
    assert [n.depth for n in result.nodes] == [0, 1, 2, 3, 4]
    assert all(n.p == 1.0 and n.other == 0.0 for n in result.nodes[:-1])


def test_rows_share_the_texts_cache_and_hold_only_their_own_positions(bpe_tokenizer):
    s = _session(bpe_tokenizer, llama_config)
    row = SharedPrefixCache(s.cache, room=3)
    assert row.pos == s.cache.pos and row.k.size(3) == 3
    child = row.copy()
    assert child.prefix is s.cache and child.k.data_ptr() != row.k.data_ptr()


# ---- through the page's handlers and the API (ui/actions.py, ui/api.py) ----

@pytest.fixture(scope="module")
def page_registry(tiny_checkpoint):
    from ui.state import ModelRegistry
    return ModelRegistry([str(tiny_checkpoint)])


def test_page_blocks_and_opening_one_makes_its_path_the_text(page_registry):
    from tests.test_app import Page
    page = Page(page_registry)
    page.start("ROMEO:", seed=3)
    settings = {"temperature": 0.1}  # the random model is nearly flat: sharpen it
    page.send("step", settings=settings)
    B = page.send("blocks", options={"depth": 3, "top": 3, "threshold": 0.0001}, settings=settings)["blocks"]
    assert B["settings"] == {"depth": 3, "top": 3, "threshold": 0.0001, "nodes": 200, "from": []}
    deepest = max(B["nodes"], key=lambda n: (n["depth"], n["path_p"]))
    assert deepest["depth"] == 3 and len(deepest["path"]) == 3 and B["base"] == [page.session.history[0].token]
    assert all(n["label"] for n in B["nodes"][1:])
    opened = page.send("open", ids=B["base"] + deepest["path"], settings=settings)
    assert [t["token"] for t in opened["text"]["tokens"]] == B["base"] + deepest["path"]
    assert [t["p"] for t in opened["text"]["tokens"]][-1] == pytest.approx(deepest["p"], abs=2e-4)


def test_block_limits_are_enforced_with_messages_that_name_the_value(page_registry):
    import gradio as gr

    from ui.actions import Actions, Limits
    from ui.api import API
    api = API(Actions(page_registry, Limits()))
    user, _ = api.reset(None, "To be", 0, "", False)
    for options, message in [({"depth": 7}, "depth must be a whole number from 1 to 6.*7"),
                             ({"top": 11}, "top must be a whole number from 1 to 10.*11"),
                             ({"nodes": 501}, "nodes must be a whole number from 1 to 500.*501"),
                             ({"threshold": 1e-5}, "threshold must be a number from 0.0001 to 1.*1e-05"),
                             ({"depth": float("nan")}, "depth must be a whole number"),
                             ({"deep": 3}, "unknown block option 'deep'"),
                             ({"from": "abc"}, "from must be a block's path, a list of at most 60 token ids"),
                             ({"from": [1] * 61}, "at most 60 token ids.*open the block as text"),
                             ({"from": [-1]}, "token id must be a whole number from 0 to"),
                             ([3], "block options must be a JSON object")]:
        with pytest.raises(gr.Error, match=message):
            api.blocks(user, options, {})
    small = API(Actions(page_registry, Limits()))
    user2, _ = small.reset(None, "To be " * 40, 0, "", False)  # the tiny model's context is 64
    room = 64 - len(user2.session.ids)
    with pytest.raises(gr.Error, match=f"room for {room} more tokens here: ask for a depth of at most {room + 1}"):
        small.blocks(user2, {"depth": 6}, {})
    out = api.blocks(user, {"depth": 2, "top": 2, "threshold": 0.5}, {"temperature": 0})
    assert [n["depth"] for n in out["nodes"]] == [0, 1, 2] and out["nodes"][2]["path_p"] == 1.0


def test_expanding_from_a_block_is_expanding_after_stepping_its_path(bpe_tokenizer):
    settings = SamplingSettings(temperature=0.3, repetition_penalty=1.2)
    s = _session(bpe_tokenizer, llama_config)
    first = expand(s, settings, depth=2, top=3, threshold=1e-3, max_nodes=100)
    block = first.nodes[first.nodes[0].children[1]]
    prefix = first.path(block.id)
    deeper = expand(s, settings, depth=2, top=3, threshold=0.01, max_nodes=100, prefix=prefix)
    root = deeper.nodes[0]
    assert (root.token, root.depth) == (block.token, 1)
    assert root.path_p == pytest.approx(block.path_p, rel=1e-6) and root.p == pytest.approx(block.p, rel=1e-6)
    # The same as expanding after stepping the path, path probabilities scaled by the block's.
    with s.lock:
        here = s.node
        for t in prefix:
            s.pick(t, settings)
        after = expand(s, settings, depth=2, top=3, threshold=0.01, max_nodes=100)
        s.goto(here)
    assert [deeper.path(n.id)[len(prefix):] for n in deeper.nodes] == [after.path(n.id) for n in after.nodes]
    assert len(after.nodes) > 3 and [n.depth - 1 for n in deeper.nodes] == [n.depth for n in after.nodes]
    assert [n.path_p for n in deeper.nodes[1:]] == pytest.approx(
        [root.path_p * n.path_p for n in after.nodes[1:]], rel=1e-5)
    # A path the settings rule out, or that ends the text, has nothing after it.
    with pytest.raises(ValueError, match="place 1 of the block's path ends the text"):
        expand(s, settings, 2, 3, 0.01, 100, stop_tokens={prefix[0]}, prefix=prefix)

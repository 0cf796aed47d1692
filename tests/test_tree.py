"""The tree of generations: Undo, Rewind and new tokens make branches; goto moves between
nodes with the records as they were made and the logits of stepping; the tree goes to JSON
and back, and a malformed or foreign tree is refused without touching the session."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from model.sampling import SamplingSettings
from model.session import DecodingSession
from model.tree import ROOT
from model.tree_io import tree_from_dict, tree_to_dict
from testkit.models import random_gpt, tiny_config

SAMPLE = SamplingSettings(temperature=1.0, top_k=20)
MIROSTAT = SamplingSettings(temperature=1.0, mirostat=2, mirostat_tau=3.0)


@pytest.fixture(scope="module")
def gpt():
    return random_gpt(tiny_config(block_size=32), seed=7)


def _state(s: DecodingSession):
    return (list(s.ids), s.logits.clone(), s.mirostat_mu, [r.to_dict() for r in s.history])


def test_undo_and_a_new_token_make_a_branch_and_goto_restores_each_path_exactly(gpt, bpe_tokenizer):
    s = DecodingSession(gpt, bpe_tokenizer, seed=3)
    s.reset("The rose of the")
    for _ in range(6):
        s.step(MIROSTAT)
    first_leaf, first = s.node, _state(s)
    first_records = list(s.history)
    s.undo()
    s.undo()
    assert len(s.tree) == 7  # the two undone steps stay in the tree
    other = (first_records[4].token + 1) % s.vocab_size
    s.pick(other, MIROSTAT)
    s.step(MIROSTAT)
    second_leaf, second = s.node, _state(s)
    fork = s.path_nodes[3]
    assert s.tree.nodes[fork].children == [s.path_nodes[4] - 2, s.path_nodes[4]]
    assert len(s.tree) == 9

    assert s.goto(first_leaf) == 2  # back to the fork, then forward two steps
    ids, logits, mu, records = _state(s)
    assert ids == first[0] and mu == first[2] and records == first[3]
    assert torch.equal(logits, first[1])  # replayed in one batch, equal to stepping bit for bit
    assert s.history == first_records  # the records themselves, as made
    assert s.goto(second_leaf) == 2 and _state(s)[0] == second[0] and torch.equal(s.logits, second[1])
    s.rewind(1)
    assert s.goto(ROOT) == 0 and s.ids == first[0][:s.prompt_len] and not s.history
    # A step that chooses a token the node already has goes into that node: no duplicate.
    s.pick(first_records[0].token, MIROSTAT)
    assert s.node == s.tree.path(first_leaf)[0] and len(s.tree) == 9


def test_goto_across_a_slide_of_the_context_window_sees_what_stepping_saw(gpt, bpe_tokenizer):
    s = DecodingSession(gpt, bpe_tokenizer, seed=1)
    s.reset("The rose of the roses is red")
    for _ in range(40):  # past the 32-token context: the window slides
        s.step(SAMPLE)
    leaf, want, window = s.node, _state(s), s.window
    assert window > 0
    s.rewind(2)
    s.pick(5, SAMPLE)
    assert s.goto(leaf) == 38
    got = _state(s)
    assert got[0] == want[0] and got[3] == want[3] and s.window == window
    assert (got[1] - want[1]).abs().max() < 1e-5


def test_cut_forgets_only_the_newest_nodes_after_the_kept_steps(gpt, bpe_tokenizer):
    s = DecodingSession(gpt, bpe_tokenizer, seed=2)
    s.reset("The rose")
    for _ in range(3):
        s.step(SAMPLE)
    s.rewind(1)
    for _ in range(4):
        s.step(SAMPLE)
    before = len(s.tree)
    s.cut(2)  # a Generate shown up to its second token: its other three steps were never seen
    assert len(s.history) == 2 and len(s.tree) == before - 3


def test_memory_counts_every_branch(gpt, bpe_tokenizer):
    s = DecodingSession(gpt, bpe_tokenizer, seed=2)
    s.reset("The rose")
    list(s.generate(10, SAMPLE))
    held = s.memory_breakdown()["tree"]
    s.rewind(0)
    assert s.memory_breakdown()["tree"] == held  # the branch stays, and is counted
    list(s.generate(10, SAMPLE))  # the same seed: the same tokens, the same nodes
    assert s.memory_breakdown()["tree"] == held
    s.rewind(0)
    s.set_seed(9)
    list(s.generate(10, SAMPLE))
    assert s.memory_breakdown()["tree"] > held


def _import(s: DecodingSession, data, **limits):
    kw = dict(vocab_size=s.vocab_size, block_size=s.block_size, prompt_len=s.prompt_len,
              max_nodes=100, max_depth=50, piece=s.piece)
    return tree_from_dict(data, **(kw | limits))


def test_a_tree_goes_to_json_and_back_and_the_session_stands_where_it_stood(gpt, bpe_tokenizer):
    s = DecodingSession(gpt, bpe_tokenizer, seed=4)
    s.reset("The rose of the")
    list(s.generate(5, MIROSTAT))
    s.rewind(2)
    list(s.generate(3, SAMPLE))
    data = json.loads(json.dumps(tree_to_dict(s.tree, s.node)))
    want = _state(s)
    tree, current = _import(s, data)
    other = DecodingSession(gpt, bpe_tokenizer, seed=4)
    other.adopt(s.ids[:s.prompt_len], tree, current)
    got = _state(other)
    assert got[0] == want[0] and got[2] == want[2] and got[3] == want[3]
    assert torch.equal(got[1], want[1])
    assert json.loads(json.dumps(tree_to_dict(other.tree, other.node))) == data


def _bad(data):
    """Ways a tree file goes wrong, each with the words its message must hold."""
    cases = []
    def case(words, change):
        d = copy.deepcopy(data)
        change(d)
        cases.append((words, d))
    case("format must be", lambda d: d.update(format="loom"))
    case("nodes must be a non-empty list", lambda d: d.update(nodes={}))
    case("node 2: ids must count up", lambda d: d["nodes"][2].update(id=7))
    case("node 1: parent must be a whole number from 0 to 0", lambda d: d["nodes"][1].update(parent=5))
    case("node 1: token must be a whole number from 0 to 319", lambda d: d["nodes"][1]["record"].update(token=400))
    case("node 2: position must be", lambda d: d["nodes"][2]["record"].update(position=0))
    case("node 1: window must be", lambda d: d["nodes"][1].update(window=-1))
    case("temperature", lambda d: d["nodes"][1]["record"]["settings"].update(temperature="hot"))
    case("u must be a finite number from 0 to 1", lambda d: d["nodes"][1]["record"].update(u=2.0))
    case("lacks ['prob']", lambda d: d["nodes"][1]["record"].pop("prob"))
    case("has 5 nodes; at most 3 are allowed", lambda d: None)
    case("current must be", lambda d: d.update(current=99))
    case("its record must be an object", lambda d: d["nodes"][1].update(record=[1]))
    return cases


def test_a_malformed_tree_is_refused_naming_the_node_and_the_field(gpt, bpe_tokenizer):
    s = DecodingSession(gpt, bpe_tokenizer, seed=4)
    s.reset("The rose")
    list(s.generate(4, SAMPLE))
    data = json.loads(json.dumps(tree_to_dict(s.tree, s.node)))
    for words, bad in _bad(data):
        limits = {"max_nodes": 3} if "at most 3" in words else {}
        with pytest.raises(ValueError) as e:
            _import(s, bad, **limits)
        assert words in str(e.value), (words, str(e.value))
    with pytest.raises(ValueError, match="4 steps deep; at most 3"):
        _import(s, data, max_depth=3)
    with pytest.raises(ValueError, match="token must be a whole number from 0 to 9"):
        _import(s, data, vocab_size=10)  # made for a model with a larger vocabulary


@pytest.mark.parametrize("keep_steps", [100, 3], ids=["logits-kept", "logits-dropped"])
def test_a_branch_left_comes_back_from_its_saved_keys_as_the_model_would_give_it(
        gpt, bpe_tokenizer, monkeypatch, keep_steps):
    """Going back to a branch copies its keys and values in (no model run, or one decode step
    where its newest logits were dropped), and stands exactly where the model would: the same
    as a session that keeps no branches and replays them."""
    import model.session as session_module

    calls = []
    real_rows, real_forward = session_module.decode_rows, gpt.forward
    monkeypatch.setattr(session_module, "decode_rows", lambda *a, **k: calls.append("rows") or real_rows(*a, **k))
    monkeypatch.setattr(gpt, "forward", lambda *a, **k: calls.append("forward") or real_forward(*a, **k))
    states = []
    for budget in (2**20, 0):
        s = DecodingSession(gpt, bpe_tokenizer, seed=3, branch_bytes=budget,
                            keep_logits_bytes=keep_steps * 4 * gpt.config.vocab_size)
        s.reset("The rose of")
        list(s.generate(12, SAMPLE))
        leaf = s.node
        s.rewind(2)
        s.set_seed(8)
        list(s.generate(5, SAMPLE))
        assert (len(s.branches) == 1) == (budget > 0)
        calls.clear()
        s.goto(leaf)
        if budget:  # a copy (a prefill at the fork where its logits were dropped)
            assert calls == ([] if keep_steps > 10 else ["forward"])
        else:
            assert "rows" in calls
        states.append((_state(s), [r.logits is not None for r in s.history]))
        s.undo()  # the records came back with their logits where they had them: undo is free
        states[-1] += (s.logits.clone(),)
    (a, kept_a, undo_a), (b, kept_b, undo_b) = states
    assert a[0] == b[0] and a[2] == b[2] and a[3] == b[3]
    if keep_steps > 10:
        assert torch.equal(a[1], b[1]) and torch.equal(undo_a, undo_b)
    else:  # both recomputed the fork with a prefill, whose bits differ from a decode step's
        assert (a[1] - b[1]).abs().max() < 1e-5 and (undo_a - undo_b).abs().max() < 1e-5

"""Comparing two models and watching one learn, without a browser: the KL figures against
torch.distributions in float64, top-1 agreement, different vocabularies compared per character
(and refused in token mode), snapshots kept as int8 with the same logits, every snapshot read
on one context, Generate from each with the same seed, the action, the API's shape and the CLI."""

from __future__ import annotations

import math
import shutil

import pytest
import torch
from torch.distributions import Categorical, kl_divergence

from model import load_model
from model.compare import compare_models, kl_rows, parse_spec, same_vocabulary
from model.compare import main as compare_main
from model.decode import generate
from model.inspect import score_text
from model.learning import snapshot_views
from model.sampling import SamplingSettings
from model.snapshots import INDEX_FILE, SNAPSHOT_DIR, load_snapshot, snapshot_file
from testkit.models import HAMLET, make_tiny_checkpoint
from testkit.snapshots import add_snapshots
from ui.actions import Actions, UserError
from ui.api import API
from ui.learn import Learning
from ui.state import ModelRegistry

STEPS = (0, 2, 5, 10)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny checkpoint (block 64, 400-token BPE) with snapshots at STEPS."""
    return add_snapshots(make_tiny_checkpoint(tmp_path_factory.mktemp("learn") / "ckpt"), STEPS)


@pytest.fixture(scope="module")
def other_vocab(tmp_path_factory, bpe_tokenizer):
    """A model with another vocabulary (320 tokens) for character mode."""
    from model.checkpoint import save_checkpoint
    from testkit.models import random_gpt, tiny_config

    directory = tmp_path_factory.mktemp("other") / "ckpt"
    return save_checkpoint(directory, random_gpt(tiny_config()), tiny_config(), bpe_tokenizer)


@pytest.fixture
def actions(run_dir, other_vocab):
    return Actions(ModelRegistry([str(run_dir), str(other_vocab)]))


def test_kl_both_ways_equals_torch_distributions_in_float64_to_1e_9():
    g = torch.Generator().manual_seed(0)
    p_logits = torch.randn(50, 400, generator=g) * 4  # peaked rows, as a trained model's
    q_logits = p_logits + torch.randn(50, 400, generator=g)
    rows = kl_rows(p_logits, q_logits)
    P, Q = Categorical(logits=p_logits.double()), Categorical(logits=q_logits.double())
    assert torch.allclose(rows["kl_pq"], kl_divergence(P, Q), rtol=0, atol=1e-9)
    assert torch.allclose(rows["kl_qp"], kl_divergence(Q, P), rtol=0, atol=1e-9)
    assert torch.equal(rows["agree"], p_logits.argmax(-1) == q_logits.argmax(-1))
    same = kl_rows(p_logits, p_logits.clone())
    assert same["kl_pq"].abs().max() < 1e-12 and bool(same["agree"].all())


def test_compare_models_figures_equal_an_independent_reference_per_position(run_dir):
    a = load_model(run_dir, step=5)
    b = load_model(run_dir)
    r = compare_models(a.gpt, a.tokenizer, b.gpt, b.tokenizer, HAMLET, names=("snap", "final"))
    assert r["mode"] == "tokens" and len(r["positions"]) == len(r["ids"]) - 1
    ids = torch.tensor([r["ids"]])
    with torch.no_grad():  # the models' own forward, not compare's path
        pa, pb = a.gpt(ids)[0, :-1].double(), b.gpt(ids)[0, :-1].double()
    P, Q = Categorical(logits=pa), Categorical(logits=pb)
    ref_pq, ref_qp = kl_divergence(P, Q), kl_divergence(Q, P)
    got_pq = torch.tensor([x["kl_pq"] for x in r["positions"]], dtype=torch.float64)
    got_qp = torch.tensor([x["kl_qp"] for x in r["positions"]], dtype=torch.float64)
    # the logits themselves are float32 from two code paths: compare KL on the same logits
    rows = kl_rows(pa, pb)
    assert torch.allclose(rows["kl_pq"], ref_pq, rtol=0, atol=1e-9)
    assert torch.allclose(got_pq, ref_pq, rtol=1e-4, atol=1e-5)
    assert torch.allclose(got_qp, ref_qp, rtol=1e-4, atol=1e-5)
    agree = (pa.argmax(-1) == pb.argmax(-1)).double().mean().item()
    assert r["agreement"] == pytest.approx(agree)
    assert r["mean_kl_pq"] == pytest.approx(ref_pq.mean().item(), rel=1e-4)
    # the disagreements are the positions of largest KL(p‖q) + KL(q‖p), largest first
    sym = {x["index"]: x["kl_pq"] + x["kl_qp"] for x in r["positions"]}
    assert r["disagree"] == sorted(sym, key=lambda i: -sym[i])[:len(r["disagree"])]
    # each model's loss is the scorer's
    assert r["loss_b"] == pytest.approx(score_text(b.gpt, b.tokenizer, HAMLET)["mean_loss_nats"], rel=1e-5)


def test_different_vocabularies_are_compared_per_character_and_refused_in_token_mode(run_dir, other_vocab):
    a, b = load_model(run_dir), load_model(other_vocab)
    assert not same_vocabulary(a.tokenizer, b.tokenizer, a.gpt.config.vocab_size, b.gpt.config.vocab_size)
    r = compare_models(a.gpt, a.tokenizer, b.gpt, b.tokenizer, HAMLET, names=("ours", "theirs"))
    assert r["mode"] == "chars" and "token-level KL is not defined" in r["note"]
    ref = score_text(b.gpt, b.tokenizer, HAMLET)
    assert r["b"]["nats_per_char"] == pytest.approx(ref["nats_per_char"])
    with pytest.raises(ValueError, match=r"ours \(400 tokens\) and theirs \(320 tokens\) have different vocabularies"):
        compare_models(a.gpt, a.tokenizer, b.gpt, b.tokenizer, HAMLET, mode="tokens", names=("ours", "theirs"))


def test_model_specs_name_a_snapshot_and_an_arithmetic():
    assert parse_spec("smollm2:fast") == {"path": "smollm2", "mode": "fast", "step": None}
    assert parse_spec("runs/a@316") == {"path": "runs/a", "mode": None, "step": 316}
    assert parse_spec("runs/a@3:exact") == {"path": "runs/a", "mode": "exact", "step": 3}
    with pytest.raises(ValueError, match="the step after @ in 'runs/a@x' must be a whole number of "
                                         "training steps, but is 'x'"):
        parse_spec("runs/a@x")


def test_compact_snapshots_give_the_stored_weights_logits_in_less_memory(run_dir):
    from ui.variants import model_bytes

    full, compact = load_snapshot(run_dir, 10), load_snapshot(run_dir, 10, compact=True)
    ids = torch.tensor([full.tokenizer.encode(HAMLET)[:60]])
    with torch.no_grad():
        assert torch.allclose(full.gpt(ids), compact.gpt(ids), rtol=0, atol=1e-5)
    assert model_bytes(compact.gpt) < 0.75 * model_bytes(full.gpt)


def test_every_snapshot_reads_one_context_and_step_0_is_near_uniform(run_dir):
    snaps = [(s, load_model(run_dir, step=s).gpt) for s in STEPS]
    tok = load_model(run_dir).tokenizer
    ids = tok.encode(HAMLET)[:40]
    views = snapshot_views(snaps, ids)
    assert [v["step"] for v in views] == list(STEPS)
    # step 0 is the initialisation: its loss is close to ln V
    assert views[0]["loss"] == pytest.approx(math.log(tok.n_vocab), abs=0.1)
    for (_, gpt), v in zip(snaps, views):
        ref = score_text(gpt, tok, tok.decode(ids))  # the scorer, at the same snapshot
        assert v["loss"] == pytest.approx(ref["mean_loss_nats"], rel=1e-5)
        assert torch.allclose(v["next_logits"], ref["next_logits"], atol=1e-5)


def test_the_section_sends_every_snapshot_once_and_generates_from_each_with_the_same_seed(actions, run_dir):
    user = actions.start(None, str(run_dir), "To be, or not", 3)
    learning = Learning(actions)
    view = learning.view(user)
    assert [s["step"] for s in view["snapshots"]] == list(STEPS)
    assert len(view["logits"]) == len(STEPS) == len(view["loss"]) == len(view["surprisal"])
    assert view["chart"]["u"] == user.session.next_u() and view["chart"]["context"] == user.session.ids
    assert view["curve"]["train"] and view["memory_mb"] > 0
    settings = SamplingSettings(temperature=0.8)
    out = learning.generate(user, 12, settings)
    ids = user.session.ids
    for row, step in zip(out["rows"], STEPS):
        gpt = load_model(run_dir, step=step).gpt
        assert row["ids"] == generate(gpt, torch.tensor([ids]), 12, settings, seed=3)[0, len(ids):].tolist()
    # the models are loaded once, for every visitor
    assert actions.variants.get(f"{run_dir}@5") is actions.variants.get(f"{run_dir}@5")


def test_compare_action_on_the_session_text_and_its_bad_inputs_name_the_value(actions, run_dir, other_vocab):
    user = actions.start(None, str(run_dir), "To be, or not to be, that is", 0)
    for _ in range(5):
        actions.step(user, SamplingSettings())
    la, lb, r = actions.compare_models(user, f"{run_dir}@2", str(run_dir))
    assert r["ids"] == user.session.ids and r["mode"] == "tokens"
    page = Learning(actions).compare(user, f"{run_dir}@2", str(run_dir))
    assert page["at"] == r["disagree"][0] and len(page["charts"]) == 2
    assert page["charts"][0]["u"] == page["charts"][1]["u"]
    bad = {
        (f"{run_dir}@7", str(run_dir), "tokens"): "has no snapshot at step 7",
        (f"{run_dir}@99", str(run_dir), "tokens"): "the run ended at step 10",
        (f"{other_vocab}@2", str(run_dir), "tokens"): "has no training snapshots",
        (str(other_vocab), str(run_dir), "tokens"): "different vocabularies",
        ("/etc/passwd", str(run_dir), "auto"): "is not served here",
        (str(run_dir), str(run_dir), "words"): "mode must be one of auto, tokens, chars, but is 'words'",
        ("", str(run_dir), "auto"): "Name both models",
    }
    for (a, b, mode), message in bad.items():
        with pytest.raises(UserError, match=message.replace("(", r"\(")):
            actions.compare_models(user, a, b, "To be, or not to be", mode)
    chars = actions.compare_models(user, str(other_vocab), str(run_dir), "To be, or not to be", "auto")[2]
    assert chars["mode"] == "chars"


def test_a_missing_or_corrupt_snapshot_is_a_message_naming_the_file(run_dir, tmp_path):
    copy = shutil.copytree(run_dir, tmp_path / "copy")
    acts = Actions(ModelRegistry([str(copy)]))
    path = copy / SNAPSHOT_DIR / snapshot_file(5)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(UserError, match=f"{path}.* is corrupt"):
        acts.compare_models(None, f"{copy}@5", str(copy), "To be")
    (copy / SNAPSHOT_DIR / snapshot_file(2)).unlink()
    with pytest.raises(UserError, match=f"{copy / SNAPSHOT_DIR / snapshot_file(2)} is missing"):
        acts.compare_models(None, f"{copy}@2", str(copy), "To be")
    user = acts.start(None, str(copy), "To be", 0)
    with pytest.raises(UserError, match="is missing|is corrupt"):
        Learning(acts).view(user)
    (copy / SNAPSHOT_DIR / INDEX_FILE).write_text("{not json")
    with pytest.raises(UserError, match="not a readable snapshot index"):
        Learning(acts).view(user)


def test_the_api_returns_plain_json_and_the_cli_prints_the_figures(actions, run_dir, capsys):
    user = actions.start(None, str(run_dir), "To be", 0)
    d = API(actions).compare_models(user, f"{run_dir}@10", str(run_dir), HAMLET, "")
    assert d["models"]["a"]["spec"] == f"{run_dir}@10" and d["mode"] == "tokens"
    assert all(p["kl_pq"] >= -1e-12 and isinstance(p["label"], str) for p in d["positions"])
    import json
    json.dumps(d, allow_nan=False)
    assert compare_main(["--a", f"{run_dir}@2", "--b", str(run_dir), "--text", HAMLET]) == 0
    out = capsys.readouterr().out
    assert "mean KL(p‖q)" in out and "most disagreement" in out
    assert compare_main(["--a", f"{run_dir}@3", "--b", str(run_dir), "--text", "To be"]) == 2
    assert "no snapshot at step 3" in capsys.readouterr().err


def test_the_scorer_scores_with_a_snapshot_and_names_a_step_the_run_lacks(actions, run_dir):
    import json

    from ui.inside import Inside

    user = actions.start(None, str(run_dir), "To be", 0)
    inside = Inside(actions)
    page = json.loads(inside.score_page(user, HAMLET, ack=1, step=5))
    snap = load_model(run_dir, step=5)
    assert page["snapshots"] == list(STEPS) and page["step"] == 5
    assert page["mean"] == pytest.approx(score_text(snap.gpt, snap.tokenizer, HAMLET)["mean_loss_nats"], rel=1e-4)
    assert "@ step 5" in page["model_title"]
    final = json.loads(inside.score_page(user, HAMLET, ack=2))
    assert final["step"] is None and final["mean"] != page["mean"]
    bad = json.loads(inside.score_page(user, HAMLET, ack=3, step=7))
    assert "has no snapshot at step 7" in bad["error"]

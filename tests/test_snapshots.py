"""Snapshots: a run keeps small copies of its weights at chosen steps, each loads through
load_model with its losses, step 0 is rebuilt bit for bit, and every broken or misplaced file
is refused with a message that names it. (DDP and FSDP snapshots: tests/test_training.py.)"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from model import list_snapshots, load_model
from model.snapshots import INDEX_FILE, SCALE, SNAPSHOT_DIR, init_gpt, snapshot_file
from testkit.training import TINY, read_rows, train_here, write_corpus
from training import prepare as prep
from training.snapshots import DEFAULT_COUNT, plan_steps
from training.snapshots import main as record_main

RUN = ("--batch-size", "4", "--log-every", "1", "--eval-every", "4", "--warmup-steps", "2", "--lr", "3e-3")
SHIPPED = Path(__file__).resolve().parent.parent / "checkpoints"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("snapshots")
    texts = write_corpus(root / "texts")
    assert prep.main(["--out", str(root / "data"), "--input", str(texts), "--vocab-size", "320"]) == 0
    return root / "data"


def train(data_dir: Path, out: Path, *args: str) -> Path:
    done = train_here("--data", str(data_dir), "--out", str(out), *TINY, *RUN, *args)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def run(data_dir, tmp_path_factory) -> Path:
    """Eight steps with the default --snapshots (auto)."""
    return train(data_dir, tmp_path_factory.mktemp("run") / "out", "--max-steps", "8")


@pytest.fixture
def copy(run, tmp_path) -> Path:
    """A private copy of the run, free to break."""
    return shutil.copytree(run, tmp_path / "copy")


def test_default_steps_are_step_zero_and_six_log_spaced_steps_to_the_end():
    assert DEFAULT_COUNT == 6
    assert plan_steps("auto", 1000, "--max-steps") == [0, 3, 10, 32, 100, 316, 1000]
    assert plan_steps("auto", 8, "--max-steps") == [0, 1, 2, 3, 4, 6, 8]
    assert plan_steps("200, 50,1000", 1000, "--max-steps") == [0, 50, 200, 1000]
    assert plan_steps("none", 1000, "--max-steps") == []


@pytest.mark.parametrize("args, named", [
    (("--max-steps", "8", "--snapshots", "4,20"), "step 20 is past the run's last step (--max-steps 8)"),
    (("--max-steps", "8", "--stop-at-step", "4", "--snapshots", "6"),
     "step 6 is past the run's last step (--stop-at-step 4)"),
    (("--max-steps", "8", "--snapshots", "-1"), "step -1 is negative"),
    (("--max-steps", "8", "--snapshots", "4,x"), "'x' is not a step"),
])
def test_bad_snapshot_steps_are_refused_by_name_before_training_starts(data_dir, tmp_path, args, named):
    out = tmp_path / "out"
    done = train_here("--data", str(data_dir), "--out", str(out), *TINY, *args)
    assert done.returncode == 2
    assert named in done.stderr
    assert not out.exists()  # nothing was trained, nothing written


def test_a_run_keeps_snapshots_with_their_step_tokens_and_losses(run):
    entries = list_snapshots(run)
    assert [e["step"] for e in entries] == [0, 1, 2, 3, 4, 6, 8]
    tokens_per_step = 4 * 32  # batch x block
    assert all(e["tokens_seen"] == e["step"] * tokens_per_step for e in entries)
    assert entries[0]["file"] is None and entries[0]["bytes"] == 0  # step 0 is rebuilt, not stored
    assert [e["file"] for e in entries[1:]] == [snapshot_file(e["step"]) for e in entries[1:]]
    # the same evaluation as the run's own: the validation loss agrees with metrics.jsonl
    rows = {r["step"]: r for r in read_rows(run)}
    assert [entries[i]["val_loss"] for i in (4, 6)] == [rows[4]["val_loss"], rows[8]["val_loss"]]
    assert entries[0]["train_loss"] > entries[-1]["train_loss"]  # it learns
    assert abs(entries[0]["val_loss"] - math.log(320)) < 0.1  # an untrained model is uniform
    fp32 = (run / "model.safetensors").stat().st_size
    assert all(e["bytes"] < 0.35 * fp32 for e in entries[1:])  # int8 + a scale per row


def test_a_snapshot_loads_within_one_rounding_step_of_the_float32_weights(run):
    final, _, _ = load_model(run)  # the run's own float32 export at step 8
    gpt, tokenizer, card = load_model(run, step=8)
    assert card["snapshot"]["step"] == 8 and card["name"].endswith("@ step 8")
    stored = load_file(run / SNAPSHOT_DIR / snapshot_file(8))
    for name, w in final.state_dict().items():
        got = gpt.state_dict()[name]
        name = "transformer.wte.weight" if name == "lm_head.weight" else name  # tied: stored once
        if name + SCALE in stored:  # a matrix: int8 codes, rounded to the nearest step of its row's scale
            half_step = stored[name + SCALE][:, None] / 2
            assert ((got - w).abs() <= half_step * (1 + 1e-5) + 1e-9).all(), name
        else:
            assert torch.equal(got, w), name  # vectors are stored in float32
    assert gpt.lm_head.weight is gpt.transformer.wte.weight  # the tie survives
    ids = torch.tensor([tokenizer.encode("KING:\nGood sir, what shall we do")])
    with torch.no_grad():
        assert (gpt(ids) - final(ids)).abs().max() < 0.05


def test_taking_snapshots_leaves_training_bit_for_bit_unchanged(data_dir, tmp_path):
    # dropout on: an evaluation that drew a random number would shift every later mask
    args = ("--max-steps", "8", "--dropout", "0.1")
    plain = train(data_dir, tmp_path / "plain", *args, "--snapshots", "none")
    every = train(data_dir, tmp_path / "every", *args, "--snapshots", ",".join(map(str, range(9))))
    assert len(list_snapshots(every)) == 9
    keys = ("step", "train_loss", "grad_norm", "val_loss")
    assert [[r.get(k) for k in keys] for r in read_rows(plain)] == [[r.get(k) for k in keys] for r in read_rows(every)]
    a, b = load_model(plain).gpt.state_dict(), load_model(every).gpt.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_step_zero_is_the_runs_initial_weights_bit_for_bit(data_dir, tmp_path):
    # A learning rate of 0 leaves the weights where they started, so the run's own float32
    # export is its initialisation: the rebuilt step 0 must equal it exactly.
    out = train(data_dir, tmp_path / "still", "--max-steps", "2", "--eval-every", "2", "--lr", "0",
                "--weight-decay", "0", "--seed", "7", "--snapshots", "0")
    exported, _, _ = load_model(out)
    rebuilt, _, card = load_model(out, step=0)
    assert card["snapshot"]["file"] is None
    for name, w in exported.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[name], w), name
    index = json.loads((out / SNAPSHOT_DIR / INDEX_FILE).read_text())
    assert index["init"]["seed"] == 7 and index["init"]["torch"] == torch.__version__
    before = torch.get_rng_state()
    init_gpt(exported.config, 7)
    assert torch.equal(torch.get_rng_state(), before)  # a caller's random state is untouched


def test_a_run_stopped_early_and_resumed_keeps_the_uninterrupted_snapshots(data_dir, run, tmp_path):
    out = train(data_dir, tmp_path / "parts", "--max-steps", "8", "--stop-at-step", "3", "--save-every", "1",
                "--snapshots", "2,3")
    assert [e["step"] for e in list_snapshots(out)] == [0, 2, 3]
    train(data_dir, out, "--max-steps", "8", "--save-every", "1", "--snapshots", "2,3,6,8", "--resume")
    whole = {e["step"]: e for e in list_snapshots(run)}
    got = list_snapshots(out)
    assert [e["step"] for e in got] == [0, 2, 3, 6, 8]
    for e in got:
        for key in ("train_loss", "val_loss"):
            assert abs(e[key] - whole[e["step"]][key]) < 1e-6, (e["step"], key)
    for e in got[1:]:  # one run: every file loads against the index the resumed run rewrote
        load_model(out, step=e["step"])


def test_a_checkpoints_own_weights_are_recorded_as_the_snapshot_its_run_would_have_taken(data_dir, run, tmp_path):
    out = train(data_dir, tmp_path / "short", "--max-steps", "8", "--snapshots", "2,4")
    assert record_main([str(out), "--data", str(data_dir)]) == 0
    got, ref = list_snapshots(out), {e["step"]: e for e in list_snapshots(run)}
    assert [e["step"] for e in got] == [0, 2, 4, 8]
    for key in ("tokens_seen", "train_loss", "val_loss", "val_nats_per_char"):
        assert got[-1][key] == ref[8][key], key
    assert "training.snapshots" in got[-1]["source"]
    mine, theirs = (load_file(d / SNAPSHOT_DIR / snapshot_file(8)) for d in (out, run))
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)


# ---- what is refused, and how ----

def test_a_checkpoint_without_snapshots_lists_none_and_says_how_to_record_them(data_dir, tmp_path):
    out = train(data_dir, tmp_path / "plain", "--max-steps", "2", "--eval-every", "2", "--snapshots", "none")
    assert list_snapshots(out) == []
    with pytest.raises(FileNotFoundError, match=rf"{out / SNAPSHOT_DIR / INDEX_FILE} is missing.*--snapshots"):
        load_model(out, step=0)


def test_a_step_without_a_snapshot_is_refused_listing_the_steps_there_are(run):
    with pytest.raises(ValueError, match=r"no snapshot at step 5; it has steps \[0, 1, 2, 3, 4, 6, 8\]"):
        load_model(run, step=5)
    with pytest.raises(ValueError, match="step must be a whole number of steps >= 0, but is -1"):
        load_model(run, step=-1)


def test_a_missing_snapshot_file_is_named_with_what_to_do(copy):
    path = copy / SNAPSHOT_DIR / snapshot_file(4)
    path.unlink()
    with pytest.raises(FileNotFoundError, match=rf"{path} is missing .*lists it for step 4.*copy the checkpoint's "
                                                r"snapshots/ folder again"):
        load_model(copy, step=4)
    load_model(copy, step=6)  # the others still load


@pytest.mark.parametrize("damage", ["truncated", "flipped"])
def test_a_corrupt_snapshot_file_is_named_with_what_to_do(copy, damage):
    path = copy / SNAPSHOT_DIR / snapshot_file(4)
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        data = data[:len(data) // 2]
    else:  # one weight byte changed: the file still parses, its recorded hash catches it
        data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"{path} is corrupt.*retrain with --snapshots"):
        load_model(copy, step=4)


def test_a_snapshot_file_from_another_run_is_refused(data_dir, copy, tmp_path):
    other = train(data_dir, tmp_path / "other", "--max-steps", "4", "--seed", "5", "--snapshots", "4")
    path = copy / SNAPSHOT_DIR / snapshot_file(4)
    shutil.copy(other / SNAPSHOT_DIR / snapshot_file(4), path)
    with pytest.raises(ValueError, match=rf"{path} is a snapshot of another run"):
        load_model(copy, step=4)


def test_snapshots_of_another_model_are_refused_naming_what_differs(data_dir, copy, tmp_path):
    other = train(data_dir, tmp_path / "wider", "--max-steps", "2", "--eval-every", "2", "--n-embd", "16",
                  "--snapshots", "2")
    shutil.rmtree(copy / SNAPSHOT_DIR)
    shutil.copytree(other / SNAPSHOT_DIR, copy / SNAPSHOT_DIR)
    with pytest.raises(ValueError, match=r"index.json holds snapshots of another model: its config differs "
                                         r"from .*config.json in \['n_embd'\]"):
        load_model(copy, step=2)


def test_an_unreadable_index_is_named(copy):
    path = copy / SNAPSHOT_DIR / INDEX_FILE
    path.write_text('{"snapshots": [')
    with pytest.raises(ValueError, match=rf"{path} is not a readable snapshot index"):
        list_snapshots(copy)


def test_only_our_checkpoints_have_snapshots(gpt2_snapshot):
    with pytest.raises(ValueError, match="has no training snapshots"):
        load_model(gpt2_snapshot, step=0)


# ---- the default model ----

def test_the_default_model_ships_its_runs_snapshots_within_the_size_budget():
    shakespeare = SHIPPED / "shakespeare"
    entries = list_snapshots(shakespeare)
    assert [e["step"] for e in entries] == [0, 3, 10, 32, 100, 316, 1000]
    assert all(e["tokens_seen"] == e["step"] * 32 * 256 for e in entries)
    val = [e["val_loss"] for e in entries]
    assert val == sorted(val, reverse=True)  # it learns at every snapshot
    config = json.loads((shakespeare / "config.json").read_text())["training"]
    assert abs(entries[-1]["val_loss"] - config["val_loss"]) < 1e-5  # the last one is the shipped model
    final, tokenizer, _ = load_model(shakespeare)
    ids = torch.tensor([tokenizer.encode("ROMEO:\nBut soft, what light through yonder window breaks?")])
    with torch.no_grad():
        assert (load_model(shakespeare, step=1000).gpt(ids) - final(ids)).abs().max() < 0.5
        for e in entries[:-1]:
            load_model(shakespeare, step=e["step"])
    total = sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file())
    assert total <= 50e6, f"checkpoints/ holds {total / 1e6:.1f} MB, over its 50 MB budget"

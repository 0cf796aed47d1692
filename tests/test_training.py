"""Training: one loop in one process, under DDP and under FSDP2, resumable, exportable.

Multi-process tests start real `torchrun --standalone --nproc_per_node=2` jobs on the CPU (gloo).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from model import list_snapshots, load_model
from model.snapshots import INDEX_FILE, SCALE, SNAPSHOT_DIR
from testkit.training import ROOT, TINY, env, read_rows, run_train, train_cmd, train_here, write_corpus
from training import prepare as prep
from training.checkpointing import complete_checkpoints, resume_root

pytestmark = pytest.mark.torchrun

STEPS = ("--max-steps", "8", "--batch-size", "4", "--log-every", "1", "--eval-every", "4",
         "--warmup-steps", "2", "--lr", "3e-3")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("training")
    texts = write_corpus(root / "texts")
    assert prep.main(["--out", str(root / "data"), "--input", str(texts), "--vocab-size", "320"]) == 0
    return root / "data"


def losses(out: Path, key: str = "train_loss") -> dict[int, float]:
    return {r["step"]: r[key] for r in read_rows(out) if key in r}


def assert_ok(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def three_ways(data_dir, tmp_path_factory) -> tuple[Path, Path, Path]:
    """The same 8-step run in one process, under DDP and under FSDP (default --snapshots)."""
    root = tmp_path_factory.mktemp("three_ways")
    single, ddp, fsdp = root / "single", root / "ddp", root / "fsdp"
    # one process: the global batch of 4 in two micro-steps of 2 (accumulation on its own)
    assert_ok(train_here("--data", str(data_dir), "--out", str(single), *TINY, *STEPS,
                        "--micro-batch-size", "2"))
    assert_ok(run_train(2, "--data", str(data_dir), "--out", str(ddp), "--parallel", "ddp", *TINY, *STEPS))
    # FSDP with accumulation: 2 processes x 1 sequence x 2 micro-steps
    assert_ok(run_train(2, "--data", str(data_dir), "--out", str(fsdp), "--parallel", "fsdp", *TINY, *STEPS,
                        "--micro-batch-size", "1"))
    return single, ddp, fsdp


def test_ddp_and_fsdp_losses_equal_single_process_losses(three_ways, data_dir, tmp_path):
    single, ddp, fsdp = three_ways
    ref = losses(single)
    assert sorted(ref) == list(range(1, 9))
    assert ref[8] < ref[1]  # it learns
    for out in (ddp, fsdp):
        got = losses(out)
        assert sorted(got) == sorted(ref)
        for step in ref:
            assert abs(got[step] - ref[step]) < 1e-5, (out.name, step, got[step], ref[step])
        val, val_ref = losses(out, "val_loss"), losses(single, "val_loss")
        assert sorted(val) == [4, 8]
        assert all(abs(val[s] - val_ref[s]) < 1e-5 for s in val)
    # FSDP's checkpoint (two shards) resumes in one process: DCP reshards, losses carry on
    resumed = tmp_path / "resumed"
    shutil.copytree(fsdp / "resume" / "step_0000004", resumed / "resume" / "step_0000004")
    assert_ok(train_here("--data", str(data_dir), "--out", str(resumed), *TINY, *STEPS, "--resume"))
    got = losses(resumed)
    assert sorted(got) == [5, 6, 7, 8]
    assert all(abs(got[s] - ref[s]) < 1e-5 for s in got)


def test_ddp_and_fsdp_write_the_single_process_snapshots(three_ways):
    """Rank 0 writes them; each step's losses agree to the tolerance above, and each weight to
    that tolerance plus one int8 step of its row (a float32 value a hair from a rounding edge
    may round the other way), the codes differing by at most one."""
    single, ddp, fsdp = three_ways
    ref = list_snapshots(single)
    assert [e["step"] for e in ref] == [0, 1, 2, 3, 4, 6, 8]
    for out in (ddp, fsdp):
        got = list_snapshots(out)
        assert [(e["step"], e["tokens_seen"], e["file"]) for e in got] == \
               [(e["step"], e["tokens_seen"], e["file"]) for e in ref]
        for e, r in zip(got, ref):
            for key in ("train_loss", "val_loss"):
                assert abs(e[key] - r[key]) < 1e-5, (out.name, e["step"], key, e[key], r[key])
        # one writer: exactly the listed files, nothing half-written
        assert sorted(p.name for p in (out / SNAPSHOT_DIR).iterdir()) == \
               sorted([INDEX_FILE] + [e["file"] for e in got if e["file"]])
        for e in got:
            mine, theirs = load_model(out, step=e["step"]).gpt, load_model(single, step=e["step"]).gpt
            if e["step"] == 0:  # rebuilt from the same seed: identical
                assert all(torch.equal(a, b) for a, b in zip(mine.state_dict().values(),
                                                             theirs.state_dict().values()))
                continue
            stored = load_file(single / SNAPSHOT_DIR / e["file"])
            codes = load_file(out / SNAPSHOT_DIR / e["file"])
            for name, w in theirs.state_dict().items():
                name = "transformer.wte.weight" if name == "lm_head.weight" else name
                step = stored[name + SCALE][:, None] if name + SCALE in stored else 0
                assert ((mine.state_dict()[name] - w).abs() <= 1e-5 + step).all(), (out.name, e["step"], name)
                if name + SCALE in stored:
                    assert (codes[name].int() - stored[name].int()).abs().max() <= 1


def test_checkpoint_exported_under_fsdp_loads_ties_and_generates(data_dir, tmp_path, capsys):
    out = tmp_path / "fsdp"
    assert_ok(run_train(2, "--data", str(data_dir), "--out", str(out), "--parallel", "fsdp", *TINY,
                        "--max-steps", "4", "--batch-size", "4", "--eval-every", "4", "--eval-tokens", "256"))
    gpt, tok, card = load_model(out)
    assert gpt.lm_head.weight is gpt.transformer.wte.weight
    from safetensors import safe_open
    with safe_open(out / "model.safetensors", "pt") as f:
        assert "lm_head.weight" not in f.keys()  # the tied weight is stored once
    assert gpt.config.eot_token == tok.eot_token
    meta = json.loads((out / "config.json").read_text())
    assert meta["training"]["step"] == 4 and meta["training"]["val_nats_per_char"] > 0
    from model.generate import main as generate_main
    assert generate_main(["--model", str(out), "--prompt", "KING:", "--max-new-tokens", "8", "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("KING:") and len(printed) > len("KING:\n")
    assert (out / "metrics.jsonl").read_text().count("\n") >= 1


def test_resume_after_sigkill_gives_the_uninterrupted_losses(data_dir, tmp_path):
    args = ["--data", str(data_dir), *TINY, "--max-steps", "150", "--batch-size", "4", "--log-every", "1",
            "--eval-every", "1000", "--save-every", "5", "--warmup-steps", "5", "--dropout", "0.1"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert_ok(train_here(*args, "--out", str(whole)))
    proc = subprocess.Popen(train_cmd(1, *args, "--out", str(killed)), cwd=ROOT, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(complete_checkpoints(resume_root(killed))) < 2:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    resumed_at = int(complete_checkpoints(resume_root(killed))[-1].name.split("_")[1])
    assert 0 < resumed_at < 150
    assert_ok(train_here(*args, "--out", str(killed), "--resume"))
    ref, got = losses(whole), losses(killed)
    assert sorted(got) == list(range(1, 151))  # rows after the checkpoint were replaced, not doubled
    # dropout is on: equal losses need the restored random state as well as weights and data
    assert all(abs(got[s] - ref[s]) < 1e-6 for s in range(resumed_at + 1, 151))


def test_a_crashed_save_leaves_the_previous_checkpoint_latest(data_dir, tmp_path):
    out = tmp_path / "run"
    args = ("--data", str(data_dir), "--out", str(out), *TINY, "--batch-size", "2", "--save-every", "2")
    assert_ok(train_here(*args, "--max-steps", "4", "--eval-every", "4"))
    root = resume_root(out)
    # what a crash half-way through saving step 6 leaves behind
    (root / "step_0000006.tmp").mkdir()
    (root / "step_0000006.tmp" / "__0_0.distcp").write_bytes(b"half")
    assert complete_checkpoints(root)[-1].name == "step_0000004"
    done = train_here(*args, "--max-steps", "6", "--eval-every", "6", "--resume")
    assert_ok(done)
    assert "resumed from" in done.stderr and "step_0000004" in done.stderr
    newest = complete_checkpoints(root)[-1]
    assert newest.name == "step_0000006"
    # a shard cut short (a disk filled up, a bad copy) is refused with the folder's name
    shard = next(newest.glob("*.distcp"))
    shard.write_bytes(shard.read_bytes()[:100])
    done = train_here(*args, "--max-steps", "8", "--eval-every", "8", "--resume")
    assert done.returncode == 2
    assert f"--resume {newest}: the checkpoint could not be read" in done.stderr


def test_llama_style_config_trains(data_dir, tmp_path):
    cfg = tmp_path / "llama.json"
    cfg.write_text(json.dumps({"norm": "rmsnorm", "position": "rope", "mlp": "swiglu", "n_kv_head": 1,
                               "bias": False, "tie_embeddings": False, "mlp_hidden": 48}))
    out = tmp_path / "llama"
    assert_ok(train_here("--data", str(data_dir), "--out", str(out), *TINY, "--model-config", str(cfg),
                        "--max-steps", "6", "--batch-size", "4", "--log-every", "1", "--eval-every", "6",
                        "--lr", "3e-3", "--warmup-steps", "1"))
    rows = losses(out)
    assert rows[6] < rows[1]
    gpt, _, card = load_model(out)
    assert gpt.config.position == "rope" and gpt.config.kv_heads == 1
    assert gpt.lm_head.weight is not gpt.transformer.wte.weight
    with torch.no_grad():
        assert gpt(torch.tensor([[1, 2, 3]])).shape == (1, 3, gpt.config.vocab_size)


def test_missing_data_dir_is_a_clear_error(tmp_path):
    done = train_here("--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), *TINY)
    assert done.returncode == 2
    assert "nope" in done.stderr and "training.prepare" in done.stderr


def test_corrupt_resume_checkpoint_is_a_clear_error_on_every_rank(data_dir, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train_state.json").write_text('{"step": 3}')
    (bad / ".metadata").write_bytes(b"not a checkpoint")
    done = run_train(2, "--data", str(data_dir), "--out", str(tmp_path / "o"), "--parallel", "fsdp", *TINY,
                     "--batch-size", "4", "--resume", str(bad), timeout=120)
    assert done.returncode != 0
    for rank in (0, 1):
        assert f"error (rank {rank}): --resume {bad}: the checkpoint could not be read" in done.stderr
    assert "[rank0]: Traceback" not in done.stderr  # a plain message, not a stack


def test_world_size_that_does_not_divide_the_batch_is_a_clear_error(data_dir, tmp_path):
    done = run_train(2, "--data", str(data_dir), "--out", str(tmp_path / "o"), "--parallel", "ddp", *TINY,
                     "--batch-size", "3", timeout=120)
    assert done.returncode != 0
    assert "--batch-size 3" in done.stderr and "divisible by 2" in done.stderr


def test_memory_record_shows_ddp_replicas_and_fsdp_shards(data_dir, tmp_path):
    """Each process counts what it holds after its first step: DDP ranks hold the whole model,
    gradient and AdamW state; FSDP ranks hold a shard of each, the shards summing to the whole.
    A block size of 31 makes the position table's shards uneven (16 rows and 15)."""
    from model.inspect import read_run_memory

    args = (*TINY, "--block-size", "31", "--max-steps", "2", "--batch-size", "4", "--eval-every", "2",
            "--eval-tokens", "256")
    single, ddp, fsdp = tmp_path / "single", tmp_path / "ddp", tmp_path / "fsdp"
    assert_ok(train_here("--data", str(data_dir), "--out", str(single), *args))
    assert_ok(run_train(2, "--data", str(data_dir), "--out", str(ddp), "--parallel", "ddp", *args))
    assert_ok(run_train(2, "--data", str(data_dir), "--out", str(fsdp), "--parallel", "fsdp", *args))
    one, replicated, sharded = (read_run_memory(out) for out in (single, ddp, fsdp))
    assert sharded == json.loads((fsdp / "memory.json").read_text())
    total = one["model_param_bytes"]
    assert total == 4 * one["model_params"] and one["param_dtype"] == "float32"
    assert [len(one["ranks"]), len(replicated["ranks"]), len(sharded["ranks"])] == [1, 2, 2]
    assert (one["parallel"], replicated["parallel"], sharded["parallel"]) == ("none", "ddp", "fsdp")
    for record in (one, replicated, sharded):
        assert record["model_param_bytes"] == total and record["step"] == 1
        assert [r["rank"] for r in record["ranks"]] == list(range(record["world"]))
        for r in record["ranks"]:
            assert r["peak_rss_bytes"] >= r["rss_bytes"] > r["param_bytes"] > 0
            assert r["peak_cuda_allocated_bytes"] is None  # a CPU run
    for r in one["ranks"] + replicated["ranks"]:  # the whole of everything, on every rank
        assert r["param_bytes"] == r["grad_bytes"] == total
        assert r["optimizer_state"]["exp_avg"] == r["optimizer_state"]["exp_avg_sq"] == total
    ranks = sharded["ranks"]
    for key in ("param_bytes", "grad_bytes"):
        assert sum(r[key] for r in ranks) == total
        assert all(abs(r[key] - total / 2) <= 0.01 * total for r in ranks), [r[key] for r in ranks]
    for key in ("exp_avg", "exp_avg_sq"):
        assert sum(r["optimizer_state"][key] for r in ranks) == total
        assert all(abs(r["optimizer_state"][key] - total / 2) <= 0.01 * total for r in ranks)
    assert ranks[0]["param_bytes"] != ranks[1]["param_bytes"]  # the uneven shard is real
    # AdamW's moments are twice the parameters: the optimizer state shards the same way
    ddp_state = replicated["ranks"][0]["optimizer_state_bytes"]
    assert all(abs(r["optimizer_state_bytes"] - ddp_state / 2) <= 0.01 * ddp_state for r in ranks)
    assert load_model(fsdp).gpt.num_params() == one["model_params"]  # the checkpoint beside it loads

"""Snapshots during training: which steps, and taking one (model/snapshots.py owns the format).

    --snapshots auto         step 0 and DEFAULT_COUNT steps log-spaced up to the run's last step
    --snapshots 50,200,1000  step 0 and these steps
    --snapshots none         none

At each snapshot step every rank evaluates the weights on the validation split and on a fixed
sample of training windows (the same windows at every step, so the two losses are comparable
and no dropout or batch noise enters them), then the full weights are gathered (a collective
under FSDP) and rank 0 writes the file and its entry. Evaluation draws no random numbers, so
a run with snapshots trains exactly as one without.

Why log-spaced, and six: a model learns fastest at the start (the default model's loss falls
from 8.3 to 6.2 nats in its first 30 of 1,000 steps), so equal steps on a log scale show changes
of a similar size; and each int8 snapshot is a quarter of the float32 checkpoint, so six add
1.5 times the checkpoint's size (the default model: 17 MB + 26 MB, inside its 50 MB budget).

    python -m training.snapshots CHECKPOINT --data DATA

records a checkpoint's own weights (model.safetensors, at the step its config.json names) as
one more snapshot of its run: for a run stopped early, or whose last steps were not rerun.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import uuid
from pathlib import Path

import numpy as np
import torch

from model.snapshots import INIT_RECIPE, read_index, save_snapshot

DEFAULT_COUNT = 6


def plan_steps(spec: str, last: int, last_flag: str) -> list[int]:
    """--snapshots -> the sorted steps to snapshot (step 0 always, once any is asked for).
    last: the run's last step, named by last_flag in errors."""
    spec = spec.strip().lower()
    if spec == "none":
        return []
    if spec == "auto":
        return sorted({0} | {round(last ** (i / DEFAULT_COUNT)) for i in range(1, DEFAULT_COUNT + 1)})
    steps = set()
    for part in spec.split(","):
        try:
            step = int(part)
        except ValueError:
            raise ValueError(f"--snapshots: {part.strip()!r} is not a step; give steps like 50,200,1000, "
                             "or auto, or none") from None
        if step < 0:
            raise ValueError(f"--snapshots: step {step} is negative; steps count from 0 (the initialisation)")
        if step > last:
            raise ValueError(f"--snapshots: step {step} is past the run's last step ({last_flag} {last}); "
                             f"drop it or raise {last_flag}")
        steps.add(step)
    return sorted(steps | {0})


def train_sample(tokens: np.ndarray, block_size: int, count: int) -> torch.Tensor:
    """`count` windows of block_size + 1 tokens spread evenly over the training split:
    (count, block_size + 1) int64, the same for every step and every number of processes."""
    count = max(1, min(count, (len(tokens) - 1) // block_size))
    starts = np.linspace(0, len(tokens) - block_size - 1, count).astype(np.int64)
    idx = starts[:, None] + np.arange(block_size + 1)[None, :]
    return torch.from_numpy(np.asarray(tokens)[idx].astype(np.int64))


def new_run_id() -> str:
    """Ties a run's snapshot files to its index: a file of another run is refused on load."""
    return uuid.uuid4().hex[:16]


def run_header(run_id: str, config, seed: int, sample: torch.Tensor, val_tokens: int, tokens_per_step: int,
               command: str) -> dict:
    """The index's account of the run: what a snapshot's step, tokens and losses mean."""
    return {"run_id": run_id, "config": config.to_dict(),
            "init": {"seed": seed, "recipe": INIT_RECIPE, "torch": torch.__version__},
            "train_sample": {"windows": len(sample), "tokens": sample[:, 1:].numel(),
                             "how": "windows spread evenly over the training split"},
            "val_tokens": val_tokens, "tokens_per_step": tokens_per_step, "command": command}


def record(out: Path, header: dict, step: int, losses: dict, state, config, source: str | None = None) -> dict:
    """Write one snapshot and its entry (rank 0). losses: train_loss, val_loss, val_nats_per_char.
    source: where the weights came from, when not from the run as it trained."""
    entry = {"step": step, "tokens_seen": step * header["tokens_per_step"],
             **{k: round(float(v), 6) for k, v in losses.items()}, **({"source": source} if source else {})}
    return save_snapshot(out, header, entry, state if step else None, config)


def main(argv=None) -> int:
    """Record a checkpoint's own weights as a snapshot of its run (see the module docstring)."""
    from model.checkpoint import build_model, read_model_config, read_weights

    from .data import DataDir, val_windows
    from .distributed import Runtime
    from .train import evaluate  # here, not at the top: train imports this module

    ap = argparse.ArgumentParser(prog="python -m training.snapshots", description=main.__doc__)
    ap.add_argument("checkpoint", help="a checkpoint directory that already holds snapshots/index.json")
    ap.add_argument("--data", required=True, help="the folder the run trained on (training.prepare)")
    ap.add_argument("--eval-batch-size", type=int, default=16, help="sequences per evaluation forward")
    args = ap.parse_args(argv)
    try:
        directory = Path(args.checkpoint)
        config, card = read_model_config(directory)
        header = {k: v for k, v in read_index(directory).items() if k not in ("format_version", "storage",
                                                                              "snapshots")}
        step = int((card.get("training") or {}).get("step", -1))
        if step < 1:
            raise ValueError(f"{directory / 'config.json'} names no training step; only checkpoints exported "
                             "by training.train can be recorded")
        if header["config"] != config.to_dict():
            raise ValueError(f"{directory}: config.json and snapshots/index.json describe different models")
        data = DataDir(args.data)
        rt = Runtime(0, 0, 1, torch.device("cpu"), "none")
        state = read_weights(directory)
        gpt = build_model(config, state, directory / "model.safetensors")
        sample = train_sample(data.train, config.block_size, header["train_sample"]["windows"])
        val = val_windows(data.val, config.block_size, header["val_tokens"])
        losses = {"train_loss": evaluate(gpt, sample, rt, args.eval_batch_size, contextlib.nullcontext),
                  "val_loss": evaluate(gpt, val, rt, args.eval_batch_size, contextlib.nullcontext)}
        losses["val_nats_per_char"] = losses["val_loss"] / data.chars_per_token("val")
        entry = record(directory, header, step, losses, state, config,
                       source="the checkpoint's own model.safetensors, recorded by python -m training.snapshots")
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"recorded step {step} in {directory}: {entry}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

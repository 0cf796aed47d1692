"""A checkpoint with a training run's snapshots, written directly (no training): step 0 is the
run's initialisation (rebuilt from its seed), later steps random models scaled up step by step,
so their distributions move from near-uniform towards peaked ones as a trained run's do."""

from __future__ import annotations

from pathlib import Path

import torch

from model.checkpoint import read_model_config
from model.snapshots import INIT_RECIPE, save_snapshot

from .models import random_gpt

RUN_ID = "test-run-0001"
INIT_SEED = 1234


def add_snapshots(directory: Path, steps=(0, 2, 5, 10), seed: int = INIT_SEED) -> Path:
    """Record snapshots of `directory`'s model config at `steps` (step 0 first). Returns it."""
    config, _ = read_model_config(Path(directory))
    run = {"run_id": RUN_ID, "config": config.to_dict(),
           "init": {"seed": seed, "recipe": INIT_RECIPE, "torch": torch.__version__}}
    for step in steps:
        state = None if step == 0 else random_gpt(config, seed=step, scale=1.0 + step / 2).state_dict()
        entry = {"step": step, "tokens_seen": 64 * step, "train_loss": 6.0 / (1 + step),
                 "val_loss": 6.2 / (1 + step)}
        save_snapshot(directory, run, entry, state, config)
    return Path(directory)

"""Resumable training checkpoints with torch.distributed.checkpoint (DCP).

    OUT/resume/step_0000400/    one complete checkpoint: DCP shards of model + optimizer,
        .metadata, __*.distcp       written by every rank (sharded under FSDP),
        rng_rank{r}.pt              each rank's random generator states,
        train_state.json            step and data position, written last.
    OUT/resume/step_0000600.tmp/  a save in progress, ignored and cleaned up

A save fills a `.tmp` directory and renames it when every rank is done; a rename is atomic,
so a crash mid-save leaves the previous checkpoint as the latest one. The data position is
the number of training windows consumed, which does not depend on the number of processes,
so a run may resume on a different world size (DCP reshards the weights; the random states
of ranks that did not exist before are re-seeded).

Multi-node: OUT must be a filesystem every node sees (each rank writes its own shard).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from .distributed import Runtime, barrier

STATE_FILE = "train_state.json"
_STEP_DIR = re.compile(r"^step_(\d+)$")


def resume_root(out: Path) -> Path:
    return Path(out) / "resume"


def _rng_state(device: torch.device) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def save(out: Path, step: int, model, optimizer, rt: Runtime, train_state: dict, keep: int) -> Path:
    """Write OUT/resume/step_N atomically. Call on every rank."""
    root = resume_root(out)
    final = root / f"step_{step:07d}"
    tmp = root / f"step_{step:07d}.tmp"
    if rt.is_main:
        shutil.rmtree(tmp, ignore_errors=True)  # the leftovers of a crashed save
        tmp.mkdir(parents=True)
    barrier(rt)
    model_sd, optim_sd = get_state_dict(model, optimizer)
    with warnings.catch_warnings():  # one process without a process group is intended here
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(tmp))
    torch.save(_rng_state(rt.device), tmp / f"rng_rank{rt.rank}.pt")
    barrier(rt)  # every shard and random state is on disk
    if rt.is_main:
        (tmp / STATE_FILE).write_text(json.dumps({**train_state, "step": step, "world": rt.world}, indent=1))
        if final.exists():  # a re-run from an older checkpoint reaches this step again
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in complete_checkpoints(root)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    barrier(rt)
    return final


def complete_checkpoints(root: Path) -> list[Path]:
    """Finished checkpoints in step order (a `.tmp` or a folder without its state is not one)."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir()
             if (m := _STEP_DIR.match(p.name)) and (p / STATE_FILE).is_file()]
    return [p for _, p in sorted(found)]


def find(out: Path, resume: str) -> Path:
    """--resume latest -> the newest complete checkpoint under OUT/resume; else a path."""
    if resume == "latest":
        found = complete_checkpoints(resume_root(out))
        if not found:
            raise FileNotFoundError(f"--resume: no complete checkpoint under {resume_root(out)}; "
                                    "start without --resume, or pass a checkpoint folder")
        return found[-1]
    path = Path(resume)
    if not path.is_dir():
        raise FileNotFoundError(f"--resume {resume} is not a folder; pass a OUT/resume/step_N folder or 'latest'")
    return path


def load(path: Path, model, optimizer, rt: Runtime) -> dict:
    """Restore model, optimizer and random states in place; returns train_state.json."""
    state_path = path / STATE_FILE
    try:
        train_state = json.loads(state_path.read_text())
        int(train_state["step"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"--resume {path} is not a complete training checkpoint ({STATE_FILE}: "
                         f"{type(e).__name__}: {e}); pick another OUT/resume/step_N folder") from e
    model_sd, optim_sd = get_state_dict(model, optimizer)
    state = {"model": model_sd, "optim": optim_sd}
    try:
        # Read the index first, as dcp.load would: a bad one is reported here, plainly, on
        # every rank (each reads the same file), before any collective starts.
        FileSystemReader(str(path)).read_metadata()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="torch.distributed is disabled")
            dcp.load(state, checkpoint_id=str(path))
    except (Exception, CheckpointException) as e:  # DCP's own error is a BaseException
        raise ValueError(f"--resume {path}: the checkpoint could not be read ({type(e).__name__}: "
                         f"{str(e)[:300]}); it is corrupt or from another model config") from e
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    rng_path = path / f"rng_rank{rt.rank}.pt"
    if rng_path.is_file():
        rng = torch.load(rng_path, weights_only=True)
        torch.set_rng_state(rng["cpu"])
        if "cuda" in rng and rt.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], rt.device)
    return train_state

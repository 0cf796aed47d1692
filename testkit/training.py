"""Shared pieces of the training tests: a tiny corpus, and the commands that train on it."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORDS = ("the king my lord good sir what shall we do now thou art thy love o heaven night day sweet "
         "death life come go speak hear fair noble gentle true false heart mind eye hand crown war "
         "peace sword blood honour grace madam friend enemy lady prince duke").split()
SPEAKERS = ("KING", "QUEEN", "HAMLET", "VIOLA", "FOOL", "GHOST")


def write_corpus(folder: Path, files: int = 4, lines: int = 150, seed: int = 0) -> Path:
    """A few small play-like text files, deterministic."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        out = []
        for _ in range(lines):
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 10)))
            out.append(f"{rng.choice(SPEAKERS)}:\n{words.capitalize()}.\n")
        (folder / f"play_{i}.txt").write_text("\n".join(out))
    return folder


def env() -> dict:
    e = dict(os.environ)
    e.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
    return e


def train_cmd(nproc: int, *args: str) -> list[str]:
    if nproc == 1:
        return [sys.executable, "-m", "training.train", *args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "training.train", *args]


def run_train(nproc: int, *args: str, timeout: float = 150) -> subprocess.CompletedProcess:
    return subprocess.run(train_cmd(nproc, *args), cwd=ROOT, env=env(), capture_output=True, text=True,
                          timeout=timeout)


def train_here(*args: str) -> subprocess.CompletedProcess:
    """One-process training inside the test process: no interpreter start, same result type."""
    import contextlib
    import io

    from training.train import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(list(args))
    return subprocess.CompletedProcess(["training.train", *args], rc, "", err.getvalue())


def read_rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line]


# A tiny model and a run of a few steps: fast on two shared CPU cores.
TINY = ("--n-layer", "2", "--n-head", "2", "--n-embd", "32", "--block-size", "32", "--dropout", "0",
        "--device", "cpu", "--dtype", "fp32", "--no-progress", "--dist-timeout-s", "60")

"""Token files in, batches out: a deterministic, resumable order over the training windows.

The training stream is a sequence of windows of block_size + 1 tokens (inputs and the targets
shifted by one). Each epoch cuts the token file into non-overlapping windows starting at a
random shift and visits them in a random order, both drawn from (seed, epoch) alone. Window n
of the whole run is therefore a pure function of n: the data position saved in a checkpoint
is just the number of windows consumed (step * global batch), and any split of a global batch
across processes and micro-steps trains on exactly the same rows as a single process does.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from model.tokenizer import load_tokenizer

META_NAME = "meta.json"


class DataDir:
    """A folder written by training.prepare: token files, tokenizer and their counts."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        missing = [n for n in ("train.bin", "val.bin", META_NAME) if not (self.path / n).is_file()]
        if missing:
            raise FileNotFoundError(f"--data {self.path} lacks {', '.join(missing)}; create it with "
                                    f"`python -m training.prepare --out {self.path}`")
        try:
            self.meta = json.loads((self.path / META_NAME).read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{self.path / META_NAME} is not valid JSON ({e}); run training.prepare again") from e
        self.tokenizer = load_tokenizer(self.path)
        self.vocab_size = self.tokenizer.n_vocab
        # memmap: the OS pages the file in; nothing is copied per process
        self.train = np.memmap(self.path / "train.bin", dtype=np.uint16, mode="r")
        self.val = np.memmap(self.path / "val.bin", dtype=np.uint16, mode="r")

    def chars_per_token(self, split: str) -> float:
        return float(self.meta[split]["chars_per_token"])


class WindowStream:
    """Window n of the run -> (x, y), each (block_size,) int64, for any n >= 0."""

    def __init__(self, tokens: np.ndarray, block_size: int, seed: int):
        self.tokens, self.block_size, self.seed = tokens, block_size, seed
        # One window fewer than fits, so every random shift in [0, block_size) still fits.
        self.per_epoch = (len(tokens) - 1) // block_size - 1
        if self.per_epoch < 1:
            raise ValueError(f"the training split has {len(tokens)} tokens, too few for two windows "
                             f"of --block-size {block_size}; use more text or a smaller --block-size")
        self._epoch, self._order, self._shift = -1, None, 0

    def _start(self, n: int) -> int:
        epoch, i = divmod(n, self.per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._shift = int(torch.randint(self.block_size, (1,), generator=g))
            self._order = torch.randperm(self.per_epoch, generator=g).numpy()
            self._epoch = epoch
        return self._shift + int(self._order[i]) * self.block_size

    def batch(self, first: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Windows first .. first+count-1 as x, y: (count, block_size) int64."""
        rows = [self.tokens[s:s + self.block_size + 1] for s in map(self._start, range(first, first + count))]
        xy = torch.from_numpy(np.stack(rows).astype(np.int64))  # (count, block_size + 1)
        return xy[:, :-1], xy[:, 1:]


def val_windows(tokens: np.ndarray, block_size: int, max_tokens: int | None = None) -> torch.Tensor:
    """Non-overlapping windows over the whole validation split: (N, block_size + 1) int64.
    Consecutive windows share one token, so every validation token is predicted exactly once
    (save the very first, and a tail shorter than a window)."""
    n = (len(tokens) - 1) // block_size
    if max_tokens:
        n = min(n, max(1, max_tokens // block_size))
    if n < 1:
        raise ValueError(f"the validation split has {len(tokens)} tokens, fewer than one window of "
                         f"--block-size {block_size}; use more validation text or a smaller block")
    idx = np.arange(n)[:, None] * block_size + np.arange(block_size + 1)[None, :]
    return torch.from_numpy(np.asarray(tokens)[idx].astype(np.int64))

"""A key/value cache, so decoding never re-reads the prompt.

Prefill writes the prompt's keys and values once; each decode step appends one position.
`truncate(n)` cuts the cache back to its first n positions: undo and rewind are a change of
one integer, with no recompute. Buffers start at one chunk and grow in chunks as they fill
(up to max_len), so a server holding many sessions keeps only a little more than each one
uses (see `_grow`).
"""

from __future__ import annotations

import torch

GROWTH_CHUNK = 64  # positions; capacities are multiples of it (or max_len)
GROWTH_FRACTION = 16  # a full cache grows by at least 1/16 of its size


class KVCache:
    def __init__(self, n_layer: int, batch: int, n_kv_head: int, max_len: int, head_dim: int,
                 dtype=torch.float32, device="cpu"):
        self.max_len = max_len
        capacity = min(max_len, GROWTH_CHUNK)
        shape = (n_layer, batch, n_kv_head, capacity, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.pos = 0  # number of positions held

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Write k, v (B, n_kv, T, hs) at positions pos..pos+T-1 of one layer and return
        that layer's keys and values for positions 0..pos+T-1. `advance` moves pos
        after every layer has written."""
        T = k.size(2)
        end = self.pos + T
        if end > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} positions; cannot write up to {end}")
        if end > self.capacity:
            self._grow(end)
        self.k[layer, :, :, self.pos:end] = k
        self.v[layer, :, :, self.pos:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    @property
    def batch(self) -> int:
        return self.k.size(1)

    @property
    def capacity(self) -> int:
        """Positions the buffers have room for (allocated, held or not)."""
        return self.k.size(3)

    def _grow(self, needed: int):
        # Room for `needed` positions rounded up to a chunk, and at least 1/16 more than now.
        # The spare room stays under 1/16 + one chunk (a cache that doubled could sit half
        # empty), and copying stays amortised O(1): each growth adds max(64, size/16)
        # positions, so a step copies at most size/64 or 16 positions on average, while
        # attention reads all `size` of them at every step anyway (under 2% more).
        size = self.capacity
        capacity = max(needed, size + size // GROWTH_FRACTION)
        capacity = min(self.max_len, -(-capacity // GROWTH_CHUNK) * GROWTH_CHUNK)
        for name in ("k", "v"):
            old = getattr(self, name)
            new = old.new_zeros(*old.shape[:3], capacity, old.size(4))
            new[:, :, :, :self.pos] = old[:, :, :, :self.pos]
            setattr(self, name, new)

    def advance(self, n: int):
        self.pos += n

    def truncate(self, n: int):
        if not 0 <= n <= self.pos:
            raise ValueError(f"cannot truncate a cache of {self.pos} positions to {n}")
        self.pos = n

    def reset(self):
        self.pos = 0

    def copy(self, room: int = 0) -> "KVCache":
        """A new cache holding the same positions, with capacity for `room` more (continuations
        fork the session's cache: model/futures.py)."""
        out = KVCache.__new__(KVCache)
        out.max_len, out.pos = self.max_len, self.pos
        capacity = min(self.max_len, self.pos + max(0, room))
        shape = (*self.k.shape[:3], capacity, self.k.size(4))
        out.k, out.v = self.k.new_zeros(shape), self.v.new_zeros(shape)
        out.k[:, :, :, :self.pos] = self.k[:, :, :, :self.pos]
        out.v[:, :, :, :self.pos] = self.v[:, :, :, :self.pos]
        return out


def context_window(n_tokens: int, block_size: int) -> int:
    """Where the model's view of a sequence of n_tokens starts: all of it while it fits, else
    its last half-context, so that the next slide is block_size / 2 tokens away rather than
    one. Every decoding path slides at the same points and so computes the same logits."""
    keep = block_size if n_tokens <= block_size else block_size // 2
    return max(0, n_tokens - keep)

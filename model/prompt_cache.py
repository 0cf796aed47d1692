"""Prompts that many sessions start from, prefilled once.

A room starts from the same few prompts: the teacher's, the presets, the exercises. Every
new session and every reset runs the model over its prompt (a prefill), and in a loaded room
those prefills were the largest part of a server's time. A PromptCache keeps, per model, the
keys and values and the last position's logits of recent prompts, so a session starting
from one of them copies them instead of running the model.

A copy is the prefill's own result, to the bit: the same numbers in a cache of the same
capacity (so attention reads the same layout), and the same logits. tests/test_prompt_cache.py
checks that sessions started both ways step alike.

    cache = PromptCache()              # one per model: its sessions share it
    s = DecodingSession(gpt, tokenizer, prompt="To be", prompt_cache=cache)
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import torch

from .kv_cache import KVCache

# SmolLM2 (float32 keys and values, 30 layers) holds 46 KB a position: 64 MiB keeps a
# 700-token exercise text, or a hundred short prompts.
DEFAULT_BYTES = 64 * 2**20
# One prompt may take at most this share of the cache: a pasted book would evict every
# prompt the room shares, for a text nobody else starts from.
LARGEST_SHARE = 2


class PromptCache:
    """Recently prefilled prompts of one model, least recently used first out, up to
    max_bytes of keys, values and logits together. Thread-safe."""

    def __init__(self, max_bytes: int = DEFAULT_BYTES):
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise ValueError(f"max_bytes must be a whole number of bytes >= 0, but is {max_bytes!r}")
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = self.misses = 0
        self.model = None  # the model whose prompts these are: set by the first session
        self._lock = threading.Lock()
        # ids -> (the positions' keys and values, trimmed; the capacity a prefill gave them; logits)
        self._entries: OrderedDict[tuple[int, ...], tuple[KVCache, int, torch.Tensor]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def serve(self, model) -> None:
        """Called by each session given this cache: every one must run the same model, or a
        session would start from another model's keys and values."""
        with self._lock:
            if self.model is None:
                self.model = model
            elif self.model is not model:
                raise ValueError("this prompt cache holds another model's prompts; give each loaded "
                                 "model its own PromptCache and pass it to that model's sessions")

    def get(self, ids: tuple[int, ...]) -> tuple[KVCache, torch.Tensor] | None:
        """A fresh cache holding the prompt `ids` (with the capacity its prefill had) and a
        copy of the last position's logits (V,); None if it is not kept."""
        with self._lock:
            entry = self._entries.get(ids)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(ids)
            self.hits += 1
        kept, capacity, logits = entry
        return kept.copy(room=capacity - kept.pos), logits.clone()

    def put(self, ids: tuple[int, ...], cache: KVCache, logits: torch.Tensor) -> None:
        """Keep a prefill's result: `cache` holds exactly `ids`, `logits` (V,) is its last
        position's. The caller may go on using both."""
        if cache.pos != len(ids):
            raise ValueError(f"the cache holds {cache.pos} positions but the prompt has {len(ids)} ids")
        size = _bytes(cache, cache.pos) + logits.numel() * logits.element_size()
        if size * LARGEST_SHARE > self.max_bytes:
            return  # before copying: a long prompt's keys and values can be a hundred MB
        kept = cache.copy()  # trimmed to the positions held
        with self._lock:
            if ids in self._entries:  # another session stored it meanwhile
                self._entries.move_to_end(ids)
                return
            self._entries[ids] = (kept, cache.capacity, logits.detach().clone())
            self.bytes += size
            while self.bytes > self.max_bytes:
                old, (old_kept, _, old_logits) = self._entries.popitem(last=False)
                self.bytes -= _bytes(old_kept, old_kept.pos) + old_logits.numel() * old_logits.element_size()


def _bytes(cache: KVCache, positions: int) -> int:
    """The keys' and values' bytes for `positions` positions of the cache."""
    per_position = cache.k[:, :, :, :1].numel() * cache.k.element_size()
    return 2 * per_position * positions

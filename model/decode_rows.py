"""Many known tokens of one sequence through the model, with the bits of one decode step each.

A link's text comes back as token ids, and the session must end up exactly as if each had
been stepped: every step's probabilities, the KV cache, the next token. One batched forward
over all of them (a prefill) computes the same function, but not the same bits: torch's CPU
matmul takes another kernel for a many-row product than for a one-row one, and attention over
many queries another path than over one, so every position's logits differ in the last bits
(0 of 83 rows equal, measured on the default model). A decode step per token gives the bits,
but reads every weight once per token.

`decode_rows` computes what T decode steps compute, in another order: layer by layer over all
T positions, so each layer's weights are read for every position while they are in the cache;
each matmul takes `group` rows at a time (torch's CPU matmul computes up to three rows exactly
as it computes one: `exact_group` checks that once per model and falls back to one row where
it does not hold), and each position attends on its own to the keys up to its own, as a decode
step does.
"""

from __future__ import annotations

import threading
import weakref

import torch

from .gpt import GPT
from .kv_cache import KVCache

GROUP = 3  # rows per matmul where they come out as one-row products do
_CHECKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # gpt -> its exact group
_LOCK = threading.Lock()


def _by_rows(fn, x: torch.Tensor, group: int) -> torch.Tensor:
    """fn over (1, T, C) in slices of `group` positions, concatenated: (1, T, out)."""
    T = x.size(1)
    if T <= group:
        return fn(x)
    return torch.cat([fn(x[:, i:i + group]) for i in range(0, T, group)], dim=1)


@torch.inference_mode()
def decode_rows(gpt: GPT, tokens: list[int], cache: KVCache, group: int | None = None) -> torch.Tensor:
    """Append `tokens` (T) to the single sequence `cache` holds and return the logits after
    each one, (T, V) float32: the bits of T calls of gpt(token, cache=cache). The cache must
    hold at least one position (a decode step follows a prefill) and have room for all T."""
    T, start = len(tokens), cache.pos
    if cache.batch != 1 or start < 1:
        raise ValueError(f"decode_rows continues one prefilled sequence: it needs a cache of batch 1 "
                         f"holding at least one position, but got batch {cache.batch}, {start} positions")
    if start + T > min(gpt.config.block_size, cache.max_len):
        raise ValueError(f"{T} tokens after {start} positions exceed the context of "
                         f"{min(gpt.config.block_size, cache.max_len)}; decode them in parts that fit")
    if T == 0:
        return torch.empty(0, gpt.config.vocab_size)
    group = exact_group(gpt) if group is None else group
    tr = gpt.transformer
    device = tr.wte.weight.device
    x = tr.wte(torch.tensor([tokens], dtype=torch.long, device=device))  # (1, T, C)
    if gpt.rotary is None:
        x = x + tr.wpe(torch.arange(start, start + T, device=device))
    x = tr.drop(x)
    C = x.size(-1)
    for block in tr.h:
        attn = block.attn
        q, k, v = attn.split_heads(_by_rows(attn.c_attn, block.ln_1(x), group))  # (1, nh|nkv, T, hs)
        if gpt.rotary is not None:
            q, k = gpt.rotary(q, start), gpt.rotary(k, start)
        keys, values = cache.append(attn.layer, k, v)  # (1, nkv, start + T, hs)
        # Each position alone, over the keys up to its own: a decode step's attention.
        y = torch.cat([attn.one_query(q[:, :, j:j + 1], keys[:, :, :start + j + 1], values[:, :, :start + j + 1])
                       for j in range(T)], dim=2)  # (1, nh, T, hs)
        x = x + block.drop(_by_rows(attn.c_proj, y.transpose(1, 2).reshape(1, T, C), group))
        x = x + block.drop(_by_rows(block.mlp, block.ln_2(x), group))
    cache.advance(T)
    return _by_rows(lambda h: gpt.lm_head(tr.ln_f(h)), x, group)[0].float()  # (T, V)


def exact_group(gpt: GPT) -> int:
    """How many rows decode_rows may give one matmul and still match one-token forwards bit for
    bit on this machine: GROUP, or 1, or 0 where not even one row at a time does (then a
    caller must step token by token). Measured once per model on a few random tokens."""
    with _LOCK:
        if gpt in _CHECKED:
            return _CHECKED[gpt]
    found = next((g for g in (GROUP, 1) if _matches(gpt, g)), 0)
    with _LOCK:
        _CHECKED[gpt] = found
    return found


@torch.inference_mode()
def _matches(gpt: GPT, group: int) -> bool:
    gen = torch.Generator().manual_seed(0)
    n = min(2 * group + 1, gpt.config.block_size - 1)
    ids = torch.randint(gpt.config.vocab_size, (n + 1,), generator=gen).tolist()
    device = gpt.transformer.wte.weight.device
    one = gpt.new_cache(1)
    gpt(torch.tensor([ids[:1]], device=device), cache=one)
    steps = torch.stack([gpt(torch.tensor([[t]], device=device), cache=one)[0, -1].float() for t in ids[1:]])
    rows = gpt.new_cache(1)
    gpt(torch.tensor([ids[:1]], device=device), cache=rows)
    return torch.equal(decode_rows(gpt, ids[1:], rows, group), steps)

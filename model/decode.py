"""`generate`: nanoGPT's shape of it (idx in, idx + new tokens out), decoded with the KV cache."""

from __future__ import annotations

import torch

from .gpt import GPT
from .sampling import SamplingSettings, next_token_probs, pick_token


@torch.inference_mode()
def generate(gpt: GPT, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int = 0, top_p: float = 1.0, seed: int | None = None) -> torch.Tensor:
    """idx (B, T) long -> (B, T + max_new_tokens). Never stops early.

    The prompt is prefilled once; every new token costs one position of compute. When the
    context fills up, the window keeps its last half and is prefilled again.
    temperature 0 = greedy; top_k 0 and top_p 1 = off (Hugging Face semantics, see sampling).
    """
    settings = SamplingSettings(temperature=temperature, top_k=top_k, top_p=top_p)
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, but is {max_new_tokens!r}")
    if idx.dim() != 2 or idx.size(1) == 0:
        raise ValueError(f"idx must be (B, T) with T >= 1, but has shape {tuple(idx.shape)}")
    vocab = gpt.config.vocab_size
    if idx.min() < 0 or idx.max() >= vocab:
        raise ValueError(f"idx holds token ids outside [0, {vocab}): min {int(idx.min())}, "
                         f"max {int(idx.max())}")
    device = gpt.lm_head.weight.device
    idx = idx.to(device)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    block = gpt.config.block_size
    cache = gpt.new_cache(idx.size(0))
    out = [idx]
    logits = gpt(idx[:, -block:], cache=cache, last_only=True)[:, -1, :]  # (B, V)
    for i in range(max_new_tokens):
        if settings.greedy:
            nxt = logits.argmax(dim=-1, keepdim=True)  # (B, 1)
        else:
            u = torch.rand(idx.size(0), generator=generator).tolist()
            nxt = torch.tensor([[pick_token(next_token_probs(row, temperature, top_k, top_p), ui)]
                                for row, ui in zip(logits, u)], device=device)
        out.append(nxt)
        if i == max_new_tokens - 1:
            break
        if cache.pos == block:  # full: keep the last half of the window and prefill it again
            cache.reset()
            window = torch.cat(out, dim=1)[:, -(block // 2):]
            logits = gpt(window, cache=cache, last_only=True)[:, -1, :]
        else:
            logits = gpt(nxt, cache=cache)[:, -1, :]
    return torch.cat(out, dim=1)

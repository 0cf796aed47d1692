"""`generate`: nanoGPT's shape of it (idx in, idx + new tokens out), decoded with the KV cache.

It chooses every token exactly as DecodingSession does (sampling.run_pipeline, then
sampling.choose with the u of (seed, position)) and slides its context at the same points
(kv_cache.context_window), so row b of a batch writes the same text as a session with seed
`seed + b` started from that row's prompt.
"""

from __future__ import annotations

import secrets

import torch

from .beam import beam_search
from .gpt import GPT
from .kv_cache import context_window
from .sampling import SEED_MAX, SamplingSettings, check_seed, choose, run_pipeline


@torch.inference_mode()
def generate(gpt: GPT, idx: torch.Tensor, max_new_tokens: int, settings: SamplingSettings | None = None,
             *, seed: int | None = 0, tokenizer=None, num_beams: int | None = None,
             length_penalty: float = 1.0, early_stopping: bool | str = False,
             eos_token_id: int | None = None, **values) -> torch.Tensor:
    """idx (B, T) long -> (B, T + max_new_tokens). Never stops early, except with num_beams.

    num_beams (1 to 16) searches instead of sampling, as transformers' generate(num_beams=...,
    do_sample=False, length_penalty=..., early_stopping=...) does (model/beam.py): each row
    gets its best finished sequence, the prompt then the new tokens, which stop at
    end-of-text (eos_token_id, default the model's); shorter rows are padded with it. Sampling
    settings do not apply to a search.

    Settings are a SamplingSettings or its fields as keywords (temperature=0.8, top_k=40, ...;
    temperature 0 = greedy, every filter off by default). Row b draws with seed + b (None = a
    random seed). Like the session, the model sees the prompt's last block_size tokens, and
    position counts from there. The prompt is prefilled once; every new token costs one
    position of compute; a full context keeps its last half and is prefilled again.
    """
    if num_beams is not None:
        if settings is not None or values:
            raise ValueError(f"beam search takes no sampling settings (got {sorted(values) or 'settings'})")
        return _beam_generate(gpt, idx, max_new_tokens, num_beams, length_penalty, early_stopping,
                              eos_token_id)
    if settings is not None and values:
        raise ValueError(f"pass either settings or setting keywords, not both (got {sorted(values)})")
    settings = settings if settings is not None else SamplingSettings.from_dict(values)
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, but is {max_new_tokens!r}")
    if idx.dim() != 2 or idx.size(1) == 0:
        raise ValueError(f"idx must be (B, T) with T >= 1, but has shape {tuple(idx.shape)}")
    vocab = gpt.config.vocab_size
    if idx.min() < 0 or idx.max() >= vocab:
        raise ValueError(f"idx holds token ids outside [0, {vocab}): min {int(idx.min())}, "
                         f"max {int(idx.max())}")
    B, block = idx.size(0), gpt.config.block_size
    seed = secrets.randbelow(SEED_MAX + 1 - B) if seed is None else check_seed(seed)
    seeds = [check_seed(seed + b) for b in range(B)]
    device = gpt.lm_head.weight.device
    rows = idx[:, -block:].tolist()  # what each row's model and penalties see, as a session's ids
    cache = gpt.new_cache(B)
    logits = gpt(idx[:, -block:].to(device), cache=cache, last_only=True)[:, -1, :]  # (B, V)
    new = []
    mus = [None] * B  # mirostat's state per row
    for i in range(max_new_tokens):
        step = []
        for b in range(B):
            pipe = run_pipeline(logits[b], settings, rows[b], seed=seeds[b], vocab=tokenizer, mu=mus[b])
            token, _, _ = choose(pipe, settings, seeds[b], len(rows[b]))
            mus[b] = pipe.mu_after(token, settings)
            rows[b].append(token)
            step.append(token)
        nxt = torch.tensor(step, device=device)[:, None]  # (B, 1)
        new.append(nxt)
        if i == max_new_tokens - 1:
            break
        if cache.pos >= block:  # full: slide the window as the session does, and prefill it
            cache.reset()
            start = context_window(len(rows[0]), block)
            window = torch.tensor([r[start:] for r in rows], device=device)
            logits = gpt(window, cache=cache, last_only=True)[:, -1, :]
        else:
            logits = gpt(nxt, cache=cache)[:, -1, :]
    return torch.cat([idx.to(device)] + new, dim=1)


def _beam_generate(gpt: GPT, idx: torch.Tensor, max_new_tokens: int, num_beams: int,
                   length_penalty: float, early_stopping, eos_token_id: int | None) -> torch.Tensor:
    """Each row's best beam, prompt first, padded with end-of-text to the longest row."""
    if idx.dim() != 2 or idx.size(1) == 0:
        raise ValueError(f"idx must be (B, T) with T >= 1, but has shape {tuple(idx.shape)}")
    eos = gpt.config.eot_token if eos_token_id is None else eos_token_id
    rows = [idx[b].tolist() + beam_search(gpt, idx[b].tolist(), max_new_tokens, num_beams, length_penalty,
                                          early_stopping, eos_token_id=eos, record=False).best.tokens
            for b in range(idx.size(0))]
    width = max(len(r) for r in rows)
    pad = eos if eos is not None else 0
    return torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=idx.device)

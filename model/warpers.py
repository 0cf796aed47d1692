"""The warpers: each takes the survivors of the stages before it (model/kept.py's Kept) and
returns its own survivors; apply_* are the same on a (V,) vector with -inf where removed.

Each repeats the operations of its Hugging Face transformers counterpart (the logits
processors in generation/logits_process.py), so even ties and exact boundaries agree:

- temperature T divides the logits: logits / T. T = 0 is the T -> 0 limit, argmax ("greedy").
- top-k keeps every token whose logit is >= the k-th largest (ties at the k-th are kept).
- top-p (nucleus) keeps the smallest set of most likely tokens whose probability reaches p,
  including the token that crosses p.
- min-p keeps tokens whose probability is at least min_p times the top token's.
- typical-p keeps the tokens whose surprise is closest to the entropy, up to mass p.
- epsilon (ε-cutoff) removes tokens with probability < ε; eta (η-cutoff) removes those below
  min(ε, sqrt(ε)·exp(-H)), H the entropy in nats. Both keep the most likely token.
- penalties: HF's repetition penalty, OpenAI's presence/frequency penalties, HF's no-repeat
  n-gram ban.

A warper sorts and compares the survivors only (40 after a top-k of 40, not the vocabulary),
but takes every softmax and sum on the (V,) vector laid out as Hugging Face's code lays it out,
so that its numbers are the same bits (model/kept.py says why).

model/sampling.py says when each runs, in which order, and with which settings.
"""

from __future__ import annotations

import math
from collections import Counter

import torch

from .kept import Kept, at_end, at_start

NEG_INF = float("-inf")


def penalty_window(context: list[int], last_n: int) -> list[int]:
    """The tokens the repetition/presence/frequency penalties look at: the whole context
    (last_n = -1, Hugging Face's definition), the last n (llama.cpp's), or none (0)."""
    return list(context) if last_n < 0 else list(context[max(0, len(context) - last_n):]) if last_n else []


def penalties(kept: Kept, context: list[int], s) -> Kept:
    """Repetition penalty (HF: divide positive logits, multiply negative ones, for every token
    in the context), then presence/frequency penalties (OpenAI's: subtract presence once and
    frequency once per occurrence), then no-repeat n-gram (HF: ban tokens that would repeat an
    n-gram already in the context). A removed token stays removed (-inf stays -inf)."""
    if not context:
        return kept
    window = penalty_window(context, s.penalty_last_n)
    values = kept.values
    if window and (s.repetition_penalty != 1.0 or s.presence_penalty or s.frequency_penalty):
        seen_ids = torch.tensor(sorted(set(window)), dtype=torch.long)
        at, alive = kept.positions(seen_ids)
        at, seen_ids = at[alive], seen_ids[alive]
        values = values.clone()
        if s.repetition_penalty != 1.0:
            seen = values[at]
            values[at] = torch.where(seen < 0, seen * s.repetition_penalty, seen / s.repetition_penalty)
        if s.presence_penalty or s.frequency_penalty:
            counts = Counter(window)
            count = torch.tensor([counts[i] for i in seen_ids.tolist()], dtype=values.dtype)
            values[at] -= s.presence_penalty + s.frequency_penalty * count
    out = kept.with_values(values) if values is not kept.values else kept
    if s.no_repeat_ngram_size:
        banned = banned_ngram_tokens(context, s.no_repeat_ngram_size)
        if banned:
            at, alive = out.positions(torch.tensor(banned, dtype=torch.long))
            keep = torch.ones(out.n, dtype=torch.bool)
            keep[at[alive]] = False
            out = out.where(keep)
    return out


def banned_ngram_tokens(context: list[int], n: int) -> list[int]:
    """Tokens t such that context[-(n-1):] + [t] already occurs as an n-gram in the context."""
    if n <= 0 or len(context) + 1 < n:
        return []
    prefix = tuple(context[len(context) - n + 1:])
    return sorted({context[i + n - 1] for i in range(len(context) - n + 1)
                   if tuple(context[i:i + n - 1]) == prefix})


def temperature(kept: Kept, t: float) -> Kept:
    if t == 0.0:
        # The T -> 0 limit: all probability on the argmax (the first one, if tied: survivors
        # are in id order, and argmax returns the first maximum).
        return kept.keep_positions(torch.argmax(kept.values).reshape(1))
    return kept.with_values(kept.values / t)


def top_k(kept: Kept, k: int) -> Kept:
    if k <= 0 or k >= kept.n:  # HF's k-th logit is then a survivor's minimum or -inf: none go
        return kept
    kth = torch.topk(kept.values, k).values[-1]
    return kept.where(kept.values >= kth)  # ties with the k-th logit stay


def top_p(kept: Kept, p: float) -> Kept:
    if p >= 1.0:
        return kept
    # Stable: of tokens tied exactly at the cut, the higher ids are kept. That is Hugging
    # Face's result wherever torch's default sort is stable (up to 16 tokens); beyond that
    # its CPU sort is not, and HF's choice among exact ties depends on the sort's internals.
    # A fixed rule lets the page's chart (pipeline.js) repeat it.
    sorted_logits, order = torch.sort(kept.values, descending=False, stable=True)
    # HF sorts the whole vector: the removed tokens (-inf) first, then these. Its softmax runs
    # on that layout; its running sum over the removed tokens' zeros stays exactly 0.
    probs = at_end(sorted_logits, kept.size).softmax(dim=-1)[kept.size - kept.n:]
    cumulative = probs.cumsum(dim=-1)
    # Remove the low tail whose mass stays within 1 - p; the token that crosses p is kept.
    remove_sorted = cumulative <= (1 - p)
    remove_sorted[-1:] = False  # always keep the most likely token
    return kept.where(~remove_sorted.scatter(0, order, remove_sorted))


def min_p(kept: Kept, m: float) -> Kept:
    if m <= 0.0:
        return kept
    p = kept.kept_probs()
    # The top token's p is never below m × itself (m <= 1), so it always stays, as in HF.
    return kept.where(~(p < m * p.max()))


def typical_p(kept: Kept, mass: float) -> Kept:
    if mass >= 1.0:
        return kept
    log_probs = torch.log_softmax(kept.full(), dim=-1)
    # nansum: a token an earlier stage removed (-inf) holds no mass, and 0·(-inf) is NaN. (llama.cpp's
    # typical sums that NaN after top-nσ, or wherever a float32 probability underflows to 0, and
    # its cut is then whatever its sort makes of NaN: tests/test_llamacpp_samplers.py.)
    entropy = -(log_probs * log_probs.exp()).nansum(-1, keepdim=True)
    lp = log_probs if kept.ids is None else log_probs[kept.ids]
    surprise_gap = torch.abs(-lp - entropy)  # how far each token's surprise is from H
    # Stable: among tokens equally far from the entropy the lower id comes first (is kept).
    # The removed tokens' gaps are +inf: in HF's sort of the whole vector they come after these.
    sorted_gap, order = torch.sort(surprise_gap, descending=False, stable=True)
    cumulative = at_start(kept.values[order], kept.size).softmax(dim=-1)[:kept.n].cumsum(dim=-1)
    last = int((cumulative < mass).sum())
    if last >= kept.n:  # the mass is never reached: HF's cut lands on a removed token's +inf gap
        return kept
    remove_sorted = sorted_gap > sorted_gap[last]
    remove_sorted[:1] = False
    return kept.where(~remove_sorted.scatter(0, order, remove_sorted))


def _below_cutoff(kept: Kept, p: torch.Tensor, cutoff: float) -> torch.Tensor:
    # As transformers: tokens at the top logit stay whatever their probability (the
    # min_tokens_to_keep = 1 that generate() passes to these warpers).
    return (p < cutoff) & (kept.values < kept.values.max())


def epsilon(kept: Kept, eps: float) -> Kept:
    """transformers' EpsilonLogitsWarper: remove tokens whose probability is below ε."""
    if eps <= 0.0:
        return kept
    return kept.where(~_below_cutoff(kept, kept.kept_probs(), eps))


def eta(kept: Kept, eps: float) -> Kept:
    """transformers' EtaLogitsWarper: remove tokens whose probability is below
    η = min(ε, sqrt(ε)·exp(-H)), H the distribution's entropy in nats (as its code computes
    it; its docstring words it differently)."""
    if eps <= 0.0:
        return kept
    probs = kept.probs()
    log_probs = torch.log_softmax(kept.full(), dim=-1)
    entropy = float(-(probs * log_probs).nansum())
    cutoff = min(eps, math.sqrt(eps) * math.exp(-entropy))
    return kept.where(~_below_cutoff(kept, kept.kept_probs(), cutoff))


# ---- the same on a whole (V,) vector, -inf where removed ----

def apply_penalties(logits: torch.Tensor, context: list[int], s) -> torch.Tensor:
    return penalties(Kept.of(logits), context, s).full().clone()


def apply_temperature(logits: torch.Tensor, t: float) -> torch.Tensor:
    return temperature(Kept.of(logits), t).full()


def apply_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    return top_k(Kept.of(logits), k).full()


def apply_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    return top_p(Kept.of(logits), p).full()


def apply_min_p(logits: torch.Tensor, m: float) -> torch.Tensor:
    return min_p(Kept.of(logits), m).full()


def apply_typical_p(logits: torch.Tensor, mass: float) -> torch.Tensor:
    return typical_p(Kept.of(logits), mass).full()


def apply_epsilon(logits: torch.Tensor, eps: float) -> torch.Tensor:
    return epsilon(Kept.of(logits), eps).full()


def apply_eta(logits: torch.Tensor, eps: float) -> torch.Tensor:
    return eta(Kept.of(logits), eps).full()

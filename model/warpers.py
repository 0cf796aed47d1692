"""The warpers: each takes logits of shape (V,) and returns new ones, -inf where removed.

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

model/sampling.py says when each runs, in which order, and with which settings.
"""

from __future__ import annotations

import math
from collections import Counter

import torch

NEG_INF = float("-inf")


def penalty_window(context: list[int], last_n: int) -> list[int]:
    """The tokens the repetition/presence/frequency penalties look at: the whole context
    (last_n = -1, Hugging Face's definition), the last n (llama.cpp's), or none (0)."""
    return list(context) if last_n < 0 else list(context[max(0, len(context) - last_n):]) if last_n else []


def apply_penalties(logits: torch.Tensor, context: list[int], s) -> torch.Tensor:
    """Repetition penalty (HF: divide positive logits, multiply negative ones, for every token
    in the context), then presence/frequency penalties (OpenAI's: subtract presence once and
    frequency once per occurrence), then no-repeat n-gram (HF: ban tokens that would repeat an
    n-gram already in the context)."""
    logits = logits.clone()
    if not context:
        return logits
    window = penalty_window(context, s.penalty_last_n)
    ids = torch.tensor(sorted(set(window)), dtype=torch.long)
    if s.repetition_penalty != 1.0 and window:
        seen = logits[ids]
        logits[ids] = torch.where(seen < 0, seen * s.repetition_penalty, seen / s.repetition_penalty)
    if (s.presence_penalty or s.frequency_penalty) and window:
        counts = Counter(window)
        count = torch.tensor([counts[i] for i in ids.tolist()], dtype=logits.dtype)
        logits[ids] -= s.presence_penalty + s.frequency_penalty * count
    if s.no_repeat_ngram_size:
        banned = banned_ngram_tokens(context, s.no_repeat_ngram_size)
        if banned:
            logits[torch.tensor(banned, dtype=torch.long)] = NEG_INF
    return logits


def banned_ngram_tokens(context: list[int], n: int) -> list[int]:
    """Tokens t such that context[-(n-1):] + [t] already occurs as an n-gram in the context."""
    if n <= 0 or len(context) + 1 < n:
        return []
    prefix = tuple(context[len(context) - n + 1:])
    return sorted({context[i + n - 1] for i in range(len(context) - n + 1)
                   if tuple(context[i:i + n - 1]) == prefix})


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    if temperature == 0.0:
        # The T -> 0 limit: all probability on the argmax (the first one, if tied).
        greedy = torch.full_like(logits, NEG_INF)
        top = int(torch.argmax(logits))
        greedy[top] = logits[top]
        return greedy
    return logits / temperature


def apply_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    if k <= 0:
        return logits
    k = min(k, logits.size(-1))
    kth = torch.topk(logits, k).values[-1]
    return logits.masked_fill(logits < kth, NEG_INF)  # ties with the k-th logit stay


def apply_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    if p >= 1.0:
        return logits
    # Stable: of tokens tied exactly at the cut, the higher ids are kept. That is Hugging
    # Face's result wherever torch's default sort is stable (up to 16 tokens); beyond that
    # its CPU sort is not, and HF's choice among exact ties depends on the sort's internals.
    # A fixed rule lets the page's chart (pipeline.js) repeat it.
    sorted_logits, order = torch.sort(logits, descending=False, stable=True)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    # Remove the low tail whose mass stays within 1 - p; the token that crosses p is kept.
    remove_sorted = cumulative <= (1 - p)
    remove_sorted[-1:] = False  # always keep the most likely token
    remove = remove_sorted.scatter(0, order, remove_sorted)
    return logits.masked_fill(remove, NEG_INF)


def apply_min_p(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    if min_p <= 0.0:
        return logits
    probs = logits.softmax(dim=-1)
    remove = probs < min_p * probs.max()
    remove[torch.topk(probs, 1).indices] = False
    return logits.masked_fill(remove, NEG_INF)


def apply_typical_p(logits: torch.Tensor, mass: float) -> torch.Tensor:
    if mass >= 1.0:
        return logits
    log_probs = torch.log_softmax(logits, dim=-1)
    # nansum: a token an earlier stage removed (-inf) holds no mass, and 0·(-inf) is NaN. (llama.cpp's
    # typical sums that NaN after top-nσ, or wherever a float32 probability underflows to 0, and
    # its cut is then whatever its sort makes of NaN: tests/test_llamacpp_samplers.py.)
    entropy = -(log_probs * log_probs.exp()).nansum(-1, keepdim=True)
    surprise_gap = torch.abs(-log_probs - entropy)  # how far each token's surprise is from H
    # Stable: among tokens equally far from the entropy the lower id comes first (is kept).
    sorted_gap, order = torch.sort(surprise_gap, descending=False, stable=True)
    cumulative = logits.gather(-1, order).softmax(dim=-1).cumsum(dim=-1)
    last = min(int((cumulative < mass).sum()), sorted_gap.size(-1) - 1)
    remove_sorted = sorted_gap > sorted_gap[last]
    remove_sorted[:1] = False
    remove = remove_sorted.scatter(0, order, remove_sorted)
    return logits.masked_fill(remove, NEG_INF)


def _below_cutoff(logits: torch.Tensor, probs: torch.Tensor, cutoff: float) -> torch.Tensor:
    # As transformers: tokens at the top logit stay whatever their probability (the
    # min_tokens_to_keep = 1 that generate() passes to these warpers).
    return (probs < cutoff) & (logits < logits.max())


def apply_epsilon(logits: torch.Tensor, epsilon: float) -> torch.Tensor:
    """transformers' EpsilonLogitsWarper: remove tokens whose probability is below ε."""
    if epsilon <= 0.0:
        return logits
    return logits.masked_fill(_below_cutoff(logits, logits.softmax(dim=-1), epsilon), NEG_INF)


def apply_eta(logits: torch.Tensor, epsilon: float) -> torch.Tensor:
    """transformers' EtaLogitsWarper: remove tokens whose probability is below
    η = min(ε, sqrt(ε)·exp(-H)), H the distribution's entropy in nats (as its code computes
    it; its docstring words it differently)."""
    if epsilon <= 0.0:
        return logits
    probs = logits.softmax(dim=-1)
    log_probs = torch.log_softmax(logits, dim=-1)
    entropy = float(-(probs * log_probs).nansum())
    eta = min(epsilon, math.sqrt(epsilon) * math.exp(-entropy))
    return logits.masked_fill(_below_cutoff(logits, probs, eta), NEG_INF)

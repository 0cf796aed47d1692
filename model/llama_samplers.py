"""llama.cpp's samplers, on the survivors of the stages before them (model/kept.py's Kept);
apply_* are the same on a (V,) float64 vector with -inf where a token was removed.

Each function repeats the operation of its counterpart in llama.cpp's src/llama-sampler.cpp
(the C names are given), so that tests/test_llamacpp_samplers.py can check them against
llama.cpp's own code. Where our representation differs, the function says so:

- llama.cpp shrinks an array of candidates, as Kept does; its "candidates" are our survivors
  (a whole vector's finite logits).
- llama.cpp computes in float32, we in float64: a token whose value sits within float32's
  rounding of a threshold can land on the other side. The tests count those cases apart.
- Ties: where llama.cpp's order among equal probabilities depends on its sort, ours is
  probability descending, ties by lower id (the order model/sampling.py picks in).

model/sampling.py says when each runs and with which settings.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .kept import Kept

NEG_INF = float("-inf")
# DRY (llama_sampler_init_dry): a breaker longer than this many bytes is refused here (llama.cpp
# cuts it silently), and its tail after the first token is matched on at most MAX_TAIL tokens.
DRY_MAX_BREAKER_BYTES = 40
DRY_MAX_TAIL_TOKENS = 20
MIROSTAT_M = 100  # common/sampling.cpp builds mirostat 1 with m = 100


def _probs_desc(kept: Kept) -> tuple[torch.Tensor, torch.Tensor]:
    """(positions, probs) of the survivors, probability descending, ties by lower id."""
    probs = kept.values.softmax(dim=-1)
    order = torch.sort(probs, descending=True, stable=True).indices
    return order, probs[order]


def logit_bias(kept: Kept, biases: list[tuple[int, float]]) -> Kept:
    """llama_sampler_logit_bias: add each bias to its token's logit (-inf bans the token).
    Two entries for one token add up, as they do in llama.cpp. A removed token stays removed."""
    if not biases:
        return kept
    at, alive = kept.positions(torch.tensor([t for t, _ in biases], dtype=torch.long))
    values = kept.values.clone()
    for (_, bias), i, ok in zip(biases, at.tolist(), alive.tolist()):
        if ok:
            values[i] = values[i] + bias
    return kept.with_values(values)


def top_n_sigma(kept: Kept, n: float) -> Kept:
    """llama_sampler_top_n_sigma: keep logits >= max - n·σ, where σ is the standard deviation
    (population, over the candidates' logits). n <= 0 is off (llama.cpp's default is -1)."""
    finite = kept.values
    if n <= 0 or finite.numel() <= 1:
        return kept
    sigma = float(((finite - finite.mean()) ** 2).mean().sqrt())
    return kept.where(~(finite < float(finite.max()) - n * sigma))


def xtc(kept: Kept, probability: float, threshold: float, u: float) -> Kept:
    """llama_sampler_xtc ("exclude top choices"): when the stage's own draw u is at most
    `probability`, remove every token whose probability is >= threshold except the least likely
    of them. Needs at least two such tokens; off when probability <= 0 or threshold > 0.5."""
    if probability <= 0 or threshold > 0.5 or u > probability:
        return kept
    order, probs = _probs_desc(kept)
    above = int((probs >= threshold).sum())  # a prefix: probs are descending
    if above < 2:
        return kept
    return kept.keep_positions(order[above - 1:])


def dynamic_temperature_stage(kept: Kept, temperature: float, spread: float, exponent: float,
                              plain) -> Kept:
    """llama_sampler_temp_ext: the temperature moves within [T - spread, T + spread] (not below
    0) with the normalised entropy H / ln(candidates) raised to `exponent`: a confident
    distribution gets the low end, a flat one the high end. spread 0 is plain temperature,
    `plain(kept, T)`."""
    if spread <= 0:
        return plain(kept, temperature)
    finite = kept.values
    if finite.numel() <= 1:
        return kept
    low, high = max(0.0, temperature - spread), temperature + spread
    probs = finite.softmax(dim=-1)
    p = probs[probs > 0]
    entropy = float(-(p * p.log()).sum())
    normalised = entropy / math.log(finite.numel())
    return plain(kept, dynamic_temperature(low, high, normalised, exponent))


def dynamic_temperature(low: float, high: float, normalised_entropy: float, exponent: float) -> float:
    return low + (high - low) * normalised_entropy ** exponent


# ---- mirostat: a cut from the state μ, then (after the pick) μ's update ----

def mirostat_raw_k(probs_desc: torch.Tensor, mu: float, n_vocab: int) -> float:
    """Mirostat 1's top-k before rounding: the Zipf exponent s estimated from the top
    MIROSTAT_M probabilities, then k = (ε·2^μ / (1 - N^-ε))^(1/s) with ε = s - 1."""
    p = probs_desc.tolist()
    n = min(MIROSTAT_M - 1, len(p) - 1)
    t = [math.log((i + 2) / (i + 1)) for i in range(n)]
    with np.errstate(all="ignore"):
        b = [float(np.log(np.float64(p[i]) / p[i + 1])) for i in range(n)]
        s_hat = np.float64(sum(ti * bi for ti, bi in zip(t, b))) / np.float64(sum(ti * ti for ti in t))
        eps = s_hat - 1
        return float(np.power((eps * np.power(2.0, mu)) / (1 - np.power(float(n_vocab), -eps)), 1 / s_hat))


def mirostat_k(probs_desc: torch.Tensor, mu: float, n_vocab: int) -> int:
    """How many top tokens mirostat 1 keeps: mirostat_raw_k rounded down, at least 1. A k that
    is not a number (a flat distribution, s = 1) or -inf keeps one token; a k beyond the
    candidates keeps them all. llama.cpp converts k to int, which C leaves undefined past
    2^31 (x86 gives INT_MIN, so llama.cpp keeps one token where k is astronomically large):
    here it keeps all."""
    k = mirostat_raw_k(probs_desc, mu, n_vocab)
    size = probs_desc.numel()
    if not math.isfinite(k):
        return size if k == math.inf else 1
    return max(1, min(size, int(k)))


def mirostat(kept: Kept, version: int, mu: float, n_vocab: int | None = None) -> Kept:
    """The cut mirostat makes for a given μ (llama_sampler_mirostat / _v2 before their draw).
    1: keep the top mirostat_k tokens (N = n_vocab, the vocabulary's size by default, in its
    formula). 2: keep the top tokens whose surprise -log2 p is at most μ (at least one)."""
    order, probs = _probs_desc(kept)
    if version == 1:
        keep = mirostat_k(probs, mu, kept.size if n_vocab is None else n_vocab)
    else:
        surprise = -torch.log2(probs)
        keep = max(1, int((surprise <= mu).to(torch.int64).cumprod(0).sum()))  # the prefix within μ
    return kept.keep_positions(order[:keep])


def mirostat_mu_after(mu: float, tau: float, eta: float, prob_of_pick: float) -> float:
    """μ after a pick whose probability (after the cut) was prob_of_pick: it moves against the
    error between the pick's surprise and the target τ, by the learning rate η."""
    return mu - eta * (-math.log2(prob_of_pick) - tau)


# ---- DRY ("don't repeat yourself") ----

def dry_breaker_sequences(breakers, pieces: list[bytes], encode) -> dict[int, list[tuple[int, ...]]]:
    """head token -> the tails that complete a sequence breaker (llama.cpp's
    get_overlapping_token_sequences, on our tokenizer's pieces). A token whose text holds a
    whole breaker is a head with the empty tail; a token whose text ends with the start of a
    breaker is a head whose tail is the tokenisation of the breaker's rest (at most
    DRY_MAX_TAIL_TOKENS tokens). pieces[i] is token i's bytes; encode(text) -> ids."""
    heads: dict[int, list[tuple[int, ...]]] = {}
    for breaker in breakers:
        word = breaker.encode("utf-8")
        if not word:
            continue
        for token, piece in enumerate(pieces):
            for tail in _tails(piece, word, encode):
                tails = heads.setdefault(token, [])
                if tail not in tails:
                    tails.append(tail)
    return heads


def _tails(piece: bytes, word: bytes, encode) -> list[tuple[int, ...]]:
    """The breaker `word`'s tails for a token whose bytes are `piece`: () when the piece holds
    the whole word, else one tail per place where the piece ends inside the word's start."""
    if word in piece:
        return [()]
    out = []
    pos = piece.find(word[:1])
    while pos >= 0:
        rest = len(piece) - pos  # bytes of the word the piece already holds
        if piece[pos:] == word[:rest]:
            out.append(tuple(encode(word[rest:].decode("utf-8", errors="replace"))[:DRY_MAX_TAIL_TOKENS]))
        pos = piece.find(word[:1], pos + 1)
    return out


def _repeat_lengths(window: list[int], limit: int) -> list[int]:
    """For each position j < N-1 of the window: how many tokens ending at j equal the window's
    last tokens (the longest common suffix of window[:j+1] and window), at most `limit`. The
    Z-function of the reversed window, as llama.cpp's DRY computes it."""
    rev = window[::-1]
    n = len(rev)
    z = [0] * n
    left = right = 0
    for k in range(1, n):
        if k < right:
            z[k] = min(right - k, z[k - left])
        while k + z[k] < n and rev[z[k]] == rev[k + z[k]]:
            z[k] += 1
        if k + z[k] > right:
            left, right = k, k + z[k]
    out = [0] * n
    for k in range(1, n):
        out[n - 1 - k] = min(z[k], limit)
    return out


def dry_penalties(window: list[int], multiplier: float, base: float, allowed_length: int,
                  heads: dict[int, list[tuple[int, ...]]]) -> dict[int, float]:
    """token -> the penalty DRY subtracts from its logit (llama_sampler_dry_apply): a token
    that would extend a repeat of the window's last tokens longer than allowed_length gets
    multiplier · base^(repeat length - allowed_length). A repeat does not reach back past the
    last sequence breaker, and a token that is itself a breaker is never penalised."""
    n = len(window)
    if multiplier == 0 or base < 1 or n <= allowed_length:
        return {}
    limit = n
    for i in range(n):  # the newest breaker limits how far back a repeat may reach
        tails = heads.get(window[n - 1 - i])
        if not tails:
            continue
        longest = -1
        for tail in tails:
            if longest < len(tail) <= i and all(tail[j] == window[n - i + j] for j in range(len(tail))):
                longest = len(tail)
        if longest >= 0:
            limit = i - longest
            break
    if limit < allowed_length:
        return {}
    lengths = _repeat_lengths(window, limit)
    longest_before: dict[int, int] = {}
    for i in range(n - 1):
        if lengths[i] >= allowed_length:
            token = window[i + 1]  # would continue the repeat that ends at i
            longest_before[token] = max(longest_before.get(token, 0), lengths[i])
    # llama.cpp caps the exponent so that base^exponent stays inside float32.
    max_exponent = int(np.float32(88.7228391) / np.float32(math.log(base))) if base > 1.000001 else 0
    out = {}
    for token, length in longest_before.items():
        if () in heads.get(token, ()):
            continue
        exponent = length - allowed_length
        if max_exponent > 0:
            exponent = min(exponent, max_exponent)
        out[token] = multiplier * base ** exponent
    return out


def dry(kept: Kept, context: list[int], s, heads) -> Kept:
    n = len(context) if s.dry_penalty_last_n < 0 else s.dry_penalty_last_n
    window = context[max(0, len(context) - n):] if n else []
    penalties = dry_penalties(window, s.dry_multiplier, s.dry_base, s.dry_allowed_length, heads)
    if not penalties:
        return kept
    at, alive = kept.positions(torch.tensor(list(penalties), dtype=torch.long))
    values = kept.values.clone()
    values[at[alive]] -= torch.tensor(list(penalties.values()), dtype=values.dtype)[alive]
    return kept.with_values(values)


# ---- the same on a whole (V,) vector, -inf where removed ----

def apply_logit_bias(logits: torch.Tensor, biases: list[tuple[int, float]]) -> torch.Tensor:
    return logit_bias(Kept.of(logits), biases).full().clone()


def apply_top_n_sigma(logits: torch.Tensor, n: float) -> torch.Tensor:
    return top_n_sigma(Kept.of(logits), n).full()


def apply_xtc(logits: torch.Tensor, probability: float, threshold: float, u: float) -> torch.Tensor:
    return xtc(Kept.of(logits), probability, threshold, u).full()


def apply_dynamic_temperature(logits: torch.Tensor, temperature: float, spread: float,
                              exponent: float, apply_temperature) -> torch.Tensor:
    plain = lambda kept, t: Kept.of(apply_temperature(kept.full(), t))  # noqa: E731
    return dynamic_temperature_stage(Kept.of(logits), temperature, spread, exponent, plain).full()


def apply_mirostat(logits: torch.Tensor, version: int, mu: float, n_vocab: int) -> torch.Tensor:
    return mirostat(Kept.of(logits), version, mu, n_vocab).full()


def apply_dry(logits: torch.Tensor, context: list[int], s, heads) -> torch.Tensor:
    return dry(Kept.of(logits), context, s, heads).full().clone()

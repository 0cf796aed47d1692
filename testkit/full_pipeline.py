"""The sampling pipeline as it ran before stages worked on the survivors only: every stage on
the whole (V,) float64 vector, -inf where removed, and every step's candidates from a softmax
and a top-k over the whole vocabulary. Kept verbatim as the reference that
tests/test_survivors.py holds model/sampling.py to, bit for bit: the same kept sets, the same
logits after every stage, the same probabilities, the same pick.

Only the stages' arithmetic lives here; the settings, the chain's order (chain_of), DRY's
repeat scan and sequence breakers, the logit-bias decoder and the draws are model/'s own,
which this change did not touch.
"""

from __future__ import annotations

import math

import torch

from model import llama_samplers as ls
from model.chain import resolve_logit_bias
from model.sampling import SamplingSettings, chain_of, check_seed
from model.stage_table import Run, breaker_heads
from model.warpers import banned_ngram_tokens, penalty_window

NEG_INF = float("-inf")


# ---- Hugging Face's warpers (model/warpers.py as it was) ----

def apply_penalties(logits, context, s):
    logits = logits.clone()
    if not context:
        return logits
    window = penalty_window(context, s.penalty_last_n)
    ids = torch.tensor(sorted(set(window)), dtype=torch.long)
    if s.repetition_penalty != 1.0 and window:
        seen = logits[ids]
        logits[ids] = torch.where(seen < 0, seen * s.repetition_penalty, seen / s.repetition_penalty)
    if (s.presence_penalty or s.frequency_penalty) and window:
        from collections import Counter
        counts = Counter(window)
        count = torch.tensor([counts[i] for i in ids.tolist()], dtype=logits.dtype)
        logits[ids] -= s.presence_penalty + s.frequency_penalty * count
    if s.no_repeat_ngram_size:
        banned = banned_ngram_tokens(context, s.no_repeat_ngram_size)
        if banned:
            logits[torch.tensor(banned, dtype=torch.long)] = NEG_INF
    return logits


def apply_temperature(logits, temperature):
    if temperature == 0.0:
        greedy = torch.full_like(logits, NEG_INF)
        top = int(torch.argmax(logits))
        greedy[top] = logits[top]
        return greedy
    return logits / temperature


def apply_top_k(logits, k):
    if k <= 0:
        return logits
    k = min(k, logits.size(-1))
    kth = torch.topk(logits, k).values[-1]
    return logits.masked_fill(logits < kth, NEG_INF)


def apply_top_p(logits, p):
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, descending=False, stable=True)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    remove_sorted = cumulative <= (1 - p)
    remove_sorted[-1:] = False
    remove = remove_sorted.scatter(0, order, remove_sorted)
    return logits.masked_fill(remove, NEG_INF)


def apply_min_p(logits, min_p):
    if min_p <= 0.0:
        return logits
    probs = logits.softmax(dim=-1)
    remove = probs < min_p * probs.max()
    remove[torch.topk(probs, 1).indices] = False
    return logits.masked_fill(remove, NEG_INF)


def apply_typical_p(logits, mass):
    if mass >= 1.0:
        return logits
    log_probs = torch.log_softmax(logits, dim=-1)
    entropy = -(log_probs * log_probs.exp()).nansum(-1, keepdim=True)
    surprise_gap = torch.abs(-log_probs - entropy)
    sorted_gap, order = torch.sort(surprise_gap, descending=False, stable=True)
    cumulative = logits.gather(-1, order).softmax(dim=-1).cumsum(dim=-1)
    last = min(int((cumulative < mass).sum()), sorted_gap.size(-1) - 1)
    remove_sorted = sorted_gap > sorted_gap[last]
    remove_sorted[:1] = False
    remove = remove_sorted.scatter(0, order, remove_sorted)
    return logits.masked_fill(remove, NEG_INF)


def _below_cutoff(logits, probs, cutoff):
    return (probs < cutoff) & (logits < logits.max())


def apply_epsilon(logits, epsilon):
    if epsilon <= 0.0:
        return logits
    return logits.masked_fill(_below_cutoff(logits, logits.softmax(dim=-1), epsilon), NEG_INF)


def apply_eta(logits, epsilon):
    if epsilon <= 0.0:
        return logits
    probs = logits.softmax(dim=-1)
    log_probs = torch.log_softmax(logits, dim=-1)
    entropy = float(-(probs * log_probs).nansum())
    eta = min(epsilon, math.sqrt(epsilon) * math.exp(-entropy))
    return logits.masked_fill(_below_cutoff(logits, probs, eta), NEG_INF)


# ---- llama.cpp's samplers (model/llama_samplers.py as it was) ----

def _probs_desc(logits):
    ids = torch.isfinite(logits).nonzero().flatten()
    probs = logits[ids].softmax(dim=-1)
    order = torch.sort(probs, descending=True, stable=True).indices
    return ids[order], probs[order]


def _keep_only(logits, ids):
    out = torch.full_like(logits, NEG_INF)
    out[ids] = logits[ids]
    return out


def apply_logit_bias(logits, biases):
    out = logits.clone()
    for token, bias in biases:
        out[token] = out[token] + bias
    return out


def apply_top_n_sigma(logits, n):
    finite = logits[torch.isfinite(logits)]
    if n <= 0 or finite.numel() <= 1:
        return logits
    sigma = float(((finite - finite.mean()) ** 2).mean().sqrt())
    return logits.masked_fill(logits < float(finite.max()) - n * sigma, NEG_INF)


def apply_xtc(logits, probability, threshold, u):
    if probability <= 0 or threshold > 0.5 or u > probability:
        return logits
    ids, probs = _probs_desc(logits)
    above = int((probs >= threshold).sum())
    if above < 2:
        return logits
    return logits.index_fill(0, ids[:above - 1], NEG_INF)


def apply_dynamic_temperature(logits, temperature, spread, exponent):
    if spread <= 0:
        return apply_temperature(logits, temperature)
    finite = logits[torch.isfinite(logits)]
    if finite.numel() <= 1:
        return logits
    low, high = max(0.0, temperature - spread), temperature + spread
    probs = finite.softmax(dim=-1)
    p = probs[probs > 0]
    entropy = float(-(p * p.log()).sum())
    normalised = entropy / math.log(finite.numel())
    return apply_temperature(logits, ls.dynamic_temperature(low, high, normalised, exponent))


def apply_mirostat(logits, version, mu, n_vocab):
    ids, probs = _probs_desc(logits)
    if version == 1:
        keep = ls.mirostat_k(probs, mu, n_vocab)
    else:
        surprise = -torch.log2(probs)
        keep = max(1, int((surprise <= mu).to(torch.int64).cumprod(0).sum()))
    return _keep_only(logits, ids[:keep])


def apply_dry(logits, context, s, heads):
    n = len(context) if s.dry_penalty_last_n < 0 else s.dry_penalty_last_n
    window = context[max(0, len(context) - n):] if n else []
    penalties = ls.dry_penalties(window, s.dry_multiplier, s.dry_base, s.dry_allowed_length, heads)
    if not penalties:
        return logits
    out = logits.clone()
    ids = torch.tensor(list(penalties), dtype=torch.long)
    out[ids] -= torch.tensor(list(penalties.values()), dtype=logits.dtype)
    return out


# ---- the walk ----

def _apply(name, x, s, run):
    if name == "logit_bias":
        encode = run.vocab.encode_ordinary if run.vocab is not None else None
        return apply_logit_bias(x, resolve_logit_bias(s.logit_bias, x.numel(), encode))
    if name == "penalties":
        return apply_penalties(x, run.context, s)
    if name == "dry":
        heads = breaker_heads(run.vocab, s.dry_sequence_breakers, x.numel()) if s.dry_sequence_breakers else {}
        return apply_dry(x, run.context, s, heads)
    if name == "temperature":
        if s.dynatemp_range > 0 and not s.mirostat:
            return apply_dynamic_temperature(x, s.temperature, s.dynatemp_range, s.dynatemp_exponent)
        return apply_temperature(x, s.temperature)
    if name == "top_n_sigma":
        return apply_top_n_sigma(x, s.top_n_sigma)
    if name == "mirostat":
        mu = run.mu if run.mu is not None else 2.0 * s.mirostat_tau
        return apply_mirostat(x, s.mirostat, mu, x.numel())
    if name == "xtc":
        return apply_xtc(x, s.xtc_probability, s.xtc_threshold, run.draw("xtc"))
    plain = {"top_k": lambda: apply_top_k(x, s.top_k), "top_p": lambda: apply_top_p(x, s.top_p),
             "min_p": lambda: apply_min_p(x, s.min_p), "typical_p": lambda: apply_typical_p(x, s.typical_p),
             "epsilon": lambda: apply_epsilon(x, s.epsilon_cutoff), "eta": lambda: apply_eta(x, s.eta_cutoff)}
    return plain[name]()


def full_pipeline(logits, settings=None, context=None, *, seed=0, vocab=None, mu=None):
    """(stages [(name, active, logits (V,))], final probs (V,)), or ValueError where a stage
    leaves no distribution (the message is model/sampling.py's; only whether it raises is
    compared)."""
    s = settings or SamplingSettings()
    context = list(context or [])
    if s.mirostat and mu is None:
        mu = 2.0 * s.mirostat_tau
    run = Run(context, check_seed(seed), vocab, mu if s.mirostat else None)
    x = logits.detach().to("cpu", torch.float64)
    stages = []
    for stage in chain_of(s):
        active = stage.active(s, context)
        if active:
            x = _apply(stage.name, x, s, run)
            if not torch.isfinite(x.max()):
                raise ValueError(f"the {stage.name} stage left no distribution")
        stages.append((stage.name, active, x))
    return stages, x.softmax(dim=-1)


def pick_token(probs, u):
    """model/sampling.py's pick_token as it was (a growing head of the sampling order)."""
    n_kept = int((probs > 0).sum())
    k = min(n_kept, 256)
    while True:
        kth = torch.topk(probs, k).values[-1]
        head = (probs >= kth).nonzero().flatten()
        order = head[torch.sort(probs[head], descending=True, stable=True).indices]
        cumulative = probs[order].cumsum(0)
        i = int(torch.searchsorted(cumulative, torch.tensor([u], dtype=cumulative.dtype)))
        if i < len(order) or len(order) >= n_kept:
            return int(order[min(i, n_kept - 1)])
        k = min(n_kept, 8 * k)

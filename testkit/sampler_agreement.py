"""How often our samplers agree with llama.cpp's own (and ε/η with transformers'), on random
cases: one function per sampler, each returning a Tally. tests/test_llamacpp_samplers.py runs
a few hundred cases of each and asserts; benchmarks/bench_sampler_agreement.py runs thousands
and prints the counts.

Every case draws float32 logits (and, where the sampler looks back, a history), runs llama.cpp's
sampler through testkit/llamacpp.py and our stage on the same values widened to float64, and
compares by token id: the same survivors, and the same logits to float32's precision.

Float32 against float64. llama.cpp computes in float32, we in float64, so a token within
float32's rounding of a threshold can fall on the other side. Such a case is told apart from a
real difference by moving our threshold by a relative NUDGE = 1e-5 (about 100 float32 ulps)
each way: if either nudge gives llama.cpp's survivors, the case is a threshold edge and is
counted as one; otherwise it is a difference.
"""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass, field

import llama_cpp as L
import numpy as np
import torch

from model import llama_samplers as ls
from model.chain import parse_letters
from model.kept import Kept
from model.sampling import SamplingSettings, breaker_heads, run_pipeline

from . import llamacpp as ref

NUDGE = 1e-5


@dataclass
class Tally:
    name: str
    cases: int = 0
    edges: int = 0  # survivors differ only by a threshold nudge
    # left out, counted: llama.cpp's result is undefined in C (mirostat 1's k), NaN (typical's
    # 0·log 0), or counts top-nσ's masked tokens as candidates (dynamic temperature)
    quirks: int = 0
    differ: list = field(default_factory=list)  # (where, what) of real differences

    def survivors(self, got: set[int], expected: set[int], nudged, where) -> bool:
        """True when the survivors agree exactly (edges and differences are counted)."""
        if got == expected:
            return True
        if any(got == nudged(f) for f in (1 - NUDGE, 1 + NUDGE)):
            self.edges += 1
        else:
            self.differ.append((where, f"only llama.cpp {sorted(got - expected)[:8]}, "
                                       f"only ours {sorted(expected - got)[:8]}"))
        return False

    def close(self, ok: bool, where, what: str = "values differ") -> None:
        if not ok:
            self.differ.append((where, what))


def random_logits(rng: np.random.Generator, vocab: int | None = None) -> np.ndarray:
    vocab = vocab or int(rng.integers(2, 300))
    return (rng.standard_normal(vocab) * rng.choice([0.5, 2.0, 5.0])).astype(np.float32)


def ours(logits32: np.ndarray, settings: dict, context=(), **kw):
    """Our pipeline on the same (float32) values, widened exactly to float64."""
    x = torch.tensor(np.asarray(logits32, dtype=np.float64))
    return run_pipeline(x, SamplingSettings.from_dict(settings), list(context), **kw)


def final_logits(pipe) -> torch.Tensor:
    return pipe.stages[-1].logits if pipe.stages else pipe.raw


def kept_ids(pipe) -> set[int]:
    """The ids whose logit is finite (a probability may underflow to 0 and still be kept)."""
    return set(torch.nonzero(torch.isfinite(final_logits(pipe))).flatten().tolist())


def same_probs(pipe, got: dict, n: int, atol: float) -> bool:
    """The same survivors and probabilities: for dynamic temperature, whose T near 0 (an
    entropy near 0) carries float32's relative error into logits of 10^6, where both
    distributions are the same one-hot."""
    theirs = torch.tensor([got[i][0] if i in got else -math.inf for i in range(n)], dtype=torch.float64)
    mine = final_logits(pipe)
    return bool(torch.equal(torch.isfinite(theirs), torch.isfinite(mine))
                and torch.allclose(mine.softmax(-1), theirs.softmax(-1), rtol=0, atol=atol))


def same_logits(pipe, got: dict, n: int, rtol: float, atol: float) -> bool:
    theirs = torch.tensor([got[i][0] if i in got else -math.inf for i in range(n)], dtype=torch.float64)
    mine = final_logits(pipe)
    finite = torch.isfinite(theirs)
    return bool(torch.equal(finite, torch.isfinite(mine))
                and torch.allclose(mine[finite], theirs[finite], rtol=rtol, atol=atol))


# Our survivors with a threshold moved by a factor f: the nudges of the module's docstring.

def nudge(x, settings: dict, name: str, context=()):
    return lambda f: kept_ids(ours(x, settings | {name: settings[name] * f}, context))


def nudge_mu(x, settings: dict, mu: float):
    return lambda f: kept_ids(ours(x, settings, mu=mu * f))


def nudge_chain(x, settings: dict, chain: dict, history):
    return lambda f: kept_ids(ours(x, _nudged(settings, f) | chain, history))


# ---- one sampler at a time ----

def top_n_sigma(cases: int, seed: int = 1) -> Tally:
    rng, t = np.random.default_rng(seed), Tally("top-nσ")
    for case in range(cases):
        x, n = random_logits(rng), float(rng.choice([0.5, 1.0, 1.5, 2.0, rng.uniform(0.1, 4)]))
        got = ref.survivors(L.llama_sampler_init_top_n_sigma(n), x)
        pipe = ours(x, {"top_n_sigma": n})
        if t.survivors(set(got), kept_ids(pipe), nudge(x, {"top_n_sigma": n}, "top_n_sigma"), (case, n)):
            t.close(same_logits(pipe, got, len(x), 1e-6, 1e-5), (case, n))
        t.cases += 1
    return t


def xtc(cases: int, seed: int = 2) -> Tally:
    """XTC at probability 1: its own draw then always lets it act."""
    rng, t = np.random.default_rng(seed), Tally("XTC")
    for case in range(cases):
        x, th = random_logits(rng, int(rng.integers(2, 40))), float(rng.uniform(0.0, 0.5))
        got = ref.survivors(L.llama_sampler_init_xtc(1.0, th, 0, case), x)
        s = {"xtc_probability": 1.0, "xtc_threshold": th}
        t.survivors(set(got), kept_ids(ours(x, s)),
                    nudge(x, s, "xtc_threshold"), (case, th))
        t.cases += 1
    return t


def penalties(cases: int, seed: int = 3) -> Tally:
    rng, t = np.random.default_rng(seed), Tally("penalties (last n)")
    for case in range(cases):
        x = random_logits(rng)
        history = rng.integers(0, len(x), int(rng.integers(0, 80))).tolist()
        last_n = int(rng.choice([1, 4, 16, 64]))
        rep, freq, pres = float(rng.uniform(0.5, 2.0)), float(rng.uniform(-1, 1)), float(rng.uniform(-1, 1))
        got = ref.survivors(L.llama_sampler_init_penalties(len(x), last_n, rep, freq, pres), x, history)
        pipe = ours(x, {"repetition_penalty": rep, "frequency_penalty": freq, "presence_penalty": pres,
                        "penalty_last_n": last_n}, history)
        t.close(same_logits(pipe, got, len(x), 1e-6, 1e-5), (case, last_n, rep, freq, pres))
        t.cases += 1
    return t


def dynamic_temperature(cases: int, seed: int = 4) -> Tally:
    rng, t = np.random.default_rng(seed), Tally("dynamic temperature")
    for case in range(cases):
        x = random_logits(rng)
        temp, spread = float(rng.uniform(0.1, 2)), float(rng.uniform(0.01, 1.5))
        exponent = float(rng.uniform(0.2, 3))
        got = ref.survivors(L.llama_sampler_init_temp_ext(temp, spread, exponent), x)
        pipe = ours(x, {"temperature": temp, "dynatemp_range": spread, "dynatemp_exponent": exponent})
        t.close(same_probs(pipe, got, len(x), 1e-5), (case, temp, spread, exponent))
        t.cases += 1
    return t


def logit_bias(cases: int, seed: int = 5) -> Tally:
    rng, t = np.random.default_rng(seed), Tally("logit bias")
    for case in range(cases):
        x = random_logits(rng)
        pairs = [(int(rng.integers(0, len(x))), float(rng.uniform(-5, 5)))
                 for _ in range(int(rng.integers(1, 6)))]
        bans = [int(rng.integers(0, len(x)))] if rng.random() < 0.5 and len(x) > 1 else []
        got = ref.survivors(ref.logit_bias(len(x), pairs + [(b, -math.inf) for b in bans]), x)
        pipe = ours(x, {"logit_bias": [list(p) for p in pairs] + [[b, False] for b in bans]})
        t.close(same_logits(pipe, got, len(x), 1e-6, 1e-5), (case, pairs, bans))
        t.cases += 1
    return t


def mirostat(cases: int, seed: int = 6) -> Tally:
    """The cut for μ (llama.cpp starts μ at 2τ, so τ = μ/2 sets it), then a second apply on the
    same sampler shows the cut for llama.cpp's updated μ, which must be ours after the token
    llama.cpp picked. Mirostat 1's k is converted to int in C, undefined beyond 2^31 (x86
    gives INT_MIN and llama.cpp keeps one token; we keep every candidate): left out, counted."""
    rng, t = np.random.default_rng(seed), Tally("mirostat 1 and 2")
    for case in range(cases):
        x = random_logits(rng, int(rng.integers(3, 300)))
        version, mu, eta = int(rng.choice([1, 2])), float(rng.uniform(0.5, 12)), float(rng.uniform(0.0, 1.0))
        s = {"mirostat": version, "mirostat_tau": mu / 2, "mirostat_eta": eta}

        t.cases += 1
        if version == 1 and not _k_defined_in_c(x, mu):
            t.quirks += 1
            continue
        pipe = ours(x, s, mu=mu)
        first, kept_first, kept_second = _two_applies(_mirostat(version, len(x), case, mu / 2, eta), x)
        if not t.survivors(kept_first, kept_ids(pipe), nudge_mu(x, s, mu), (case, version, mu)):
            continue
        mu_after = pipe.mu_after(first, SamplingSettings.from_dict(s))
        if version == 1 and not _k_defined_in_c(x, mu_after):
            t.quirks += 1
            continue
        t.survivors(kept_second, kept_ids(ours(x, s, mu=mu_after)),
                    nudge_mu(x, s, mu_after), (case, version, "μ after", mu_after))
    return t


def _mirostat(version: int, n_vocab: int, seed: int, tau: float, eta: float):
    if version == 1:
        return L.llama_sampler_init_mirostat(n_vocab, seed, tau, eta, ls.MIROSTAT_M)
    return L.llama_sampler_init_mirostat_v2(seed, tau, eta)


def _k_defined_in_c(x, mu) -> bool:
    _, probs = ls._probs_desc(Kept.of(torch.tensor(np.asarray(x, dtype=np.float64))))
    k = ls.mirostat_raw_k(probs, mu, len(x))
    return math.isfinite(k) and k < 2**31


def _two_applies(sampler, x):
    """Apply `sampler` to x twice: the first pick, the first apply's and the second's survivors."""
    picks, kept = [], []
    try:
        for _ in range(2):
            data = (L.llama_token_data * len(x))(*[L.llama_token_data(i, float(v), 0.0)
                                                   for i, v in enumerate(x)])
            array = L.llama_token_data_array(data=data, size=len(x), selected=-1, sorted=False)
            L.llama_sampler_apply(sampler, ctypes.byref(array))
            picks.append(array.data[array.selected].id)
            kept.append({array.data[i].id for i in range(array.size)})
        return picks[0], kept[0], kept[1]
    finally:
        L.llama_sampler_free(sampler)


def dry(cases: int, seed: int, tokenizer, vocab) -> Tally:
    """DRY with sequence breakers (one- and many-token ones) on a real vocabulary: llama.cpp's
    `vocab` and our `tokenizer` of the same model. Histories are built from a few words and
    the breakers, so repeats and breakers are common."""
    rng, t = np.random.default_rng(seed), Tally("DRY")
    n_vocab = L.llama_vocab_n_tokens(vocab)
    breaker_sets = [["\n", ":", "\"", "*"], ["assistant:", "\n\n"], [" the end", "*"], []]
    words = [tokenizer.encode_ordinary(w)
             for w in ["a cat", " sat", ":", "\n", " the end", "assistant:", "*"]]
    for case in range(cases):
        breakers = breaker_sets[case % len(breaker_sets)]
        history = [tok for _ in range(int(rng.integers(1, 16)))
                   for tok in words[int(rng.integers(0, len(words)))]]
        x = rng.standard_normal(n_vocab).astype(np.float32)
        mult, base = float(rng.uniform(0.5, 2)), float(rng.choice([1.75, rng.uniform(1.0, 3.0)]))
        allowed, last_n = int(rng.integers(0, 4)), int(rng.choice([8, 16, 64]))
        got = ref.survivors(ref.dry(vocab, mult, base, allowed, last_n, breakers), x, history)
        s = SamplingSettings(dry_multiplier=mult, dry_base=base, dry_allowed_length=allowed,
                             dry_penalty_last_n=last_n, dry_sequence_breakers=tuple(breakers))
        heads = breaker_heads(tokenizer, tuple(breakers), n_vocab)
        logits = ls.apply_dry(torch.tensor(x.astype(np.float64)), history, s, heads)
        moved = ({i for i in got if got[i][0] != x[i]}
                 | set(torch.nonzero(logits != torch.tensor(x.astype(np.float64))).flatten().tolist()))
        t.close(all(math.isclose(got[i][0], float(logits[i]), rel_tol=1e-5, abs_tol=1e-4) for i in moved),
                (case, breakers, mult, base, allowed, last_n), f"moved {sorted(moved)[:8]}")
        t.cases += 1
    return t


# ---- random chains of llama.cpp's stages ----

LLAMA_LETTERS = "edskypmxt"


def _llama_chain(order: str, n: int, s: dict, seed: int):
    build = {"e": lambda: L.llama_sampler_init_penalties(n, s["penalty_last_n"], s["repetition_penalty"],
                                                         s["frequency_penalty"], s["presence_penalty"]),
             "d": lambda: ref.dry(None, s["dry_multiplier"], s["dry_base"], s["dry_allowed_length"],
                                  s["dry_penalty_last_n"], []),
             "s": lambda: L.llama_sampler_init_top_n_sigma(s["top_n_sigma"]),
             "k": lambda: L.llama_sampler_init_top_k(s["top_k"]),
             "y": lambda: L.llama_sampler_init_typical(s["typical_p"], 0),
             "p": lambda: L.llama_sampler_init_top_p(s["top_p"], 0),
             "m": lambda: L.llama_sampler_init_min_p(s["min_p"], 0),
             "x": lambda: L.llama_sampler_init_xtc(1.0, s["xtc_threshold"], 0, seed),
             "t": lambda: L.llama_sampler_init_temp_ext(s["temperature"], s["dynatemp_range"], 1.0)}
    return ref.chain(*[build[c]() for c in order])


def _chain_settings(rng, vocab: int) -> dict:
    return {"penalty_last_n": int(rng.choice([4, 16, 64])),
            "repetition_penalty": float(rng.uniform(0.8, 1.5)),
            "frequency_penalty": float(rng.uniform(0, 0.5)), "presence_penalty": float(rng.uniform(0, 0.5)),
            "dry_multiplier": float(rng.uniform(0.1, 2)), "dry_base": 1.75, "dry_allowed_length": 2,
            "dry_penalty_last_n": int(rng.choice([8, 32])), "dry_sequence_breakers": [],
            "top_n_sigma": float(rng.uniform(0.5, 3)), "top_k": int(rng.integers(1, vocab + 5)),
            "typical_p": float(rng.uniform(0.3, 0.99)), "top_p": float(rng.uniform(0.3, 0.99)),
            "min_p": float(rng.uniform(0.0, 0.3)), "xtc_probability": 1.0,
            "xtc_threshold": float(rng.uniform(0.05, 0.5)),
            "temperature": float(rng.uniform(0.3, 2.0)), "dynatemp_range": float(rng.choice([0.0, 0.5]))}


def chains(cases: int, seed: int = 7) -> Tally:
    """Random orders of llama.cpp's letters (duplicates allowed). Typical never runs after
    top-nσ here, and a chain whose typical would meet a float32 probability of 0 is counted
    as a quirk (llama.cpp's typical is NaN there: _typical_sees_a_zero), and so is dynamic
    temperature after top-nσ (_dynamic_temperature_after_top_n_sigma). Our top-k, top-p,
    min-p and typical are Hugging Face's, which agree with llama.cpp's except at their exact
    thresholds and among tied logits; a chain's edges are told apart by nudging all of its
    thresholds together."""
    rng, t = np.random.default_rng(seed), Tally("random chains")
    for case in range(cases):
        x = random_logits(rng, int(rng.integers(5, 200)))
        order = "".join(rng.choice(list(LLAMA_LETTERS), int(rng.integers(1, 7))))
        if "s" in order and "y" in order[order.index("s"):]:
            order = order.replace("y", "")
        history = (rng.integers(0, min(6, len(x)), 12).tolist() * 3)[: int(rng.integers(0, 36))]
        s = _chain_settings(rng, len(x))
        got = ref.survivors(_llama_chain(order, len(x), s, case), x, history)
        t.cases += 1
        if _typical_sees_a_zero(x, s, order, history) or _dynamic_temperature_after_top_n_sigma(s, order):
            t.quirks += 1
            continue
        try:
            pipe = ours(x, s | {"samplers": parse_letters(order)}, history)
        except ValueError as e:
            t.differ.append(((case, order), f"ours refused: {e}"))
            continue
        chain = {"samplers": parse_letters(order)}
        t.survivors(set(got), kept_ids(pipe),
                    nudge_chain(x, s, chain, history), (case, order))
    return t


THRESHOLDS = ("top_n_sigma", "top_p", "min_p", "typical_p", "xtc_threshold")


def _nudged(s: dict, f: float) -> dict:
    """Every threshold of a chain moved by the factor f (see the module's docstring)."""
    return s | {name: min(1.0, s[name] * f) if name != "top_n_sigma" else s[name] * f for name in THRESHOLDS}


def _dynamic_temperature_after_top_n_sigma(s: dict, order: str) -> bool:
    """llama.cpp's dynamic temperature takes ln(array size) as the maximum entropy, and top-nσ
    leaves its masked tokens in the array: after top-nσ it counts them as candidates. Ours
    counts the candidates left (finite logits), as the definition says."""
    return s["dynatemp_range"] > 0 and "s" in order and "t" in order[order.index("s"):]


def _typical_sees_a_zero(x, s: dict, order: str, history) -> bool:
    """Whether llama.cpp's typical (y) gets a candidate whose float32 probability is 0: its
    entropy then sums 0·log 0 = 0·(-inf) = NaN and its cut is whatever its sort makes of NaN.
    That happens after top-nσ (it leaves -inf in the array) and whenever a probability
    underflows float32 (a low temperature). Ours is well defined there; the case is counted."""
    for j, letter in enumerate(order):
        if letter != "y":
            continue
        logits = final_logits(ours(x, s | {"samplers": parse_letters(order[:j]) if j else []}, history))
        kept = logits[torch.isfinite(logits)].numpy().astype(np.float32)
        with np.errstate(under="ignore"):
            if (np.exp(kept - kept.max()) == 0).any() or len(kept) < len(logits) and "s" in order[:j]:
                return True
    return False


def epsilon_eta(cases: int, seed: int = 9) -> Tally:
    """ε and η against transformers' EpsilonLogitsWarper and EtaLogitsWarper (float64 both)."""
    from transformers.generation.logits_process import EpsilonLogitsWarper, EtaLogitsWarper

    rng, t = np.random.default_rng(seed), Tally("ε/η (transformers)")
    for case in range(cases):
        x = torch.tensor(random_logits(rng).astype(np.float64))[None]
        if rng.random() < 0.3:  # ties at the top: transformers keeps every tied top token
            x[0, :3] = x.max()
        eps = float(rng.choice([rng.uniform(1e-5, 0.2), 1e-3, 3e-4]))
        for name, warper in [("epsilon_cutoff", EpsilonLogitsWarper(eps)),
                             ("eta_cutoff", EtaLogitsWarper(eps))]:
            theirs = warper(None, x.clone())[0]
            pipe = run_pipeline(x[0], SamplingSettings.from_dict({name: eps}))
            t.close(torch.equal(torch.isfinite(theirs), torch.isfinite(final_logits(pipe)))
                    and torch.allclose(pipe.probs, theirs.softmax(-1), rtol=1e-12, atol=0), (case, name, eps))
        t.cases += 1
    return t

"""The decoding pipeline: from the last position's logits to the token that gets picked.

    raw logits -> penalties -> temperature -> top-k -> top-p -> min-p -> typical-p -> pick

Each warper has exactly the semantics of Hugging Face transformers' logits warpers (the
operations below repeat theirs, so even ties and exact boundaries agree):

- temperature T divides the logits: logits / T. T -> 0 approaches argmax (T = 0 *is* argmax,
  "greedy"); large T approaches uniform. A temperature near 0 makes output more predictable,
  never more random.
- top-k keeps every token whose logit is >= the k-th largest (ties at the k-th are kept); 0 = off.
- top-p (nucleus) keeps the smallest set of most likely tokens whose probability reaches p,
  including the token that crosses p; 1 = off. After top-k it acts on the renormalised top-k set.
- min-p keeps tokens whose probability is at least min_p times the top token's; 0 = off.
- typical-p keeps the tokens whose surprise is closest to the entropy, up to mass p; 1 = off.

`temperature_last=True` applies temperature after the filters (llama.cpp's default chain), so
the filters see the T = 1 distribution.

Picking shows its work: one uniform number u in [0, 1) is drawn, the tokens are laid out in a
fixed order (final probability descending, ties by lower id) and the pick is the first token
whose cumulative probability reaches u. The same u always lands on the same token unless the
distribution changes, and a chart can mark u on the cumulative curve.

Everything here computes in float64: a browser's JavaScript numbers are doubles, so a chart
that recomputes the pipeline in the page reproduces these numbers.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch

NEG_INF = float("-inf")
STAGE_NAMES = ("penalties", "temperature", "top_k", "top_p", "min_p", "typical_p")


def _number(name: str, value, lo: float | None = None, hi: float | None = None,
            note: str = "") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number{note}, but is {value!r}")
    value = float(value)
    if not math.isfinite(value) or (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f" in [{lo}, {hi}]" if hi is not None else (f" >= {lo}" if lo is not None else "")
        raise ValueError(f"{name} must be a finite number{bounds}{note}, but is {value!r}")
    return value


def _integer(name: str, value, lo: int = 0, note: str = "") -> int:
    """Accepts ints and integral floats (sliders send 40.0); rejects 2.5, bools, NaN."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be an integer >= {lo}{note}, but is {value!r}")
    if isinstance(value, (float, np.floating)) and not (math.isfinite(value) and value == int(value)):
        raise ValueError(f"{name} must be an integer >= {lo}{note}, but is {value!r}")
    value = int(value)
    if value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}{note}, but is {value!r}")
    return value


@dataclass(frozen=True)
class SamplingSettings:
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    typical_p: float = 1.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    no_repeat_ngram_size: int = 0
    temperature_last: bool = False

    def __post_init__(self):
        # Normalise and validate every field; errors name the setting and its value.
        checked = {
            "temperature": _number("temperature", self.temperature, 0.0, None, " (0 = greedy)"),
            "top_k": _integer("top_k", self.top_k, 0, " (0 = off)"),
            "top_p": _number("top_p", self.top_p, 0.0, 1.0, " (1 = off)"),
            "min_p": _number("min_p", self.min_p, 0.0, 1.0, " (0 = off)"),
            "typical_p": _number("typical_p", self.typical_p, 0.0, 1.0, " (1 = off)"),
            "repetition_penalty": _number("repetition_penalty", self.repetition_penalty, 0.0, None,
                                          " (1 = off)"),
            "presence_penalty": _number("presence_penalty", self.presence_penalty),
            "frequency_penalty": _number("frequency_penalty", self.frequency_penalty),
            "no_repeat_ngram_size": _integer("no_repeat_ngram_size", self.no_repeat_ngram_size, 0,
                                             " (0 = off)"),
        }
        if checked["repetition_penalty"] == 0.0:
            raise ValueError("repetition_penalty must be > 0 (1 = off), but is 0.0")
        if not isinstance(self.temperature_last, (bool, np.bool_)):
            raise ValueError(f"temperature_last must be true or false, but is {self.temperature_last!r}")
        checked["temperature_last"] = bool(self.temperature_last)
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    @classmethod
    def from_dict(cls, values: dict | None) -> "SamplingSettings":
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown sampling settings {unknown}; known ones are {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def has_penalties(self) -> bool:
        return (self.repetition_penalty != 1.0 or self.presence_penalty != 0.0
                or self.frequency_penalty != 0.0 or self.no_repeat_ngram_size > 0)


# ---- the warpers: each takes and returns logits of shape (V,), -inf where removed ----

def apply_penalties(logits: torch.Tensor, context: list[int], s: SamplingSettings) -> torch.Tensor:
    """Repetition penalty (HF: divide positive logits, multiply negative ones, for every token
    in the context), then presence/frequency penalties (OpenAI's: subtract presence once and
    frequency once per occurrence), then no-repeat n-gram (HF: ban tokens that would repeat an
    n-gram already in the context)."""
    logits = logits.clone()
    if not context:
        return logits
    ids = torch.tensor(sorted(set(context)), dtype=torch.long)
    if s.repetition_penalty != 1.0:
        seen = logits[ids]
        logits[ids] = torch.where(seen < 0, seen * s.repetition_penalty, seen / s.repetition_penalty)
    if s.presence_penalty or s.frequency_penalty:
        counts = Counter(context)
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
    sorted_logits, order = torch.sort(logits, descending=False)
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
    entropy = -(log_probs * log_probs.exp()).nansum(-1, keepdim=True)
    surprise_gap = torch.abs(-log_probs - entropy)  # how far each token's surprise is from H
    sorted_gap, order = torch.sort(surprise_gap, descending=False)
    cumulative = logits.gather(-1, order).softmax(dim=-1).cumsum(dim=-1)
    last = min(int((cumulative < mass).sum()), sorted_gap.size(-1) - 1)
    remove_sorted = sorted_gap > sorted_gap[last]
    remove_sorted[:1] = False
    remove = remove_sorted.scatter(0, order, remove_sorted)
    return logits.masked_fill(remove, NEG_INF)


# ---- the pipeline, with every stage kept for the chart ----

@dataclass
class Stage:
    name: str
    active: bool  # False when the setting is off: logits pass through unchanged
    logits: torch.Tensor  # (V,) float64, -inf where removed

    @property
    def probs(self) -> torch.Tensor:
        return self.logits.softmax(dim=-1)

    @property
    def kept(self) -> torch.Tensor:
        return torch.isfinite(self.logits)


@dataclass
class Pipeline:
    raw: torch.Tensor  # (V,) float64: the model's logits, untouched
    stages: list[Stage]  # in the order they ran
    probs: torch.Tensor  # (V,) float64: the final distribution, zeros outside the kept set

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)


def stage_order(temperature_last: bool) -> tuple[str, ...]:
    if temperature_last:
        return ("penalties", "top_k", "top_p", "min_p", "typical_p", "temperature")
    return STAGE_NAMES


def run_pipeline(logits: torch.Tensor, settings: SamplingSettings | None = None,
                 context: list[int] | None = None) -> Pipeline:
    """logits: (V,) for the last position. context: the token ids so far (for penalties)."""
    s = settings or SamplingSettings()
    x = _as_logits(logits)
    raw = x
    active = {
        "penalties": s.has_penalties and bool(context),
        "temperature": s.temperature != 1.0,
        "top_k": s.top_k > 0,
        "top_p": s.top_p < 1.0,
        "min_p": s.min_p > 0.0,
        "typical_p": s.typical_p < 1.0,
    }
    apply = {
        "penalties": lambda v: apply_penalties(v, list(context or []), s),
        "temperature": lambda v: apply_temperature(v, s.temperature),
        "top_k": lambda v: apply_top_k(v, s.top_k),
        "top_p": lambda v: apply_top_p(v, s.top_p),
        "min_p": lambda v: apply_min_p(v, s.min_p),
        "typical_p": lambda v: apply_typical_p(v, s.typical_p),
    }
    stages = []
    for name in stage_order(s.temperature_last):
        if active[name]:
            x = apply[name](x)
            _check_stage(name, x, s)
        stages.append(Stage(name, active[name], x))
    return Pipeline(raw=raw, stages=stages, probs=x.softmax(dim=-1))


def _check_stage(name: str, logits: torch.Tensor, s: SamplingSettings) -> None:
    """A stage that leaves no finite logit, or an infinite one, has no distribution to offer."""
    if not torch.isposinf(logits).any() and torch.isfinite(logits).any():
        return
    if name == "temperature":
        raise ValueError(f"temperature {s.temperature!r} is too small: the logits divided by it "
                         "overflow; use temperature 0 for greedy decoding")
    if name == "penalties" and s.no_repeat_ngram_size and not torch.isposinf(logits).any():
        raise ValueError(f"no_repeat_ngram_size {s.no_repeat_ngram_size} bans every token here; "
                         "lower it (0 = off)")
    if name == "penalties":
        raise ValueError(f"the penalties overflow the logits (repetition_penalty "
                         f"{s.repetition_penalty!r}, presence_penalty {s.presence_penalty!r}, "
                         f"frequency_penalty {s.frequency_penalty!r}); use less extreme values")
    raise ValueError(f"the {name} stage removed every token; lower or turn off that setting")


def next_token_probs(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0,
                     top_p: float = 1.0, min_p: float = 0.0, typical_p: float = 1.0) -> torch.Tensor:
    """logits (V,) -> the final distribution (V,) float64, zeros outside the kept set.

    Hugging Face's order: temperature, top-k, top-p, min-p, typical-p.

    >>> next_token_probs(torch.tensor([2.0, 1.0, 0.0]), top_k=2).round(decimals=4)
    tensor([0.7311, 0.2689, 0.0000], dtype=torch.float64)
    """
    settings = SamplingSettings(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                                typical_p=typical_p)
    return run_pipeline(logits, settings).probs


def _as_logits(logits: torch.Tensor) -> torch.Tensor:
    if not isinstance(logits, torch.Tensor):
        logits = torch.as_tensor(logits)
    if logits.dim() != 1 or logits.numel() == 0:
        raise ValueError(f"logits must be a non-empty 1-D tensor (vocab,), but have shape "
                         f"{tuple(logits.shape)}")
    logits = logits.detach().to("cpu", torch.float64)
    if torch.isnan(logits).any():
        raise ValueError("logits contain NaN; the model's output is broken")
    if not torch.isfinite(logits).any():
        raise ValueError("logits are all -inf: no token can be chosen")
    return logits


# ---- picking ----

def sampling_order(probs: torch.Tensor) -> torch.Tensor:
    """Token ids in the order the cumulative curve runs: probability descending, ties by id."""
    return torch.sort(probs, descending=True, stable=True).indices


def pick_token(probs: torch.Tensor, u: float) -> int:
    """The first token (in sampling_order) whose cumulative probability reaches u in [0, 1)."""
    order = sampling_order(probs)
    cumulative = probs[order].cumsum(0)
    i = int(torch.searchsorted(cumulative, torch.tensor([u], dtype=cumulative.dtype)))
    n_kept = int((probs[order] > 0).sum())
    return int(order[min(i, n_kept - 1)])  # rounding can leave the total a hair below u


def draw_u(seed: int, position: int) -> float:
    """The uniform number for one position of one seeded run. A function of (seed, position)
    alone, so undoing and stepping again with the same settings gives the same token."""
    seed = _integer("seed", seed, 0)
    if seed >= 2 ** 63:
        raise ValueError(f"seed must be below 2**63, but is {seed}")
    return float(np.random.default_rng([seed, int(position)]).random())


def entropy_bits(probs: torch.Tensor) -> float:
    p = probs[probs > 0]
    return float(-(p * p.log2()).sum())

"""The decoding pipeline: from the last position's logits to the token that gets picked.

    raw logits -> penalties -> temperature -> top-k -> top-p -> min-p -> typical-p -> pick

One table below, STAGES, says everything about it: which stages run, in which order, with
which settings, when each is active, and each setting's domain, default, control range,
unit and help text. `run_pipeline` walks the table (as transformers' LogitsProcessorList
walks its processors); `SamplingSettings` is generated from it and validates every value
against it; `schema()` hands the same table to the page as JSON, where ui/static/pipeline.js
walks it with its own function per stage. Adding a stage is one entry here plus its function
in model/warpers.py and in pipeline.js.

The warpers have Hugging Face's semantics (model/warpers.py). Temperature divides the logits:
T -> 0 approaches argmax (T = 0 *is* argmax, "greedy") and a large T approaches uniform, so a
temperature near 0 makes output more predictable, never more random. Top-p after top-k acts
on the renormalised top-k set. `temperature_last` moves temperature after the filters
(llama.cpp's default chain), so the filters see the T = 1 distribution.

Picking shows its work: one uniform number u in [0, 1) is drawn, a function of (seed,
position) alone; the tokens are laid out in a fixed order (final probability descending, ties
by lower id) and the pick is the first token whose cumulative probability reaches u. The same
u always lands on the same token unless the distribution changes, and a chart can mark u on
the cumulative curve.

Everything here computes in float64: a browser's JavaScript numbers are doubles, so a chart
that recomputes the pipeline in the page reproduces these numbers.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .warpers import (  # noqa: F401
    NEG_INF,
    apply_min_p,
    apply_penalties,
    apply_temperature,
    apply_top_k,
    apply_top_p,
    apply_typical_p,
    banned_ngram_tokens,
)

# The seeds every entry point accepts (the session, the CLI, the API, the page's box): JSON,
# JavaScript numbers and numpy's generators all hold them exactly.
SEED_MAX = 2**32 - 1
# Integer settings stop here: far past any vocabulary or context, inside every JSON reader.
INT_MAX = 2**31 - 1


# ---- the table ----

@dataclass(frozen=True)
class Setting:
    """One sampling setting: its domain (what the engine accepts), its default (which is also
    the value that turns it off) and the control the page draws for it."""
    name: str
    label: str
    kind: str  # "float", "int" or "bool"
    default: float | int | bool
    low: float | None = None  # the domain; None = unbounded
    high: float | None = None
    above_low: bool = False  # the domain excludes `low` itself
    control: tuple[float, float, float] | None = None  # the page's (min, max, step)
    unit: str = ""
    help: str = ""
    off_note: str = ""  # how error messages say what the default means, e.g. "0 = greedy"

    @property
    def note(self) -> str:
        return f" ({self.off_note or f'{self.default:g} = off'})" if self.kind != "bool" else ""


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline. It is active when any of its settings differs from its
    default (and, with needs_context, when there is a context to look at)."""
    name: str
    title: str
    colour: str  # the page's colour for what this stage removes
    settings: tuple[Setting, ...]
    apply: Callable  # (logits (V,), settings, context) -> logits (V,)
    needs_context: bool = False
    last_when: str | None = None  # a bool setting that moves this stage after all others

    def changed(self, s) -> bool:
        return any(getattr(s, x.name) != x.default for x in self.settings)

    def active(self, s, context) -> bool:
        return self.changed(s) and (bool(context) or not self.needs_context)


def _f(name, label, default, low, high, control, help, **kw) -> Setting:
    return Setting(name, label, "float", float(default), low, high, control=control, help=help, **kw)


def _i(name, label, default, control, help, **kw) -> Setting:
    return Setting(name, label, "int", int(default), 0, INT_MAX, control=control, help=help, **kw)


STAGES: tuple[Stage, ...] = (
    Stage("penalties", "penalties", "#9333ea", (
        _f("repetition_penalty", "Repetition penalty", 1.0, 0.0, None, (0.5, 2.0, 0.01),
           "Tokens already in the text: positive logits ÷ penalty, negative ones × penalty. "
           "> 1 discourages repeats. 1 = off.", above_low=True),
        _f("presence_penalty", "Presence penalty", 0.0, None, None, (-2.0, 2.0, 0.05),
           "Subtracted once from the logit of every token already in the text. 0 = off."),
        _f("frequency_penalty", "Frequency penalty", 0.0, None, None, (-2.0, 2.0, 0.05),
           "Subtracted from a token's logit once per time it already appeared. 0 = off."),
        _i("no_repeat_ngram_size", "No-repeat n-gram size", 0, (0, 6, 1),
           "Ban any token that would repeat an n-gram already in the text. 0 = off.",
           unit="tokens"),
    ), lambda x, s, ctx: apply_penalties(x, list(ctx), s), needs_context=True),
    Stage("temperature", "temperature", "#475569", (
        _f("temperature", "Temperature", 1.0, 0.0, None, (0.0, 2.0, 0.01),
           "Divides the logits by T. T → 0 is greedy (argmax, not random!); T = 1 is the model "
           "as trained; large T flattens towards uniform.", off_note="0 = greedy"),
    ), lambda x, s, ctx: apply_temperature(x, s.temperature), last_when="temperature_last"),
    Stage("top_k", "top-k", "#ea580c", (
        _i("top_k", "Top-k", 0, (0, 200, 1),
           "Keep only the k most likely tokens (ties at the k-th stay). 0 = off.", unit="tokens"),
    ), lambda x, s, ctx: apply_top_k(x, s.top_k)),
    Stage("top_p", "top-p", "#dc2626", (
        _f("top_p", "Top-p (nucleus)", 1.0, 0.0, 1.0, (0.0, 1.0, 0.01),
           "Keep the smallest set of top tokens whose probability adds up to p. 1 = off."),
    ), lambda x, s, ctx: apply_top_p(x, s.top_p)),
    Stage("min_p", "min-p", "#0d9488", (
        _f("min_p", "Min-p", 0.0, 0.0, 1.0, (0.0, 1.0, 0.01),
           "Drop tokens less likely than min-p × the top token's probability. 0 = off."),
    ), lambda x, s, ctx: apply_min_p(x, s.min_p)),
    Stage("typical_p", "typical-p", "#a16207", (
        _f("typical_p", "Typical-p", 1.0, 0.0, 1.0, (0.0, 1.0, 0.01),
           "Keep tokens whose surprise is closest to the average surprise (entropy), up to "
           "mass p. 1 = off."),
    ), lambda x, s, ctx: apply_typical_p(x, s.typical_p)),
)

# Switches that change the pipeline's shape rather than one stage.
SWITCHES: tuple[Setting, ...] = (
    Setting("temperature_last", "Temperature last (llama.cpp order)", "bool", False,
            help="Off: Hugging Face's order (temperature, then filters). On: llama.cpp's "
                 "(filters see the T = 1 distribution, temperature last)."),
)

# The page shows the first MAIN_SETTINGS controls up front and the rest under "More".
CONTROL_ORDER = ("temperature", "top_k", "top_p", "min_p", "typical_p", "repetition_penalty",
                 "temperature_last", "presence_penalty", "frequency_penalty",
                 "no_repeat_ngram_size")
MAIN_SETTINGS = 7

_ALL = {x.name: x for st in STAGES for x in st.settings} | {x.name: x for x in SWITCHES}
assert sorted(CONTROL_ORDER) == sorted(_ALL), "CONTROL_ORDER must list every setting once"
SETTINGS: dict[str, Setting] = {name: _ALL[name] for name in CONTROL_ORDER}
STAGE_NAMES = tuple(st.name for st in STAGES)


# ---- settings, validated against the table ----

def _number(name: str, value, lo: float | None = None, hi: float | None = None,
            note: str = "") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number{note}, but is {value!r:.80}")
    value = float(value)
    if not math.isfinite(value) or (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f" in [{lo}, {hi}]" if hi is not None else (f" >= {lo}" if lo is not None else "")
        raise ValueError(f"{name} must be a finite number{bounds}{note}, but is {value!r}")
    return value


def _integer(name: str, value, lo: int = 0, hi: int | None = None, note: str = "") -> int:
    """Accepts ints and integral floats (sliders send 40.0); rejects 2.5, bools, NaN."""
    bounds = f" in [{lo}, {hi}]" if hi is not None else f" >= {lo}"
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or (
            isinstance(value, (float, np.floating)) and not (math.isfinite(value) and value == int(value))):
        raise ValueError(f"{name} must be an integer{' >= ' + str(lo)}{note}, but is {value!r:.80}")
    value = int(value)
    if value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}{note}, but is {value!r}")
    if hi is not None and value > hi:
        raise ValueError(f"{name} must be an integer{bounds}{note}, but is {value!r:.80}")
    return value


def check_setting(setting: Setting, value):
    """The value in its normal form (float, int or bool), or ValueError naming it."""
    name, note = setting.name, setting.note
    if setting.kind == "bool":
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"{name} must be true or false, but is {value!r:.80}")
        return bool(value)
    if setting.kind == "int":
        return _integer(name, value, int(setting.low), int(setting.high), note)
    value = _number(name, value, setting.low, setting.high, note)
    if setting.above_low and value == setting.low:
        raise ValueError(f"{name} must be > {setting.low:g}{note}, but is {value!r}")
    return value


class _SettingsMethods:
    def __post_init__(self):
        for setting in SETTINGS.values():  # normalise every field; errors name it
            object.__setattr__(self, setting.name, check_setting(setting, getattr(self, setting.name)))

    @classmethod
    def from_dict(cls, values: dict | None) -> "SamplingSettings":
        """The one decoder of settings from outside (the page, the API, the CLI): missing
        fields keep their defaults; unknown ones are refused by name."""
        if values is None:
            return cls()
        if not isinstance(values, dict):
            raise ValueError('settings must be a JSON object such as {"temperature": 0.7, '
                             f'"top_k": 40}}, but is {type(values).__name__} {values!r:.80}')
        unknown = sorted(set(values) - set(SETTINGS), key=str)
        if unknown:
            raise ValueError(f"unknown sampling settings {unknown!r:.200}; known ones are "
                             f"{sorted(SETTINGS)}")
        return cls(**values)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def has_penalties(self) -> bool:
        return STAGES[0].changed(self)


SamplingSettings = dataclasses.make_dataclass(
    "SamplingSettings",
    [(x.name, {"float": float, "int": int, "bool": bool}[x.kind], dataclasses.field(default=x.default))
     for x in SETTINGS.values()],
    bases=(_SettingsMethods,), frozen=True, namespace={"__module__": __name__})
SamplingSettings.__doc__ = ("Sampling settings, one field per row of the table (defaults turn "
                            "each one off): " + ", ".join(
                                f"{x.name}={x.default!r}" for x in SETTINGS.values()) + ".")


def schema() -> dict:
    """The table as plain data, for the page (ui/static/pipeline.js walks the same stages)."""
    def setting(x: Setting) -> dict:
        d = dataclasses.asdict(x)
        d["control"] = list(x.control) if x.control else None
        return d
    return {
        "stages": [{"name": st.name, "title": st.title, "colour": st.colour,
                    "settings": [x.name for x in st.settings], "needs_context": st.needs_context,
                    "last_when": st.last_when} for st in STAGES],
        "settings": {name: setting(x) for name, x in SETTINGS.items()},  # in CONTROL_ORDER
        "main_settings": MAIN_SETTINGS,
        "seed": {"min": 0, "max": SEED_MAX},
    }


# ---- the pipeline, with every stage kept for the chart ----

@dataclass
class StageResult:
    name: str
    active: bool  # False when the stage is off: logits pass through unchanged
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
    stages: list[StageResult]  # in the order they ran
    probs: torch.Tensor  # (V,) float64: the final distribution, zeros outside the kept set

    def stage(self, name: str) -> StageResult:
        return next(s for s in self.stages if s.name == name)


def stage_order(settings=None) -> tuple[Stage, ...]:
    """STAGES in the order they run: a stage whose `last_when` switch is on moves last."""
    s = settings or SamplingSettings()
    return (tuple(st for st in STAGES if not (st.last_when and getattr(s, st.last_when)))
            + tuple(st for st in STAGES if st.last_when and getattr(s, st.last_when)))


def run_pipeline(logits: torch.Tensor, settings=None, context: list[int] | None = None) -> Pipeline:
    """logits: (V,) for the last position. context: the token ids so far (for penalties)."""
    s = settings or SamplingSettings()
    context = list(context or [])
    x = raw = _as_logits(logits)
    stages = []
    for stage in stage_order(s):
        active = stage.active(s, context)
        if active:
            x = stage.apply(x, s, context)
            _check_stage(stage.name, x, s)
        stages.append(StageResult(stage.name, active, x))
    return Pipeline(raw=raw, stages=stages, probs=x.softmax(dim=-1))


def _check_stage(name: str, logits: torch.Tensor, s) -> None:
    """A stage that leaves no finite logit, or an infinite one, has no distribution to offer."""
    top = logits.max()  # one pass: +inf, NaN and "nothing finite" all show in the maximum
    if torch.isfinite(top):
        return
    if name == "temperature":
        raise ValueError(f"temperature {s.temperature!r} is too small: the logits divided by it "
                         "overflow; use temperature 0 for greedy decoding")
    if name == "penalties" and s.no_repeat_ngram_size and top == NEG_INF:
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
    top = logits.max()  # NaN anywhere makes the maximum NaN; all -inf makes it -inf
    if torch.isnan(top):
        raise ValueError("logits contain NaN; the model's output is broken")
    if top == NEG_INF:
        raise ValueError("logits are all -inf: no token can be chosen")
    return logits


# ---- picking ----

def sampling_order(probs: torch.Tensor) -> torch.Tensor:
    """Token ids in the order the cumulative curve runs: probability descending, ties by id."""
    return torch.sort(probs, descending=True, stable=True).indices


def pick_token(probs: torch.Tensor, u: float) -> int:
    """The first token (in sampling_order) whose cumulative probability reaches u in [0, 1).

    u usually lands among the first few hundred tokens, so only a growing head of the order
    is sorted (every token tied with its last one included, so that the head is exactly the
    start of the full order, and its running sum exactly the full sum's): the same token as a
    sort of the whole vocabulary, without sorting 49,152 probabilities for every draw."""
    n_kept = int((probs > 0).sum())
    k = min(n_kept, 256)
    while True:
        kth = torch.topk(probs, k).values[-1]
        head = (probs >= kth).nonzero().flatten()  # ids ascending: ties stay in id order
        order = head[torch.sort(probs[head], descending=True, stable=True).indices]
        cumulative = probs[order].cumsum(0)
        i = int(torch.searchsorted(cumulative, torch.tensor([u], dtype=cumulative.dtype)))
        if i < len(order) or len(order) >= n_kept:
            return int(order[min(i, n_kept - 1)])  # rounding can leave the total a hair below u
        k = min(n_kept, 8 * k)


def check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= SEED_MAX:
        raise ValueError(f"seed must be a whole number from 0 to {SEED_MAX:,}, but is {seed!r:.80}")
    return int(seed)


def draw_u(seed: int, position: int) -> float:
    """The uniform number for one position of one seeded run. A function of (seed, position)
    alone, so undoing and stepping again with the same settings gives the same token."""
    return float(np.random.default_rng([check_seed(seed), int(position)]).random())


def choose(pipe: Pipeline, settings, seed: int, position: int) -> tuple[int, float | None, str]:
    """The token this pipeline gives at `position` of run `seed`: (token, u, how). Every
    decoding path (the session, model.generate, the CLI, the page, the API) chooses here."""
    if settings.greedy:
        return int(torch.argmax(pipe.probs)), None, "greedy"
    u = draw_u(seed, position)
    return pick_token(pipe.probs, u), u, "sampled"


def entropy_bits(probs: torch.Tensor) -> float:
    p = probs[probs > 0]
    return float(-(p * p.log2()).sum())

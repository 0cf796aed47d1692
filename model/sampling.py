"""The decoding pipeline: from the last position's logits to the token that gets picked.

    raw logits -> penalties -> temperature -> top-k -> top-p -> min-p -> typical-p -> pick

That is the default chain. The order is itself a setting, `samplers` (model/chain.py: stage
names, llama.cpp's letters or `;`-separated names, presets), and the newer stages join it once
their settings are changed: llama.cpp's top-nσ, XTC, DRY, dynamic temperature (in the
temperature stage), mirostat and logit bias (model/llama_samplers.py, llama.cpp's semantics),
and Hugging Face's ε and η cutoffs. Logit bias always runs first; mirostat replaces the chain
with temperature then mirostat, as in llama.cpp. A stage that draws (XTC) has its own u from
(seed, position, stage name); mirostat's μ is state the session keeps with each step.

One table, STAGES (model/stage_table.py), says everything about it: which stages exist, with
which settings, when each is active, and each setting's domain, default, control range,
unit and help text. `run_pipeline` walks the table (as transformers' LogitsProcessorList
walks its processors); `SamplingSettings` is generated from it and validates every value
against it; `schema()` hands the same table to the page as JSON, where ui/static/pipeline.js
walks it with its own function per stage. Adding a stage is one entry in the table plus its
function in model/warpers.py (or model/llama_samplers.py) and in pipeline.js.

The classic warpers have Hugging Face's semantics (model/warpers.py). Temperature divides the logits:
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
import functools
import math

import numpy as np
import torch

from . import chain, warpers  # noqa: F401
from . import llama_samplers as ls
from .kept import Kept
from .stage_table import (  # noqa: F401
    CONTROL_ORDER,
    INT_MAX,
    MAIN_SETTINGS,
    SEED_MAX,
    SETTINGS,
    STAGE_BY_NAME,
    STAGE_NAMES,
    STAGES,
    SWITCHES,
    Run,
    Setting,
    Stage,
    breaker_heads,
    check_seed,
    draw_stage_u,
)
from .warpers import (  # noqa: F401
    NEG_INF,
    apply_epsilon,
    apply_eta,
    apply_min_p,
    apply_penalties,
    apply_temperature,
    apply_top_k,
    apply_top_p,
    apply_typical_p,
    banned_ngram_tokens,
)

# The settings that are lists or objects, each with its decoder (model/chain.py).
_DECODERS = {"samplers": chain.parse_samplers, "dry_sequence_breakers": chain.parse_breakers,
             "logit_bias": chain.parse_logit_bias}


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
    if setting.kind in ("list", "json"):
        return _DECODERS[name](value)
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
        # Made once per settings (every step's record holds a copy); the values are numbers,
        # bools and tuples, so a shallow copy is a full one.
        made = self.__dict__.get("_as_dict")
        if made is None:
            made = dataclasses.asdict(self)
            object.__setattr__(self, "_as_dict", made)
        return dict(made)

    @property
    def greedy(self) -> bool:
        """T = 0 picks the argmax, unless dynamic temperature may lift T above 0."""
        return self.temperature == 0.0 and (self.dynatemp_range == 0.0 or self.mirostat != 0)

    @property
    def has_penalties(self) -> bool:
        return STAGE_BY_NAME["penalties"].changed(self)


SamplingSettings = dataclasses.make_dataclass(
    "SamplingSettings",
    [(x.name, {"float": float, "int": int, "bool": bool}.get(x.kind, object),
      dataclasses.field(default=x.default)) for x in SETTINGS.values()],
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
                    "last_when": st.last_when, "listed": st.listed} for st in STAGES],
        # How the page reads the `samplers` setting (see model/chain.py).
        "chain": {"letters": chain.LETTERS, "names": chain.NAMES,
                  "presets": {k: list(v) for k, v in chain.PRESETS.items()},
                  "preset_labels": chain.PRESET_LABELS, "preset_names": chain.PRESET_NAMES,
                  "stages": list(chain.CHAIN_STAGES), "max": chain.MAX_CHAIN},
        "settings": {name: setting(x) for name, x in SETTINGS.items()},  # in CONTROL_ORDER
        "main_settings": MAIN_SETTINGS,
        "seed": {"min": 0, "max": SEED_MAX},
    }


# ---- the pipeline, with every stage kept for the chart ----

class StageResult:
    """One stage's outcome. `kept_view` holds its survivors (model/kept.py); the (V,) views
    below are made from it when first read."""

    def __init__(self, name: str, active: bool, logits):
        self.name = name
        self.active = active  # False when the stage is off: logits pass through unchanged
        self.kept_view = logits if isinstance(logits, Kept) else _raw_view(logits)[1]

    @property
    def logits(self) -> torch.Tensor:
        """(V,) float64, -inf where removed."""
        return self.kept_view.full()

    @property
    def probs(self) -> torch.Tensor:
        return self.kept_view.probs()

    @property
    def kept(self) -> torch.Tensor:
        return torch.isfinite(self.logits)


class Pipeline:
    def __init__(self, raw: torch.Tensor, stages: list[StageResult], final: Kept | None = None,
                 mu: float | None = None, raw_view: Kept | None = None):
        self.raw = raw  # (V,) float64: the model's logits, untouched
        self.raw_view = raw_view if raw_view is not None else Kept.of(raw)
        self.stages = stages  # in the order they ran
        # What the last stage left (the raw logits when no stage ran).
        self.final = final if final is not None else (stages[-1].kept_view if stages else self.raw_view)
        self.mu = mu  # mirostat's μ that made this step's cut (None: mirostat off)

    @property
    def probs(self) -> torch.Tensor:
        """(V,) float64: the final distribution, zeros outside the kept set."""
        return self.final.probs()

    def stage(self, name: str) -> StageResult:
        return next(s for s in self.stages if s.name == name)

    def mu_after(self, token: int, settings) -> float | None:
        """Mirostat's μ for the next step once `token` is chosen: it moves by the error between
        the token's surprise and τ. A token the cut removed (a user's pick) leaves μ as it was."""
        if self.mu is None:
            return None
        p = float(self.probs[token])
        if p <= 0:
            return self.mu
        return ls.mirostat_mu_after(self.mu, settings.mirostat_tau, settings.mirostat_eta, p)


def chain_of(settings=None) -> tuple[Stage, ...]:
    """The stages in the order they run, duplicates included: logit bias first when set; then
    with mirostat on, temperature and mirostat (llama.cpp's chain); else the `samplers` order,
    with temperature moved last by `temperature_last`. Off stages that are not `listed` (and
    not changed) are left out, so the default chain reads as the classic pipeline."""
    s = settings or SamplingSettings()
    head = (STAGE_BY_NAME["logit_bias"],) if s.logit_bias else ()
    if s.mirostat:
        return head + (STAGE_BY_NAME["temperature"], STAGE_BY_NAME["mirostat"])
    stages = [STAGE_BY_NAME[name] for name in s.samplers]
    stages = [st for st in stages if st.listed or st.changed(s)]
    moved = [st for st in stages if st.last_when and getattr(s, st.last_when)]
    return head + tuple(st for st in stages if st not in moved) + tuple(moved)


def stage_order(settings=None) -> tuple[Stage, ...]:
    """The stages in the order they run (see chain_of)."""
    return chain_of(settings)


def run_pipeline(logits: torch.Tensor, settings=None, context: list[int] | None = None, *,
                 seed: int = 0, vocab=None, mu: float | None = None) -> Pipeline:
    """logits: (V,) for the last position. context: the token ids so far (for penalties and
    DRY; its length is the position). seed: the run's, for the stages that draw (XTC).
    vocab: the tokenizer, for DRY's sequence breakers and logit biases given as text.
    mu: mirostat's state (None = its start, 2τ).

    Each stage gets the survivors of the stages before it (model/kept.py), so a stage after a
    top-k of 40 sorts 40 logits, not the vocabulary; the numbers are the same bits as on the
    whole vector."""
    s = settings or SamplingSettings()
    context = list(context or [])
    if s.mirostat and mu is None:
        mu = 2.0 * s.mirostat_tau
    run = Run(context, check_seed(seed), vocab, mu if s.mirostat else None)
    raw, raw_view = _raw_view(logits)
    x = raw_view
    stages = []
    for stage in chain_of(s):
        active = stage.active(s, context)
        if active:
            x = stage.apply(x, s, run)
            if not (x.finite and x.n):
                _check_stage(stage.name, x.top(), s)
        stages.append(StageResult(stage.name, active, x))
    return Pipeline(raw, stages, x, run.mu, raw_view)


def _check_stage(name: str, top: float, s) -> None:
    """A stage that leaves no finite logit, or an infinite one, has no distribution to offer.
    top: the largest logit it left (+inf, NaN and "nothing left" all show in it)."""
    if math.isfinite(top):
        return
    if name == "temperature" and s.dynatemp_range > 0:
        raise ValueError(f"the dynamic temperature (temperature {s.temperature!r} ± {s.dynatemp_range!r}) "
                         "came out so close to 0 that the logits overflow; raise the temperature or "
                         "lower dynatemp_range")
    if name == "temperature":
        raise ValueError(f"temperature {s.temperature!r} is too small: the logits divided by it "
                         "overflow; use temperature 0 for greedy decoding")
    if name == "penalties" and s.no_repeat_ngram_size and top == NEG_INF:
        raise ValueError(f"no_repeat_ngram_size {s.no_repeat_ngram_size} bans every token here; "
                         "lower it (0 = off)")
    if name == "logit_bias" and top == NEG_INF:
        raise ValueError("logit_bias bans every token; leave at least one unbanned")
    if name == "penalties":
        raise ValueError(f"the penalties overflow the logits (repetition_penalty "
                         f"{s.repetition_penalty!r}, presence_penalty {s.presence_penalty!r}, "
                         f"frequency_penalty {s.frequency_penalty!r}); use less extreme values")
    if top == NEG_INF:
        raise ValueError(f"the {name} stage removed every token; lower or turn off that setting")
    raise ValueError(f"the {name} stage made a logit infinite or NaN; use less extreme values")


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


def _raw_view(logits: torch.Tensor) -> tuple[torch.Tensor, Kept]:
    """The checked (V,) float64 logits, and their view for the first stage."""
    raw, finite = _checked_logits(logits)
    return raw, (Kept(raw, None, raw.numel()) if finite else Kept.of(raw))


def _checked_logits(logits: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """(V,) float64 logits, and whether every one is finite; ValueError for what has no
    distribution."""
    if not isinstance(logits, torch.Tensor):
        logits = torch.as_tensor(logits)
    if logits.dim() != 1 or logits.numel() == 0:
        raise ValueError(f"logits must be a non-empty 1-D tensor (vocab,), but have shape "
                         f"{tuple(logits.shape)}")
    logits = logits.detach().to("cpu", torch.float64)
    if bool(torch.isfinite(logits).all()):  # a model's logits: one check
        return logits, True
    top = logits.max()  # NaN anywhere makes the maximum NaN; all -inf makes it -inf
    if torch.isnan(top):
        raise ValueError("logits contain NaN; the model's output is broken")
    if top == NEG_INF:
        raise ValueError("logits are all -inf: no token can be chosen")
    if top == float("inf"):
        raise ValueError("logits contain +inf, which leaves no distribution (every softmax is NaN); "
                         "the model's output is broken")
    return logits, False


# ---- picking ----

SMALL_PICK = 256  # survivors that _pick_position orders in Python


def sampling_order(probs: torch.Tensor) -> torch.Tensor:
    """Token ids in the order the cumulative curve runs: probability descending, ties by id."""
    return torch.sort(probs, descending=True, stable=True).indices


def pick_token(probs: torch.Tensor, u: float) -> int:
    """The first token (in sampling_order) whose cumulative probability reaches u in [0, 1)."""
    return _pick_position(probs, u)


def _pick_position(probs: torch.Tensor, u: float) -> int:
    """pick_token over any vector of probabilities in id order (the whole vocabulary's, or the
    survivors'): the position of the pick in it.

    A few hundred survivors are ordered and summed in Python: float additions in order are
    torch's cumsum on float64, bit for bit, without starting a dozen tensor operations.
    u usually lands among the first few hundred tokens, so only a growing head of the order
    is sorted (every token tied with its last one included, so that the head is exactly the
    start of the full order, and its running sum exactly the full sum's): the same token as a
    sort of the whole vocabulary, without sorting 49,152 probabilities for every draw."""
    if probs.numel() <= SMALL_PICK:
        order = sorted((-p, i) for i, p in enumerate(probs.tolist()) if p > 0)
        total = 0.0
        for q, i in order:
            total += -q
            if total >= u:
                return i
        return order[-1][1]  # rounding can leave the total a hair below u
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


@functools.lru_cache(maxsize=4096, typed=True)  # the step, the chart's u and a replay ask for the same ones
def draw_u(seed: int, position: int) -> float:
    """The uniform number for one position of one seeded run. A function of (seed, position)
    alone, so undoing and stepping again with the same settings gives the same token."""
    return float(np.random.default_rng([check_seed(seed), int(position)]).random())


def choose(pipe: Pipeline, settings, seed: int, position: int) -> tuple[int, float | None, str]:
    """The token this pipeline gives at `position` of run `seed`: (token, u, how). Every
    decoding path (the session, model.generate, the CLI, the page, the API) chooses here."""
    final = pipe.final
    ids = final.id_list()  # the survivors in id order: the same picks as over the whole vector
    if settings.greedy:
        return int(ids[torch.argmax(final.kept_probs())]), None, "greedy"
    u = draw_u(seed, position)
    return int(ids[_pick_position(final.kept_probs(), u)]), u, "sampled"


def entropy_bits(probs: torch.Tensor) -> float:
    # Zeros are left out (0 log 0 = 0). When there are none, the masked copy would be the same
    # vector in the same order, so it is skipped: half the time, the same bits.
    every = probs.dim() == 1 and probs.is_contiguous() and bool((probs > 0).all())
    p = probs if every else probs[probs > 0]
    return float(-(p * p.log2()).sum())

"""The decoding pipeline: from the last position's logits to the token that gets picked.

    raw logits -> penalties -> temperature -> top-k -> top-p -> min-p -> typical-p -> pick

That is the default chain. The order is itself a setting, `samplers` (model/chain.py: stage
names, llama.cpp's letters or `;`-separated names, presets), and the newer stages join it once
their settings are changed: llama.cpp's top-nσ, XTC, DRY, dynamic temperature (in the
temperature stage), mirostat and logit bias (model/llama_samplers.py, llama.cpp's semantics),
and Hugging Face's ε and η cutoffs. Logit bias always runs first; mirostat replaces the chain
with temperature then mirostat, as in llama.cpp. A stage that draws (XTC) has its own u from
(seed, position, stage name); mirostat's μ is state the session keeps with each step.

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
import hashlib
import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from . import chain, warpers  # noqa: F401
from . import llama_samplers as ls
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
    kind: str  # "float", "int", "bool", or "list"/"json" (decoded in model/chain.py; no slider)
    default: float | int | bool | tuple
    low: float | None = None  # the domain; None = unbounded
    high: float | None = None
    above_low: bool = False  # the domain excludes `low` itself
    control: tuple[float, float, float] | None = None  # the page's (min, max, step)
    unit: str = ""
    help: str = ""
    off_note: str = ""  # how error messages say what the default means, e.g. "0 = greedy"

    @property
    def note(self) -> str:
        return f" ({self.off_note or f'{self.default:g} = off'})" if self.kind in ("float", "int") else ""


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline. It is active when any of its settings differs from its
    default (and, with needs_context, when there is a context to look at). A stage of the
    chain that is off is still listed (shown as skipped) when `listed`; the newer stages are
    listed only once one of their settings is changed, so the default pipeline reads as before."""
    name: str
    title: str
    colour: str  # the page's colour for what this stage removes
    settings: tuple[Setting, ...]
    apply: Callable  # (logits (V,), settings, Run) -> logits (V,)
    needs_context: bool = False
    last_when: str | None = None  # a bool setting that moves this stage after all others
    listed: bool = False

    def changed(self, s) -> bool:
        return any(getattr(s, x.name) != x.default for x in self.settings)

    def active(self, s, context) -> bool:
        return self.changed(s) and (bool(context) or not self.needs_context)


def _f(name, label, default, low, high, control, help, **kw) -> Setting:
    return Setting(name, label, "float", float(default), low, high, control=control, help=help, **kw)


def _i(name, label, default, control, help, low=0, high=INT_MAX, **kw) -> Setting:
    return Setting(name, label, "int", int(default), low, high, control=control, help=help, **kw)


@dataclass(frozen=True)
class Run:
    """What a stage may look at besides the logits and the settings."""
    context: list[int]  # the token ids so far
    seed: int  # the run's seed: random stages draw their own u from (seed, position, stage)
    vocab: object = None  # the tokenizer (a tiktoken.Encoding), for DRY's breakers and text biases
    mu: float | None = None  # mirostat's state

    def draw(self, stage: str) -> float:
        return draw_stage_u(self.seed, len(self.context), stage)


def _vocab_size(x: torch.Tensor) -> int:
    return x.numel()


STAGES: tuple[Stage, ...] = (
    Stage("logit_bias", "logit bias", "#be185d", (
        Setting("logit_bias", "Logit bias", "json", (),
                help="Added to chosen tokens' logits before anything else (llama.cpp server's forms: "
                     "[[id or text, bias], ...] or {\"id\": bias}; false bans the token)."),
    ), lambda x, s, run: ls.apply_logit_bias(x, _resolved_biases(s, run, x))),
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
        _i("penalty_last_n", "Penalty window", -1, (-1, 512, 1),
           "How many of the last tokens the repetition, presence and frequency penalties look "
           "at. -1 = the whole text (Hugging Face's definition); n = the last n (llama.cpp's "
           "--repeat-last-n, 64 there); 0 = none.", low=-1, unit="tokens",
           off_note="-1 = the whole text"),
    ), lambda x, s, run: apply_penalties(x, run.context, s), needs_context=True, listed=True),
    Stage("dry", "DRY", "#0369a1", (
        _f("dry_multiplier", "DRY multiplier", 0.0, 0.0, None, (0.0, 5.0, 0.05),
           "DRY (don't repeat yourself): a token that would extend a repeat of the text's last "
           "tokens gets multiplier × base^(repeat length − allowed length) off its logit. 0 = off."),
        _f("dry_base", "DRY base", 1.75, 1.0, None, (1.0, 4.0, 0.05),
           "How fast DRY's penalty grows with each repeated token (llama.cpp's default 1.75).",
           off_note="1.75 is llama.cpp's default"),
        _i("dry_allowed_length", "DRY allowed length", 2, (0, 20, 1),
           "Repeats up to this long go unpunished (llama.cpp's default 2).", unit="tokens",
           off_note="2 is llama.cpp's default"),
        _i("dry_penalty_last_n", "DRY window", -1, (-1, 512, 1),
           "How many of the last tokens DRY scans for repeats. -1 = the whole text; 0 = none.",
           low=-1, unit="tokens", off_note="-1 = the whole text"),
        Setting("dry_sequence_breakers", "DRY sequence breakers", "list", ("\n", ":", "\"", "*"),
                help="Text that ends a repeat: DRY never looks back past the last one, and never "
                     "penalises a token that is one. Matched against the tokenizer's pieces as "
                     f"llama.cpp does; at most {chain.MAX_BREAKERS}, each at most "
                     f"{chain.MAX_BREAKER_BYTES} bytes."),
    ), lambda x, s, run: ls.apply_dry(x, run.context, s, _breaker_heads(s, run, x)), needs_context=True),
    Stage("temperature", "temperature", "#475569", (
        _f("temperature", "Temperature", 1.0, 0.0, None, (0.0, 2.0, 0.01),
           "Divides the logits by T. T → 0 is greedy (argmax, not random!); T = 1 is the model "
           "as trained; large T flattens towards uniform.", off_note="0 = greedy"),
        _f("dynatemp_range", "Dynamic temperature range", 0.0, 0.0, None, (0.0, 2.0, 0.01),
           "llama.cpp's dynamic temperature: T moves within T ± range, low when the model is sure "
           "(low entropy), high when it is not; the entropy is measured against ln(number of "
           "candidates). 0 = off."),
        _f("dynatemp_exponent", "Dynamic temperature exponent", 1.0, 0.0, 100.0, (0.0, 4.0, 0.05),
           "Shapes how entropy maps onto the dynamic temperature's range (1 = linearly).",
           off_note="1 = linear"),
    ), lambda x, s, run: _temperature(x, s), last_when="temperature_last", listed=True),
    Stage("top_n_sigma", "top-nσ", "#7c3aed", (
        _f("top_n_sigma", "Top-nσ", -1.0, None, None, (-1.0, 5.0, 0.05),
           "Keep the tokens whose logit is within n standard deviations of the top logit "
           "(σ over the candidates' logits). ≤ 0 = off (llama.cpp's default -1).",
           off_note="-1 = off"),
    ), lambda x, s, run: ls.apply_top_n_sigma(x, s.top_n_sigma)),
    Stage("top_k", "top-k", "#ea580c", (
        _i("top_k", "Top-k", 0, (0, 200, 1),
           "Keep only the k most likely tokens (ties at the k-th stay). 0 = off.", unit="tokens"),
    ), lambda x, s, run: apply_top_k(x, s.top_k), listed=True),
    Stage("top_p", "top-p", "#dc2626", (
        _f("top_p", "Top-p (nucleus)", 1.0, 0.0, 1.0, (0.0, 1.0, 0.01),
           "Keep the smallest set of top tokens whose probability adds up to p. 1 = off."),
    ), lambda x, s, run: apply_top_p(x, s.top_p), listed=True),
    Stage("min_p", "min-p", "#0d9488", (
        _f("min_p", "Min-p", 0.0, 0.0, 1.0, (0.0, 1.0, 0.01),
           "Drop tokens less likely than min-p × the top token's probability. 0 = off."),
    ), lambda x, s, run: apply_min_p(x, s.min_p), listed=True),
    Stage("typical_p", "typical-p", "#a16207", (
        _f("typical_p", "Typical-p", 1.0, 0.0, 1.0, (0.0, 1.0, 0.01),
           "Keep tokens whose surprise is closest to the average surprise (entropy), up to "
           "mass p. 1 = off."),
    ), lambda x, s, run: apply_typical_p(x, s.typical_p), listed=True),
    Stage("epsilon", "ε-cutoff", "#4d7c0f", (
        _f("epsilon_cutoff", "ε-cutoff", 0.0, 0.0, 1.0, (0.0, 0.01, 0.0001),
           "Drop tokens whose probability is below ε (Hugging Face's epsilon_cutoff; the top "
           "token stays). 0 = off."),
    ), lambda x, s, run: apply_epsilon(x, s.epsilon_cutoff)),
    Stage("eta", "η-cutoff", "#15803d", (
        _f("eta_cutoff", "η-cutoff", 0.0, 0.0, 1.0, (0.0, 0.01, 0.0001),
           "Drop tokens below η = min(ε, √ε·e^(−entropy)) (Hugging Face's eta_cutoff; the top "
           "token stays). 0 = off."),
    ), lambda x, s, run: apply_eta(x, s.eta_cutoff)),
    Stage("xtc", "XTC", "#b45309", (
        _f("xtc_probability", "XTC probability", 0.0, 0.0, 1.0, (0.0, 1.0, 0.01),
           "XTC (exclude top choices): with this probability (its own draw, from the seed and the "
           "position) remove every token above the threshold except the least likely of them. "
           "0 = off."),
        _f("xtc_threshold", "XTC threshold", 0.1, 0.0, 1.0, (0.0, 0.5, 0.01),
           "The probability a token needs for XTC to count it as a top choice; above 0.5 XTC is "
           "off (llama.cpp's default 0.1).", off_note="0.1 is llama.cpp's default"),
    ), lambda x, s, run: ls.apply_xtc(x, s.xtc_probability, s.xtc_threshold, run.draw("xtc"))),
    Stage("mirostat", "mirostat", "#1d4ed8", (
        _i("mirostat", "Mirostat", 0, (0, 2, 1),
           "Mirostat steers the text's surprise towards τ with a state μ carried from step to "
           "step (starts at 2τ). 1 or 2 = on, and then (as in llama.cpp) the chain is only "
           "temperature then mirostat. 0 = off.", high=2),
        _f("mirostat_tau", "Mirostat τ", 5.0, 0.0, None, (0.0, 10.0, 0.1),
           "Mirostat's target surprise, in bits.", off_note="5 is llama.cpp's default"),
        _f("mirostat_eta", "Mirostat η", 0.1, 0.0, None, (0.0, 1.0, 0.01),
           "Mirostat's learning rate: how far μ moves after each token.",
           off_note="0.1 is llama.cpp's default"),
    ), lambda x, s, run: ls.apply_mirostat(x, s.mirostat, _mu(s, run), _vocab_size(x))),
)
STAGE_BY_NAME = {st.name: st for st in STAGES}
assert set(chain.CHAIN_STAGES) <= set(STAGE_BY_NAME), "every chain stage needs a row in STAGES"

# Switches that change the pipeline's shape rather than one stage.
SWITCHES: tuple[Setting, ...] = (
    Setting("temperature_last", "Temperature last (llama.cpp order)", "bool", False,
            help="Off: Hugging Face's order (temperature, then filters). On: llama.cpp's "
                 "(filters see the T = 1 distribution, temperature last)."),
    Setting("samplers", "Sampler chain", "list", chain.DEFAULT_CHAIN,
            help="The order the stages run in; a stage may appear twice. A list of names, "
                 "llama.cpp's letters (\"edskypmxt\") or \";\"-separated names, or a preset: "
                 + ", ".join(chain.PRESETS) + ". Logit bias always runs first; mirostat replaces "
                 "the chain with temperature then mirostat."),
)

# The page shows the first MAIN_SETTINGS controls up front and the rest under "More".
CONTROL_ORDER = ("temperature", "top_k", "top_p", "min_p", "typical_p", "repetition_penalty",
                 "temperature_last", "presence_penalty", "frequency_penalty",
                 "no_repeat_ngram_size", "penalty_last_n", "top_n_sigma", "xtc_probability",
                 "xtc_threshold", "dry_multiplier", "dry_base", "dry_allowed_length",
                 "dry_penalty_last_n", "dynatemp_range", "dynatemp_exponent", "epsilon_cutoff",
                 "eta_cutoff", "mirostat", "mirostat_tau", "mirostat_eta", "samplers",
                 "dry_sequence_breakers", "logit_bias")
MAIN_SETTINGS = 7

_ALL = {x.name: x for st in STAGES for x in st.settings} | {x.name: x for x in SWITCHES}
assert sorted(CONTROL_ORDER) == sorted(_ALL), "CONTROL_ORDER must list every setting once"
SETTINGS: dict[str, Setting] = {name: _ALL[name] for name in CONTROL_ORDER}
STAGE_NAMES = tuple(st.name for st in STAGES)
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
        return dataclasses.asdict(self)

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
                  "presets": {k: list(v) for k, v in chain.PRESETS.items()}},
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
    mu: float | None = None  # mirostat's μ that made this step's cut (None: mirostat off)

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
    mu: mirostat's state (None = its start, 2τ)."""
    s = settings or SamplingSettings()
    context = list(context or [])
    if s.mirostat and mu is None:
        mu = 2.0 * s.mirostat_tau
    run = Run(context, check_seed(seed), vocab, mu if s.mirostat else None)
    x = raw = _as_logits(logits)
    stages = []
    for stage in chain_of(s):
        active = stage.active(s, context)
        if active:
            x = stage.apply(x, s, run)
            _check_stage(stage.name, x, s)
        stages.append(StageResult(stage.name, active, x))
    return Pipeline(raw=raw, stages=stages, probs=x.softmax(dim=-1), mu=run.mu)


def _temperature(x: torch.Tensor, s) -> torch.Tensor:
    if s.dynatemp_range > 0 and not s.mirostat:  # llama.cpp's mirostat chain uses plain temperature
        return ls.apply_dynamic_temperature(x, s.temperature, s.dynatemp_range, s.dynatemp_exponent,
                                            apply_temperature)
    return apply_temperature(x, s.temperature)


def _mu(s, run: Run) -> float:
    return run.mu if run.mu is not None else 2.0 * s.mirostat_tau


def _resolved_biases(s, run: Run, x: torch.Tensor) -> list[tuple[int, float]]:
    encode = run.vocab.encode_ordinary if run.vocab is not None else None
    return chain.resolve_logit_bias(s.logit_bias, x.numel(), encode)


# A tokenizer's DRY breaker sequences, computed once per set of breakers (a scan of every
# piece): kept as long as the tokenizer lives.
_BREAKER_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _breaker_heads(s, run: Run, x: torch.Tensor) -> dict:
    if not s.dry_sequence_breakers:
        return {}
    if run.vocab is None:
        raise ValueError("DRY's sequence breakers are text, matched against the tokenizer's pieces: "
                         "pass the tokenizer (vocab=), or set dry_sequence_breakers to []")
    return breaker_heads(run.vocab, s.dry_sequence_breakers, x.numel())


def breaker_heads(tokenizer, breakers, n_vocab: int) -> dict[int, list[tuple[int, ...]]]:
    """DRY's sequence breakers as token sequences for this tokenizer (cached per tokenizer)."""
    per_tokenizer = _BREAKER_CACHE.setdefault(tokenizer, {})
    key = (tuple(breakers), n_vocab)
    if key not in per_tokenizer:
        pieces = [tokenizer.decode_single_token_bytes(i) if i < tokenizer.n_vocab else b""
                  for i in range(n_vocab)]
        per_tokenizer[key] = ls.dry_breaker_sequences(breakers, pieces, tokenizer.encode_ordinary)
    return per_tokenizer[key]


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


def draw_stage_u(seed: int, position: int, stage: str) -> float:
    """A random stage's own uniform number (XTC's): a function of (seed, position, stage name),
    independent of the pick's u, so that a stage's coin and the pick never share a draw."""
    tag = int.from_bytes(hashlib.sha256(stage.encode()).digest()[:4], "little")
    return float(np.random.default_rng([check_seed(seed), int(position), tag]).random())


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

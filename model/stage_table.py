"""The sampling table: every stage of the chain, with its settings (domain, default, the page's
control, help) and the function it applies. model/sampling.py builds SamplingSettings and the
page's schema from it and walks it in run_pipeline; adding a stage is one entry here plus its
function in model/warpers.py or model/llama_samplers.py and in ui/static/pipeline.js.
"""

from __future__ import annotations

import functools
import hashlib
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import chain
from . import llama_samplers as ls
from . import warpers as hf

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
    apply: Callable  # (Kept, settings, Run) -> Kept: the stage on the survivors (model/kept.py)
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


STAGES: tuple[Stage, ...] = (
    Stage("logit_bias", "logit bias", "#be185d", (
        Setting("logit_bias", "Logit bias", "json", (),
                help="Added to chosen tokens' logits before anything else (llama.cpp server's forms: "
                     "[[id or text, bias], ...] or {\"id\": bias}; false bans the token)."),
    ), lambda k, s, run: ls.logit_bias(k, _resolved_biases(s, run, k.size))),
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
    ), lambda k, s, run: hf.penalties(k, run.context, s), needs_context=True, listed=True),
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
    ), lambda k, s, run: ls.dry(k, run.context, s, _breaker_heads(s, run, k.size)), needs_context=True),
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
    ), lambda k, s, run: _temperature(k, s), last_when="temperature_last", listed=True),
    Stage("top_n_sigma", "top-nσ", "#7c3aed", (
        _f("top_n_sigma", "Top-nσ", -1.0, None, None, (-1.0, 5.0, 0.05),
           "Keep the tokens whose logit is within n standard deviations of the top logit "
           "(σ over the candidates' logits). ≤ 0 = off (llama.cpp's default -1).",
           off_note="-1 = off"),
    ), lambda k, s, run: ls.top_n_sigma(k, s.top_n_sigma)),
    Stage("top_k", "top-k", "#ea580c", (
        _i("top_k", "Top-k", 0, (0, 200, 1),
           "Keep only the k most likely tokens (ties at the k-th stay). 0 = off.", unit="tokens"),
    ), lambda k, s, run: hf.top_k(k, s.top_k), listed=True),
    Stage("top_p", "top-p", "#dc2626", (
        _f("top_p", "Top-p (nucleus)", 1.0, 0.0, 1.0, (0.0, 1.0, 0.01),
           "Keep the smallest set of top tokens whose probability adds up to p. 1 = off."),
    ), lambda k, s, run: hf.top_p(k, s.top_p), listed=True),
    Stage("min_p", "min-p", "#0d9488", (
        _f("min_p", "Min-p", 0.0, 0.0, 1.0, (0.0, 1.0, 0.01),
           "Drop tokens less likely than min-p × the top token's probability. 0 = off."),
    ), lambda k, s, run: hf.min_p(k, s.min_p), listed=True),
    Stage("typical_p", "typical-p", "#a16207", (
        _f("typical_p", "Typical-p", 1.0, 0.0, 1.0, (0.0, 1.0, 0.01),
           "Keep tokens whose surprise is closest to the average surprise (entropy), up to "
           "mass p. 1 = off."),
    ), lambda k, s, run: hf.typical_p(k, s.typical_p), listed=True),
    Stage("epsilon", "ε-cutoff", "#4d7c0f", (
        _f("epsilon_cutoff", "ε-cutoff", 0.0, 0.0, 1.0, (0.0, 0.01, 0.0001),
           "Drop tokens whose probability is below ε (Hugging Face's epsilon_cutoff; the top "
           "token stays). 0 = off."),
    ), lambda k, s, run: hf.epsilon(k, s.epsilon_cutoff)),
    Stage("eta", "η-cutoff", "#15803d", (
        _f("eta_cutoff", "η-cutoff", 0.0, 0.0, 1.0, (0.0, 0.01, 0.0001),
           "Drop tokens below η = min(ε, √ε·e^(−entropy)) (Hugging Face's eta_cutoff; the top "
           "token stays). 0 = off."),
    ), lambda k, s, run: hf.eta(k, s.eta_cutoff)),
    Stage("xtc", "XTC", "#b45309", (
        _f("xtc_probability", "XTC probability", 0.0, 0.0, 1.0, (0.0, 1.0, 0.01),
           "XTC (exclude top choices): with this probability (its own draw, from the seed and the "
           "position) remove every token above the threshold except the least likely of them. "
           "0 = off."),
        _f("xtc_threshold", "XTC threshold", 0.1, 0.0, 1.0, (0.0, 0.5, 0.01),
           "The probability a token needs for XTC to count it as a top choice; above 0.5 XTC is "
           "off (llama.cpp's default 0.1).", off_note="0.1 is llama.cpp's default"),
    ), lambda k, s, run: ls.xtc(k, s.xtc_probability, s.xtc_threshold, run.draw("xtc"))),
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
    ), lambda k, s, run: ls.mirostat(k, s.mirostat, _mu(s, run))),
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


# ---- what the stages need besides the logits ----

def _temperature(k, s):
    if s.dynatemp_range > 0 and not s.mirostat:  # llama.cpp's mirostat chain uses plain temperature
        return ls.dynamic_temperature_stage(k, s.temperature, s.dynatemp_range, s.dynatemp_exponent,
                                            hf.temperature)
    return hf.temperature(k, s.temperature)


def _mu(s, run: Run) -> float:
    return run.mu if run.mu is not None else 2.0 * s.mirostat_tau


def _resolved_biases(s, run: Run, n_vocab: int) -> list[tuple[int, float]]:
    encode = run.vocab.encode_ordinary if run.vocab is not None else None
    return chain.resolve_logit_bias(s.logit_bias, n_vocab, encode)


# Per tokenizer (kept while it lives): its pieces, and the DRY breaker sequences of the last
# BREAKER_SETS_KEPT sets of breakers asked for (each costs a scan of every piece; a bound, so
# that a stream of distinct breakers from a client cannot grow memory without end).
BREAKER_SETS_KEPT = 32
_BREAKER_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_BREAKER_LOCK = threading.Lock()


def _breaker_heads(s, run: Run, n_vocab: int) -> dict:
    if not s.dry_sequence_breakers:
        return {}
    if run.vocab is None:
        raise ValueError("DRY's sequence breakers are text, matched against the tokenizer's pieces: "
                         "pass the tokenizer (model.generate(..., tokenizer=), run_pipeline(..., vocab=)), "
                         "or set dry_sequence_breakers to []")
    return breaker_heads(run.vocab, s.dry_sequence_breakers, n_vocab)


def breaker_heads(tokenizer, breakers, n_vocab: int) -> dict[int, list[tuple[int, ...]]]:
    """DRY's sequence breakers as token sequences for this tokenizer (cached per tokenizer)."""
    key = (tuple(breakers), n_vocab)
    with _BREAKER_LOCK:
        cache = _BREAKER_CACHE.setdefault(tokenizer, {"pieces": {}, "heads": OrderedDict()})
        if key in cache["heads"]:
            cache["heads"].move_to_end(key)
            return cache["heads"][key]
        pieces = cache["pieces"].get(n_vocab)
    if pieces is None:
        pieces = [_piece(tokenizer, i) for i in range(n_vocab)]
    heads = ls.dry_breaker_sequences(breakers, pieces, tokenizer.encode_ordinary)
    with _BREAKER_LOCK:
        cache["pieces"][n_vocab] = pieces
        cache["heads"][key] = heads
        while len(cache["heads"]) > BREAKER_SETS_KEPT:
            cache["heads"].popitem(last=False)
    return heads


def _piece(tokenizer, token: int) -> bytes:
    """A token's bytes; b"" for an id the tokenizer lacks (a model's vocabulary may be padded
    past its tokenizer's, or leave gaps)."""
    try:
        return tokenizer.decode_single_token_bytes(token)
    except (KeyError, ValueError):
        return b""


def check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= SEED_MAX:
        raise ValueError(f"seed must be a whole number from 0 to {SEED_MAX:,}, but is {seed!r:.80}")
    return int(seed)


@functools.lru_cache(maxsize=4096, typed=True)  # a step asks twice (the stage, the record); a replay once more
def draw_stage_u(seed: int, position: int, stage: str) -> float:
    """A random stage's own uniform number (XTC's): a function of (seed, position, stage name),
    independent of the pick's u, so that a stage's coin and the pick never share a draw."""
    tag = int.from_bytes(hashlib.sha256(stage.encode()).digest()[:4], "little")
    return float(np.random.default_rng([check_seed(seed), int(position), tag]).random())

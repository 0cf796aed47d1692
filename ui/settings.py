"""Sampling settings as the page shows them: one table of controls, and validation for every
way values arrive (sliders, the API's JSON, the URL's query string)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from model.sampling import SamplingSettings

from . import explain


@dataclass(frozen=True)
class Control:
    name: str  # the SamplingSettings field, also the URL and API key
    elem_id: str  # the element id on the page (the browser reads sliders by it)
    label: str
    minimum: float
    maximum: float
    step: float
    default: float
    info: str


# Order matters: the app passes slider values to handlers in this order.
CONTROLS = (
    Control("temperature", "temperature", "Temperature", 0.0, 2.0, 0.01, 1.0, explain.INFO["temperature"]),
    Control("top_k", "top-k", "Top-k", 0, 200, 1, 0, explain.INFO["top_k"]),
    Control("top_p", "top-p", "Top-p (nucleus)", 0.0, 1.0, 0.01, 1.0, explain.INFO["top_p"]),
    Control("min_p", "min-p", "Min-p", 0.0, 1.0, 0.01, 0.0, explain.INFO["min_p"]),
    Control("typical_p", "typical-p", "Typical-p", 0.0, 1.0, 0.01, 1.0, explain.INFO["typical_p"]),
    Control("repetition_penalty", "repetition-penalty", "Repetition penalty", 0.5, 2.0, 0.01, 1.0,
            explain.INFO["repetition_penalty"]),
    Control("presence_penalty", "presence-penalty", "Presence penalty", -2.0, 2.0, 0.05, 0.0,
            explain.INFO["presence_penalty"]),
    Control("frequency_penalty", "frequency-penalty", "Frequency penalty", -2.0, 2.0, 0.05, 0.0,
            explain.INFO["frequency_penalty"]),
    Control("no_repeat_ngram_size", "no-repeat-ngram", "No-repeat n-gram size", 0, 6, 1, 0,
            explain.INFO["no_repeat_ngram_size"]),
)
SLIDER_NAMES = tuple(c.name for c in CONTROLS)
SETTING_NAMES = SLIDER_NAMES + ("temperature_last",)  # the checkbox comes last
DEFAULTS = {c.name: c.default for c in CONTROLS} | {"temperature_last": False}
INTEGER_SETTINGS = {"top_k", "no_repeat_ngram_size"}
API_MAX_INT = 2**31 - 1  # far past any vocabulary or context, well inside JSON's integers


def settings_from_values(*values) -> SamplingSettings:
    """The controls' values in SETTING_NAMES order -> settings (ValueError names a bad one)."""
    if len(values) != len(SETTING_NAMES):
        raise ValueError(f"expected {len(SETTING_NAMES)} setting values ({', '.join(SETTING_NAMES)}), "
                         f"got {len(values)}")
    return SamplingSettings.from_dict(dict(zip(SETTING_NAMES, values)))


def settings_from_api(value) -> SamplingSettings:
    """The API's `settings` argument: a JSON object of SamplingSettings fields (missing ones
    keep their defaults: temperature 1, every filter off)."""
    if value is None or value == "":
        return SamplingSettings()
    if not isinstance(value, dict):
        raise ValueError(f"settings must be a JSON object such as {{\"temperature\": 0.7, \"top_k\": 40}}, "
                         f"but is {type(value).__name__} {value!r:.80}")
    settings = SamplingSettings.from_dict(value)
    # Every reply echoes the settings, and JSON (orjson, the page's JavaScript) cannot carry
    # integers past 64 bits: refuse them here, before a step is taken, not after.
    for name in INTEGER_SETTINGS:
        if getattr(settings, name) > API_MAX_INT:
            raise ValueError(f"{name} must be an integer in [0, {API_MAX_INT}] (0 = off), "
                             f"but is {value[name]!r:.80}")
    return settings


def settings_from_query(params) -> tuple[dict, list[str]]:
    """URL query parameters -> (control values to set, problems with ignored parameters).

    Values outside a slider's range are clamped to it (a shared link still opens), anything
    unreadable is skipped with a note."""
    values, problems = {}, []
    for c in CONTROLS:
        raw = params.get(c.name)
        if raw is None:
            continue
        try:
            number = float(raw)
            if not math.isfinite(number):
                raise ValueError
        except ValueError:
            problems.append(f"{c.name}={raw!r:.40} is not a number")
            continue
        clamped = min(max(number, c.minimum), c.maximum)
        if clamped != number:
            problems.append(f"{c.name}={raw} is outside [{c.minimum}, {c.maximum}]; using {clamped:g}")
        values[c.name] = int(round(clamped)) if c.name in INTEGER_SETTINGS else clamped
    if "temperature_last" in params:
        values["temperature_last"] = params["temperature_last"].lower() in ("1", "true", "yes", "on")
    return values, problems


def check_integer(name: str, value, lo: int, hi: int, what: str = "") -> int:
    """An integer argument from the API: accepts 3 and 3.0, names anything else."""
    bad = (isinstance(value, bool) or not isinstance(value, (int, float))
           or (isinstance(value, float) and not (math.isfinite(value) and value == int(value))))
    if bad or not lo <= int(value) <= hi:
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}]{what}, but is {value!r:.80}")
    return int(value)


def check_text(name: str, value) -> str:
    """Text from the API (None = empty). Length is not refused here: the session keeps the
    end of a long prompt and says so."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text, but is {type(value).__name__} {value!r:.80}")
    return value

"""Named starting points for the sliders. Each sets every control, so a preset fully
describes a way of decoding; penalties stay off so the preset's effect is easy to see."""

from __future__ import annotations

from model.sampling import SETTINGS

DEFAULTS = {name: x.default for name, x in SETTINGS.items()}

PRESETS: dict[str, dict] = {
    "Greedy": {"temperature": 0.0},
    "Focused": {"temperature": 0.5, "top_k": 40, "top_p": 0.9},
    "Balanced": {"temperature": 0.8, "top_p": 0.95},
    "Creative": {"temperature": 1.1, "min_p": 0.05},
    "Wild": {"temperature": 1.6},
}

DESCRIPTIONS = {
    "Greedy": "T = 0: always the single most likely token. Deterministic, often repetitive.",
    "Focused": "T = 0.5, top-k 40, top-p 0.9: safe, predictable text.",
    "Balanced": "T = 0.8, top-p 0.95: a common default for chat models.",
    "Creative": "T = 1.1 with min-p 0.05: varied, while min-p still cuts the junk tail.",
    "Wild": "T = 1.6, no filters: the flattened tail gets sampled; expect nonsense.",
}


def preset_values(name: str) -> dict:
    """Every setting for the preset `name` (unnamed ones at their defaults)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return DEFAULTS | PRESETS[name]


def presets_for_page() -> dict:
    """{name: {"settings": {...}, "description": "..."}} for the page's preset buttons."""
    return {name: {"settings": PRESETS[name], "description": DESCRIPTIONS[name]} for name in PRESETS}

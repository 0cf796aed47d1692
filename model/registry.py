"""Models offered by name rather than by path: what each name loads, and whether it is
already on this machine (so a menu can say "fetched on first use" only while it is true)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import smollm2


@dataclass(frozen=True)
class NamedModel:
    name: str  # what users pass: load_model("smollm2"), app.py --model smollm2
    title: str
    load: Callable  # (mode="exact") -> Loaded
    is_cached: Callable[[], bool]


NAMED_MODELS: dict[str, NamedModel] = {
    smollm2.NAME: NamedModel(smollm2.NAME, smollm2.CARD["name"], smollm2.load_smollm2,
                             smollm2.is_converted),
}

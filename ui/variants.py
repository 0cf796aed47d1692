"""Variants of the served models: a training snapshot of one (`PATH@STEP`) and a model in the
other arithmetic (`NAME:fast`, `NAME:exact`), for the training-step slider and for comparing two
models. Like the registry's models they are loaded once and shared by every visitor; only
models named on the command line have variants (a visitor names no path of their own).

    variants = Variants(registry)
    variants.get("checkpoints/shakespeare@316")      # a LoadedModel
    variants.snapshots("checkpoints/shakespeare")    # every snapshot of the run, loaded
    variants.snapshot_bytes("checkpoints/shakespeare")

Snapshots keep their blocks' matrices as the int8 codes their files hold (model/snapshots.py,
RowInt8Linear): the same logits in a quarter of the memory, measured in BENCHMARKS.md.
"""

from __future__ import annotations

import threading
from pathlib import Path

from model.compare import parse_spec
from model.quant import MODES, apply_mode
from model.registry import NAMED_MODELS
from model.snapshots import list_snapshots, load_snapshot

from .state import LoadedModel, ModelRegistry


def model_bytes(gpt) -> int:
    """What a model's weights hold, each storage counted once (a tied matrix is one)."""
    seen, total = set(), 0
    for t in list(gpt.parameters()) + list(gpt.buffers()):
        key = t.untyped_storage().data_ptr()
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
    return total


class Variants:
    def __init__(self, registry: ModelRegistry):
        self.registry = registry
        self._models: dict[tuple, LoadedModel] = {}
        self._lock = threading.Lock()  # one load at a time: each is a fraction of a second here

    def steps(self, name: str) -> list[dict]:
        """The served model's snapshots (list_snapshots' entries); [] for a model without."""
        if name not in self.registry.names:
            raise ValueError(f"model {name!r:.200} is not served here; choose one of {self.registry.names}")
        if not Path(name).is_dir():
            return []
        return list_snapshots(name)

    def get(self, spec: str) -> LoadedModel:
        """The model a spec names: a served name, NAME@STEP, NAME:MODE or NAME@STEP:MODE."""
        if spec in self.registry.names:  # a served name that happens to hold '@' or ':'
            return self.registry.get(spec)
        parts = parse_spec(spec)
        name, step, mode = parts["path"], parts["step"], parts["mode"]
        base = self.registry.get(name)  # refuses a name not served here, by name
        if step is None and (mode is None or mode == base.card.get("mode", "exact")):
            return base
        if step is not None:
            steps = [e["step"] for e in self.steps(name)]
            if not steps:
                raise ValueError(f"{name} has no training snapshots, so {spec!r:.80} names none; only "
                                 "checkpoints trained with --snapshots have them")
            if step not in steps:
                raise ValueError(f"{name} has no snapshot at step {step:,}: its run kept steps {steps}"
                                 + (f" (the run ended at step {steps[-1]:,})" if step > steps[-1] else ""))
        key = (name, step, mode or "exact")
        with self._lock:
            if key not in self._models:
                self._models[key] = self._load(base, *key)
        return self._models[key]

    def _load(self, base: LoadedModel, name: str, step: int | None, mode: str) -> LoadedModel:
        if step is None:
            from model.loading import load_model

            gpt, tokenizer, card = load_model(name, mode=mode)
            label = f"{base.card.get('name') or name} ({mode})"
        else:
            gpt, tokenizer, card = apply_mode(load_snapshot(name, step, compact=True), mode)
            tokenizer = base.tokenizer  # the run's own tokenizer: one copy for every snapshot
            label = f"{base.card.get('name') or name} @ step {step:,}" + (f" ({mode})" if mode != "exact" else "")
        return LoadedModel(name=f"{name}@{step}" if step is not None else f"{name}:{mode}", gpt=gpt,
                           tokenizer=tokenizer, card={**card, "name": label}, labels_json=base.labels_json,
                           chat=base.chat, metrics=base.metrics)

    def snapshots(self, name: str) -> list[tuple[dict, LoadedModel]]:
        """Every snapshot of the served model's run, loaded (preloads them): (entry, model)."""
        return [(e, self.get(f"{name}@{e['step']}")) for e in self.steps(name)]

    def snapshot_bytes(self, name: str) -> int:
        """The memory the loaded snapshots of `name` hold."""
        return sum(model_bytes(m.gpt) for (n, step, _), m in list(self._models.items())
                   if n == name and step is not None)

    def choices(self) -> list[tuple[str, str]]:
        """(label, spec) for every model a comparison may name: the served models, their
        snapshots, and each served model in the other arithmetic."""
        out = []
        for label, name in self.registry.choices():
            out.append((label, name))
            try:
                steps = self.steps(name)
            except (ValueError, OSError):
                steps = []
            out += [(f"{label} @ step {e['step']:,}", f"{name}@{e['step']}") for e in steps]
            if name in NAMED_MODELS:  # e.g. SmolLM2 exact against fast
                out += [(f"{label}: {mode}", f"{name}:{mode}") for mode in MODES]
        return out

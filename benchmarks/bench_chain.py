"""Step with the full llama.cpp chain against Step with the default settings.

    python -m benchmarks.bench_chain [--models smollm2 shakespeare] [--steps 30] [--repeats 3]

"Full" is samplers "edskypmxt" (llama.cpp's order) with every one of its stages on: penalties
(repetition 1.1 over the last 64 tokens), DRY (0.8, llama.cpp's defaults otherwise), top-nσ 2,
top-k 40, typical-p 0.95, top-p 0.95, min-p 0.05, XTC (0.5, 0.1), temperature 0.8. "Default"
is SamplingSettings() (temperature 1, no filter). Each step is one sampled DecodingSession.step
(the forward for the next position included); after each the session undoes it, so every step
sees the same context (the prompt: about 200 tokens) and undo costs no model run. The two
alternate step by step in one run; per repeat the median of each, and the median over the
repeats of full / default is reported (target: ≤ 1.10). Then where the time goes: the pipeline
alone (no forward) under each setting, and the full chain's stages one by one.
Exits non-zero if no step ran.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from model.kept import Kept
from model.loading import load_model
from model.sampling import SamplingSettings, chain_of, run_pipeline
from model.session import DecodingSession
from model.stage_table import Run

MODELS = {"smollm2": "smollm2", "shakespeare": "checkpoints/shakespeare"}
PROMPTS = {
    "smollm2": ("The history of the printing press begins in the fifteenth century, when Johannes "
                "Gutenberg combined movable metal type, oil-based ink and a screw press adapted from "
                "wine making. Within fifty years presses were running in more than two hundred cities "
                "across Europe, and the price of books fell so far that ordinary merchants could own "
                "them. Historians still argue about how much this changed the way people read, "
                "argued and prayed, but nobody doubts that the change was fast. Printers were "
                "businessmen first: they printed what sold, which meant calendars, indulgences, "
                "grammars and sermons long before it meant scientific treatises. The book trade "
                "grew up around fairs such as the one in Frankfurt, where printers met booksellers "
                "and"),
    "shakespeare": ("KING HENRY:\nOnce more unto the breach, dear friends, once more;\nOr close the "
                    "wall up with our English dead.\nIn peace there's nothing so becomes a man\n"
                    "As modest stillness and humility:\nBut when the blast of war blows in our ears,\n"
                    "Then imitate the action of the tiger;\nStiffen the sinews, summon up the blood,\n"),
}
DEFAULT = SamplingSettings()
FULL = SamplingSettings(
    samplers="edskypmxt", repetition_penalty=1.1, penalty_last_n=64, dry_multiplier=0.8,
    top_n_sigma=2.0, top_k=40, typical_p=0.95, top_p=0.95, min_p=0.05, xtc_probability=0.5,
    xtc_threshold=0.1, temperature=0.8)


class ForwardClock:
    """Times the model's forward calls (hooks on the module), to split a step's time into the
    forward for the next position and everything else (the pipeline, the pick, the record)."""

    def __init__(self, module):
        self.total = 0.0
        module.register_forward_pre_hook(lambda *args: setattr(self, "_start", time.perf_counter()))
        module.register_forward_hook(lambda *args: setattr(
            self, "total", self.total + time.perf_counter() - self._start))


def timed_step(s: DecodingSession, settings, clock: ForwardClock) -> tuple[float, float]:
    """(the step's seconds, the forward's seconds within it)"""
    before = clock.total
    start = time.perf_counter()
    s.step(settings)
    elapsed = time.perf_counter() - start
    forward = clock.total - before
    s.undo()
    return elapsed, forward


def pipeline_ms(s: DecodingSession, settings, n: int) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        run_pipeline(s.logits, settings, s.ids, seed=s.seed, vocab=s.tokenizer)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def stage_ms(s: DecodingSession, settings, n: int) -> list[tuple[str, float]]:
    """The full chain's stages one by one, each on what the stages before it left (its
    survivors, model/kept.py)."""
    run = Run(list(s.ids), s.seed, s.tokenizer, None)
    x = Kept.of(s.logits.detach().to(torch.float64))
    out = []
    for stage in chain_of(settings):
        times = []
        for _ in range(n):
            start = time.perf_counter()
            y = stage.apply(x, settings, run) if stage.active(settings, run.context) else x
            times.append(time.perf_counter() - start)
        out.append((stage.name, 1e3 * statistics.median(times)))
        x = y
    return out


def bench(name: str, steps: int, repeats: int) -> dict:
    gpt, tok, card = load_model(MODELS[name])
    clock = ForwardClock(gpt)
    s = DecodingSession(gpt, tok, seed=0)
    s.reset(PROMPTS[name])
    context = len(s.ids)
    for settings in (DEFAULT, FULL):  # warm up (DRY's breakers are matched once per tokenizer)
        timed_step(s, settings, clock)
    rounds, rest = [], {"default": [], "full": []}
    for _ in range(repeats):
        default, full = [], []
        for _ in range(steps):
            for key, settings, times in (("default", DEFAULT, default), ("full", FULL, full)):
                step, forward = timed_step(s, settings, clock)
                times.append(step)
                rest[key].append(step - forward)
        rounds.append((statistics.median(default), statistics.median(full)))
    ratios = [f / d for d, f in rounds]
    return {"model": name, "context": context, "vocab": gpt.config.vocab_size, "steps": steps,
            "repeats": repeats, "default_ms": [1e3 * d for d, _ in rounds],
            "full_ms": [1e3 * f for _, f in rounds], "ratio": statistics.median(ratios),
            "ratios": ratios, "pipeline_default_ms": pipeline_ms(s, DEFAULT, steps),
            "pipeline_full_ms": pipeline_ms(s, FULL, steps),
            "outside_forward_ms": {k: 1e3 * statistics.median(v) for k, v in rest.items()},
            "stages": stage_ms(s, FULL, steps)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    if args.steps < 1 or args.repeats < 1:
        print("no steps to run: --steps and --repeats must be at least 1", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads; {args.steps} steps x {args.repeats} "
          f"repeats, alternating, each step undone (same context every step)")
    print(f"full: {', '.join(f'{k}={v}' for k, v in FULL.to_dict().items() if v != DEFAULT.to_dict()[k])}\n")
    results = [bench(name, args.steps, args.repeats) for name in args.models]
    results = [r for r in results if r["default_ms"] and r["full_ms"]]
    if not results:
        print("no steps ran", file=sys.stderr)
        return 1
    print("| model | context | default step (ms) | full chain step (ms) | full / default | ≤ 1.10 |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['model']} | {r['context']} | {statistics.median(r['default_ms']):.1f} | "
              f"{statistics.median(r['full_ms']):.1f} | {r['ratio']:.3f} "
              f"({', '.join(f'{x:.3f}' for x in r['ratios'])}) | {'met' if r['ratio'] <= 1.10 else 'not met'} |")
    print()
    for r in results:
        print(f"{r['model']}: a step outside the forward {r['outside_forward_ms']['default']:.2f} ms default, "
              f"{r['outside_forward_ms']['full']:.2f} ms full;")
        print(f"  the pipeline alone {r['pipeline_default_ms']:.2f} ms default, "
              f"{r['pipeline_full_ms']:.2f} ms full; the full chain's stages: "
              + ", ".join(f"{n} {ms:.2f}" for n, ms in r["stages"]) + " ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())

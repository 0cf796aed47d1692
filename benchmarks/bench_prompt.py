"""Resetting a session with a huge prompt: what a visitor pasting a megabyte costs the server.

    python -m benchmarks.bench_prompt                     # about a minute on 2 CPU cores
    python -m benchmarks.bench_prompt --repeats 5 --models default

A session's reset encodes only the prompt's last 8 characters per position of context (the
model cannot read more), then prefills the context (tests/test_session.py checks the first
part by counting what reaches the tokenizer). Here, per model, a 1,000,000-character prompt
alternates with a prompt of exactly one context's worth of text: both prefill a full window,
so the ratio is what the other 990,000 characters cost. Medians over --repeats; a run whose
reset did not fill the context fails.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from model import load_model
from model.session import DecodingSession

SOURCES = {"default": "checkpoints/shakespeare", "smollm2": "smollm2"}
TARGET_S = 1.0  # a megabyte prompt resets within a second


def bench(name: str, repeats: int) -> dict:
    gpt, tok, _ = load_model(SOURCES[name])
    session = DecodingSession(gpt, tok, seed=0)
    tail = " and so the story ends."
    huge = ("All work and no play makes Jack a dull boy. " * 24_000)[:1_000_000 - len(tail)] + tail
    window = huge[-8 * gpt.config.block_size:]  # what the reset encodes of the huge prompt
    times: dict[str, list[float]] = {"1 MB": [], "one window": []}
    for _ in range(repeats):
        for label, prompt in (("1 MB", huge), ("one window", window)):
            start = time.perf_counter()
            session.reset(prompt)
            times[label].append(time.perf_counter() - start)
            if len(session.ids) != gpt.config.block_size:
                sys.exit(f"{name}: the reset kept {len(session.ids)} tokens, not the whole context "
                         f"{gpt.config.block_size}: nothing comparable ran")
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"model": name, "context": gpt.config.block_size, "mb_s": med["1 MB"],
            "window_s": med["one window"], "ratio": med["1 MB"] / med["one window"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--models", nargs="+", default=list(SOURCES), choices=list(SOURCES))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.repeats} repeats, medians")
    print("| model | context | reset, 1 MB prompt | reset, one window of text | ratio |")
    print("|---|---|---|---|---|")
    worst = 0.0
    for name in args.models:
        r = bench(name, args.repeats)
        worst = max(worst, r["mb_s"])
        print(f"| {name} | {r['context']} | {r['mb_s'] * 1e3:.0f} ms | {r['window_s'] * 1e3:.0f} ms | "
              f"{r['ratio']:.2f}x |")
    print(f"slowest 1 MB reset {worst:.2f} s (target ≤ {TARGET_S:.0f} s): "
          f"{'met' if worst <= TARGET_S else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

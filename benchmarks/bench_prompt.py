"""Resetting a session with a huge prompt: what a visitor pasting a megabyte costs the server.

    python -m benchmarks.bench_prompt                     # about two minutes on 2 CPU cores
    python -m benchmarks.bench_prompt --repeats 5 --models default

The server keeps a prompt's last Limits().prompt_chars characters (4,000), and a session's
reset encodes at most 8 characters per position of context of what is left (the model cannot
read more; tests/test_session.py checks that by counting what reaches the tokenizer), then
prefills. Here, per model, a session with the server's limit resets from a 1,000,000-character
prompt, alternating with the same prompt's last 4,000 characters: both prefill the same
tokens, so the ratio is what the other 996,000 characters cost. Medians over --repeats; a run
whose two resets did not keep the same tokens fails.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from model import load_model
from model.session import DecodingSession
from ui.actions import Limits

SOURCES = {"default": "checkpoints/shakespeare", "smollm2": "smollm2"}
TARGET_RATIO = 1.5  # the megabyte costs less than half a prefill more than the text kept of it


def bench(name: str, repeats: int) -> dict:
    gpt, tok, _ = load_model(SOURCES[name])
    limit = Limits().prompt_chars
    session = DecodingSession(gpt, tok, seed=0, max_prompt_chars=limit)
    tail = " and so the story ends."
    huge = ("All work and no play makes Jack a dull boy. " * 24_000)[:1_000_000 - len(tail)] + tail
    times: dict[str, list[float]] = {"1 MB": [], "kept": []}
    kept_ids = {}
    for _ in range(repeats):
        for label, prompt in (("1 MB", huge), ("kept", huge[-limit:])):
            start = time.perf_counter()
            session.reset(prompt)
            times[label].append(time.perf_counter() - start)
            kept_ids[label] = session.ids
    if kept_ids["1 MB"] != kept_ids["kept"] or not kept_ids["kept"]:
        sys.exit(f"{name}: the two resets kept different tokens: nothing comparable ran")
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"model": name, "tokens": len(kept_ids["kept"]), "mb_s": med["1 MB"],
            "kept_s": med["kept"], "ratio": med["1 MB"] / med["kept"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--models", nargs="+", default=list(SOURCES), choices=list(SOURCES))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.repeats} repeats, medians")
    print("| model | tokens prefilled | reset, 1 MB prompt | reset, its last 4,000 characters | ratio |")
    print("|---|---|---|---|---|")
    worst = 0.0
    for name in args.models:
        r = bench(name, args.repeats)
        worst = max(worst, r["ratio"])
        print(f"| {name} | {r['tokens']} | {r['mb_s'] * 1e3:.0f} ms | {r['kept_s'] * 1e3:.0f} ms | "
              f"{r['ratio']:.2f}x |")
    print(f"highest ratio {worst:.2f}x (target ≤ {TARGET_RATIO}x): "
          f"{'met' if worst <= TARGET_RATIO else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

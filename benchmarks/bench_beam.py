"""Beam search against one Generate of the same length, on SmolLM2 in fast mode.

    python -m benchmarks.bench_beam [--beams 4] [--tokens 30] [--repeats 7] [--mode fast]

Both start from the same chat prompt. "Generate" is what the page's Generate runs: a
DecodingSession stepping greedily (temperature 0) `--tokens` times, the sampling pipeline on
every token. "Beam search" is model/beam.py with every step's candidates recorded, as the
page's Beam search asks for, and end-of-text switched off so that it runs all `--tokens`
steps (a search that stops early would flatter it). They alternate, so both see the same
background load on these shared cores; reported are medians and their ratio (target: beam
search <= 2x one Generate).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from model.beam import beam_search
from model.chat import apply_chat_template
from model.loading import load_model
from model.sampling import SamplingSettings
from model.session import DecodingSession

QUESTION = "Write two sentences about the history of the printing press."


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_beam", description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--mode", default="fast", choices=("exact", "fast"))
    ap.add_argument("--beams", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    gpt, tok, _ = load_model(args.model, mode=args.mode)
    session = DecodingSession(gpt, tok, seed=0)
    prompt = apply_chat_template(tok, QUESTION) if "<|im_start|>" in tok.special_tokens_set else QUESTION
    greedy = SamplingSettings(temperature=0)

    def one_generate() -> float:
        session.reset(prompt)
        start = time.perf_counter()
        made = sum(1 for _ in session.generate(args.tokens, greedy))
        took = time.perf_counter() - start
        if made != args.tokens:
            raise SystemExit(f"Generate made {made} tokens, not {args.tokens}: nothing to compare")
        return took

    def one_search() -> float:
        ids = tok.encode(prompt, allowed_special="all")
        start = time.perf_counter()
        result = beam_search(gpt, ids, args.tokens, args.beams, 1.0, False, eos_token_id=None)
        took = time.perf_counter() - start
        if len(result.steps) != args.tokens or len(result.best.tokens) != args.tokens:
            raise SystemExit(f"the search ran {len(result.steps)} steps, not {args.tokens}: nothing to compare")
        return took

    one_generate(), one_search()  # warm-up: first-call allocations, caches
    gen, beam = [], []
    for _ in range(args.repeats):
        gen.append(one_generate())
        beam.append(one_search())
    g, b = statistics.median(gen), statistics.median(beam)
    print(f"{args.model} ({args.mode}), {args.tokens} tokens, threads {torch.get_num_threads()}, "
          f"{args.repeats} alternating runs each")
    print(f"  one Generate (greedy session) : median {g * 1000:7.0f} ms  ({args.tokens / g:5.1f} tokens/s)")
    print(f"  beam search, {args.beams} beams         : median {b * 1000:7.0f} ms  "
          f"({args.beams * args.tokens / b:5.1f} beam-tokens/s)")
    print(f"  ratio beam / Generate          : {b / g:.2f}x  (target <= 2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

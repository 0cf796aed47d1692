"""Running the playground: the command line, the memory budget, and Gradio's launch.

    python app.py [--model PATH ...] [--mode exact|fast] [--host 127.0.0.1] [--port 7860]
                  [--threads 1] [--memory-budget-mb N] [--share]
"""

from __future__ import annotations

import argparse
import functools
import os
from pathlib import Path

import torch

from model.loading import load_model
from model.prompt_cache import DEFAULT_BYTES as PROMPT_CACHE_BYTES
from model.prompt_cache import LARGEST_SHARE as PROMPT_CACHE_SHARE
from model.quant import MODES
from model.registry import NAMED_MODELS

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODELS = ["checkpoints/shakespeare", *NAMED_MODELS]
CONCURRENCY, QUEUE_SIZE = 4, 64
GENERATE_CONCURRENCY = 2  # Generates at once, over all sessions
# Live sessions Gradio keeps, least recently used dropped first: ten times a full workshop
# room, and a bound on what clients that never say goodbye (scripts, raw API calls) can hold.
MAX_SESSIONS = 500
BUDGET_FRACTION = 0.5  # of the machine's memory, for what sessions hold by default
PROMPT_CACHE_MB = PROMPT_CACHE_BYTES // 2**20


def default_budget_mb() -> int:
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 * 2**30
    return int(total * BUDGET_FRACTION / 2**20)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="The Decoding Playground: watch a language model "
                                            "choose its next token.")
    p.add_argument("--model", action="append", metavar="PATH",
                   help="a checkpoint directory, a Hugging Face GPT-2 snapshot directory, a .gguf "
                        f"file, or one of {sorted(NAMED_MODELS)}; repeat for several (the first is "
                        f"the default). Default: {' and '.join(DEFAULT_MODELS)}")
    p.add_argument("--mode", choices=MODES, default="exact",
                   help="exact: float32, the same numbers as Hugging Face transformers; fast: "
                        "4-bit and 8-bit weights, about twice as fast and close to exact (the page "
                        "and the API say which). Default exact")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (0.0.0.0 = every interface, e.g. for a workshop)")
    p.add_argument("--port", type=int, default=7860, help="port to listen on (default 7860)")
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads per request (default 1: visitors' requests run in "
                        "parallel already, and more threads per request fight over the cores)")
    p.add_argument("--memory-budget-mb", type=int, default=default_budget_mb(),
                   help="what all sessions together may hold (KV caches, kept logits), in MB; "
                        "past it the least recently used are closed, with a message to their "
                        f"visitor (default: {BUDGET_FRACTION * 100:.0f}%% of this machine's memory)")
    p.add_argument("--prompt-cache-mb", type=int, default=PROMPT_CACHE_MB,
                   help="per model, the keys and values of recent prompts, so that a room starting "
                        "from the same prompt runs the model over it once; one prompt may take up to "
                        f"1/{PROMPT_CACHE_SHARE} of it (default {PROMPT_CACHE_MB}; 0 turns it off)")
    args = p.parse_args(argv)
    if args.prompt_cache_mb < 0:
        p.error(f"--prompt-cache-mb must be 0 (off) or more, but is {args.prompt_cache_mb}")
    if args.threads < 1:
        p.error(f"--threads must be at least 1, but is {args.threads}")
    if args.memory_budget_mb < 1:
        p.error(f"--memory-budget-mb must be at least 1, but is {args.memory_budget_mb}")
    return args


def main(argv=None, build_demo=None) -> None:
    args = parse_args(argv)
    # Measured on 2 shared cores: a step took 8 ms on one thread and 80 ms on two, because
    # up to CONCURRENCY handlers each spin two OpenMP threads on the same cores.
    torch.set_num_threads(args.threads)
    # The default checkpoint lives next to app.py, wherever the server is started from.
    defaults = [os.path.relpath(ROOT / m) if (ROOT / m).exists() else m for m in DEFAULT_MODELS]
    demo = build_demo(args.model or defaults, budget_bytes=args.memory_budget_mb * 2**20,
                      loader=functools.partial(load_model, mode=args.mode),
                      prompt_cache_bytes=args.prompt_cache_mb * 2**20)
    try:  # load the default model now, so the first visitor does not wait for it
        demo.registry.get(demo.registry.default)
    except Exception as e:
        print(f"warning: could not load {demo.registry.default}: {e}")
    try:  # and its training snapshots, for the training-step slider (shared by every visitor)
        demo.actions.variants.snapshots(demo.registry.default)
    except Exception as e:
        print(f"warning: could not load the training snapshots of {demo.registry.default} (the "
              f"section that shows them will say why): {e}")
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, ssr_mode=False,
                footer_links=["api"], state_session_capacity=MAX_SESSIONS)

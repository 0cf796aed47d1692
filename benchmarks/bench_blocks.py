"""Probability blocks on SmolLM2-135M-Instruct: one expansion against Generates that run the
model as many times.

    python -m benchmarks.bench_blocks [--mode fast] [--repeats 7] [--depth 3] [--top 4] [--threshold 0.01]
                                      [--prompt-copies 1]

The expansion (the server's whole /blocks action: model/blocks.py, the pipeline on every
expanded node's 49,152 logits, one batched forward per level) runs alternately with two
Generates on another session from the same prompt, so all three see the same background load:

  - one of as many tokens as the expansion forwarded rows (its blocks above the last level):
    the same model work done one row at a time, as stepping to each block would;
  - one of as many tokens as the expansion ran batched forwards (depth - 1).

--prompt-copies repeats the prompt (a long text: every row reads the text's keys and values,
which the rows share). Medians and their ratios. Both run through the action layer (ui/actions.py), as the page's
requests do.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from model.loading import load_model  # noqa: E402
from model.sampling import SamplingSettings  # noqa: E402
from ui.actions import Actions, Limits  # noqa: E402
from ui.state import ModelRegistry  # noqa: E402

PROMPT = "The history of the printing press begins in the fifteenth century, when"


def _generate(actions, user, prompt, n, settings) -> float:
    actions.reset(user, prompt)
    t0 = time.perf_counter()
    made = sum(1 for _ in actions.generate(user, n, settings))
    elapsed = time.perf_counter() - t0
    assert made == n, f"the Generate of {n} made {made} tokens"
    return elapsed


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_blocks")
    ap.add_argument("--mode", choices=("fast", "exact"), default="fast")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--top", type=int, default=4)
    ap.add_argument("--threshold", type=float, default=0.01)
    ap.add_argument("--prompt-copies", type=int, default=1, help="the prompt this many times over")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the server's default is 1)")
    args = ap.parse_args(argv)
    prompt = " ".join([PROMPT] * args.prompt_copies)
    torch.set_num_threads(args.threads)
    name = "smollm2"
    registry = ModelRegistry([name], loader=functools.partial(load_model, mode=args.mode))
    actions = Actions(registry, Limits())
    user = actions.start(None, name, prompt, 0)
    other = actions.start(None, name, prompt, 0)
    options = {"depth": args.depth, "top": args.top, "threshold": args.threshold}
    settings = SamplingSettings()
    print(f"model {name} ({args.mode}, {args.threads} thread(s)), prompt {len(user.session.ids)} tokens, "
          f"depth {args.depth}, top {args.top}, threshold {args.threshold}, T = 1")

    result, _, _ = actions.blocks(user, options, settings)  # warm-up, and the sizes to match
    rows = sum(1 for n in result.nodes[1:] if n.depth < args.depth and not n.ends)
    forwards = result.forwards
    assert rows >= 1 and forwards >= 1, "the expansion ran no forward: nothing to compare"
    print(f"{len(result.nodes) - 1} blocks, {rows} rows forwarded in {forwards} batched forwards")
    expand_s, same_rows_s, same_forwards_s = [], [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        again, _, _ = actions.blocks(user, options, settings)
        expand_s.append(time.perf_counter() - t0)
        assert len(again.nodes) == len(result.nodes), "the expansion changed between runs"
        same_rows_s.append(_generate(actions, other, prompt, rows, settings))
        same_forwards_s.append(_generate(actions, other, prompt, forwards, settings))
    e, r, f = (statistics.median(x) for x in (expand_s, same_rows_s, same_forwards_s))
    print(f"expansion: median {1000 * e:.0f} ms (min {1000 * min(expand_s):.0f})")
    print(f"Generate of {rows} tokens (one row per forward, as many rows): median {1000 * r:.0f} ms; "
          f"ratio {e / r:.2f}")
    print(f"Generate of {forwards} tokens (as many forwards): median {1000 * f:.0f} ms; ratio {e / f:.2f}")


if __name__ == "__main__":
    main()

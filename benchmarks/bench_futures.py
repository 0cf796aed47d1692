"""Many futures on SmolLM2-135M-Instruct: N draws, and N continuations against one Generate.

    python -m benchmarks.bench_futures [--mode fast] [--repeats 7] [--rows 8] [--tokens 30] [--threads 1]

Draws: the server's whole /sample action (the pipeline on the step's 49,152 logits, N draws,
the counts, TV and KL) for N = 10,000 at T = 1, and at T = 0.8 with top-p 0.95; median ms.

Continuations: --rows continuations of --tokens tokens (model/futures.py, one batched forward
per position) against one Generate of --tokens tokens on a copy of the same session, from the
same prompt, run alternately so both see the same background load; the ratio of medians.
Both run through the action layer (ui/actions.py), as the page's requests do.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import functools  # noqa: E402

import torch  # noqa: E402

from model.loading import load_model  # noqa: E402
from model.sampling import SamplingSettings  # noqa: E402
from ui.actions import Actions, Limits  # noqa: E402
from ui.state import ModelRegistry  # noqa: E402

PROMPT = "The history of the printing press begins in the fifteenth century, when"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_futures")
    ap.add_argument("--mode", choices=("fast", "exact"), default="fast")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the server's default is 1)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    name = "smollm2"
    registry = ModelRegistry([name], loader=functools.partial(load_model, mode=args.mode))
    actions = Actions(registry, Limits())
    user = actions.start(None, name, PROMPT, 0)
    other = actions.start(None, name, PROMPT, 0)
    print(f"model {name} ({args.mode}, {args.threads} thread(s)), vocabulary {user.session.vocab_size:,}, "
          f"prompt {len(user.session.ids)} tokens")

    for label, settings in (("T = 1", SamplingSettings()),
                            ("T = 0.8, top-p 0.95", SamplingSettings(temperature=0.8, top_p=0.95))):
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = actions.sample(user, 10_000, settings)
            times.append(time.perf_counter() - t0)
        assert sum(c for _, c in out["counts"]) == 10_000, "the draws did not run"
        print(f"10,000 draws, {label}: median {1000 * statistics.median(times):.1f} ms "
              f"(min {1000 * min(times):.1f}); TV {out['tv']:.4f}, KL {out['kl']:.4f} nats")

    settings = SamplingSettings()
    many, one = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        rows = actions.continuations(user, args.rows, args.tokens, settings)
        many.append(time.perf_counter() - t0)
        assert len(rows) == args.rows and all(r["tokens"] for r in rows), "the continuations did not run"
        actions.reset(other, PROMPT)
        t0 = time.perf_counter()
        made = sum(1 for _ in actions.generate(other, args.tokens, settings))
        one.append(time.perf_counter() - t0)
        assert made >= 1, "the Generate did not run"
    m, g = statistics.median(many), statistics.median(one)
    print(f"{args.rows} continuations x {args.tokens} tokens: median {1000 * m:.0f} ms; one Generate of "
          f"{args.tokens}: median {1000 * g:.0f} ms; ratio {m / g:.2f} (target <= 1.5)")


if __name__ == "__main__":
    main()

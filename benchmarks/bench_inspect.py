"""Scoring a text (model.inspect.score_text) on the CPU: the default model and SmolLM2.

    python -m benchmarks.bench_inspect                    # about 2 minutes on 2 CPU cores
    python -m benchmarks.bench_inspect --repeats 3 --threads 1 --models default

For each model, a text of 1,000 tokens (the default model's context is 256, so it scores the
last 256 of them; SmolLM2 scores all 1,000) is scored with top-5 alternatives per position,
alternating with the bare training forward over the same window (`gpt(ids[:-1], targets)`:
the same one forward, without per-token ranks, top lists and text), at torch threads 1 and 2.
Reports medians, the ratio to the bare forward, and one logit-lens call. The text mixes
Hamlet, code and many scripts, so its loss is a check that something ran, not a quality figure. The loss of every
scoring run is checked against the training forward's; a mismatch or an empty run fails.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from model import load_model
from model.inspect import logit_lens, score_text
from testkit.models import CORPUS, HAMLET

TARGET_S = {"default": 1.0, "smollm2": 5.0}
SOURCES = {"default": "checkpoints/shakespeare", "smollm2": "smollm2"}
N_TOKENS = 1000


def text_of_tokens(tokenizer, n: int) -> str:
    """A text that encodes to n tokens (varied prose, code and Shakespeare, repeated)."""
    source = (HAMLET + CORPUS) * 40
    ids = tokenizer.encode(source)[:n]
    text = tokenizer.decode(ids)
    while len(tokenizer.encode(text)) > n:  # a cut through a merge can re-encode longer
        text = text[:-1]
    return text


def timed(fn):
    """(wall seconds, CPU seconds of this process, result). On one thread the CPU time barely
    changes when other work competes for the cores; the wall time can change several-fold."""
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - start, time.process_time() - cpu, out


def bench_model(name: str, repeats: int, threads: list[int]) -> list[dict]:
    t0 = time.perf_counter()
    gpt, tok, _ = load_model(SOURCES[name])
    load_s = time.perf_counter() - t0
    text = text_of_tokens(tok, N_TOKENS)
    n_text = len(tok.encode(text, allowed_special="all"))
    window = tok.encode(text, allowed_special="all")[-gpt.config.block_size:]
    idx = torch.tensor([window])
    print(f"\n{name}: {gpt.num_params() / 1e6:.1f}M parameters, context {gpt.config.block_size}, "
          f"vocabulary {gpt.config.vocab_size}; loaded in {load_s:.1f} s; text {n_text} tokens, "
          f"{len(text)} characters; scored window {len(window)} tokens")

    def forward():
        with torch.inference_mode():
            return float(gpt(idx[:, :-1], targets=idx[:, 1:]))

    rows = []
    for n in threads:
        torch.set_num_threads(n)
        score_text(gpt, tok, text)  # warm-up: first-call allocations
        forward()
        scores, forwards, score_cpu, forward_cpu = [], [], [], []
        for _ in range(repeats):  # alternate, so load from other work hits both alike
            s, s_cpu, result = timed(lambda: score_text(gpt, tok, text, top_n=5))
            f, f_cpu, loss = timed(forward)
            if result["predicted"] != len(window) - 1 or abs(result["mean_loss_nats"] - loss) > 1e-4:
                raise SystemExit(f"{name}: score_text scored {result['predicted']} positions with mean "
                                 f"loss {result['mean_loss_nats']}, the training forward {loss}: mismatch")
            scores.append(s)
            forwards.append(f)
            score_cpu.append(s_cpu)
            forward_cpu.append(f_cpu)
        lens_s, _, lens = timed(lambda: logit_lens(gpt, window))
        if len(lens["layers"]) != gpt.config.n_layer + 1:
            raise SystemExit(f"{name}: the logit lens returned {len(lens['layers'])} layers")
        row = {"model": name, "threads": n, "window": len(window), "score_s": statistics.median(scores),
               "forward_s": statistics.median(forwards), "lens_s": lens_s,
               "score_cpu_s": statistics.median(score_cpu), "forward_cpu_s": statistics.median(forward_cpu),
               "loss": result["mean_loss_nats"], "nats_per_char": result["nats_per_char"]}
        row["ratio"] = row["score_s"] / row["forward_s"]
        row["ok"] = row["score_s"] <= TARGET_S[name]
        rows.append(row)
        print(f"  threads {n}: score_text median {row['score_s']:.3f} s (runs "
              f"{', '.join(f'{x:.3f}' for x in scores)}; CPU {row['score_cpu_s']:.3f} s), bare training "
              f"forward {row['forward_s']:.3f} s (CPU {row['forward_cpu_s']:.3f} s), "
              f"ratio {row['ratio']:.2f}; logit lens {lens_s:.3f} s; target <= {TARGET_S[name]} s: "
              f"{'met' if row['ok'] else 'MISSED'}")
    print(f"  mean loss {rows[-1]['loss']:.4f} nats/token, {rows[-1]['nats_per_char']:.4f} nats/char")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_inspect", description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per setting (medians reported)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch thread counts to try")
    ap.add_argument("--models", nargs="+", default=list(SOURCES), choices=list(SOURCES))
    args = ap.parse_args(argv)
    if args.repeats < 1:
        raise SystemExit(f"--repeats must be at least 1, but is {args.repeats}")
    rows = [row for name in args.models for row in bench_model(name, args.repeats, args.threads)]
    print("\n| model | threads | window tokens | score_text (median, wall / CPU) | bare forward (wall / CPU) "
          "| ratio | logit lens | target |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['threads']} | {r['window']} | {r['score_s']:.3f} / {r['score_cpu_s']:.3f} s | "
              f"{r['forward_s']:.3f} / {r['forward_cpu_s']:.3f} s | "
              f"{r['ratio']:.2f} | {r['lens_s']:.3f} s | <= {TARGET_S[r['model']]} s "
              f"{'met' if r['ok'] else 'missed'} |")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

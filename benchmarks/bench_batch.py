"""Batched decoding: 8 sessions stepping at once through one Batcher against 8 stepping in turn.

    python -m benchmarks.bench_batch                       # both models, about 2 minutes
    python -m benchmarks.bench_batch --models shakespeare --rounds 9

For each model (the default checkpoints/shakespeare and SmolLM2-135M, fp32), 8 sessions with
different prompts and seeds take --steps sampled steps each per round: "sequential" steps
them one after another without a batcher, "concurrent" runs one thread per session, all
sharing one Batcher (as a web server's request threads would). Rounds alternate, so load from
other work on the machine hits both alike; every round starts from the prompts again (a
rewind, no recompute). Prints median tokens/s of each, their ratio, the batch sizes the
Batcher formed, and whether both wrote the same tokens; also one bare forward of 8 rows
against 8 forwards of one. Then what a SmolLM2 session with a 4,000-character prompt holds
after 20 steps (memory_bytes), and what the former rules (a cache that doubles from 256
positions, 256 steps of logits) would have held.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from model.batching import Batcher
from model.loading import load_model
from model.sampling import SamplingSettings
from model.session import DecodingSession
from testkit.models import HAMLET

MODELS = {"shakespeare": "checkpoints/shakespeare", "smollm2": "smollm2"}
SESSIONS = 8
SETTINGS = SamplingSettings(temperature=0.8, top_k=40)
PROMPTS = {
    "shakespeare": ["ROMEO:\n", "KING HENRY:\nOnce more unto the", "I pray you, sir", "Thou art a",
                    "JULIET:\nO Romeo, Romeo!", "HAMLET:\nTo be, or not to be", "First Citizen:\n",
                    "ROMEO:\nBut soft, what light through yonder"],
    "smollm2": ["The capital of France is", "Once upon a time, in a small village,",
                "def fibonacci(n):", "The three primary colours are", "Dear Sir or Madam,",
                "The history of the printing press begins", "A recipe for bread: first,",
                "Photosynthesis is the process by which"],
}



def sessions(gpt, tokenizer, prompts, batcher=None) -> list[DecodingSession]:
    out = []
    for seed, prompt in enumerate(prompts):
        s = DecodingSession(gpt, tokenizer, seed=seed, batcher=batcher)
        s.reset(prompt)
        out.append(s)
    return out


def sequential_round(group, steps: int) -> tuple[float, float]:
    """Wall and process CPU seconds for every session to take `steps` steps, in turn."""
    start, start_cpu = time.perf_counter(), time.process_time()
    for s in group:
        for _ in range(steps):
            s.step(SETTINGS)
    return time.perf_counter() - start, time.process_time() - start_cpu


def concurrent_round(group, steps: int) -> tuple[float, float]:
    """The same with one thread per session, all released at once."""
    ready, errors = threading.Barrier(len(group) + 1), []

    def run(s):
        ready.wait()
        try:
            for _ in range(steps):
                s.step(SETTINGS)
        except BaseException as e:  # reported below: a benchmark must not time a failure
            errors.append(e)

    threads = [threading.Thread(target=run, args=(s,)) for s in group]
    for t in threads:
        t.start()
    ready.wait()
    start, start_cpu = time.perf_counter(), time.process_time()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start, time.process_time() - start_cpu
    if errors:
        raise RuntimeError(f"{len(errors)} of {len(group)} threads failed") from errors[0]
    return elapsed


@torch.inference_mode()
def bare_forwards(gpt, group, repeats: int) -> tuple[float, float]:
    """Median seconds of one decode_step over all rows, and of one forward per row."""
    batched, one_by_one = [], []
    for _ in range(repeats):
        for name in ("batched", "one by one"):
            caches = [s._cache for s in group]
            held = [c.pos for c in caches]
            start = time.perf_counter()
            if name == "batched":
                gpt.decode_step([1] * len(caches), caches)
            else:
                for c in caches:
                    gpt(torch.tensor([[1]]), cache=c)
            (batched if name == "batched" else one_by_one).append(time.perf_counter() - start)
            for c, n in zip(caches, held):
                c.truncate(n)  # the sessions' caches are left as they were
    return statistics.median(batched), statistics.median(one_by_one)


def bench_model(name: str, rounds: int, steps: int, wait_ms: float) -> None:
    gpt, tokenizer, _ = load_model(MODELS[name])
    prompts = PROMPTS[name]
    alone = sessions(gpt, tokenizer, prompts)
    batcher = Batcher(gpt, max_batch=16, wait_ms=wait_ms)
    together = sessions(gpt, tokenizer, prompts, batcher)
    times = {"sequential": [], "concurrent": []}
    cpu = {"sequential": [], "concurrent": []}
    same = 0
    for _ in range(rounds):
        for group in (alone, together):
            for s in group:
                s.rewind(0)
        for kind, run, group in (("sequential", sequential_round, alone),
                                 ("concurrent", concurrent_round, together)):
            wall, seconds = run(group, steps)
            times[kind].append(wall)
            cpu[kind].append(seconds)
        same += all(a.ids == b.ids for a, b in zip(alone, together))
    tokens = SESSIONS * steps
    rate = {k: tokens / statistics.median(v) for k, v in times.items()}
    cpu_rate = {k: tokens / statistics.median(v) for k, v in cpu.items()}
    one_batch, one_each = bare_forwards(gpt, alone, repeats=2 * rounds)
    sizes = ", ".join(f"{n}: {c}" for n, c in sorted(batcher.batch_sizes.items()))
    print(f"{name} ({gpt.num_params():,} parameters), {SESSIONS} sessions x {steps} steps per "
          f"round, {rounds} alternating rounds, temperature 0.8, top-k 40, wait_ms {wait_ms}")
    for k, v in times.items():
        print(f"  {k:10s} {rate[k]:7.1f} tokens/s, {cpu_rate[k]:7.1f} tokens per CPU-second "
              f"(median round {statistics.median(v) * 1e3:7.1f} ms; "
              f"rounds {', '.join(f'{t * 1e3:.0f}' for t in v)} ms)")
    print(f"  concurrent / sequential: {rate['concurrent'] / rate['sequential']:.2f}x tokens/s, "
          f"{cpu_rate['concurrent'] / cpu_rate['sequential']:.2f}x tokens per CPU-second; "
          f"same tokens in {same} of {rounds} rounds; batch sizes (size: forwards) {sizes}")
    print(f"  bare forward: 8 rows in one decode_step {one_batch * 1e3:.1f} ms, 8 forwards of one "
          f"{one_each * 1e3:.1f} ms ({one_each / one_batch:.2f}x)")


def former_rules_bytes(gpt, prompt_tokens: int, steps: int) -> int:
    """What a session held under the former rules: a cache starting at 256 positions that
    doubles when full, and the logits of the last 256 steps (plus the current ones)."""
    c = gpt.config
    capacity = min(c.block_size, 256)
    for needed in range(prompt_tokens, prompt_tokens + steps + 1):  # the prefill, then a step each
        if needed > capacity:
            capacity = min(c.block_size, max(needed, 2 * capacity))
    kv = 2 * c.n_layer * c.kv_heads * capacity * c.head_dim * 4
    return kv + (min(steps, 256) + 1) * c.vocab_size * 4


def bench_memory() -> None:
    gpt, tokenizer, _ = load_model("smollm2")
    prompt = (HAMLET * 10)[:4000]  # 1,148 SmolLM2 tokens
    s = DecodingSession(gpt, tokenizer, seed=0)
    s.reset(prompt)
    prompt_tokens = len(s.ids)
    for _ in range(20):
        s.step(SETTINGS)
    parts = s.memory_breakdown()
    mb = {k: v / 1e6 for k, v in parts.items()}
    print(f"smollm2 session memory, {len(prompt):,}-character prompt ({prompt_tokens:,} tokens) "
          f"+ 20 steps: memory_bytes() {s.memory_bytes() / 1e6:.1f} MB (KV cache "
          f"{mb['kv_cache']:.1f} MB at {s._cache.capacity:,} positions for {s._cache.pos:,} held, "
          f"kept logits {mb['kept_logits']:.1f} MB, logits {mb['logits']:.2f} MB, Python objects "
          f"{mb['python']:.2f} MB)")
    print(f"  the former rules (cache doubling from 256 positions, 256 steps of logits) would hold "
          f"{former_rules_bytes(gpt, prompt_tokens, 20) / 1e6:.1f} MB for the same session")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    ap.add_argument("--rounds", type=int, default=7, help="alternating rounds per model")
    ap.add_argument("--steps", type=int, default=4, help="steps per session per round")
    ap.add_argument("--wait-ms", type=float, default=20.0, help="the Batcher's wait_ms")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--skip-memory", action="store_true", help="skip the SmolLM2 memory figure")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} torch thread(s), {os.cpu_count()} CPUs")
    for name in args.models:
        bench_model(name, args.rounds, args.steps, args.wait_ms)
    if not args.skip_memory:
        bench_memory()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Moving to another node of the tree of generations, 50 tokens away: the server's side.

    python -m benchmarks.bench_tree                        # SmolLM2 and the Shakespeare GPT
    python -m benchmarks.bench_tree --models smollm2 --tokens 50 --repeats 7 --threads 1

Per model, a session makes two branches of --tokens steps each that part right after the
prompt (the second begins with another token), so each leaf is --tokens steps from the
fork: going from one leaf to the other rewinds --tokens steps and replays --tokens. Then,
alternating in each repeat:

- goto: the page's 'goto' handler end to end (ui/handlers.py: the jump, DecodingSession.goto,
  then the snapshot the page draws), split into the jump and the snapshot;
- goto, rebuilt: the same jump with the branch's saved keys and values forgotten first
  (model/branch_cache.py), so the model runs over its tokens (model/decode_rows.py): what a
  jump costs once the branch has left the session's allowance;
- stepping: the same --tokens steps made again one by one (DecodingSession.step after a
  rewind), what reaching that text cost without the tree: one forward per token.

After every goto the session must stand on the target with the records it was made with and
the logits stepping gave, bit for bit; otherwise the benchmark fails. Medians; the load
average is printed, since the cores are shared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gradio as gr
import torch

from model.sampling import SamplingSettings
from ui.actions import Actions, Limits
from ui.handlers import PageHandlers
from ui.state import ModelRegistry

SOURCES = {"smollm2": "smollm2", "default": "checkpoints/shakespeare"}
PROMPTS = {"smollm2": "The history of the printing press", "default": "ROMEO:\n"}
SETTINGS = SamplingSettings(temperature=0.9, top_k=40)


def make_branches(handlers: PageHandlers, short: str, n: int):
    """A tab with two branches of n steps from the prompt; returns (user, leaf A, leaf B,
    A's state as stepping left it)."""
    start = {"id": 1, "model": SOURCES[short], "prompt": PROMPTS[short], "seed": 0}
    user = list(handlers.start(None, gr.EventData(None, start), None))[-1][0]
    s, actions = user.session, handlers.actions
    for _ in range(n):
        actions.step(user, SETTINGS)
    leaf_a = s.node
    state_a = (list(s.ids), s.logits.clone(), [r.to_dict() for r in s.history])
    first = s.history[0].token
    actions.rewind(user, 0)
    actions.pick(user, (first + 1) % s.vocab_size, SETTINGS)  # the other branch starts here
    for _ in range(n - 1):
        actions.step(user, SETTINGS)
    return user, leaf_a, s.node, state_a


def goto(handlers: PageHandlers, user, node: int) -> dict:
    parts = {}
    view, actions = handlers.view, handlers.actions
    real_snapshot, real_goto = view.snapshot, actions.goto

    def timed(key, fn):
        def run(*args, **kw):
            start = time.perf_counter()
            try:
                return fn(*args, **kw)
            finally:
                parts[key] = time.perf_counter() - start
        return run
    view.snapshot, actions.goto = timed("snapshot", real_snapshot), timed("jump", real_goto)
    start = time.perf_counter()
    try:
        _, payload = handlers.goto(user, gr.EventData(None, {"id": 2, "node": node}))
    finally:
        view.snapshot, actions.goto = real_snapshot, real_goto
    total = time.perf_counter() - start
    answer = json.loads(payload)
    if "notice" in answer or user.session.node != node:
        sys.exit(f"goto({node}) did not arrive: {answer.get('notice')}")
    return {"total": total, **parts, "payload_kb": len(payload.encode()) / 1024}


def stepping(user, n: int) -> float:
    """Rewind to the prompt and make the steps again one by one (the seed gives the same)."""
    s = user.session
    s.rewind(0)
    start = time.perf_counter()
    for _ in range(n):
        s.step(SETTINGS)
    return time.perf_counter() - start


def bench(short: str, n: int, repeats: int) -> dict:
    name = SOURCES[short]
    registry = ModelRegistry([name])
    handlers = PageHandlers(Actions(registry, Limits()))
    user, leaf_a, leaf_b, (ids_a, logits_a, records_a) = make_branches(handlers, short, n)
    s = user.session
    jumps, rebuilt, steps = [], [], []
    for _ in range(repeats):
        jumps.append(goto(handlers, user, leaf_a))  # from B's leaf: n back, n forward
        if s.ids != ids_a or not torch.equal(s.logits, logits_a) or [r.to_dict() for r in s.history] != records_a:
            sys.exit(f"{short}: goto did not restore the branch as stepping made it")
        handlers.actions.goto(user, leaf_b)
        s.branches.forget_from(0)  # nothing saved: the model runs
        rebuilt.append(goto(handlers, user, leaf_a))
        if s.ids != ids_a or not torch.equal(s.logits, logits_a) or [r.to_dict() for r in s.history] != records_a:
            sys.exit(f"{short}: goto without saved keys did not restore the branch as stepping made it")
        steps.append(stepping(user, n))  # A's path again, one forward a token
        if s.node != leaf_a:
            sys.exit(f"{short}: stepping again did not come back to the same node")
        handlers.actions.goto(user, leaf_b)  # back to B for the next repeat (not timed)
    med = statistics.median
    return {"model": short, "tokens": n, "goto_ms": 1000 * med(j["total"] for j in jumps),
            "jump_ms": 1000 * med(j["jump"] for j in jumps),
            "snapshot_ms": 1000 * med(j["snapshot"] for j in jumps),
            "rebuilt_ms": 1000 * med(j["total"] for j in rebuilt),
            "stepping_ms": 1000 * med(steps), "payload_kb": jumps[-1]["payload_kb"], "nodes": len(s.tree)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=list(SOURCES), choices=list(SOURCES))
    ap.add_argument("--tokens", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    if not 1 <= args.tokens <= Limits().session_tokens or args.repeats < 1:
        print(f"--tokens must be in [1, {Limits().session_tokens}] and --repeats at least 1", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.tokens} tokens away, {args.repeats} "
          f"repeats, medians; load average {os.getloadavg()[0]:.1f}")
    results = [bench(m, args.tokens, args.repeats) for m in args.models]
    print(f"load average {os.getloadavg()[0]:.1f} at the end\n")
    print("| model | goto, server side (ms) | the jump | the snapshot | goto, rebuilt (ms) | "
          "stepping one by one (ms) | goto / stepping | rebuilt / stepping | payload (KB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['model']} | {r['goto_ms']:.0f} | {r['jump_ms']:.0f} | {r['snapshot_ms']:.0f} | "
              f"{r['rebuilt_ms']:.0f} | {r['stepping_ms']:.0f} | {r['goto_ms'] / r['stepping_ms']:.2f} | "
              f"{r['rebuilt_ms'] / r['stepping_ms']:.2f} | {r['payload_kb']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Watching a model learn and comparing two models: the three targets.

1. slider: the "training step" slider moved (one 'input' event per move, to another snapshot
   each time) until the page has redrawn that snapshot's chart (learn.js records each finished
   draw in DPLearn.state.drawn), on the default model with its snapshots preloaded, in headless
   Chromium. Alternating with it, the same page's main chart redrawn by a temperature move
   (DP.state.rendered), as the yardstick. Target: ≤ 150 ms median.
2. memory: the resident memory that preloading every snapshot of the default model adds, in
   fresh processes, alternating one that loads only the model with one that also preloads the
   snapshots (as the server does at start). Target: ≤ 100 MB.
3. compare: SmolLM2 exact against fast over a 200-token text (ui/actions.py's compare_models
   path: both forwards, KL both ways, agreement) against scoring the text once in exact mode
   (the scorer's score_text), alternating. Target: ≤ 2x.

    python -m benchmarks.bench_learn [--moves 60] [--rounds 3] [--parts slider memory compare]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from testkit.server import ROOT

DEFAULT = str(ROOT / "checkpoints" / "shakespeare")
PROMPT = "ROMEO:\nBut soft, what light through yonder window breaks? It is the east"

# Alternates: a snapshot-slider move (learn chart) and a temperature move (main chart).
MOVES_JS = """async ([moves]) => {
  const setter = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;
  const slider = document.querySelector('.dl-step');
  const temp = document.querySelector('#temperature input[type=range]');
  const n = Number(slider.max) + 1;
  const learn = [], main = [];
  for (let i = 0; i < 2 * moves; i++) {
    const mine = i % 2 === 0;
    const el = mine ? slider : temp;
    const log = mine ? DPLearn.state.drawn : DP.state.rendered;
    const before = log.length;
    // another snapshot every move (cur + 1 .. cur + n - 1), another temperature every move
    const next = (DPLearn.state.index + 1 + (Math.floor(i / 2) % (n - 1))) % n;
    setter.call(el, mine ? String(next) : String([0.6, 0.9, 1.2, 0.8][Math.floor(i / 2) % 4]));
    const t0 = performance.now();
    el.dispatchEvent(new Event('input', {bubbles: true}));
    while (log.length === before) {
      if (performance.now() - t0 > 10000) throw new Error('no redraw within 10 s');
      await new Promise(r => setTimeout(r, 0));
    }
    const at = mine ? log[before].at : log[before];
    (mine ? learn : main).push(at - t0);
    await new Promise(r => setTimeout(r, 20));
  }
  return {learn, main};
}"""

RSS_SCRIPT = """
import gc, json, sys, torch
torch.set_num_threads(1)
from ui.sessions import resident_bytes, trim_heap
from ui.state import ModelRegistry
from ui.variants import Variants
registry = ModelRegistry([sys.argv[1]])
registry.get(sys.argv[1])
variants = Variants(registry)
gc.collect(); trim_heap()
before = resident_bytes()
if sys.argv[2] == "snapshots":
    variants.snapshots(sys.argv[1])
gc.collect(); trim_heap()
print(json.dumps({"rss": resident_bytes(), "before": before, "held": variants.snapshot_bytes(sys.argv[1])}))
"""


def pct(xs, q):
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def bench_slider(moves: int) -> bool:
    from playwright.sync_api import sync_playwright

    import app
    from testkit import browser as B
    from testkit.page import Tab
    from testkit.server import launch

    demo = app.build_demo([DEFAULT])
    demo.actions.variants.snapshots(DEFAULT)  # preloaded, as the server does at start
    url = launch(demo)
    try:
        with sync_playwright() as p:
            browser = B.launch(p)
            tab = Tab(browser, url)
            tab.type_into(".dp-prompt", PROMPT)
            tab.open_section("Watch it learn, and compare two models")
            tab.wait("() => document.querySelector('.dl-tokens')?.textContent.includes('east') && "
                     "document.querySelector('#learner [data-drawn-step]')", timeout=60_000)
            tab.page.evaluate(MOVES_JS, [10])  # warm-up
            r = tab.page.evaluate(MOVES_JS, [moves])
            errors = tab.errors
            tab.close()
            browser.close()
    finally:
        demo.close()
    if errors:
        raise SystemExit(f"JavaScript errors on the page: {errors[:3]}")
    learn, main = r["learn"], r["main"]
    if len(learn) != moves or len(main) != moves:
        raise SystemExit(f"measured {len(learn)} and {len(main)} redraws of {moves}")
    med = statistics.median(learn)
    print(f"slider: training-step slider -> snapshot chart redrawn: median {med:.1f} ms, p95 "
          f"{pct(learn, 0.95):.1f} ms over {moves} moves; main chart (temperature), alternating: median "
          f"{statistics.median(main):.1f} ms; ratio {med / statistics.median(main):.2f} "
          f"(target ≤ 150 ms median: {'met' if med <= 150 else 'NOT met'})")
    return med <= 150


def bench_memory(rounds: int) -> bool:
    added, held = [], []
    for _ in range(rounds):
        out = {}
        for kind in ("model", "snapshots"):  # alternating, each a fresh process
            done = subprocess.run([sys.executable, "-c", RSS_SCRIPT, DEFAULT, kind], cwd=ROOT,
                                  capture_output=True, text=True, check=True)
            out[kind] = json.loads(done.stdout.strip().splitlines()[-1])
        added.append((out["snapshots"]["rss"] - out["model"]["rss"]) / 2**20)
        held.append(out["snapshots"]["held"] / 2**20)
    if not held[0]:
        raise SystemExit("no snapshot was loaded: nothing was measured")
    med = statistics.median(added)
    print(f"memory: preloading every snapshot adds {med:.1f} MB RSS (median of {rounds}; runs "
          f"{', '.join(f'{x:.1f}' for x in added)}); the weights hold {held[0]:.1f} MB "
          f"(target ≤ 100 MB: {'met' if med <= 100 else 'NOT met'})")
    return med <= 100


def bench_compare(rounds: int) -> bool:
    import torch

    from model import load_model
    from model.compare import compare_models
    from model.inspect import score_text
    from testkit.models import HAMLET

    torch.set_num_threads(1)
    exact, fast = load_model("smollm2"), load_model("smollm2", mode="fast")
    ids = exact.tokenizer.encode(HAMLET * 4)[:201]
    text = exact.tokenizer.decode(ids)
    score_s, compare_s, fast_s = [], [], []
    for _ in range(rounds + 1):  # the first round warms up
        t0 = time.perf_counter()
        score_text(exact.gpt, exact.tokenizer, text)
        t1 = time.perf_counter()
        r = compare_models(exact.gpt, exact.tokenizer, fast.gpt, fast.tokenizer, text, mode="tokens", ids=ids)
        t2 = time.perf_counter()
        score_text(fast.gpt, fast.tokenizer, text)
        t3 = time.perf_counter()
        score_s.append(t1 - t0)
        compare_s.append(t2 - t1)
        fast_s.append(t3 - t2)
    if len(r["positions"]) != 200:
        raise SystemExit(f"compared {len(r['positions'])} positions, not 200")
    s, c = statistics.median(score_s[1:]), statistics.median(compare_s[1:])
    print(f"compare: SmolLM2 exact vs fast over {len(r['positions'])} positions: median {c * 1000:.0f} ms; "
          f"scoring the text once (exact): {s * 1000:.0f} ms; ratio {c / s:.2f} (target ≤ 2: "
          f"{'met' if c / s <= 2 else 'NOT met'}); mean KL(exact‖fast) {r['mean_kl_pq']:.5f} nats, "
          f"top-1 agreement {r['agreement']:.1%}")
    f = statistics.median(fast_s[1:])
    print(f"  scoring it in fast mode: {f * 1000:.0f} ms; compare / (exact score + fast score) = {c / (s + f):.2f}")
    return c / s <= 2


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--moves", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--parts", nargs="+", default=["slider", "memory", "compare"],
                    choices=["slider", "memory", "compare"])
    args = ap.parse_args(argv)
    if args.moves < 1 or args.rounds < 1:
        ap.error("--moves and --rounds must be at least 1")
    met = True
    for part in args.parts:
        met &= {"slider": lambda: bench_slider(args.moves), "memory": lambda: bench_memory(args.rounds),
                "compare": lambda: bench_compare(args.rounds)}[part]()
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())

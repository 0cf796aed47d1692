"""Slider -> the main chart and every stage's card redrawn, in headless Chromium, with
llama.cpp's chain (`edskypmxt`) and six of its stages acting (repetition penalty, top-k,
top-p, min-p, XTC, temperature), on the default model's 4,096-token vocabulary and on
SmolLM2's 49,152.

One measure is a drag event on a slider (the temperature's, or top-p's, alternating) until the
page has finished the render it caused: the pipeline over the whole vocabulary, the chain's
cards (their mini-charts and captions), the stats, the chart painted on its canvas and the
bars' hit areas placed (the page records each finished render in DP.state.rendered). Each
piece (the pipeline, the cards, the chart) also times itself during the same moves, so the
table says where a frame goes.

    python -m benchmarks.bench_slider [--moves 60] [--models shakespeare smollm2]

Targets: ≤ 16 ms median and ≤ 33 ms p95 on the 4k vocabulary; ≤ 50 ms median on the 49k.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

from testkit import browser as B
from testkit.page import Tab
from testkit.server import ROOT, launch

MODELS = {"shakespeare": str(ROOT / "checkpoints" / "shakespeare"), "smollm2": "smollm2"}
QUERY = ("?samplers=edskypmxt&repetition_penalty=1.1&top_k=40&top_p=0.95&min_p=0.05"
         "&xtc_probability=0.5&xtc_threshold=0.1&temperature=0.8&seed=3")
PROMPTS = {"shakespeare": "ROMEO:\nO gentle", "smollm2": "The history of the printing press"}
TARGETS = {"shakespeare": (16.0, 33.0), "smollm2": (50.0, None)}

# Moves two sliders as a drag does (one 'input' event per move) and waits for each render.
DRAG_JS = """async ([moves]) => {
  const sliders = [["temperature", [0.6, 0.9, 1.2, 0.8]], ["top-p", [0.8, 0.9, 0.99, 0.95]]];
  const setter = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;
  const times = [];
  for (let i = 0; i < moves; i++) {
    const [id, values] = sliders[i % 2];
    const el = document.querySelector('#' + id + ' input[type=range]');
    const n = DP.state.rendered.length;
    // A new value every move (an unchanged one renders nothing, and there would be no end).
    let v = values[Math.floor(i / 2) % values.length];
    if (String(v) === el.value) v = values[(Math.floor(i / 2) + 1) % values.length];
    setter.call(el, String(v));
    const t0 = performance.now();
    el.dispatchEvent(new Event('input', {bubbles: true}));
    while (DP.state.rendered.length === n) {
      if (performance.now() - t0 > 10000) throw new Error('no render within 10 s of moving ' + id);
      await new Promise(r => setTimeout(r, 0));
    }
    times.push(DP.state.rendered[n] - t0);
    await new Promise(r => setTimeout(r, 20));  // the next drag event comes a little later
  }
  return times;
}"""

# Where a render's time goes, timed during the drag itself: each part is wrapped so that it
# records its own duration. The chart's part (DPChart.draw) includes its pipeline call, which
# is also counted under 'pipeline'.
PARTS_JS = """() => {
  window.__parts = {};
  const add = (k, v) => { (window.__parts[k] = window.__parts[k] || []).push(v); };
  const wrap = (obj, name, key) => { const f = obj[name]; obj[name] = function (...a) {
    const t0 = performance.now(); const r = f.apply(this, a); add(key, performance.now() - t0); return r; }; };
  wrap(DPPipeline, 'transform', 'pipeline');
  wrap(DP.state.chain, 'update', 'cards: settings');
  wrap(DP.state.chain, 'show', 'cards: what each stage did');
  wrap(DPChart, 'draw', 'chart: pipeline + canvas');
  wrap(DPChart, 'statsHtml', 'chart: stats');
  wrap(DPChart, 'placeHits', 'chart: hit areas');
}"""
PARTS_READ = "() => ({parts: window.__parts, V: DP.state.live.V, active: DPPipeline.transform(DP.state.live, " \
    "DP.state.controls.get()).stages.filter(s => s.active).map(s => s.name)})"


def pct(times: list[float], q: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def measure(browser, url: str, name: str, moves: int) -> dict:
    from urllib.parse import quote

    tab = Tab(browser, url, query=QUERY + "&prompt=" + quote(PROMPTS[name]))
    try:
        for n in range(1, 6):  # a little text, so the penalties have a context
            tab.click(".dp-step")
            tab.wait_steps(n)
        tab.page.evaluate(DRAG_JS, [10])  # warm-up: the JIT, the first draws
        tab.page.evaluate(PARTS_JS)
        times = tab.page.evaluate(DRAG_JS, [moves])
        parts = tab.page.evaluate(PARTS_READ)
        if tab.errors:
            raise SystemExit(f"JavaScript errors on the page: {tab.errors[:3]}")
    finally:
        tab.close()
    if len(times) != moves:
        raise SystemExit(f"{name}: {len(times)} renders measured of {moves}")
    return {"times": times, "parts": parts}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--moves", type=int, default=60)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    args = parser.parse_args(argv)
    if args.moves < 1:
        parser.error("--moves must be at least 1")
    from playwright.sync_api import sync_playwright

    import app

    met = True
    with sync_playwright() as p:
        browser = B.launch(p)
        for name in args.models:
            demo = app.build_demo([MODELS[name]])
            url = launch(demo)
            try:
                r = measure(browser, url, name, args.moves)
            finally:
                demo.close()
            t, parts = r["times"], r["parts"]
            med, p95 = statistics.median(t), pct(t, 0.95)
            want_med, want_p95 = TARGETS[name]
            ok = med <= want_med and (want_p95 is None or p95 <= want_p95)
            met &= ok
            print(f"{name}: V = {parts['V']:,}, active stages {parts['active']} ({len(parts['active'])})")
            print(f"  slider -> chart and cards: median {med:.1f} ms, p95 {p95:.1f} ms over {len(t)} moves "
                  f"(target ≤ {want_med:g} ms median" + (f", ≤ {want_p95:g} ms p95" if want_p95 else "") +
                  f": {'met' if ok else 'NOT met'})")
            for part, times in parts["parts"].items():
                print(f"  {part:28s} median {statistics.median(times):6.2f} ms ({len(times)} calls)")
        browser.close()
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())

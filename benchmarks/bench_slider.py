"""Slider -> the main chart and every stage's card redrawn, in headless Chromium, with
llama.cpp's chain (`edskypmxt`) and six of its stages acting (repetition penalty, top-k,
top-p, min-p, XTC, temperature), on the default model's 4,096-token vocabulary and on
SmolLM2's 49,152.

One measure is a drag event on a slider (the temperature's, or top-p's, alternating) until the
page has finished the render it caused: the pipeline over the whole vocabulary, the chain's
cards (their mini-charts and captions), the stats, and Plotly's redraw of the chart (the page
records each finished render in DP.state.rendered). The pieces are then timed alone in the
same page (the pipeline; the cards; Plotly), so the table says where a frame goes.

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
    setter.call(el, String(values[Math.floor(i / 2) % values.length]));
    const t0 = performance.now();
    el.dispatchEvent(new Event('input', {bubbles: true}));
    while (DP.state.rendered.length === n) await new Promise(r => setTimeout(r, 0));
    times.push(DP.state.rendered[n] - t0);
    await new Promise(r => setTimeout(r, 20));  // the next drag event comes a little later
  }
  return times;
}"""

# The parts alone, on the step on the chart: the pipeline, the cards, and Plotly's redraw.
PARTS_JS = """async ([repeats]) => {
  const P = DP.state.live, settings = DP.state.controls.get();
  const time = (f) => { const t0 = performance.now(); f(); return performance.now() - t0; };
  const pipeline = [], cards = [], plotly = [];
  let R = null;
  for (let i = 0; i < repeats; i++) pipeline.push(time(() => { R = DPPipeline.transform(P, settings); }));
  const labelOf = (id) => String(id);
  for (let i = 0; i < repeats; i++) cards.push(time(() => DP.state.chain.show(R, {labelOf, mu: []})));
  const div = document.querySelector('.dp-main');
  for (let i = 0; i < repeats; i++) {
    const t0 = performance.now();
    await Plotly.react(div, div.data, div.layout);
    plotly.push(performance.now() - t0);
  }
  const active = R.stages.filter(s => s.active).map(s => s.name);
  return {pipeline, cards, plotly, active, V: P.V};
}"""


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
        tab.page.evaluate(DRAG_JS, [10])  # warm-up: the JIT, Plotly's first draws
        times = tab.page.evaluate(DRAG_JS, [moves])
        parts = tab.page.evaluate(PARTS_JS, [max(10, moves // 3)])
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
            for part in ("pipeline", "cards", "plotly"):
                print(f"  {part:9s} alone: median {statistics.median(parts[part]):.2f} ms")
        browser.close()
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())

"""Playground latency in headless Chromium, measured side by side in one run (the machine's
cores are shared, so only numbers taken together compare):

- slider -> chart: a control's 'input' event, as a drag makes it, until the chart has been
  painted again (the page records each finished render);
- Step -> chart and text; a bare Gradio round trip (a one-button app) for scale;
- Stop: a real mouse click on Stop halfway through a Generate, until no more tokens appear,
  counted from the moment the click reached the browser (its event's timeStamp), so a main
  thread too busy to notice the click counts too;
- in-page Generate: five 200-token Generates in a row on one session, against
  DecodingSession.generate doing the same in this process, alternating;
- the longest main-thread task (PerformanceObserver 'longtask') during those Generates.

    python -m benchmarks.bench_ui                 # prints the table
    python -m benchmarks.bench_ui --write         # ... and updates BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import time
from pathlib import Path

from testkit import browser as B
from testkit.page import Tab
from testkit.server import ROOT, launch

SECTION = "## Playground latency (Chromium)"
MODEL = ROOT / "checkpoints" / "shakespeare"

SLIDER_JS = """async ([moves]) => {
  const controls = [["temperature", [0.4, 0.9, 1.4, 0.7]], ["top-p", [0.5, 0.8, 0.95, 0.7]],
                    ["top-k", [5, 40, 12, 80]], ["min-p", [0.02, 0.1, 0.05, 0.2]]];
  const setter = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;
  const times = [];
  for (let i = 0; i < moves; i++) {
    const [id, values] = controls[i % controls.length];
    const el = document.querySelector('#' + id + ' input[type=range]');
    const n = DP.state.rendered.length;
    setter.call(el, String(values[Math.floor(i / controls.length) % values.length]));
    const t0 = performance.now();
    el.dispatchEvent(new Event('input', {bubbles: true}));
    while (DP.state.rendered.length === n) await new Promise(r => setTimeout(r, 0));
    times.push(DP.state.rendered[n] - t0);
    await new Promise(r => setTimeout(r, 30));  // let the page settle, as between drag events
  }
  for (const [id] of controls) document.querySelector('#' + id + ' .dp-ctl-reset').click();
  return times;
}"""

STEP_JS = """async ([count]) => {
  const times = [];
  const chart = () => document.querySelector('.dp-main');
  for (let i = 0; i < count; i++) {
    const want = chart().drawn.meta.step + 1;
    const done = () => chart().drawn.meta.step === want && !DP.state.pending &&
      document.querySelectorAll('.dp-text .dp-tok').length === want;
    const t0 = performance.now();
    const finished = new Promise(resolve => {
      const obs = new MutationObserver(() => { if (done()) { obs.disconnect(); resolve(performance.now()); } });
      obs.observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true});
    });
    document.querySelector('.dp-step').click();
    times.push((await finished) - t0);
    await new Promise(r => setTimeout(r, 50));
  }
  return times;
}"""

BARE_JS = """async ([count]) => {
  const times = [];
  const box = () => document.querySelector('#reply textarea');
  for (let i = 0; i < count; i++) {
    const before = box().value;
    const t0 = performance.now();
    const finished = new Promise(resolve => {
      const check = () => box().value !== before;
      (function poll() { if (check()) resolve(performance.now()); else setTimeout(poll, 1); })();
    });
    document.querySelector('#ping').click();
    times.push((await finished) - t0);
    await new Promise(r => setTimeout(r, 50));
  }
  return times;
}"""

# Watches the text box: the time of every token's arrival, and every long task.
WATCH_JS = """() => {
  window.__tokens = []; window.__long = [];
  new MutationObserver(() => window.__tokens.push([performance.now(),
    document.querySelectorAll('.dp-text .dp-tok').length])).observe(
    document.querySelector('.dp-text'), {childList: true});
  new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__long.push([e.startTime, e.duration]); })
    .observe({type: 'longtask'});
  document.addEventListener('click', (ev) => { if (ev.target.closest('.dp-stop'))
    window.__stopAt = ev.timeStamp; if (ev.target.closest('.dp-generate')) window.__genAt = ev.timeStamp; }, true);
}"""


def bare_demo():
    import gradio as gr

    counter = {"n": 0}

    def ping(_):
        counter["n"] += 1
        return f"pong {counter['n']}"

    with gr.Blocks() as demo:
        reply = gr.Textbox(elem_id="reply")
        gr.Button("ping", elem_id="ping").click(ping, reply, reply, show_progress="hidden")
    demo.queue()
    return demo


def pct(times: list[float], q: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def set_n(tab: Tab, n: int) -> None:
    box = tab.page.locator(".dp-n")
    box.click()
    tab.page.keyboard.press("Control+A")
    tab.page.keyboard.type(str(n))
    tab.page.keyboard.press("Enter")


def stop_latency(tab: Tab, runs: int) -> list[float]:
    """Generate, click Stop after 0.3-1.5 s; the time from the click reaching the browser to
    the last token drawn after it (0 when none was), in ms."""
    out = []
    set_n(tab, 1000)
    for i in range(runs):
        tab.type_into(".dp-prompt", f"KING HENRY:\n{i}")
        tab.ready()
        tab.page.evaluate("() => { window.__tokens = []; window.__stopAt = null; }")
        tab.click(".dp-generate")
        time.sleep(0.3 + 1.2 * (i % 5) / 4)
        tab.click(".dp-stop")
        tab.ready()
        time.sleep(0.4)
        at = tab.page.evaluate("() => window.__stopAt")
        after = [t for t, _ in tab.page.evaluate("() => window.__tokens") if t > at]
        out.append(max(after) - at if after else 0.0)
        if tab.meta()["steps"] != tab.token_count():
            raise RuntimeError("after Stop the chart and the text disagree")
    return out


def generate_blocks(tab: Tab, gpt, tokenizer, blocks: int) -> tuple[list[float], list[float], list, list]:
    """Five 200-token Generates in the page and five in DecodingSession, alternating; the
    page's time from the click to the final snapshot. Long tasks are split into those while
    tokens stream (from the click to the last token drawn: what would delay a Stop) and those
    after it (the final chart, drawn once the Generate has ended)."""
    from model.sampling import SamplingSettings
    from model.session import DecodingSession

    tab.type_into(".dp-prompt", "ROMEO:")
    tab.ready()
    set_n(tab, 200)
    engine = DecodingSession(gpt, tokenizer, seed=0)
    engine.reset("ROMEO:")
    page_s, engine_s, streaming, after = [], [], [], []
    for _ in range(blocks):
        before = tab.token_count()
        tab.page.evaluate("() => { window.__long = []; window.__tokens = []; }")
        t0 = time.perf_counter()
        tab.click(".dp-generate")
        tab.page.wait_for_function(
            "n => document.querySelectorAll('.dp-text .dp-tok').length >= n + 200 && "
            "!document.querySelector('.dp-app.dp-generating') && !DP.state.pending && !DP.state.drawing",
            arg=before, timeout=300_000, polling=50)
        page_s.append(time.perf_counter() - t0)
        start, longs, tokens = tab.page.evaluate("() => [window.__genAt, window.__long, window.__tokens]")
        last = max((t for t, n in tokens if n >= before + 200), default=start)
        streaming += [d for s, d in longs if start <= s <= last]
        after += [d for s, d in longs if s > last]
        t0 = time.perf_counter()
        for _ in engine.generate(200, SamplingSettings()):
            pass
        engine_s.append(time.perf_counter() - t0)
    return page_s, engine_s, streaming, after


def run(moves: int, steps: int, stops: int, blocks: int) -> dict:
    from playwright.sync_api import sync_playwright

    import app
    from model import load_model
    from ui.actions import Limits

    playground = app.build_demo([str(MODEL)], limits=Limits(generate_tokens=1000, session_tokens=5000))
    url = launch(playground)
    bare = bare_demo()
    bare_url = launch(bare)
    gpt, tokenizer, _ = load_model(MODEL)
    results = {}
    try:
        with sync_playwright() as pw:
            browser = B.launch(pw)
            tab = Tab(browser, url, viewport={"width": 1366, "height": 900})
            bare_page = browser.new_page()
            bare_page.goto(bare_url)
            bare_page.wait_for_selector("#ping", timeout=90_000)
            tab.type_into(".dp-prompt", "ROMEO:\n")
            tab.ready()
            tab.page.evaluate(SLIDER_JS, [4])  # warm-up: first renders compile and connect
            tab.page.evaluate(STEP_JS, [2])
            bare_page.evaluate(BARE_JS, [2])
            results = {"slider": [], "step": [], "bare": []}
            rounds = 5  # small alternating blocks: both sides see the same machine load
            for _ in range(rounds):
                results["slider"] += tab.page.evaluate(SLIDER_JS, [moves // rounds])
                results["step"] += tab.page.evaluate(STEP_JS, [steps // rounds])
                results["bare"] += bare_page.evaluate(BARE_JS, [steps // rounds])
            tab.page.evaluate(WATCH_JS)
            results["stop"] = stop_latency(tab, stops)
            results["page_gen"], results["engine_gen"], results["long"], results["long_after"] = \
                generate_blocks(tab, gpt, tokenizer, blocks)
            vocab = gpt.config.vocab_size
            browser.close()
    finally:
        playground.close()
        bare.close()
    return {"results": results, "vocab": vocab, "load": os.getloadavg()[0]}


def table(out: dict, command: str) -> str:
    r = out["results"]
    lines = [SECTION, "",
             f"Measured {time.strftime('%Y-%m-%d')} on this machine ({os.cpu_count()} cores, "
             f"{platform.machine()}), headless Chromium, model checkpoints/shakespeare (vocabulary "
             f"{out['vocab']:,}); 1-minute load average {out['load']:.1f} at the end of the run (the "
             "cores are shared). Times from the page's performance.now() unless said.", "",
             "| what | n | median (ms) | p95 (ms) | target |", "| --- | --- | --- | --- | --- |"]
    for name, key, target in [("slider input → chart redrawn (no server)", "slider", "≤ 50 / ≤ 100"),
                              ("Step click → chart and text updated", "step", "≤ 150 median"),
                              ("bare Gradio round trip (button → textbox)", "bare", "for scale"),
                              ("Stop: click reaches the browser → last token drawn", "stop", "≤ 100 p95")]:
        t = r[key]
        lines.append(f"| {name} | {len(t)} | {statistics.median(t):.1f} | {pct(t, 0.95):.1f} | {target} |")
    page, engine = r["page_gen"], r["engine_gen"]
    ratios = [p / e for p, e in zip(page, engine)]
    lines += ["", "In-page Generate, five 200-token blocks in a row on one session, against "
              "`DecodingSession.generate` on the same model in the same process, alternating "
              "(seconds, wall clock from the click to the final chart):", "",
              "| block | 1 | 2 | 3 | 4 | 5 |", "| --- | --- | --- | --- | --- | --- |",
              "| page | " + " | ".join(f"{x:.2f}" for x in page) + " |",
              "| engine | " + " | ".join(f"{x:.2f}" for x in engine) + " |",
              "| page / engine | " + " | ".join(f"{x:.2f}" for x in ratios) + " |", "",
              f"Median page / engine {statistics.median(ratios):.2f} (target ≤ 1.5); fifth block / first "
              f"{page[-1] / page[0]:.2f} (target ≤ 1.2). Main-thread tasks over 50 ms while the "
              f"tokens streamed (from the click to the last token drawn): {len(r['long'])}, the longest "
              f"{max(r['long'], default=0):.0f} ms (target: none). After the last token, when each "
              f"Generate had ended, the final chart is drawn: {len(r['long_after'])} long task"
              f"{'' if len(r['long_after']) == 1 else 's'}, the "
              f"longest {max(r['long_after'], default=0):.0f} ms (drawing a new step's chart).", "",
              f"Command: `{command}`", ""]
    return "\n".join(lines)


def write_section(text: str, path: Path) -> None:
    """Replace our section of BENCHMARKS.md (others own the rest of the file)."""
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    new = pattern.sub(lambda m: text, old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text
    path.write_text(new)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--moves", type=int, default=100, help="slider moves to time")
    parser.add_argument("--steps", type=int, default=60, help="Step clicks and bare round trips")
    parser.add_argument("--stops", type=int, default=20, help="Generates stopped halfway")
    parser.add_argument("--blocks", type=int, default=5, help="200-token Generates in a row")
    parser.add_argument("--write", action="store_true", help="update the section in BENCHMARKS.md")
    args = parser.parse_args(argv)
    B.require_chromium()
    out = run(args.moves, args.steps, args.stops, args.blocks)
    if not out["results"].get("stop") or len(out["results"]["page_gen"]) != args.blocks:
        raise SystemExit("the benchmark did not run to the end: no numbers")
    command = "python -m benchmarks.bench_ui --write"
    text = table(out, command)
    print(text)
    if args.write:
        write_section(text, ROOT / "BENCHMARKS.md")


if __name__ == "__main__":
    main()

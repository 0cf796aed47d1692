"""The playground in a real browser: Debian's headless Chromium driven by Playwright.

The app runs in this process on a free port with a tiny random checkpoint. Checked: the page
loads and draws the chart, every slider reshapes it without the server, the browser's
pipeline equals model/sampling.py's on many random settings, Step / clicking a bar / Undo /
Generate / inspecting a past token work, and the page never requests anything outside
127.0.0.1. One test saves docs/screenshot.png for the README.
"""

from __future__ import annotations

import math
import os
import random
import socket
import sys
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pytest
import torch

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

import app  # noqa: E402
from model.sampling import SamplingSettings, entropy_bits, pick_token, run_pipeline  # noqa: E402
from test_app import make_tiny_checkpoint  # noqa: E402

CHART = "#chart .dp-main"
META = f"() => document.querySelector('{CHART}').layout.meta"
BARS = f"() => {{ const d = document.querySelector('{CHART}').data; return [d[0].x, d[0].y, d[1].y]; }}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(model_paths) -> tuple:
    demo = app.build_demo(model_paths)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, ssr_mode=False,
                quiet=True)
    deadline = time.monotonic() + 90  # startup can be slow on a busy 2-core machine
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        demo.close()
        pytest.fail(f"the app did not open port {port} within 90 s")
    return demo, f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    demo, url = launch([str(make_tiny_checkpoint(tmp_path_factory.mktemp("tiny")))])
    yield url
    demo.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Page:
    """A fresh tab (so a fresh server session) that records every request it makes."""

    def __init__(self, browser, url):
        self.requests, self.errors = [], []
        self.page = browser.new_page(viewport={"width": 1400, "height": 1100})
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(url)
        self.wait(f"() => {{ const d = document.querySelector('{CHART}'); return d && d.layout && d.layout.meta; }}")
        # The first load also sets every control; let Gradio finish applying those values
        # before a test moves one (a person does not drag within milliseconds of arriving).
        self.page.wait_for_timeout(500)

    def wait(self, js, timeout=30_000, arg=None):
        self.page.wait_for_function(js, arg=arg, timeout=timeout)

    def meta(self):
        return self.page.evaluate(META)

    def bars(self):
        return self.page.evaluate(BARS)

    def wait_step(self, n):
        self.wait(f"n => {{ const m = document.querySelector('{CHART}').layout.meta; "
                  "return m.step === n && m.mode === 'live'; }", arg=n)

    def slide(self, elem_id, fraction):
        """Click the slider's track at `fraction` of its width, as a person would."""
        track = self.page.locator(f"#{elem_id} input[type=range]")
        box = track.bounding_box()
        track.click(position={"x": box["width"] * fraction, "y": box["height"] / 2})

    def set_slider(self, elem_id, value):
        """Set an exact value the way a drag does: the input element's value + input events."""
        self.page.evaluate("""([id, v]) => {
            const el = document.querySelector('#' + id + ' input[type=range]');
            Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set.call(el, String(v));
            el.dispatchEvent(new Event('input', {bubbles: true}));
            el.dispatchEvent(new Event('change', {bubbles: true}));
        }""", [elem_id, value])


@pytest.fixture
def tab(browser, server):
    t = Page(browser, server + "?prompt=To%20be%2C%20or%20not%20to%20be")
    yield t
    outside = [u for u in t.requests if not u.startswith("http://127.0.0.1:")]
    t.page.close()
    assert not outside, f"the page requested addresses outside 127.0.0.1: {outside[:5]}"
    assert not t.errors, f"JavaScript errors on the page: {t.errors[:3]}"


def test_page_loads_with_every_control_and_the_chart(tab):
    for elem_id in ("prompt", "temperature", "top-k", "top-p", "min-p", "seed", "step", "generate",
                    "undo", "reset", "chart", "output"):
        assert tab.page.locator(f"#{elem_id}").count() == 1, elem_id
    labels, final, raw = tab.bars()
    assert len(labels) == 26 and labels[-1].startswith("rest (")
    assert math.isclose(sum(final), 1.0, rel_tol=1e-9) and math.isclose(sum(raw), 1.0, rel_tol=1e-9)
    meta = tab.meta()
    assert meta["step"] == 0 and meta["settings"]["temperature"] == 1
    assert "To be, or not to be" in tab.page.inner_text("#output")
    assert tab.page.inner_text("#prompt-tokens").count("␣") >= 4  # spaces shown as ␣


def test_each_slider_reshapes_the_chart_without_the_server(tab):
    posts = len([u for u in tab.requests if "/queue/join" in u])
    for elem_id, name, fraction in [("temperature", "temperature", 0.2), ("top-k", "top_k", 0.1),
                                    ("top-p", "top_p", 0.4), ("min-p", "min_p", 0.3),
                                    ("typical-p", "typical_p", 0.3),
                                    ("repetition-penalty", "repetition_penalty", 0.9)]:
        before = tab.bars()
        tab.slide(elem_id, fraction)
        tab.wait(f"() => document.querySelector('{CHART}').layout.meta.settings.{name} !== "
                 f"{app.DEFAULTS[name]}")
        assert tab.bars() != before, f"moving {elem_id} did not change the bars"
        tab.page.click(f"#{elem_id} .reset-button")  # back to the default before the next one
        tab.wait(f"() => document.querySelector('{CHART}').layout.meta.settings.{name} === "
                 f"{app.DEFAULTS[name]}")
    assert len([u for u in tab.requests if "/queue/join" in u]) == posts  # no server round trip


def random_settings(rng: random.Random) -> dict:
    pick = lambda *options: rng.choice(options)  # noqa: E731
    return {
        "temperature": pick(0.0, 1.0, rng.uniform(0.05, 2.0), rng.uniform(0.05, 2.0)),
        "top_k": pick(0, 0, 1, rng.randint(1, 60)),
        "top_p": pick(1.0, rng.random(), rng.random(), 0.0),
        "min_p": pick(0.0, 0.0, rng.random() * 0.5),
        "typical_p": pick(1.0, 1.0, rng.random()),
        "repetition_penalty": pick(1.0, rng.uniform(0.5, 2.0)),
        "presence_penalty": pick(0.0, 0.0, rng.uniform(-2, 2)),
        "frequency_penalty": pick(0.0, 0.0, rng.uniform(-2, 2)),
        "no_repeat_ngram_size": pick(0, 0, 0, 2, 3),
        "temperature_last": rng.random() < 0.5,
    }


def test_browser_pipeline_equals_run_pipeline(tab):
    rng = random.Random(1234)
    settings = [random_settings(rng) for _ in range(200)]
    current = tab.page.evaluate("() => DP.current()")
    results = tab.page.evaluate("list => DP.transformMany(list)", settings)
    logits = torch.tensor(current["logits"], dtype=torch.float64)
    for s, got in zip(settings, results):
        pipe = run_pipeline(logits, SamplingSettings.from_dict(s), current["context"])
        want = pipe.probs
        probs = torch.tensor(got["probs"], dtype=torch.float64)
        assert torch.equal(want > 0, probs > 0), f"kept sets differ for {s}"
        assert torch.allclose(probs, want, rtol=1e-9, atol=1e-15), f"probabilities differ for {s}"
        expected = int(torch.argmax(want)) if s["temperature"] == 0 else pick_token(want, current["u"])
        assert got["pick"] == expected, f"the draw lands elsewhere for {s}"
        assert math.isclose(got["entropy"], entropy_bits(want), rel_tol=1e-9, abs_tol=1e-12)


def test_step_pick_undo_and_generate(tab):
    tab.set_slider("temperature", 0.8)
    tab.set_slider("top-k", 30)
    predicted = tab.meta()["next_token"]["id"]
    tab.page.click("#step")
    tab.wait_step(1)
    text = tab.page.inner_text("#output")
    record_label = tab.page.evaluate("() => JSON.parse(document.querySelector('#output .dp-tok').dataset.info)")
    assert record_label["token"] == predicted  # the chart's u landed where Step picked

    meta = tab.meta()
    bar_id = meta["ids"][3]
    tab.page.locator(f"{CHART} .bars .point").nth(3).click(force=True)  # trace 0 (final) comes first
    tab.wait_step(2)
    info = tab.page.evaluate("() => JSON.parse([...document.querySelectorAll('#output .dp-tok')].pop().dataset.info)")
    assert info["token"] == bar_id and info["how"] == "picked"

    tab.page.click("#undo")
    tab.wait_step(1)
    assert tab.page.inner_text("#output") == text

    tab.page.fill("#n-tokens input", "5")
    tab.page.click("#generate")
    tab.wait("() => { const m = document.querySelector('#chart .dp-main').layout.meta; return m.step >= 6 "
             "|| document.querySelector('#output .dp-eot'); }")
    assert len(tab.page.locator("#output .dp-tok").all()) >= 2


def test_clicking_a_past_token_shows_its_distribution_and_rewinds(tab):
    for n in (1, 2, 3):
        tab.page.click("#step")
        tab.wait_step(n)
    tab.page.hover("#output .dp-tok >> nth=0")
    tab.wait("() => document.querySelector('.dp-tip') && document.querySelector('.dp-tip').style.display === 'block'")
    assert "alternatives" in tab.page.inner_text(".dp-tip")
    tab.page.click("#output .dp-tok >> nth=1")
    tab.wait(f"() => document.querySelector('{CHART}').layout.meta.mode === 'inspect'")
    assert "was drawn from this distribution" in tab.page.inner_text("#chart .dp-banner")
    tab.page.click("#chart .dp-rewind")
    tab.wait_step(1)
    assert len(tab.page.locator("#output .dp-tok").all()) == 1


def test_presets_and_shared_links_set_the_sliders(browser, server):
    t = Page(browser, server + "?prompt=To%20be&temperature=0.5&top_p=0.8&seed=4")
    try:
        meta = t.meta()
        assert meta["settings"]["temperature"] == 0.5 and meta["settings"]["top_p"] == 0.8
        t.page.click("#preset-greedy")
        t.wait(f"() => document.querySelector('{CHART}').layout.meta.settings.temperature === 0")
        assert t.meta()["kept"] == 1
        t.wait("() => location.search.includes('temperature=0')")  # the URL follows the sliders
    finally:
        t.page.close()


def test_compare_draws_a_second_chart_on_the_same_logits_and_u(tab):
    tab.set_slider("temperature", 1.3)
    tab.page.check("#chart .dp-compare-on")  # compared with the Greedy preset by default
    plots = "#chart .js-plotly-plot"
    tab.wait(f"() => document.querySelectorAll('{plots}').length === 2")
    main, other = tab.page.evaluate(f"() => [...document.querySelectorAll('{plots}')].map(d => d.layout.meta)")
    assert main["settings"]["temperature"] == 1.3 and other["settings"]["temperature"] == 0
    assert other["kept"] == 1 and main["step"] == other["step"]
    assert "T = 0 (greedy)" in tab.page.inner_text("#chart .dp-compare-stats")


def test_screenshot_for_the_readme(browser, tmp_path):
    """docs/screenshot.png: the trained Shakespeare model when it is there, else a tiny one."""
    real = ROOT / "checkpoints" / "shakespeare"
    model = str(real) if (real / "config.json").is_file() else str(make_tiny_checkpoint(tmp_path / "m"))
    demo, url = launch([model])
    try:
        t = Page(browser, url + "?prompt=ROMEO%3A%0AO%20gentle&temperature=0.9&top_p=0.9&seed=7")
        t.page.set_viewport_size({"width": 1360, "height": 1000})
        for n in range(1, 9):
            t.page.click("#step")
            t.wait_step(n)
        t.page.hover("#output .dp-tok >> nth=2")
        time.sleep(0.3)
        out = ROOT / "docs" / "screenshot.png"
        out.parent.mkdir(exist_ok=True)
        t.page.screenshot(path=str(out), clip={"x": 0, "y": 0, "width": 1360, "height": 1000})
        assert out.stat().st_size > 20_000
        t.page.close()
    finally:
        demo.close()

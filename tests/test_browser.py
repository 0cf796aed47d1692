"""The playground in a real browser: Debian's Chromium, driven by Playwright with the gestures a
person uses (mouse clicks where things are drawn, the keyboard), against an app running in
this process on a tiny random checkpoint.

Checked: the page loads and draws the chart; every control reshapes it without the server; the
page's pipeline equals model/sampling.py's on many random settings; Step, picking a bar, Undo
and Generate; a past token's distribution and Rewind; presets, shared links and compare; the
keyboard alone; and the page never requests anything outside 127.0.0.1.
"""

from __future__ import annotations

import math
import random

import pytest
import torch

from model.sampling import SETTINGS, SamplingSettings, entropy_bits, pick_token, run_pipeline
from testkit.page import Tab

pytestmark = pytest.mark.browser


def test_page_loads_with_every_control_and_the_chart(tab):
    for name in SETTINGS:
        assert tab.page.locator(f"#{name.replace('_', '-')}").count() == 1, name
    for sel in (".dp-prompt", ".dp-step", ".dp-generate", ".dp-stop", ".dp-undo", ".dp-reset",
                ".dp-main", ".dp-text", "#dp-seed", ".dp-model"):
        assert tab.page.locator(sel).count() == 1, sel
    data = tab.page.evaluate("() => { const b = document.querySelector('.dp-main').drawn.bars; "
                             "return [b.map(x => x.label), b.map(x => x.final), b.map(x => x.raw)]; }")
    labels, final, raw = data
    assert labels[-1].startswith("rest (")
    assert math.isclose(sum(final), 1.0, rel_tol=1e-9) and math.isclose(sum(raw), 1.0, rel_tol=1e-9)
    meta = tab.meta()
    assert meta["step"] == 0 and meta["settings"]["temperature"] == 1
    assert "⟨start of text⟩" in tab.text()
    # every bar, the rest included, has a hit area the height of its column
    hits = tab.page.locator(".dp-hits .dp-hit")
    assert hits.count() == len(labels)
    plot = tab.box(".dp-main")
    assert all(hits.nth(i).bounding_box()["height"] > 0.6 * plot["height"] for i in range(hits.count()))


def test_each_control_reshapes_the_chart_without_the_server(tab):
    tab.type_into(".dp-prompt", "To be, or not to be")
    tab.ready()
    tab.wait("() => document.querySelector('.dp-main').drawn.meta.position > 3")
    joins = len([u for u in tab.requests if "/queue/join" in u])
    for name in ("temperature", "top_k", "top_p", "min_p", "typical_p", "repetition_penalty"):
        elem = name.replace("_", "-")
        before = tab.page.evaluate("() => document.querySelector('.dp-main').drawn.bars.map(b => b.final)")
        track = tab.page.locator(f"#{elem} input[type=range]")
        track.scroll_into_view_if_needed()  # as a person scrolls to the slider
        box = track.bounding_box()
        tab.page.mouse.click(box["x"] + box["width"] * 0.3, box["y"] + box["height"] / 2)
        tab.wait(f"() => document.querySelector('.dp-main').drawn.meta.settings.{name} !== "
                 f"{SETTINGS[name].default}")
        after = tab.page.evaluate("() => document.querySelector('.dp-main').drawn.bars.map(b => b.final)")
        assert after != before, f"moving {name} did not change the bars"
        tab.click(f"#{elem} .dp-ctl-reset")  # back to the default before the next one
        tab.wait(f"() => document.querySelector('.dp-main').drawn.meta.settings.{name} === "
                 f"{SETTINGS[name].default}")
    assert len([u for u in tab.requests if "/queue/join" in u]) == joins  # no server round trip


def random_settings(rng: random.Random) -> dict:
    pick = rng.choice
    return {
        "temperature": pick([0.0, 1.0, rng.uniform(0.05, 2.0), rng.uniform(0.05, 2.0)]),
        "top_k": pick([0, 0, 1, rng.randint(1, 60)]),
        "top_p": pick([1.0, rng.random(), rng.random(), 0.0]),
        "min_p": pick([0.0, 0.0, rng.random() * 0.5]),
        "typical_p": pick([1.0, 1.0, rng.random()]),
        "repetition_penalty": pick([1.0, rng.uniform(0.5, 2.0)]),
        "presence_penalty": pick([0.0, 0.0, rng.uniform(-2, 2)]),
        "frequency_penalty": pick([0.0, 0.0, rng.uniform(-2, 2)]),
        "no_repeat_ngram_size": pick([0, 0, 0, 2, 3]),
        "temperature_last": rng.random() < 0.5,
    }


def test_browser_pipeline_equals_run_pipeline(tab):
    tab.type_into(".dp-prompt", "To be, or not to be, to be")
    tab.ready()
    tab.wait("() => document.querySelector('.dp-main').drawn.meta.position > 5")
    rng = random.Random(1234)
    cases = [random_settings(rng) for _ in range(200)]
    got = tab.page.evaluate("""list => { const P = DP.state.live; return { logits: Array.from(P.raw),
        context: P.context, u: P.u, results: list.map((s) => { const R = DPPipeline.transform(P, s);
        const d = R.nKept ? DPPipeline.pick(R, P.u) : null;
        return { probs: Array.from(R.probs), pick: d ? d.token : null, entropy: R.entropy }; }) }; }""", cases)
    logits = torch.tensor(got["logits"], dtype=torch.float64)
    for s, r in zip(cases, got["results"]):
        pipe = run_pipeline(logits, SamplingSettings.from_dict(s), got["context"])
        probs = torch.tensor(r["probs"], dtype=torch.float64)
        assert torch.equal(pipe.probs > 0, probs > 0), f"kept sets differ for {s}"
        assert torch.allclose(probs, pipe.probs, rtol=1e-9, atol=1e-15), f"probabilities differ for {s}"
        expected = int(torch.argmax(pipe.probs)) if s["temperature"] == 0 else pick_token(pipe.probs, got["u"])
        assert r["pick"] == expected, f"the draw lands elsewhere for {s}"
        assert math.isclose(r["entropy"], entropy_bits(pipe.probs), rel_tol=1e-9, abs_tol=1e-12)


def test_step_pick_undo_and_generate_with_the_mouse(tab):
    tab.set_number("temperature", "0.8")
    tab.set_number("top-k", "30")
    predicted = tab.meta()["next_token"]["id"]
    tab.click(".dp-step")
    tab.wait_steps(1)
    info = tab.page.evaluate("() => DP.state.live.context.slice(-1)[0]")
    assert info == predicted  # the chart's u landed where Step picked
    text = tab.text()

    bar_id = tab.meta()["ids"][3]
    tab.click_bar(3)
    tab.wait_steps(2)
    assert tab.page.evaluate("() => DP.state.live.context.slice(-1)[0]") == bar_id
    assert "dp-picked" in tab.page.locator(".dp-text .dp-tok").nth(1).get_attribute("class")

    tab.click(".dp-undo")
    tab.wait_steps(1)
    assert tab.text() == text

    n = tab.page.locator(".dp-n")
    n.click()
    tab.page.keyboard.press("Control+A")
    tab.page.keyboard.type("5")
    tab.page.keyboard.press("Enter")
    tab.click(".dp-generate")
    tab.wait("() => { const m = document.querySelector('.dp-main').drawn.meta; return (m.steps >= 6 || "
             "document.querySelector('.dp-text .dp-eot')) && !document.querySelector('.dp-app.dp-generating'); }")
    tab.ready()
    assert tab.token_count() >= 2 and tab.meta()["steps"] == tab.token_count()


def test_a_past_token_shows_its_distribution_and_rewinds(tab):
    for n in (1, 2, 3):
        tab.click(".dp-step")
        tab.wait_steps(n)
    tab.page.hover(".dp-text .dp-tok >> nth=0")
    tab.wait("() => document.querySelector('.dp-tip') && document.querySelector('.dp-tip').style.display === 'block'")
    assert "model's top tokens" in tab.page.inner_text(".dp-tip")
    tab.click(".dp-text .dp-tok >> nth=1")
    tab.wait("() => document.querySelector('.dp-main').drawn.meta.mode === 'inspect'")
    assert "was drawn from this distribution" in tab.page.inner_text(".dp-banner")
    tab.click(".dp-banner .dp-rewind")
    tab.wait_steps(1)
    assert tab.token_count() == 1


def test_presets_and_shared_links_set_the_controls(browser, server):
    t = Tab(browser, server, query="?prompt=To%20be&temperature=0.5&top_p=0.8&seed=4&top_k=900")
    try:
        meta = t.meta()
        assert meta["settings"]["temperature"] == 0.5 and meta["settings"]["top_p"] == 0.8
        assert meta["settings"]["top_k"] == 200  # clamped to the control's range, and said so
        assert "top_k" in t.page.inner_text(".dp-toasts") and "maximum 200" in t.page.inner_text(".dp-toasts")
        assert t.page.locator("#dp-seed").input_value() == "4"
        t.click("#preset-greedy")
        t.wait("() => document.querySelector('.dp-main').drawn.meta.settings.temperature === 0")
        assert t.meta()["kept"] == 1
        assert t.page.locator("#temperature input.dp-num").input_value() == "0"
        t.wait("() => location.search.includes('temperature=0')")  # the URL follows the controls
    finally:
        t.close()


def test_compare_draws_a_second_chart_with_every_label(tab):
    tab.set_number("temperature", "1.3")
    tab.page.locator(".dp-compare-on").check()
    plots = ".dp-chart .dp-canvas-chart"
    tab.wait(f"() => document.querySelectorAll('{plots}').length === 2")
    main, other = tab.page.evaluate(f"() => [...document.querySelectorAll('{plots}')].map(d => d.drawn.meta)")
    assert main["settings"]["temperature"] == 1.3 and other["settings"]["temperature"] == 0
    assert other["kept"] == 1 and main["step"] == other["step"]
    assert "T = 0 (greedy)" in tab.page.inner_text(".dp-compare .dp-b-title")
    assert tab.page.inner_text(".dp-a-title").startswith("A: your settings")
    # Side by side on a laptop: each chart's drawing stays inside its own column.
    a, b = (tab.page.locator(f"{plots} >> nth={i}").bounding_box() for i in range(2))
    svg_a, svg_b = (tab.page.locator(f"{plots} >> nth={i} >> canvas").bounding_box() for i in range(2))
    assert a["x"] + a["width"] <= b["x"] + 1, (a, b)
    # ... and the two are drawn alike: level with each other, of one height.
    assert abs(a["y"] - b["y"]) <= 1 and abs(a["height"] - b["height"]) <= 1, (a, b)
    assert svg_a["x"] + svg_a["width"] <= b["x"] + 1, "the main chart is drawn under the compare chart"
    assert svg_b["x"] + svg_b["width"] <= b["x"] + b["width"] + 1
    for i in range(2):  # every bar keeps its label, none skipped, each under its own bar
        drawn = tab.page.evaluate(f"i => document.querySelectorAll('{plots}')[i].drawn", i)
        bars, ticks = drawn["bars"], drawn["ticks"]
        assert len(ticks) == len(bars) == len(drawn["meta"]["ids"]) + 1
        assert len(bars) == len(tab.page.evaluate(f"() => document.querySelector('{plots}').drawn.bars"))
        for bar, tick in zip(bars, ticks):
            assert tick["text"] and bar["x0"] < tick["x"] < bar["x1"], (bar, tick)
            assert tick["bottom"] <= drawn["height"], tick  # the label ends inside the canvas
        assert drawn["height"] == tab.page.evaluate(f"() => document.querySelector('{plots}').drawn.height")


def test_the_keyboard_alone_steps_undoes_picks_generates_and_stops(tab):
    page = tab.page
    page.locator(".dp-prompt").focus()
    for _ in range(1, 6):  # Step is a few Tab presses after the prompt
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.classList.contains('dp-step')"):
            break
    else:
        pytest.fail("Step is more than 5 Tab presses after the prompt")
    page.keyboard.press("Enter")
    tab.wait_steps(1)
    page.keyboard.press("s")
    tab.wait_steps(2)
    page.keyboard.press("ArrowRight")
    tab.wait_steps(3)
    page.keyboard.press("u")
    tab.wait_steps(2)
    page.keyboard.press("ArrowLeft")
    tab.wait_steps(1)
    third = tab.meta()["ids"][2]
    page.keyboard.press("3")  # pick the third bar
    tab.wait_steps(2)
    assert page.evaluate("() => DP.state.live.context.slice(-1)[0]") == third
    # Tab onto a bar, move along the bars with the arrows, Enter picks it.
    page.locator(".dp-hits .dp-hit").first.focus()
    page.keyboard.press("ArrowRight")
    second = tab.meta()["ids"][1]
    assert page.evaluate("() => document.activeElement.dataset.index") == "1"
    page.keyboard.press("Enter")
    tab.wait_steps(3)
    assert page.evaluate("() => DP.state.live.context.slice(-1)[0]") == second
    # Tab onto a token in the text: Enter shows its distribution.
    page.locator(".dp-text .dp-tok").first.focus()
    assert page.locator(".dp-tip").is_visible()
    page.keyboard.press("Enter")
    tab.wait("() => document.querySelector('.dp-main').drawn.meta.mode === 'inspect'")
    page.locator(".dp-banner .dp-back").focus()
    page.keyboard.press("Enter")
    tab.wait("() => document.querySelector('.dp-main').drawn.meta.mode === 'live'")
    # G generates, Esc stops.
    page.locator("body").click(position={"x": 2, "y": 2})
    page.keyboard.press("g")
    tab.wait("() => document.querySelector('.dp-app.dp-generating') || "
             "document.querySelector('.dp-main').drawn.meta.steps > 3")
    page.keyboard.press("Escape")
    tab.ready()
    assert tab.meta()["steps"] == tab.token_count()
    assert "S or → Step" in page.inner_text(".dp-keys")  # the shortcuts are listed on the page


# ---- beam search (static/beam.js): keys and clicks on a laptop, taps on a phone ----

RANKED = "n => DPBeam.state.B && document.querySelectorAll('.dp-beam-hyp').length === n && !DP.state.pending"


def _type(tab, selector, text):
    tab.page.click(selector)
    tab.page.keyboard.press("Control+A")
    tab.page.keyboard.type(text)


def _exported_tokens(tab) -> list[int]:
    return [s["token"] for s in tab.export()["steps"]]


def test_beam_panel_searches_draws_each_step_and_opens_ranked_beams_by_mouse_keys_and_touch(tab, browser, server):
    page = tab.page
    tab.click(".dp-step")
    tab.wait_steps(1)
    base = _exported_tokens(tab)
    tab.click(".dp-beam-box > summary")
    _type(tab, ".dp-beam-n", "3")
    _type(tab, ".dp-beam-lp", "0.5")
    page.click(".dp-beam-es")
    page.keyboard.press("Escape")  # closes the list a click opened; the select keeps focus
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    assert page.input_value(".dp-beam-es") == "never"
    _type(tab, ".dp-beam-tokens", "6")
    page.keyboard.press("Enter")  # Enter in a box searches
    tab.wait(RANKED, 3)
    B = page.evaluate("() => DPBeam.state.B")
    assert B["settings"] == {"num_beams": 3, "length_penalty": 0.5, "early_stopping": "never", "tokens": 6}
    # Each step is drawn with its 6 candidates, coloured by what became of them.
    rows = page.locator(".dp-beam-step")
    assert rows.count() == len(B["steps"])
    for i, step in enumerate(B["steps"]):
        drawn = rows.nth(i).locator(".dp-beam-c")
        assert drawn.count() == 6
        classes = [drawn.nth(j).get_attribute("class").split() for j in range(6)]
        assert [next(k[8:] for k in c if k[8:] in ("kept", "finished", "dropped")) for c in classes] == \
            [c["status"] for c in step["candidates"]]
        assert [("dp-beam-ends" in c) for c in classes] == [c["ends"] for c in step["candidates"]]
    assert page.locator(".dp-beam-step").first.locator(".dp-beam-kept").count() == 3
    assert tab.meta()["steps"] == 1  # searching changed nothing
    # Click: the third beam becomes the text, after the token stepped before.
    page.locator(".dp-beam-open").nth(2).click()
    tab.wait_steps(1 + len(B["ranking"][2]["tokens"]))
    assert _exported_tokens(tab) == base + B["ranking"][2]["tokens"]
    # Keys: from the tokens box, Tab reaches Search, then the best beam's button; Enter opens it.
    page.click(".dp-beam-tokens")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.dataset.rank") == "0"
    page.keyboard.press("Enter")
    tab.wait_steps(1 + len(B["ranking"][0]["tokens"]))
    assert _exported_tokens(tab) == base + B["ranking"][0]["tokens"]
    # A value past the limit: the server's message names it, and the text stays.
    _type(tab, ".dp-beam-n", "17")
    tab.click(".dp-beam-go")
    page.wait_for_selector(".dp-toast.dp-error:has-text('num_beams must be a whole number from 1 to 16, but is 17')")
    assert tab.meta()["steps"] == 1 + len(B["ranking"][0]["tokens"])

    # A phone: tap open the panel, tap Search (4 beams, 20 tokens), tap a ranked beam open.
    phone = Tab(browser, server, phone=True)
    try:
        phone.tap(".dp-beam-box > summary")
        phone.tap(".dp-beam-go")
        phone.wait("() => DPBeam.state.B && document.querySelectorAll('.dp-beam-hyp').length >= 1 "
                   "&& !DP.state.pending")
        P = phone.page.evaluate("() => DPBeam.state.B")
        assert P["settings"]["num_beams"] == 4 and len(P["ranking"]) >= 1
        assert phone.page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
        phone.tap(".dp-beam-open")
        phone.wait_steps(len(P["ranking"][0]["tokens"]))
        assert _exported_tokens(phone) == P["ranking"][0]["tokens"]
        assert not phone.errors
    finally:
        phone.close()

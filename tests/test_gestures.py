"""The page as people use it, in Chromium: pasting and deleting a prompt, Stop halfway through
a Generate, out-of-range numbers typed into boxes, long texts, a phone, the keyboard's
shortcuts, links and exports. Only gestures make things happen here: typing, the clipboard,
clicks and taps where things are drawn, keys. The server's side is read through the page's
own Export, as a person would check it.

The server serves the Shakespeare GPT that ships in checkpoints/ (so a Generate takes long
enough to be stopped halfway), with a room for long Generates.
"""

from __future__ import annotations

import math
import threading
from urllib.parse import parse_qs, urlparse

import pytest

import app
from model.sampling import SETTINGS
from testkit import browser as B
from testkit.models import make_tiny_checkpoint
from testkit.page import Tab
from testkit.server import ROOT, launch, wait_streams_ended
from ui.actions import Limits

pytestmark = pytest.mark.browser

SHAKESPEARE = str(ROOT / "checkpoints" / "shakespeare")
LIMITS = Limits(generate_tokens=1000, session_tokens=4000)


@pytest.fixture(scope="module")
def demo():
    d = app.build_demo([SHAKESPEARE], limits=LIMITS)
    yield d
    d.close()


@pytest.fixture(scope="module")
def server(demo):
    return launch(demo)


@pytest.fixture
def tab(browser, server):
    t = Tab(browser, server, clipboard=True)
    yield t
    errors = t.errors
    t.close()
    assert not errors, f"JavaScript errors on the page: {errors[:3]}"


def position(tab) -> int:
    return tab.meta()["position"]


def nothing_left_on_its_way(tab, demo):
    """Wait until no Generate stream of the server is running (each hands its last payload
    over before it counts as ended), then make one round trip (Export): Gradio sends a tab's
    messages in order, so every payload the server made has reached the page by its answer.
    Returns what the export holds."""
    wait_streams_ended(demo)
    return tab.export()


def generate_until_shown(tab, n):
    """Press Generate (1,000 tokens) and wait until the text shows at least n of them."""
    set_tokens_per_generate(tab, 1000)
    tab.click(".dp-generate")
    tab.wait(f"() => document.querySelectorAll('.dp-text .dp-tok').length >= {n}")


def set_tokens_per_generate(tab, n):
    box = tab.page.locator(".dp-n")
    box.click()
    tab.page.keyboard.press("Control+A")
    tab.page.keyboard.type(str(n))
    tab.page.keyboard.press("Enter")


# ---- the prompt: whatever changes the box, the session follows ----

def test_typing_pasting_cutting_and_deleting_the_prompt_all_reach_the_session(tab):
    tab.type_into(".dp-prompt", "ROMEO:")
    tab.wait("() => document.querySelector('.dp-main').drawn.meta.position > 1")
    typed = position(tab)
    tab.paste_into(".dp-prompt", "To be, or not to be, that is the question")
    tab.wait(f"() => document.querySelector('.dp-main').drawn.meta.position > {typed + 3}")
    tab.ready()
    pasted = position(tab)
    assert "question" in tab.text()
    assert tab.page.inner_text(".dp-chips-summary").startswith(f"The prompt's {pasted} token")
    tab.click(".dp-step")
    tab.wait_steps(1)
    assert tab.text().startswith("To be, or not to be, that is the question")
    # select a word with the keyboard and cut it
    tab.page.click(".dp-prompt")
    tab.page.keyboard.press("End")
    for _ in range(len("the question")):
        tab.page.keyboard.press("Shift+ArrowLeft")
    tab.page.keyboard.press("Control+X")
    tab.wait(f"() => document.querySelector('.dp-main').drawn.meta.position < {pasted}")
    tab.ready()
    assert tab.page.locator(".dp-prompt").input_value() == "To be, or not to be, that is "
    assert tab.meta()["steps"] == 0  # a new prompt starts again
    tab.page.keyboard.press("Control+A")
    tab.page.keyboard.press("Delete")
    tab.wait("() => document.querySelector('.dp-main').drawn.meta.position === 1")
    tab.ready()
    assert "⟨start of text⟩" in tab.text()


def test_a_prompt_longer_than_the_limit_stays_in_the_box_and_the_model_reads_its_end(tab):
    long = "Now is the winter of our discontent. " * 120 + "THE END"  # ~4,500 characters
    tab.paste_into(".dp-prompt", long)
    tab.wait("() => document.querySelector('.dp-status').textContent.includes('last 4,000 characters')")
    tab.ready()
    assert tab.page.locator(".dp-prompt").input_value() == long  # nothing typed is lost
    assert tab.page.inner_text(".dp-text .dp-prompt-text").rstrip().endswith("THE END")


# ---- Generate, and stopping it ----

@pytest.mark.parametrize("after_tokens", [1, 20, 100])
def test_stop_mid_generate_keeps_exactly_what_the_page_shows(tab, demo, after_tokens):
    tab.type_into(".dp-prompt", "KING HENRY:")
    tab.ready()
    generate_until_shown(tab, after_tokens)
    tab.page.evaluate("() => document.addEventListener('click', () => { window.__shown = "
                      "document.querySelectorAll('.dp-text .dp-tok').length; }, {capture: true, once: true})")
    tab.click(".dp-stop")
    shown = tab.token_count()
    assert tab.page.evaluate("() => window.__shown") == shown  # what the click found is what stays
    tab.ready()
    exported = nothing_left_on_its_way(tab, demo)
    assert after_tokens <= shown < 1000, "the Generate ended before Stop"
    assert tab.token_count() == shown  # nothing appeared after Stop
    assert tab.meta()["steps"] == shown  # the chart is at the same step
    assert len(exported["steps"]) == shown  # and so is the server
    tab.click(".dp-step")
    tab.wait_steps(shown + 1)
    assert tab.token_count() == shown + 1 and len(tab.export()["steps"]) == shown + 1


def test_reset_mid_generate_leaves_exactly_the_prompt(tab, demo):
    tab.type_into(".dp-prompt", "ROMEO:")
    tab.ready()
    generate_until_shown(tab, 10)
    tab.click(".dp-reset")
    tab.ready()
    exported = nothing_left_on_its_way(tab, demo)
    assert tab.token_count() == 0 and tab.meta()["steps"] == 0
    assert exported["steps"] == []


@pytest.mark.parametrize("action", ["undo", "step", "typing"])
def test_undo_step_or_typing_mid_generate_stops_it_first(tab, demo, action):
    tab.type_into(".dp-prompt", "JULIET:")
    tab.ready()
    generate_until_shown(tab, 10)
    if action == "typing":
        tab.page.click(".dp-prompt")
        tab.page.keyboard.press("End")
        tab.page.keyboard.type(" O")
    else:
        # What the text shows at the very moment the click arrives (a click takes the test a
        # while to deliver, and tokens keep coming meanwhile).
        tab.page.evaluate("() => document.addEventListener('click', () => { window.__shown = "
                          "document.querySelectorAll('.dp-text .dp-tok').length; }, {capture: true, once: true})")
        tab.click(f".dp-{action}")
        shown = tab.page.evaluate("() => window.__shown")
    tab.ready()
    exported = nothing_left_on_its_way(tab, demo)
    final = tab.token_count()
    assert final == tab.meta()["steps"] == len(exported["steps"])
    if action == "typing":
        assert final == 0 and tab.page.locator(".dp-prompt").input_value() == "JULIET: O"
    else:  # the Generate stopped exactly where the click found it
        assert final == (shown - 1 if action == "undo" else shown + 1), (shown, final)


def test_generate_appends_tokens_and_follows_the_end_unless_scrolled_up(tab):
    tab.type_into(".dp-prompt", "HAMLET:")
    tab.ready()
    set_tokens_per_generate(tab, 200)
    tab.click(".dp-generate")
    tab.wait("() => document.querySelectorAll('.dp-text .dp-tok').length >= 3")
    first = tab.page.locator(".dp-text .dp-tok").first.element_handle()
    tab.ready(timeout=60_000)
    assert tab.token_count() >= 20
    # The first token's element is still the one drawn at the start: tokens were appended,
    # the text was never redrawn, not even by the snapshot that ends the Generate.
    assert first.evaluate("e => e.isConnected && e === document.querySelector('.dp-text .dp-tok')")
    follows = tab.page.evaluate("() => { const b = document.querySelector('.dp-text'); "
                                "return b.scrollHeight - b.scrollTop - b.clientHeight; }")
    assert follows < 30, "the newest token is out of view"
    # scrolled up, the box stays where the reader is
    tab.page.locator(".dp-text").hover()
    tab.page.mouse.wheel(0, -2000)
    top = tab.scroll_top_when_still(".dp-text")  # the wheel scrolls smoothly
    assert top < 100
    tab.click(".dp-generate")
    tab.ready(timeout=60_000)
    assert tab.page.evaluate("() => document.querySelector('.dp-text').scrollTop") == top


# ---- numbers typed into boxes ----

@pytest.mark.parametrize("setting, typed, held", [
    ("temperature", "5", 2), ("temperature", "-5", 0), ("repetition-penalty", "0", 0.5),
    ("top-k", "3.7", 4), ("top-p", "5", 1), ("no-repeat-ngram-size", "100", 6),
])
def test_an_out_of_range_number_holds_one_value_in_the_box_slider_chart_step_and_url(tab, setting, typed, held):
    name = setting.replace("-", "_")
    if setting == "no-repeat-ngram-size":
        tab.click(".dp-more summary")
    tab.type_into(".dp-prompt", "ROMEO:\nO gentle")
    tab.ready()
    tab.set_number(setting, typed)
    tab.wait(f"() => document.querySelector('.dp-main').drawn.meta.settings.{name} === {held}")
    assert float(tab.page.locator(f"#{setting} input.dp-num").input_value()) == held
    assert float(tab.page.locator(f"#{setting} input[type=range]").input_value()) == held
    message = tab.page.inner_text(f"#{setting} .dp-ctl-msg")
    assert typed in message and str(held) in message, message
    tab.click(".dp-step")
    tab.wait_steps(1)
    assert tab.export()["steps"][0]["settings"][name] == held
    at_default = held == SETTINGS[name].default  # the link leaves defaults out
    tab.wait(f"() => new URLSearchParams(location.search).has('t') && "
             f"new URLSearchParams(location.search).has('{name}') === {str(not at_default).lower()}")
    query = parse_qs(urlparse(tab.page.url).query)
    if not at_default:
        assert float(query[name][0]) == held


def test_the_seed_box_names_its_range_and_holds_what_it_uses(tab):
    seed = "#dp-seed"
    for typed, held, words in [("-1", 0, "below the minimum 0"),
                               ("99999999999", 4294967295, "above the maximum 4,294,967,295"),
                               ("3.5", 4, "whole number")]:
        tab.type_into(seed, typed)
        tab.page.keyboard.press("Enter")
        tab.ready()
        assert tab.page.locator(seed).input_value() == str(held)
        assert words in tab.page.inner_text(".dp-seed-row .dp-ctl-msg")
        assert tab.meta()["u"] is not None
        tab.click(".dp-step")
        tab.ready()
        assert tab.export()["seed"] == held
        tab.click(".dp-undo")
        tab.ready()


# ---- a phone ----

def test_on_a_phone_the_prompt_chart_and_step_fit_and_a_tap_shows_a_tokens_alternatives(browser, server):
    t = Tab(browser, server, phone=True)
    try:
        page = t.page
        prompt, step, chart = t.box(".dp-prompt"), t.box(".dp-step"), t.box(".dp-main")
        assert prompt["y"] + prompt["height"] <= B.PHONE["height"], "the prompt is not on the first screen"
        assert step["y"] + step["height"] <= B.PHONE["height"], "Step is not on the first screen"
        assert abs(chart["y"] - step["y"]) < B.PHONE["height"], "the chart is more than a screen from Step"
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= B.PHONE["width"], f"the page scrolls sideways ({width} px)"
        title = page.locator(".dp-title h1").bounding_box()
        assert title["x"] >= 0 and title["x"] + title["width"] <= B.PHONE["width"]
        assert t.box(".dp-model")["height"] < 80
        t.tap(".dp-step")
        t.wait_steps(1)
        t.tap(".dp-step")
        t.wait_steps(2)
        t.tap(".dp-text .dp-tok >> nth=0")
        t.wait("() => document.querySelector('.dp-tip.dp-tip-pinned') && "
               "document.querySelector('.dp-tip').style.display === 'block'")
        assert t.meta()["mode"] == "live"  # a tap shows the alternatives; it does not jump away
        t.tap(".dp-tip .dp-tip-rewind")
        t.wait_steps(0)
        assert t.token_count() == 0
    finally:
        t.close()


# ---- the smaller things ----

def test_notices_do_not_move_the_page_and_name_the_field(tab):
    # Where the chart is on the page (not in the window: clicking Copy link scrolls to it).
    on_page = "() => document.querySelector('.dp-main').getBoundingClientRect().top + scrollY"
    before = tab.page.evaluate(on_page)
    tab.set_number("top-p", "7")
    tab.page.locator(".dp-text").click()  # elsewhere
    tab.click(".dp-copy-link")
    tab.wait("() => document.querySelector('.dp-toasts').textContent.includes('Link copied')")
    assert tab.page.evaluate(on_page) == before
    toasts = tab.box(".dp-toasts")
    menu = tab.box(".dp-model")
    assert toasts["y"] > menu["y"] + menu["height"], "a notice covers the model menu"
    assert tab.page.inner_text("#top-p .dp-ctl-msg") == "7 is above the maximum 1: using 1."


def test_the_key_lists_only_what_is_drawn_and_log_ticks_are_decades(tab):
    assert "entering top-p" not in tab.page.inner_text(".dp-key")
    tab.set_number("top-p", "0.9")
    tab.wait("() => document.querySelector('.dp-key').textContent.includes('entering top-p')")
    tab.page.locator(".dp-log").check()
    tab.wait("() => document.querySelector('.dp-main').drawn.yaxis.type === 'log'")
    drawn = tab.page.evaluate("() => { const d = document.querySelector('.dp-main').drawn; "
                              "return {ticks: d.yaxis.ticks, bars: d.bars, plot: d.plot}; }")
    ticks = [t["label"] for t in drawn["ticks"]]
    assert 2 <= len(ticks) <= 13 and len(set(ticks)) == len(ticks)
    # Decades, evenly spaced, inside the plot; each bar's top where its probability is on them.
    values = [t["value"] for t in drawn["ticks"]]
    assert all(math.isclose(b / a, 10) for a, b in zip(values, values[1:])), values
    ys = [t["y"] for t in drawn["ticks"]]
    assert all(math.isclose(ys[i] - ys[i + 1], ys[0] - ys[1], rel_tol=1e-6) for i in range(len(ys) - 1))
    assert all(drawn["plot"]["top"] <= y <= drawn["plot"]["bottom"] for y in ys)
    decade = ys[0] - ys[1]
    for bar in drawn["bars"]:
        if bar["raw"] > values[0]:
            expected = ys[0] - decade * math.log10(bar["raw"] / values[0])
            assert abs(bar["rawTop"] - max(expected, drawn["plot"]["top"])) < 0.01, bar


def test_a_short_bar_is_picked_anywhere_in_its_column_and_the_rest_bar_says_what_it_is(tab):
    tab.type_into(".dp-prompt", "ROMEO:")
    tab.ready()
    last = len(tab.meta()["ids"]) - 1  # the shortest named bar
    expected = tab.meta()["ids"][last]
    tab.click_bar(last, y_fraction=0.05)  # far above its tip
    tab.wait_steps(1)
    assert tab.export()["steps"][0]["token"] == expected
    tab.click(".dp-hits .dp-hit-rest")
    tab.wait("() => document.querySelector('.dp-toasts').textContent.includes('gathers the other')")
    assert tab.meta()["steps"] == 1


def test_a_copied_link_reopens_the_same_prompt_settings_seed_and_text(tab, browser, server):
    tab.type_into(".dp-prompt", "ROMEO:")
    tab.ready()
    tab.set_number("temperature", "0.7")
    tab.type_into("#dp-seed", "12")
    tab.page.keyboard.press("Enter")
    tab.ready()
    for n in (1, 2, 3):
        tab.click(".dp-step")
        tab.wait_steps(n)
    tab.click_bar(4)
    tab.wait_steps(4)
    text = tab.text()
    tab.click(".dp-copy-link")
    tab.wait("() => document.querySelector('.dp-toasts').textContent.includes('Link copied')")
    link = tab.page.evaluate("() => navigator.clipboard.readText()")
    assert "t=" in link
    other = Tab(browser, link, query="")
    try:
        other.wait_steps(4)
        assert other.text() == text
        assert other.meta()["settings"]["temperature"] == 0.7
        hows = [s["how"] for s in other.export()["steps"]]
        assert hows == ["sampled"] * 3 + ["picked"]
    finally:
        other.close()


def test_export_is_one_click(tab):
    tab.click(".dp-step")
    tab.wait_steps(1)
    data = tab.export()
    assert len(data["steps"]) == 1 and data["model"].endswith("shakespeare")


def test_while_a_model_loads_the_page_says_which_and_the_old_chart_cannot_be_used(browser, tmp_path):
    from model.loading import load_model

    tiny = str(make_tiny_checkpoint(tmp_path / "tiny"))
    slow = str(make_tiny_checkpoint(tmp_path / "slow"))

    release = threading.Event()

    def loader(path):
        if path == slow:
            release.wait(60)  # held until the test has seen the page while it loads
        return load_model(path)

    demo = app.build_demo([tiny, slow], loader=loader)
    url = launch(demo)
    t = Tab(browser, url)
    try:
        t.page.locator(".dp-model").select_option(slow)
        t.wait("() => document.querySelector('.dp-status').textContent.startsWith('Loading')")
        assert "slow" in t.page.inner_text(".dp-status")
        steps = t.meta()["steps"]
        t.click_bar(0)  # the old chart is not pickable while loading
        step = t.box(".dp-step")
        assert t.page.locator(".dp-step").is_disabled()
        t.page.mouse.click(step["x"] + step["width"] / 2, step["y"] + step["height"] / 2)
        release.set()
        t.ready()
        t.wait("() => !document.querySelector('.dp-app').classList.contains('dp-busy')")
        assert t.meta()["steps"] == steps == 0
        assert t.page.locator(".dp-status").inner_text() == ""
    finally:
        release.set()
        t.close()
        demo.close()

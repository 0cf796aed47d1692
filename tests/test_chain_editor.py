"""The chain editor (ui/static/chain.js) in Chromium, driven by gestures only: dragging a card
with the mouse, tapping ↓ on a phone, Alt+ArrowUp on a focused card, removing and adding a
stage, the preset buttons, temperature_last and a reopened link. What the editor did is read
from the chart (its meta names the stages in the order they ran), the URL and Export."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlparse

import pytest

from model.chain import DEFAULT_CHAIN, LETTERS, PRESETS
from testkit.page import Tab

pytestmark = pytest.mark.browser

CARDS = ".dp-chain-card"
DEFAULT_RUN = ["penalties", "temperature", "top_k", "top_p", "min_p", "typical_p"]  # the listed ones


def card(stage, n=0):
    return f"{CARDS}[data-stage={stage}] >> nth={n}"


def press(tab, stage, button):
    """Point at a card (with a mouse its ↑ ↓ × show over its corner), then click the button."""
    tab.page.locator(card(stage)).hover()
    tab.click(f"{card(stage)} >> .dp-chain-{button}")


def cards(tab) -> list[str]:
    return tab.page.evaluate(f"() => [...document.querySelectorAll('{CARDS}')].map(c => c.dataset.stage)")


def chain(tab) -> list[str]:
    return tab.meta()["settings"]["samplers"]


def wait_chain(tab, expected):
    tab.wait("want => { const m = document.querySelector('.dp-main').drawn.meta; "
             "return JSON.stringify(m.settings.samplers) === JSON.stringify(want); }", list(expected))


def url_chain(tab):
    query = parse_qs(urlparse(tab.page.url).query)
    return json.loads(query["samplers"][0]) if "samplers" in query else None


def wait_url_chain(tab, expected):
    tab.wait("want => new URLSearchParams(location.search).get('samplers') === JSON.stringify(want)",
             list(expected))


def moved(order, name, to):
    out = list(order)
    out.remove(name)
    out.insert(to, name)
    return out


def test_the_cards_show_the_chain_in_run_order_with_skipped_stages_dimmed(tab):
    assert cards(tab) == list(DEFAULT_CHAIN)
    assert tab.meta()["stages"] == DEFAULT_RUN
    assert tab.page.inner_text(f"{card('top_k')} >> .dp-chain-line") == "skipped: off"
    assert "dp-chain-off" in tab.page.get_attribute(card("top_k"), "class")
    tab.set_number("top-k", "40")
    tab.wait(f"() => document.querySelector('{CARDS}[data-stage=top_k]').classList.contains('dp-chain-on')")
    assert tab.page.inner_text(f"{card('top_k')} >> .dp-chain-line") == "Top-k 40"
    assert tab.page.get_attribute("#chain-preset-default", "aria-pressed") == "true"


def test_dragging_a_card_with_the_mouse_reorders_the_chart_and_the_url(tab):
    page = tab.page
    page.locator(card("temperature")).scroll_into_view_if_needed()
    source, target = tab.box(card("top_k")), tab.box(card("temperature"))
    x = source["x"] + source["width"] / 2
    page.mouse.move(x, source["y"] + source["height"] / 2)
    page.mouse.down()
    page.mouse.move(x, target["y"] + target["height"] * 0.25, steps=12)
    page.mouse.up()
    want = moved(DEFAULT_CHAIN, "top_k", DEFAULT_CHAIN.index("temperature"))
    wait_chain(tab, want)
    assert cards(tab) == want
    assert tab.meta()["stages"][:3] == ["penalties", "top_k", "temperature"]  # the chart runs it so
    wait_url_chain(tab, want)
    assert url_chain(tab) == want


def test_tapping_down_on_a_phone_moves_a_stage_later(browser, server):
    t = Tab(browser, server, phone=True)
    try:
        down = f"{card('temperature')} >> .dp-chain-down"
        size = t.box(down)
        assert size["width"] >= 32 and size["height"] >= 32, size
        t.tap(down)
        want = moved(DEFAULT_CHAIN, "temperature", DEFAULT_CHAIN.index("temperature") + 1)
        wait_chain(t, want)
        t.tap(f"{card('temperature')} >> .dp-chain-down")
        want = moved(want, "temperature", want.index("temperature") + 1)
        wait_chain(t, want)
        assert want[:5] == ["penalties", "dry", "top_n_sigma", "top_k", "temperature"]
        assert t.meta()["stages"][:3] == ["penalties", "top_k", "temperature"]
        assert cards(t) == want
        wait_url_chain(t, want)
        width = t.page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 390, f"the editor makes the phone's page scroll sideways ({width} px)"
        assert not t.errors
    finally:
        t.close()


def test_dragging_a_card_by_its_grip_with_a_finger_on_a_phone(browser, server):
    t = Tab(browser, server, phone=True)
    try:
        page = t.page
        page.locator(card("top_p")).scroll_into_view_if_needed()
        grip, target = t.box(f"{card('top_p')} >> .dp-chain-grip"), t.box(card("temperature"))
        x, y = grip["x"] + grip["width"] / 2, grip["y"] + grip["height"] / 2
        touch = t.context.new_cdp_session(page)  # a finger: touch events, as the screen sends them
        touch.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": y}]})
        for i in range(1, 11):
            touch.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [
                {"x": x, "y": y + (target["y"] + 5 - y) * i / 10}]})
        touch.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
        want = moved(DEFAULT_CHAIN, "top_p", DEFAULT_CHAIN.index("temperature"))
        wait_chain(t, want)
        assert cards(t) == want
        assert not t.errors
    finally:
        t.close()


def test_alt_arrow_up_on_a_focused_card_moves_it_and_keeps_the_focus(tab):
    top_p = tab.page.locator(card("top_p"))
    assert "Alt+ArrowUp" in top_p.get_attribute("aria-label")
    top_p.scroll_into_view_if_needed()
    top_p.click(position={"x": 60, "y": 10})  # the card's title: focuses it
    assert tab.page.evaluate("() => document.activeElement.dataset.stage") == "top_p"
    tab.page.keyboard.press("Alt+ArrowUp")
    want = moved(DEFAULT_CHAIN, "top_p", DEFAULT_CHAIN.index("top_k"))
    wait_chain(tab, want)
    assert tab.meta()["stages"] == ["penalties", "temperature", "top_p", "top_k", "min_p", "typical_p"]
    assert tab.page.evaluate("() => document.activeElement.dataset.stage") == "top_p"
    tab.page.keyboard.press("Alt+ArrowDown")
    wait_chain(tab, DEFAULT_CHAIN)
    assert tab.meta()["steps"] == 0  # the arrows moved the card, not the text


def test_removing_and_adding_a_stage(tab):
    tab.page.locator(card("top_k")).scroll_into_view_if_needed()
    press(tab, "top_k", "remove")
    without = [n for n in DEFAULT_CHAIN if n != "top_k"]
    wait_chain(tab, without)
    assert cards(tab) == without and "top_k" not in tab.meta()["stages"]
    tab.page.select_option(".dp-chain-add-stage", "top_k")
    tab.click(".dp-chain-add")
    wait_chain(tab, without + ["top_k"])
    # A stage may run twice: add temperature again, after top-k.
    tab.page.select_option(".dp-chain-add-stage", "temperature")
    tab.click(".dp-chain-add")
    wait_chain(tab, without + ["top_k", "temperature"])
    assert tab.page.locator(f"{CARDS}[data-stage=temperature]").count() == 2
    tab.set_number("top-k", "5")
    tab.wait("() => document.querySelector('.dp-main').drawn.meta.settings.top_k === 5")
    assert tab.meta()["stages"][-2:] == ["top_k", "temperature"]
    wait_url_chain(tab, without + ["top_k", "temperature"])


def test_the_llama_cpp_preset_sets_edskypmxt_and_step_carries_it(tab):
    letters = [LETTERS[c] for c in "edskypmxt"]
    assert list(PRESETS["llama.cpp"]) == letters
    tab.page.locator("#chain-preset-llamacpp").scroll_into_view_if_needed()
    tab.click("#chain-preset-llamacpp")
    wait_chain(tab, letters)
    assert cards(tab) == letters
    assert tab.page.get_attribute("#chain-preset-llamacpp", "aria-pressed") == "true"
    assert tab.page.get_attribute("#chain-preset-default", "aria-pressed") == "false"
    assert tab.meta()["stages"] == ["penalties", "top_k", "typical_p", "top_p", "min_p", "temperature"]
    tab.click(".dp-step")
    tab.wait_steps(1)
    assert tab.export()["steps"][0]["settings"]["samplers"] == letters
    tab.click("#chain-preset-hf")
    wait_chain(tab, PRESETS["hf"])
    assert tab.page.get_attribute("#chain-preset-hf", "aria-pressed") == "true"


def test_temperature_last_shows_temperature_where_it_runs(tab):
    tab.page.locator("#temperature-last input").click()
    tab.wait("() => document.querySelector('.dp-main').drawn.meta.settings.temperature_last")
    tab.wait(f"() => [...document.querySelectorAll('{CARDS}')].pop().dataset.stage === 'temperature'")
    shown = [n for n in cards(tab) if n in DEFAULT_RUN]
    assert shown == tab.meta()["stages"] == ["penalties", "top_k", "top_p", "min_p", "typical_p", "temperature"]
    last = tab.page.locator(f"{CARDS} >> nth=-1")
    assert "runs last" in last.inner_text()
    assert last.locator(".dp-chain-up").is_disabled() and last.locator(".dp-chain-down").is_disabled()
    assert chain(tab) == list(DEFAULT_CHAIN)  # the chain itself keeps temperature's place
    # The other cards still move among themselves: ↓ on XTC (the last free card) is off.
    assert tab.page.locator(f"{card('xtc')} >> .dp-chain-down").is_disabled()
    press(tab, "top_k", "up")
    want = moved(DEFAULT_CHAIN, "top_k", DEFAULT_CHAIN.index("top_n_sigma"))
    wait_chain(tab, want)
    assert tab.meta()["stages"] == ["penalties", "top_k", "top_p", "min_p", "typical_p", "temperature"]


def test_a_reopened_link_brings_the_chain_back(tab, browser, server):
    tab.page.locator("#chain-preset-webui").scroll_into_view_if_needed()
    tab.click("#chain-preset-webui")
    press(tab, "xtc", "remove")
    want = [n for n in PRESETS["webui"] if n != "xtc"]
    wait_chain(tab, want)
    wait_url_chain(tab, want)
    query = "?" + urlparse(tab.page.url).query
    other = Tab(browser, server, query=query)
    try:
        assert chain(other) == want and cards(other) == want
        assert not other.errors
    finally:
        other.close()
    # llama.cpp's letters in a hand-written link work too.
    again = Tab(browser, server, query="?samplers=kt")
    try:
        assert cards(again) == ["top_k", "temperature"]
        assert again.meta()["stages"] == ["top_k", "temperature"]
        press(again, "temperature", "up")
        wait_chain(again, ["temperature", "top_k"])
        assert not again.errors
    finally:
        again.close()


def test_with_mirostat_on_the_editor_says_the_chain_is_replaced(browser, server):
    t = Tab(browser, server, query="?mirostat=2")
    try:
        assert t.meta()["stages"] == ["temperature", "mirostat"]
        assert "Mirostat is on" in t.page.inner_text(".dp-chain-note")
        assert "dp-chain-replaced" in t.page.get_attribute(".dp-chain-list", "class")
        assert not t.errors
    finally:
        t.close()

"""The page's layout, measured as geometry in Chromium at the sizes classrooms have: a
1366 × 657 laptop browser window, a 1024 × 640 projector and a 390 × 844 phone.

On a laptop the main chart, the newest tokens of the text, Step and Generate and the cards of
the stages that act are all inside the window at once, without scrolling, after a Generate
of 100 tokens with six stages of llama.cpp's chain on. On a phone the newest token is in view
while Generate writes. Looking back at a token keeps its banner (and Rewind) in view, and R
rewinds. A token's tooltip near the bottom of the window opens upwards, inside the window."""

from __future__ import annotations

import pytest

from testkit.page import Tab

pytestmark = pytest.mark.browser

# llama.cpp's order with six of its stages acting (penalties, top-k, top-p, min-p, XTC, T).
SIX_STAGES = ("?samplers=edskypmxt&repetition_penalty=1.1&top_k=40&top_p=0.95&min_p=0.05"
              "&xtc_probability=0.5&xtc_threshold=0.1&temperature=0.8&seed=3&prompt=ROMEO%3A")
LAPTOPS = [{"width": 1366, "height": 657}, {"width": 1024, "height": 640}]

IN_WINDOW = """sel => [...document.querySelectorAll(sel)].map(el => {
    const r = el.getBoundingClientRect();
    return {sel, top: r.top, bottom: r.bottom, left: r.left, right: r.right,
            inside: r.height > 0 && r.top >= 0 && r.left >= 0 && r.bottom <= innerHeight + 0.5
                    && r.right <= innerWidth + 0.5};
})"""

# The newest token: inside the window, and inside the part of the text box that shows.
NEWEST_SHOWN = """() => {
    const toks = document.querySelectorAll('.dp-text .dp-tok');
    if (!toks.length) return false;
    const t = toks[toks.length - 1].getBoundingClientRect();
    const box = document.querySelector('.dp-text').getBoundingClientRect();
    return t.height > 0 && t.top >= Math.max(0, box.top) - 0.5
        && t.bottom <= Math.min(innerHeight, box.bottom) + 0.5;
}"""


def boxes(tab, selector) -> list[dict]:
    return tab.page.evaluate(IN_WINDOW, selector)


def generate(tab, n: int) -> None:
    """Type n into the tokens box and press Generate; wait for the chart of the step after."""
    tab.type_into(".dp-n", str(n))
    tab.page.keyboard.press("Enter")
    before = tab.token_count()
    tab.click(".dp-generate")
    tab.wait_steps(before + n, timeout=120_000)


@pytest.mark.parametrize("size", LAPTOPS, ids=lambda s: f"{s['width']}x{s['height']}")
def test_chart_newest_text_actions_and_active_cards_share_one_laptop_screen(browser, server, size):
    tab = Tab(browser, server, viewport=size, query=SIX_STAGES)
    try:
        assert tab.meta()["stages"][:1] == ["penalties"]
        generate(tab, 100)
        tab.wait("() => document.querySelectorAll('.dp-chain-on .dp-mini').length >= 6")
        assert tab.page.evaluate("() => scrollY") == 0
        active = boxes(tab, ".dp-chain-card.dp-chain-on")
        assert len(active) == 6, active
        for part in boxes(tab, ".dp-main canvas") + boxes(tab, ".dp-step, .dp-generate") + active:
            assert part["inside"], part
        assert tab.page.evaluate(NEWEST_SHOWN), "the newest token is below the window or scrolled out of the text"
        # The chart is wide enough to read: at least half the work column.
        chart, work = tab.box(".dp-main"), tab.box(".dp-work")
        assert chart["width"] >= 0.5 * work["width"], (chart, work)
    finally:
        tab.close()


def test_a_phone_shows_the_newest_text_while_generating(browser, server):
    tab = Tab(browser, server, phone=True, query="?prompt=ROMEO%3A&seed=5")
    try:
        tab.type_into(".dp-n", "200")
        tab.page.keyboard.press("Enter")
        tab.tap(".dp-generate")
        # Some tokens in, with Generate still writing: the newest one is on the screen.
        tab.wait("() => document.querySelectorAll('.dp-text .dp-tok').length >= 40")
        assert tab.page.evaluate("() => document.querySelector('.dp-app').classList.contains('dp-generating')")
        tab.wait(NEWEST_SHOWN)
        # Stop stays in reach: the bar of actions stays at the top of the screen.
        (stop,) = boxes(tab, ".dp-stop")
        assert stop["inside"], stop
        tab.tap(".dp-stop")
        tab.ready()
    finally:
        tab.close()


@pytest.mark.parametrize("size", LAPTOPS[:1], ids=["1366x657"])
def test_looking_back_keeps_the_banner_in_view_and_r_rewinds(browser, server, size):
    tab = Tab(browser, server, viewport=size, query="?prompt=ROMEO%3A&seed=5")
    try:
        generate(tab, 60)
        tab.click(".dp-text .dp-tok >> nth=10")  # looking back at step 11
        tab.wait("() => !document.querySelector('.dp-banner').hidden")
        (banner,) = boxes(tab, ".dp-banner")
        assert banner["inside"], banner
        tab.page.locator(".dp-step").focus()  # anywhere but a box that takes typing
        tab.page.keyboard.press("r")
        tab.wait_steps(10)
        assert tab.token_count() == 10
    finally:
        tab.close()


def test_a_phone_sees_the_banner_after_see_its_distribution(browser, server):
    tab = Tab(browser, server, phone=True, query="?prompt=ROMEO%3A&seed=5")
    try:
        for n in range(1, 13):
            tab.tap(".dp-step")
            tab.wait_steps(n)
        tab.tap(".dp-text .dp-tok >> nth=11")
        tab.tap(".dp-tip-inspect")
        tab.wait("() => !document.querySelector('.dp-banner').hidden")
        tab.wait("() => { const r = document.querySelector('.dp-banner').getBoundingClientRect();"
                 " return r.top >= 0 && r.bottom <= innerHeight; }")
        tab.tap(".dp-rewind")
        tab.wait_steps(11)
    finally:
        tab.close()


def test_a_tooltip_near_the_window_bottom_opens_upwards_inside_it(browser, server):
    tab = Tab(browser, server, viewport=LAPTOPS[0], query="?prompt=ROMEO%3A&seed=5")
    try:
        generate(tab, 60)
        tab.page.locator(".dp-text .dp-tok").last.hover()
        tab.wait("() => getComputedStyle(document.querySelector('.dp-tip')).display === 'block'")
        (tip,) = boxes(tab, ".dp-tip")
        (tok,) = [b for b in boxes(tab, ".dp-text .dp-tok")[-1:]]
        assert tip["inside"], tip
        assert tip["bottom"] <= tok["top"] + 0.5, (tip, tok)
    finally:
        tab.close()

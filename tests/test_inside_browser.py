"""The views of the inside of the model in Chromium, driven only by gestures a person uses:
pasting from the clipboard, typing, pointing at a token, tapping one on a phone, clicking the
logit lens button, opening the model panel. The page's state is read (the scorer's numbers,
the chart's logits) but nothing is made to happen any other way.

The server serves the Shakespeare GPT that ships in checkpoints/ (its directory holds the
memory.json of its DDP and FSDP reruns).
"""

from __future__ import annotations

import math

import pytest

import app
from model.inspect import read_run_memory
from testkit import browser as B
from testkit.page import Tab
from testkit.server import ROOT, launch
from ui.actions import Limits
from ui.api import API

pytestmark = pytest.mark.browser

SHAKESPEARE = str(ROOT / "checkpoints" / "shakespeare")
SECTION = "Score a text: what pretraining sees"
TEXT = "ROMEO:\nBut, soft! what light through yonder window breaks?\nIt is the east, and Juliet is the sun."
SCORED = "() => DPScore.state && DPScore.state.R && !DPScore.state.pending"


@pytest.fixture(scope="module")
def server():
    demo = app.build_demo([SHAKESPEARE])
    url = launch(demo)
    yield url, API(demo.actions)
    demo.close()


def _tab(browser, url, **kw):
    return Tab(browser, url, clipboard=True, **kw)


def _finish(t):
    outside = [u for u in t.requests if not u.startswith("http://127.0.0.1:")]
    errors = t.errors
    t.close()
    assert not outside, f"the page requested addresses outside 127.0.0.1: {outside[:5]}"
    assert not errors, f"JavaScript errors on the page: {errors[:3]}"


@pytest.fixture
def tab(browser, server):
    t = _tab(browser, server[0])
    yield t
    _finish(t)


@pytest.fixture
def phone(browser, server):
    t = _tab(browser, server[0], phone=True)
    yield t
    _finish(t)


def score_by_pasting(t, text, tap=False):
    t.open_section(SECTION, tap=tap)
    t.paste_into(".ds-input", text)
    t.wait(SCORED)
    t.wait("t => DPScore.state.sent === t", text)


def shown_tokens(t) -> list[dict]:
    return t.page.evaluate("""() => [...document.querySelectorAll('.ds-tokens .ds-tok')].map(s => ({
        k: Number(s.dataset.k), first: s.classList.contains('ds-first'), background: s.style.background,
        text: s.textContent }))""")


# ---- the scorer ----

def test_a_pasted_text_is_scored_and_every_token_coloured_by_its_probability(tab, server):
    score_by_pasting(tab, TEXT)
    R = tab.page.evaluate("() => DPScore.state.R")
    want = server[1].score(None, TEXT)
    assert [t["id"] for t in R["tokens"]] == [t["id"] for t in want["tokens"]]
    spans = shown_tokens(tab)
    assert len(spans) == len(want["tokens"])
    assert spans[0]["first"] and not spans[0]["background"]  # nothing to predict it from
    colours = tab.page.evaluate("ps => ps.map(p => DPText.colour(p))", [t["p"] for t in R["tokens"][1:]])
    for span, colour in zip(spans[1:], colours):
        assert not span["first"] and span["background"].replace(" ", "") == \
            tab.page.evaluate("c => { const d = document.createElement('i'); d.style.background = c; "
                              "return d.style.background; }", colour).replace(" ", "")
    cards = tab.page.inner_text(".ds-summary")
    assert f"{want['mean_loss_nats_per_token']:.3f}" in cards and f"{want['perplexity']:.1f}" in cards
    assert f"{want['nats_per_char']:.3f}" in cards
    # the loss plot: one bar per predicted position, and the mean line
    bars = tab.page.locator(".ds-plot rect.ds-bar-s").count()
    assert bars == want["predicted"] and tab.page.locator(".ds-plot line.ds-mean").count() == 1
    explain = tab.page.inner_text(".ds-explain")
    assert "Pretraining predicts every position and averages these losses" in explain
    assert "Inference reads only the last position" in explain
    assert "exactly the distribution the playground's chart shows" in tab.page.inner_text(".ds-next")


def test_pointing_at_a_token_shows_its_probability_rank_surprisal_and_alternatives(tab):
    score_by_pasting(tab, TEXT)
    R = tab.page.evaluate("() => DPScore.state.R")
    k = max(range(1, len(R["tokens"])), key=lambda i: R["tokens"][i]["s"])  # the most surprising
    tab.hover(".ds-tokens .ds-tok", k)
    tip = tab.page.locator(".ds-tip")
    tip.wait_for(state="visible")
    t = R["tokens"][k]
    words = tip.inner_text()
    assert f"rank {t['rank']:,}" in words and f"surprisal {t['s']:.3f} nats" in words
    assert all(label in words for _, label, _ in t["top"])
    # and the plot's bar for that position lights up with it
    assert tab.page.locator(f'.ds-plot rect.ds-bar-s[data-k="{k}"]').get_attribute("class").endswith("ds-hl")
    tab.page.mouse.move(2, 2)
    tip.wait_for(state="hidden")
    # pointing at the plot shows the same numbers for the position under the pointer
    tab.page.locator(".ds-plot").scroll_into_view_if_needed()
    bar = tab.page.locator(f'.ds-plot rect.ds-bar-s[data-k="{k}"]').bounding_box()
    tab.page.mouse.move(bar["x"] + bar["width"] / 2, bar["y"] + bar["height"] - 2)
    tip.wait_for(state="visible")
    assert f"surprisal {t['s']:.3f} nats" in tip.inner_text()


def test_the_keyboard_reaches_every_token_and_the_first_says_it_has_no_prediction(tab):
    score_by_pasting(tab, TEXT)
    tab.click(".ds-input")
    # the text box -> Score -> "score as I type" -> the training-step slider (this model has
    # snapshots) -> the first token
    for _ in range(4):
        tab.page.keyboard.press("Tab")
    focused = tab.page.evaluate("() => document.activeElement.dataset.k")
    assert focused == "0"
    tip = tab.page.locator(".ds-tip")
    tip.wait_for(state="visible")
    assert "no prediction" in tip.inner_text()
    tab.page.keyboard.press("Tab")
    assert tab.page.evaluate("() => document.activeElement.dataset.k") == "1"
    assert "p = " in tip.inner_text()


def test_typing_scores_after_a_pause_and_a_text_too_long_is_refused_with_a_message(tab):
    tab.open_section(SECTION)
    tab.type_into(".ds-input", "To be, or not to be")
    tab.wait(SCORED)
    assert tab.page.evaluate("() => DPScore.state.sent") == "To be, or not to be"
    joins = len([u for u in tab.requests if "/queue/join" in u])
    tab.paste_into(".ds-input", "x" * (Limits().score_chars + 1))
    tab.wait("() => document.querySelector('.ds-status').textContent.includes('at most')")
    assert f"{Limits().score_chars + 1:,} characters" in tab.page.inner_text(".ds-status")
    # The message comes from the check that decides whether to send: nothing was sent.
    assert tab.page.evaluate("() => DPScore.state.sent") == "To be, or not to be"
    assert len([u for u in tab.requests if "/queue/join" in u]) == joins  # refused on the page


def test_the_scorers_next_token_is_what_the_chart_shows_once_the_text_is_the_prompt(tab):
    score_by_pasting(tab, TEXT)
    R = tab.page.evaluate("() => DPScore.state.R")
    tab.click(".ds-use")
    tab.wait("n => document.querySelector('.dp-main').drawn.meta.position === n", len(R["tokens"]))
    tab.ready()
    assert tab.page.input_value(".dp-prompt") == TEXT
    chart = tab.page.evaluate("""ids => { const P = DP.state.live; const p = DPPipeline.rawProbs(P);
        return ids.map(i => p[i]); }""", [i for i, _, _ in R["next"]])
    for (i, _, p), q in zip(R["next"], chart):
        assert abs(p - q) < 1e-4 * max(p, 1e-3), (i, p, q)  # the page's copy keeps 5 digits


def test_on_a_phone_a_tap_pins_a_tokens_numbers_and_everything_fits_the_width(phone):
    score_by_pasting(phone, TEXT, tap=True)
    R = phone.page.evaluate("() => DPScore.state.R")
    phone.tap(".ds-tokens .ds-tok >> nth=5")
    tip = phone.page.locator(".ds-tip")
    tip.wait_for(state="visible")
    assert f"rank {R['tokens'][5]['rank']:,}" in tip.inner_text()
    assert "dp-tip-pinned" in tip.get_attribute("class")
    phone.tap(".ds-tip .dp-tip-close")
    tip.wait_for(state="hidden")
    # one column: the next token under the text, nothing wider than the screen
    left, right = phone.box(".ds-left"), phone.box(".ds-next")
    assert right["y"] >= left["y"] + left["height"] - 1
    assert phone.page.evaluate("() => document.documentElement.scrollWidth") <= B.PHONE["width"]
    phone.tap(".ds-plot rect.ds-hover")  # a tap on the plot shows the position under the finger
    tip.wait_for(state="visible")


# ---- the logit lens ----

def _lens_rows(t):
    return t.page.evaluate("""() => [...document.querySelectorAll('.dp-lens-table tbody tr')].map(r => ({
        layer: r.querySelector('th').textContent,
        tokens: [...r.querySelectorAll('.dp-lens-tok code')].map(c => c.textContent),
        rank: r.querySelector('td:last-child').textContent }))""")


def test_the_lens_button_shows_each_layers_top_tokens_and_goes_stale_when_the_step_changes(tab):
    tab.type_into(".dp-prompt", "ROMEO:\nBut, soft! what light")
    tab.ready()
    tab.click(".dp-lens-btn")
    tab.wait("() => DP.state && document.querySelector('.dp-lens-table') && !DP.state.pending")
    rows = _lens_rows(tab)
    assert [r["layer"].split(" =")[0] for r in rows] == ["embedding", "block 1", "block 2", "block 3", "block 4"]
    assert all(len(r["tokens"]) == 5 for r in rows)
    top = tab.page.evaluate("""() => { const P = DP.state.live; const p = DPPipeline.rawProbs(P);
        const ids = [...p.keys()].sort((a, b) => p[b] - p[a]).slice(0, 5); return ids; }""")
    labels = tab.page.evaluate("ids => ids.map(i => DP.state.labels[DP.state.live.model][i])", top)
    assert rows[-1]["tokens"] == labels  # the last layer is the model's own output: the chart
    assert rows[-1]["rank"].startswith("1")
    assert not tab.page.locator(".dp-lens-stale").is_visible()
    tab.click(".dp-step")
    tab.wait_steps(1)
    tab.page.locator(".dp-lens-stale").wait_for(state="visible")
    assert "dp-lens-is-stale" in tab.page.get_attribute(".dp-lens", "class")
    tab.click(".dp-lens-update")
    tab.page.locator(".dp-lens-stale").wait_for(state="hidden")
    assert "(step 1)" in tab.page.inner_text(".dp-lens-head")
    tab.click(".dp-lens-btn")  # a fresh lens: the button hides it
    tab.page.locator(".dp-lens").wait_for(state="hidden")


def test_the_lens_reads_on_a_phone(phone):
    phone.tap(".dp-lens-btn")
    phone.wait("() => document.querySelector('.dp-lens-table') && !DP.state.pending")
    assert len(_lens_rows(phone)) == 5
    table = phone.box(".dp-lens-table")
    assert table["x"] >= 0 and table["x"] + table["width"] <= B.PHONE["width"]
    assert phone.page.evaluate("() => document.documentElement.scrollWidth") <= B.PHONE["width"]


# ---- the model panel: tying, and DDP vs FSDP ----

def test_the_model_panel_shows_one_tied_tensor_and_ddp_against_fsdp_per_process(tab):
    tab.open_section("About this model")
    tab.page.locator(".dp-tie-card").first.wait_for(state="visible")
    cards = tab.page.locator(".dp-tie-card").all_inner_texts()
    assert len(cards) == 2 and "transformer.wte.weight" in cards[0] and "lm_head.weight" in cards[1]
    pointers = [c.split("data_ptr() = ")[1].split()[0] for c in cards]
    rows = [c.split("of 256:")[1].split() for c in cards]
    assert pointers[0] == pointers[1] and rows[0] == rows[1] and len(rows[0]) == 8
    assert "one tensor" in tab.page.inner_text(".dp-tie-link")
    runs = tab.page.locator(".dp-mem-run")
    assert [runs.nth(i).get_attribute("data-parallel") for i in range(runs.count())] == ["ddp", "fsdp"]
    # the bars are drawn to one scale: an FSDP process holds half of what a DDP one does
    widths = tab.page.evaluate("""() => [...document.querySelectorAll('.dp-mem-run')].map(run =>
        [...run.querySelector('.dp-mem-rank .dp-mem-bar').children]
          .reduce((w, i) => w + i.getBoundingClientRect().width, 0))""")
    data = read_run_memory(SHAKESPEARE)
    ddp, fsdp = (next(e for e in data["ranks"] if e["parallel"] == p) for p in ("ddp", "fsdp"))
    held = [sum(e[k] for k in ("param_bytes", "grad_bytes", "optimizer_state_bytes")) for e in (ddp, fsdp)]
    assert math.isclose(widths[1] / widths[0], held[1] / held[0], rel_tol=0.02)
    panel = tab.page.inner_text("#model-panel")
    assert f"{ddp['param_bytes'] / 1e6:,.1f} MB" in panel and f"{fsdp['param_bytes'] / 1e6:,.1f} MB" in panel
    assert "one-step rerun" in panel and "torchrun --standalone --nproc_per_node=2" in panel


def test_choosing_another_model_scores_the_text_again_with_it(browser, tmp_path):
    from testkit.models import make_tiny_checkpoint

    tiny = str(make_tiny_checkpoint(tmp_path / "tiny"))
    demo = app.build_demo([SHAKESPEARE, tiny])
    t = _tab(browser, launch(demo))
    try:
        score_by_pasting(t, TEXT)
        assert t.page.evaluate("() => DPScore.state.R.model") == SHAKESPEARE
        t.page.locator(".dp-model").select_option(tiny)
        t.wait("m => DPScore.state.R && DPScore.state.R.model === m && !DPScore.state.pending", tiny)
        assert "scored by" in t.page.inner_text(".ds-summary")
        assert t.page.evaluate("() => DPScore.state.R.tokens.length") == len(
            demo.registry.get(tiny).tokenizer.encode(TEXT))
    finally:
        _finish(t)
        demo.close()

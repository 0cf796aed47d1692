"""Watching the default model learn and comparing two models, in Chromium through real
gestures: the training-step slider moved by keyboard redraws the chart from near-uniform to
peaked, the curve and the text follow; Generate from every snapshot; Compare, with the strip's
columns hovered, clicked and walked by arrow keys; a model with another vocabulary compared
per character; a model without snapshots says so; a refused comparison leaves the page working.
The logic is in tests/test_compare.py; this proves the page."""

from __future__ import annotations

import pytest

from model import list_snapshots

SHAKESPEARE = "checkpoints/shakespeare"
SECTION = "Watch it learn, and compare two models"
DRAWN = "() => document.querySelector('#learner [data-drawn-step]')?.dataset.drawnStep"


@pytest.fixture(scope="module")
def learn_server(tmp_path_factory):
    """The default model with its shipped snapshots, and a tiny model with another vocabulary."""
    import app
    from testkit.models import make_tiny_checkpoint
    from testkit.server import launch

    tiny = make_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "ckpt")
    demo = app.build_demo([SHAKESPEARE, str(tiny)])
    demo.actions.variants.snapshots(SHAKESPEARE)  # preloaded, as the server does at start
    yield launch(demo), str(tiny)
    demo.close()


def top_prob(tab) -> float:
    """The top token's probability in the snapshot chart shown."""
    return tab.page.evaluate("Math.max(...DPPipeline.rawProbs(DPLearn.state.prepared[DPLearn.state.index]))")


@pytest.mark.browser
def test_the_slider_redraws_the_chart_from_uniform_to_trained_and_two_models_compare_along_the_text(
        browser, learn_server):
    from testkit.page import Tab

    url, tiny = learn_server
    steps = [e["step"] for e in list_snapshots(SHAKESPEARE)]
    tab = Tab(browser, url)
    try:
        page = tab.page
        tab.open_section(SECTION)
        tab.wait("() => document.querySelector('#learner .dl-body')?.hidden === false")
        # A one-token text cannot be compared: a message naming what to do, and the page goes on.
        tab.click(".dc-go")
        tab.wait("() => document.querySelector('.dc-status').textContent.includes('1 token long')")

        tab.type_into(".dp-prompt", "ROMEO:\nBut soft, what light through yonder window breaks?")
        tab.wait("() => document.querySelector('.dl-tokens').textContent.includes('yonder')")
        tab.wait(DRAWN + " === '0'")
        uniform = top_prob(tab)
        assert uniform < 0.01  # step 0: near-uniform over 4,096 tokens
        slider = page.locator(".dl-step")
        slider.focus()
        page.keyboard.press("End")
        tab.wait(DRAWN + f" === '{steps[-1]}'")
        assert top_prob(tab) > 10 * uniform
        assert "step 1,000 of 1,000" in page.locator(".dl-step-out").text_content()
        page.keyboard.press("Home")
        page.keyboard.press("ArrowRight")
        tab.wait(DRAWN + f" === '{steps[1]}'")
        # the curve marks this snapshot, at the slider's step
        assert page.evaluate("document.querySelector('.dl-curve').drawn.mark.x") == steps[1]

        page.get_by_role("button", name="Generate from every snapshot").click()
        tab.wait(f"() => document.querySelectorAll('.dl-gens li').length === {len(steps)}")

        # Compare a snapshot with the final model on the tab's text.
        page.locator(".dc-a").select_option(f"{SHAKESPEARE}@100")
        page.locator(".dc-b").select_option(SHAKESPEARE)
        tab.click(".dc-go")
        tab.wait("() => document.querySelectorAll('.dc-colbtn').length > 5 && "
                 "document.querySelector('.dc-plot-a').drawn?.bars.length > 0 && "
                 "document.querySelector('.dc-plot-b').drawn?.bars.length > 0")
        assert "top-1 agreement" in page.locator(".dc-summary").text_content()
        columns = page.locator(".dc-colbtn")
        first = int(columns.nth(2).get_attribute("data-index"))
        tab.hover(".dc-colbtn", 2)
        tab.wait(f"() => document.querySelector('#learner [data-compare-at]')?.dataset.compareAt === '{first}'")
        columns.nth(4).click()
        fourth = int(columns.nth(4).get_attribute("data-index"))
        tab.wait(f"() => document.querySelector('#learner [data-compare-at]').dataset.compareAt === '{fourth}'")
        page.keyboard.press("ArrowRight")
        tab.wait(f"() => document.querySelector('#learner [data-compare-at]').dataset.compareAt === '{fourth + 1}'")
        # both charts are drawn with the same u
        assert page.evaluate("DPCompare.state.charts[0].u === DPCompare.state.charts[1].u")

        # Another vocabulary: loss per character, and the page says why.
        page.locator(".dc-a").select_option(tiny)
        tab.click(".dc-go")
        tab.wait("() => document.querySelector('.dc-note').textContent.includes('token-level KL is not defined')")
        assert "nats per character" in page.locator(".dc-summary").text_content()

        # The scorer has the same slider: the text scored by the model as it was at step 0.
        tab.open_section("Score a text: what pretraining sees")
        tab.type_into(".ds-input", "To be, or not to be, that is the question")
        tab.wait("() => document.querySelector('.ds-step-box')?.hidden === false")
        page.locator(".ds-step").focus()
        page.keyboard.press("Home")
        tab.wait("() => document.querySelector('.ds-model')?.textContent.includes('@ step 0')")
        assert "step 0 of its run" in page.locator(".ds-step-out").text_content()

        # A model without snapshots: the section says so; the playground still steps.
        page.locator(".dp-model").select_option(tiny)
        tab.wait("() => !document.querySelector('#learner .dl-none').hidden")
        assert "has no training snapshots" in page.locator(".dl-none").text_content()
        tab.ready()
        tab.click(".dp-step")
        tab.wait_steps(1)
    finally:
        errors = tab.errors
        tab.close()
    assert not errors, errors

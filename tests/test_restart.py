"""A server that dies under open tabs: each tab gets its session back from what it shows.

- A cluster (deploy/cluster.py, a real nginx) of 2 workers, three tabs on each. Worker 1 is
  killed with SIGKILL while one of its tabs runs a Generate (and one of worker 0's runs one
  too). The cluster starts worker 1 again on its port, and its three tabs rebuild their
  sessions: the same text and the same chart, one plain message, the cut Generate reported as
  stopped with the tokens it had shown kept, and every tab goes on working. Worker 0's tabs
  see nothing: no message, no error, no failed request, and their Generate runs to its end.
- One `python app.py`, killed and started again by hand on the same port: an idle tab
  rebuilds in place, a tab whose Generate was cut is reloaded by Gradio and says what
  happened, and the link opened anew gives the same view.

Debian's Chromium through Playwright, the pages driven by clicks and keys; a random model
slow enough (about 30 ms a token here) that a 200-token Generate is still running when its
server is killed.
"""

from __future__ import annotations

import re

import psutil
import pytest

from testkit.cluster import launch_cluster, stop
from testkit.models import make_tiny_checkpoint
from testkit.page import Tab
from testkit.server import free_port, start_app, wait_ready

pytestmark = pytest.mark.browser

# What a person sees of a tab's session: the text, the chart's bars and what they stand for,
# the draw's u, and the logits the chart was computed from.
VIEW = """() => { const d = document.querySelector('.dp-main'), m = d.drawn.meta;
  return { text: document.querySelector('.dp-text').innerText, steps: m.steps, position: m.position,
           ids: m.ids, labels: m.labels, next: m.next_token, u: m.u, settings: m.settings,
           bars: d.drawn.bars.map((b) => [b.id, b.final, b.raw, b.finalColour, b.rawColour]),
           lines: d.drawn.lines, raw: Array.from(DP.state.live.raw) }; }"""
# The page's status line; a page being reloaded has none for a moment.
STATUS = "() => (document.querySelector('.dp-status') || {}).textContent || ''"
RESTORED = f"() => ({STATUS})().includes('rebuilt from this page')"
NOTICES = ("() => [...document.querySelectorAll('.dp-toast, [data-testid=\"toast-body\"]')].map((e) => e.textContent)"
           f".concat(({STATUS})() || [])")
NOTICED_DOWN = (f"() => document.body.innerText.includes('Connection Lost') || "
                f"({STATUS})().includes('stopped answering')")
RESTARTED = ("The server was restarted and had lost this tab's session: it was rebuilt from this page, with "
             "the same text, settings and chart.")
RECOVER_MS = 180_000  # a worker's restart (imports, the model) on 2 busy cores, then the page
BUSY_MS = 120_000  # anything else the page waits for, on cores shared with other jobs


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("slow"), n_layer=6, n_embd=256, block_size=512)


def view(tab: Tab) -> dict:
    tab.ready(BUSY_MS)
    return tab.page.evaluate(VIEW)


def watched(browser, url, **kw) -> Tab:
    """A tab that also records every request that failed (none may, on a worker that lives).
    ERR_ABORTED is the page's own doing: Gradio's client closes an event stream it is done with."""
    tab = Tab(browser, url, ready_ms=BUSY_MS, **kw)
    tab.failed = []
    tab.page.on("requestfailed", lambda r: None if r.failure == "net::ERR_ABORTED" else
                tab.failed.append(f"{r.url} {r.failure}"))
    return tab


def step(tab: Tab, n: int) -> None:
    """Press Step n times, each once the last has landed."""
    base = tab.meta()["steps"]
    for i in range(n):
        tab.click(".dp-step")
        tab.wait_steps(base + i + 1, BUSY_MS)


def start_generate(tab: Tab, tokens: int, shown: int = 3) -> int:
    """Ask for a Generate of `tokens` and wait until `shown` of them are on the page; returns
    the steps before it."""
    base = tab.meta()["steps"]
    box = tab.page.locator(".dp-n")
    box.click()
    tab.page.keyboard.press("Control+A")
    tab.page.keyboard.type(str(tokens))
    tab.page.keyboard.press("Enter")
    tab.click(".dp-generate")
    tab.wait("n => document.querySelector('.dp-app').classList.contains('dp-generating') && "
             "document.querySelectorAll('.dp-text .dp-tok').length >= n", base + shown, BUSY_MS)
    return base


def cut_generate_kept(tab: Tab, base: int) -> tuple[str, int]:
    """Once the tab has noticed its server is gone (Gradio's "Connection Lost", or the page's own
    line): the text it shows, and how many of the Generate's tokens are in it."""
    tab.wait(NOTICED_DOWN, timeout=BUSY_MS)
    return tab.text(), tab.token_count() - base


def stopped_message(n: int) -> str:
    return (f"The Generate that was running was stopped after {n} token{'' if n == 1 else 's'}; "
            "press Generate to go on.")


def test_killing_a_worker_in_a_generate_rebuilds_its_tabs_and_leaves_the_other_workers_tabs_alone(
        browser, tmp_path, checkpoint):
    c = launch_cluster(tmp_path, checkpoint, workers=2)
    try:
        tabs = {w: [watched(browser, c.url, cookies={"dp_worker": w}) for _ in range(3)] for w in ("w0", "w1")}
        for k, tab in enumerate(tabs["w0"] + tabs["w1"]):
            tab.type_into(".dp-prompt", f"To be, or not {k}")
            tab.ready(BUSY_MS)
            step(tab, 2 + k % 3)
        before = {id(t): view(t) for group in tabs.values() for t in group}

        runner, cut = tabs["w0"][0], tabs["w1"][0]
        runner_base = start_generate(runner, 200)
        cut_base = start_generate(cut, 200)
        old_pid, port = c.workers[1]
        psutil.Process(old_pid).kill()  # in the middle of both Generates
        cut_text, cut_kept = cut_generate_kept(cut, cut_base)
        assert cut_kept >= 3

        new_pid, new_port = c.back(1)
        assert new_port == port and new_pid != old_pid

        # Worker 1's tabs: the same session, rebuilt, with one plain message.
        for tab in tabs["w1"]:
            tab.wait(RESTORED, timeout=RECOVER_MS)
            now = view(tab)
            if tab is cut:
                assert now["text"] == cut_text and now["steps"] == cut_base + cut_kept
                assert tab.page.evaluate(STATUS).endswith(stopped_message(cut_kept))
            else:
                assert now == before[id(tab)]
                assert tab.page.evaluate(STATUS) == RESTARTED
            assert not tab.errors, tab.errors
        # The cut tab's chart is its link's: opened anew, on the other worker, it is the same.
        base_url, query = cut.page.url.split("?", 1)
        again = watched(browser, base_url, cookies={"dp_worker": "w0"}, query="?" + query)
        assert view(again) == view(cut)
        again.close()
        for tab in tabs["w1"]:  # and they go on
            steps_now = tab.meta()["steps"]
            step(tab, 1)
            assert tab.meta()["steps"] == steps_now + 1

        # Worker 0's tabs: nothing happened to them.
        runner.wait("() => !document.querySelector('.dp-app').classList.contains('dp-generating')", timeout=BUSY_MS)
        assert runner.meta()["steps"] > runner_base + 3
        for tab in tabs["w0"]:
            assert not tab.errors and not tab.failed, (tab.errors, tab.failed)
            notices = tab.page.evaluate(NOTICES)
            assert not [n for n in notices if not n.startswith("The model produced end-of-text")], notices
            if tab is not runner:
                assert view(tab) == before[id(tab)]
        for group in tabs.values():
            for tab in group:
                tab.close()
    finally:
        stop(c.proc)
    out = c.output()
    assert len(re.findall(r"worker \d \(pid \d+, port \d+\) was killed", out)) == 1, out


@pytest.mark.subprocess_app
def test_an_app_restarted_by_hand_rebuilds_its_tabs_and_its_links_reopen_the_same_view(browser, tmp_path, checkpoint):
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    app = start_app(port, ["--model", str(checkpoint)], tmp_path / "app-1.log")
    try:
        wait_ready(url, app)
        idle, cut = watched(browser, url), watched(browser, url)
        for k, tab in enumerate((idle, cut)):
            tab.type_into(".dp-prompt", f"ROMEO {k}:")
            tab.ready(BUSY_MS)
            step(tab, 3)
        before = view(idle)
        idle.wait("() => new URLSearchParams(location.search).has('t')", timeout=BUSY_MS)
        link = idle.page.url
        cut_base = start_generate(cut, 200)

        app.kill()
        app.wait()
        cut_text, cut_kept = cut_generate_kept(cut, cut_base)
        app = start_app(port, ["--model", str(checkpoint)], tmp_path / "app-2.log")
        wait_ready(url, app)

        idle.wait(RESTORED, timeout=RECOVER_MS)  # in place: the page was never reloaded
        assert view(idle) == before and idle.page.url == link
        cut.wait(RESTORED, timeout=RECOVER_MS)  # reloaded by Gradio, then rebuilt from its link
        assert view(cut)["text"] == cut_text
        assert cut.page.evaluate(STATUS).endswith(stopped_message(cut_kept))
        base_url, query = link.split("?", 1)
        reopened = watched(browser, base_url, query="?" + query)
        assert view(reopened) == before
        assert reopened.page.evaluate(STATUS) == ""  # a link opened anew has nothing to explain
        for tab in (idle, cut, reopened):
            assert not tab.errors, tab.errors
            tab.close()
    finally:
        app.kill()
        app.wait()

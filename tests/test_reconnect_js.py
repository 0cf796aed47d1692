"""The page's reconnection (ui/static/reconnect.js) under Node, with the server, Gradio's
trigger, timers and sessionStorage stood in for (tests/js/reconnect_cases.js): what a tab
sends, in what order, and what it says, when its server goes away and comes back as a new
process, answers that it lost the session, is reloaded by Gradio in a Generate, or only
stopped answering for a while. The same with real processes and Chromium: tests/test_restart.py.

Node is required (CI installs it): without it this test fails rather than skips.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

DRIVER = Path(__file__).parent / "js" / "reconnect_cases.js"
RESTARTED = ("The server was restarted and had lost this tab's session: it was rebuilt from this page, with "
             "the same text, settings and chart.")


@pytest.fixture(scope="module")
def seen() -> dict:
    node = shutil.which("node")
    assert node, "Node.js is needed to check the page's reconnection: apt-get install nodejs"
    out = subprocess.run([node, str(DRIVER)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_an_idle_tab_of_a_restarted_server_rebuilds_then_sends_what_was_clicked_meanwhile(seen):
    s = seen["idleTabOfARestartedServer"]
    assert s["downSaid"][0].startswith("The server stopped answering at ")
    assert s["sentWhileDown"] == 2  # the start and the first step: the clicks while down were held
    assert s["names"] == ["start", "step", "start", "step", "undo"]  # rebuilt first, then in order
    assert s["start"][1]["ids"] == [7, 8, 9, 10]  # from what the page shows
    assert s["replay"][1]["settings"] == {"temperature": 0.7}
    assert s["said"][-1] == RESTARTED
    assert s["seq"] == 0  # the new server numbers its payloads from 1 again


def test_a_lost_answer_rebuilds_the_session_and_sends_that_action_again(seen):
    s = seen["lostAnswerRebuildsAndResends"]
    assert s["names"] == ["start", "pick", "start", "pick"]
    assert s["start"][1]["ids"] == [4, 5]
    assert s["again"][1] == {"token": 11, "settings": {}, "id": 4}  # renumbered, its old `keep` gone
    assert s["said"] == ["The server no longer held this tab's session (it was restarted, or it closed the "
                         "session after a long pause): it was rebuilt from this page, with the same text, "
                         "settings and chart."]


def test_a_page_that_never_had_a_session_shows_the_error_instead(seen):
    s = seen["lostBeforeAnySessionIsAnError"]
    assert s == {"sent": 0, "said": [], "pending": None}


def test_a_generate_cut_by_gradios_reload_is_reported_stopped_and_the_unanswered_click_is_sent(seen):
    s = seen["generateCutByAReload"]
    assert s["note"]["app"] == 1 and s["note"]["stopped"] == 5
    assert s["names"] == ["start", "step"]
    assert s["said"] == [RESTARTED + " The Generate that was running was stopped after 5 tokens; press Generate "
                         "to go on."]
    assert not s["left"]  # the note is read once


def test_a_generate_running_when_the_server_changed_is_stopped_in_place(seen):
    s = seen["aRunningGenerateIsReportedStoppedInPlace"]
    assert s["names"] == ["start", "generate", "start"]  # never sent again
    assert s["stops"] == 1 and s["generating"] is False
    assert s["said"][-1].endswith("stopped after 3 tokens; press Generate to go on.")


def test_a_server_that_only_stopped_answering_keeps_the_session_and_gets_the_held_click(seen):
    s = seen["aBlipKeepsTheSession"]
    assert s["names"] == ["start", "step"]
    assert s["said"][-1] == ""  # the line about it is cleared; nothing was rebuilt


def test_a_tab_whose_server_lives_sees_nothing(seen):
    assert seen["otherTabsSeeNothing"] == {"names": ["start"], "said": []}

"""Safe defaults for a shared server: loopback unless told otherwise, models only from the
command line, and limits (prompt length, tokens per call, steps per session, concurrent jobs,
queue size) that answer with a clear message when hit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import types

import gradio as gr
import httpx
import psutil
import pytest

import app
from model.loading import load_model
from testkit.models import make_tiny_checkpoint
from testkit.raw_client import RawSession
from testkit.server import ROOT, free_port, launch
from ui import server
from ui.actions import Actions, Limits
from ui.api import API
from ui.handlers import PageHandlers
from ui.state import ModelRegistry

# ---- where the server listens ----

@pytest.mark.parametrize("argv, host", [([], "127.0.0.1"), (["--host", "0.0.0.0"], "0.0.0.0")])
def test_the_server_binds_loopback_unless_host_says_otherwise(tiny_checkpoint, monkeypatch, argv, host):
    launched = {}
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kw: launched.update(kw))
    app.main(["--model", str(tiny_checkpoint), "--port", "7999", *argv])
    assert launched["server_name"] == host and launched["share"] is False


def test_the_server_keeps_a_bounded_number_of_sessions_dropping_the_least_recent(tiny_checkpoint,
                                                                                  monkeypatch):
    """Clients that never close (scripts, raw API calls) each open a session; past the cap,
    Gradio's state holder drops the least recently used one."""
    launched = {}
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kw: launched.update(kw))
    app.main(["--model", str(tiny_checkpoint), "--port", "7999"])
    assert launched["state_session_capacity"] == server.MAX_SESSIONS
    assert 50 * 5 <= server.MAX_SESSIONS <= 2000  # room for a full workshop, bounded memory

    from gradio.state_holder import StateHolder
    holder = StateHolder()
    holder.capacity = 3
    holder.blocks = gr.Blocks()
    for name in ["a", "b", "c"]:
        holder[name]
    holder["a"]  # a is used again, so b is now the least recent
    holder["d"]
    assert list(holder.session_data) == ["c", "a", "d"]


@pytest.mark.subprocess_app
def test_a_started_server_listens_on_127_0_0_1_only(tiny_checkpoint):
    port = free_port()
    env = os.environ | {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--model", str(tiny_checkpoint),
                             "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90  # startup is 8-20 s here: torch and gradio imports
        while time.monotonic() < deadline:
            assert proc.poll() is None, "the server exited"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        listening = {c.laddr.ip for c in psutil.Process(proc.pid).net_connections("inet")
                     if c.status == psutil.CONN_LISTEN}
        assert listening == {"127.0.0.1"}
    finally:
        proc.terminate()
        proc.wait(timeout=20)


# ---- models come only from the command line ----

@pytest.fixture(scope="module")
def menu(tmp_path_factory):
    """A server offering one model, and a second, perfectly loadable checkpoint on disk that
    it does not offer. The loader records every path it is asked to open."""
    served = str(make_tiny_checkpoint(tmp_path_factory.mktemp("served")))
    other = str(make_tiny_checkpoint(tmp_path_factory.mktemp("not_served")))
    opened = []

    def loader(path):
        opened.append(str(path))
        return load_model(path)

    demo = app.build_demo([served], loader=loader)
    url = launch(demo)
    yield types.SimpleNamespace(url=url, served=served, other=other, opened=opened, demo=demo)
    demo.close()


def test_the_api_cannot_load_a_path_that_is_not_on_the_command_line(menu):
    from gradio_client import Client

    c = Client(menu.url, verbose=False)
    try:
        for path in (menu.other, "/etc/passwd", "../../", "smollm2", menu.served + "/../x"):
            with pytest.raises(Exception, match="is not served here; choose one of"):
                c.predict("To be", 0, path, False, api_name="/reset")
        assert c.predict("To be", 0, menu.served, False, api_name="/reset")["model"] == menu.served
    finally:
        c.close()
    assert set(menu.opened) == {menu.served}


def test_the_model_menu_cannot_be_fed_an_arbitrary_path(menu):
    """The page's own model event (private: the page calls it by number) with a path that is
    not on the menu: the visitor is told so, the tab keeps its model, and nothing is opened."""
    raw = RawSession(menu.url)
    try:
        config = httpx.get(menu.url + "config").json()
        event = next(d for d in config["dependencies"] if d.get("api_name") == "page_model")
        for i, path in enumerate((menu.other, "/etc", "smollm2", "../" * 8 + "etc/passwd")):
            reply = raw.join(event["id"], [None], {"id": i + 1, "name": path, "prompt": "To be"})
            assert reply.ok, reply
            payload = json.loads(reply.outputs[1])  # the playground's payload
            assert "is not served here; choose one of" in payload["notice"]["text"], payload
    finally:
        raw.close()
    assert set(menu.opened) <= {menu.served}


def test_a_shared_link_naming_another_model_falls_back_to_the_default(menu):
    registry = ModelRegistry([menu.served], loader=lambda p: (menu.opened.append(p), load_model(p))[1])
    evt = gr.EventData(None, {"id": 1, "model": menu.other, "prompt": "To be"})
    user, payload, _ = list(PageHandlers(Actions(registry)).start(None, evt, None))[-1]
    payload = json.loads(payload)
    assert user.model == menu.served and "is not served here" in payload["notice"]["text"]
    assert menu.other not in menu.opened


def test_the_servers_file_routes_do_not_serve_arbitrary_files(menu):
    for path in ("/etc/passwd", menu.other + "/config.json", str(ROOT / "app.py")):
        r = httpx.get(f"{menu.url}gradio_api/file={path}")
        assert r.status_code in (403, 404), (path, r.status_code)


def test_no_rest_route_runs_a_handler_outside_the_queue(menu):
    """Gradio's direct route would skip CONCURRENCY and QUEUE_SIZE: it is closed."""
    r = httpx.post(f"{menu.url}gradio_api/run/step", json={"data": [None, {}]})
    assert r.status_code == 404 and "join the queue" in r.text


# ---- limits, each with a clear message ----

@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    return ModelRegistry([str(make_tiny_checkpoint(tmp_path_factory.mktemp("tiny")))])


def test_a_prompt_over_the_limit_keeps_its_end_and_says_so(registry):
    limit = app.LIMITS.prompt_chars
    prompt = "x" * (limit + 10) + "END"
    _, info = API(Actions(registry)).reset(None, prompt, 0, "", False)
    assert info["text"].endswith("END") and len(info["text"]) <= limit
    assert f"cut to its last {limit:,} characters" in info["notice"]


def test_more_tokens_per_generate_than_the_limit_is_refused_clearly(registry):
    api = API(Actions(registry))
    user, _ = api.reset(None, "To be", 0, "", False)
    limit = app.LIMITS.generate_tokens
    with pytest.raises(gr.Error, match=rf"tokens to generate must be a whole number from 1 to {limit}, "
                                       rf"but is {limit + 1}"):
        list(api.generate(user, limit + 1, {}))
    assert len(user.session.history) == 0


def test_a_session_stops_at_max_steps_and_says_press_reset(registry):
    api = API(Actions(registry, Limits(session_tokens=4)))
    user, _ = api.reset(None, "To be", 0, "", False)
    for _ in range(4):
        api.step(user, {})
    with pytest.raises(gr.Error, match="the limit is 4. Press Reset"):
        api.step(user, {})
    with pytest.raises(gr.Error, match="the limit is 4"):
        list(api.generate(user, 1, {}))
    api.undo(user)
    assert api.step(user, {})["steps"] == 4  # Undo makes room again


def test_concurrent_jobs_and_queue_size_are_bounded_with_a_clear_message(tmp_path, monkeypatch):
    """One job at a time and two waiting: a burst of six gets three answers and three
    'Queue is full' refusals naming the limit, and never two jobs at once."""
    release, started, running, peak = threading.Event(), threading.Event(), [0], [0]
    lock = threading.Lock()

    def slow_undo(registry, user):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        started.set()
        release.wait(30)
        with lock:
            running[0] -= 1
        return {"undone": None, "text": "", "steps": 0}

    monkeypatch.setattr(API, "undo", lambda self, user: slow_undo(None, user))
    monkeypatch.setattr(server, "CONCURRENCY", 1)
    monkeypatch.setattr(server, "QUEUE_SIZE", 2)
    demo = app.build_demo([str(make_tiny_checkpoint(tmp_path / "ckpt"))])
    url = launch(demo)
    replies = []
    try:
        sessions = [RawSession(url) for _ in range(6)]
        joined = [threading.Event() for _ in sessions]
        threads = [threading.Thread(target=lambda s=s, j=j: replies.append(s.call("undo", joined=j)))
                   for s, j in zip(sessions, joined)]
        # In order: the first runs, two wait, the rest find the queue full.
        for i, t in enumerate(threads):
            t.start()
            assert joined[i].wait(30), f"caller {i} was neither queued nor refused"
            if i == 0:
                assert started.wait(30), "the first call never ran"
        release.set()
        for t in threads:
            t.join(timeout=60)
        for s in sessions:
            s.close()
    finally:
        release.set()
        demo.close()
    full = [r for r in replies if not r.ok]
    assert len(replies) == 6 and peak[0] == 1
    assert len(full) == 3 and all("Queue is full. Max size is 2" in r.error for r in full), full
    assert sum(r.ok for r in replies) == 3


# ---- memory: a visitor who leaves takes their session along ----

def test_a_closed_tab_frees_its_session_and_others_keep_theirs(tmp_path, monkeypatch):
    import gc

    from gradio_client import Client

    from model.session import DecodingSession

    monkeypatch.setenv("GRADIO_HEARTBEAT_INTERVAL", "0.5")  # notice a closed client quickly
    demo = app.build_demo([str(make_tiny_checkpoint(tmp_path / "ckpt"))])
    url = launch(demo)
    try:
        leaving, staying = Client(url, verbose=False), Client(url, verbose=False)
        for c in (leaving, staying):
            c.predict("To be", 1, api_name="/reset")
            c.submit(20, {}, api_name="/generate").result()
        def live_sessions():
            gc.collect()
            return sum(type(o) is DecodingSession for o in gc.get_objects())

        owners = {u.owner for u in demo.sessions.live()}
        assert {leaving.session_hash, staying.session_hash} <= owners
        before = live_sessions()
        leaving.close()
        deadline = time.monotonic() + 30
        while leaving.session_hash in {u.owner for u in demo.sessions.live()} and time.monotonic() < deadline:
            time.sleep(0.2)
        assert leaving.session_hash not in {u.owner for u in demo.sessions.live()}, \
            "a closed client's session is still held"
        assert live_sessions() == before - 1
        assert staying.predict(api_name="/export")["steps"][-1]["position"] > 0
        staying.close()
    finally:
        demo.close()

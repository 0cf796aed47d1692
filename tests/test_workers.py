"""Several playground workers behind nginx (deploy/cluster.py): each visitor stays on the
worker that holds its session, the room is spread over the workers, sessions stay intact
across many calls, the work of a burst runs in both worker processes, and the cluster stops
every process it started.

The cluster runs as a teacher starts it, `python -m deploy.cluster --workers 2 ...`, as a
subprocess serving a tiny random checkpoint (testkit.models): nothing is downloaded. nginx
must be installed (`apt-get install -y nginx`); without it these tests fail, they never skip.
"""

from __future__ import annotations

import random
import re
import socket
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil
import pytest

from testkit.cluster import Cluster, launch_cluster, stop
from testkit.models import make_tiny_checkpoint
from testkit.raw_client import RawSession

pytestmark = pytest.mark.workers


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, checkpoint):
    c = launch_cluster(tmp_path_factory.mktemp("cluster"), checkpoint, workers=2)
    yield c
    stop(c.proc)


def watch(session: RawSession) -> list[tuple[str, str | None]]:
    """Every response the session's client receives, as (path, X-Worker), in order; streamed
    responses are seen as soon as their headers arrive."""
    seen: list[tuple[str, str | None]] = []
    session.http.event_hooks["response"].append(
        lambda r: seen.append((r.request.url.path, r.headers.get("x-worker"))))
    return seen


# ---- stickiness and spread ----

def test_every_request_of_a_visitor_reaches_the_worker_that_holds_its_session(cluster):
    """20 visitors, each as a browser tab: config (first contact), the page, a static file,
    the heartbeat stream, and queue joins with their event streams. Every response of a
    visitor comes from the worker its cookie names, and the visitors use both workers."""
    sessions, assigned = [], []
    for i in range(20):
        s = RawSession(cluster.url, heartbeat=True)
        cookie = s.http.cookies.get("dp_worker")
        assert cookie in ("w0", "w1"), f"first contact set no worker cookie: {s.http.cookies!r}"
        seen = watch(s)
        page = s.http.get(cluster.url)
        asset = re.search(r'src="\./(assets/[^"]+\.js)"', page.text)
        assert asset, page.text[:500]
        assert s.http.get(cluster.url + asset.group(1)).status_code == 200
        assert s.call("reset", f"To be, or not {i}", i, "", False).ok
        for _ in range(3):
            assert s.call("step", {"temperature": 0.8}).ok
        assert s.call("export").ok
        sessions.append((s, cookie, seen))
        assigned.append(cookie)

    deadline = time.monotonic() + 10  # the heartbeat runs in its own thread
    while time.monotonic() < deadline and not all(
            any("/heartbeat/" in path for path, _ in seen) for _, _, seen in sessions):
        time.sleep(0.1)
    for s, cookie, seen in sessions:
        paths = {path for path, _ in seen}
        for wanted in ("/", "/gradio_api/queue/join", "/gradio_api/queue/data",
                       f"/gradio_api/heartbeat/{s.session_hash}"):
            assert wanted in paths, f"{wanted} never answered: {sorted(paths)}"
        want = f"127.0.0.1:{cluster.port_of(cookie)}"
        strays = [(path, worker) for path, worker in seen if worker != want]
        assert not strays, f"session on {cookie} ({want}) was answered elsewhere: {strays}"
        s.close()
    assert set(assigned) == {"w0", "w1"}, f"20 visitors, all on one worker: {assigned}"

    # nginx's own record: every request that carried a worker cookie went to that worker.
    log = (cluster.run_dir / "access.log").read_text()
    pairs = re.findall(r"cookie=(w\d+) worker=\S+ upstream=127\.0\.0\.1:(\d+)", log)
    assert len(pairs) > 100
    wrong = [(c, p) for c, p in pairs if int(p) != cluster.port_of(c)]
    assert not wrong, wrong[:10]


def test_an_event_stream_reaches_the_client_while_it_is_open(cluster):
    """A worker's heartbeat stream sends one line at once, then one every 15 s, and stays
    open while the tab lives. Through the proxy the first line arrives within seconds, long
    before the stream ends. (nginx passed it on as fast with proxy_buffering on, for a client
    that reads at once: the setting matters for slow clients, which this does not measure.)"""
    session_hash = "unbuffered-check"
    with httpx.Client(timeout=httpx.Timeout(10, read=5)) as http:
        with http.stream("GET", f"{cluster.url}gradio_api/heartbeat/{session_hash}") as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            first = next(r.iter_lines())
    assert first == "data: ALIVE"


def test_a_forged_or_stale_cookie_gets_a_real_worker(cluster):
    with httpx.Client(cookies={"dp_worker": "w7"}) as http:
        r = http.get(cluster.url + "config")
    assert r.status_code == 200
    assert r.headers["x-worker"] in {f"127.0.0.1:{port}" for _, port in cluster.workers}
    assert re.match(r"dp_worker=w[01];", r.headers["set-cookie"])


# ---- sessions stay intact ----

def replay(checkpoint: Path, prompt: str, seed: int, actions: list[tuple]) -> dict:
    """The session's actions alone, in this process (as the worker runs them)."""
    from model.loading import load_model
    from testkit.replay import replay as replay_actions

    loaded = load_model(checkpoint)
    return replay_actions(loaded.gpt, loaded.tokenizer, prompt, seed, actions)


def visitor(call, uid: int, n_calls: int) -> tuple[str, int, list[tuple], dict]:
    """A visitor clicking around: reset, then n_calls of step, pick, undo, distribution and
    generate with varied settings; returns (prompt, seed, committed actions, export)."""
    rng = random.Random(uid)
    prompt, seed = f"Whether 'tis nobler {uid}", 100 + uid
    call("reset", prompt, seed)
    actions, tokens = [], [0]
    for _ in range(n_calls):
        settings = {"temperature": rng.choice([0.0, 0.7, 1.2]), "top_k": rng.choice([0, 5, 40])}
        op = rng.choice(["step", "step", "pick", "undo", "distribution", "generate"])
        if op == "distribution":
            tokens = [t["id"] for t in call("distribution", settings, 10)["tokens"]]
        elif op == "pick":
            token = rng.choice(tokens)
            call("pick", token, settings)
            actions.append(("pick", token, settings))
        elif op == "generate":
            n = rng.randint(2, 6)
            call("generate", n, settings)
            actions.append(("generate", n, settings))
        elif op == "undo":
            call("undo")
            actions.append(("undo",))
        else:
            call("step", settings)
            actions.append(("step", settings))
    return prompt, seed, actions, call("export")


def raw_caller(session: RawSession):
    def call(name, *args):
        if name == "reset":
            args = (*args, "", False)  # model: the default; chat off
        reply = session.call(name, *args)
        assert reply.ok, f"/{name}: {reply.error}"
        return reply.data
    return call


def gradio_caller(client):
    def call(name, *args):
        if name == "generate":  # streamed: result() is the last update
            return client.submit(*args, api_name="/generate").result(timeout=120)
        return client.predict(*args, api_name=f"/{name}")
    return call


def test_each_session_keeps_its_own_state_across_many_calls(cluster):
    """Eight visitors at once (four gradio_client Clients, four raw queue sessions), 40 calls
    each: every export equals a replay of that visitor's own actions alone. One call landing
    on the other worker would find no session there and fail."""
    from gradio_client import Client

    clients = [Client(cluster.url, verbose=False) for _ in range(4)]
    raws = [RawSession(cluster.url, heartbeat=True) for _ in range(4)]
    callers = [gradio_caller(c) for c in clients] + [raw_caller(s) for s in raws]
    results: dict[int, tuple] = {}
    failures: list[str] = []

    def run(uid):
        try:
            results[uid] = visitor(callers[uid], uid, 40)
        except Exception as e:  # reported below with the visitor's number
            failures.append(f"visitor {uid}: {type(e).__name__}: {e}")
    threads = [threading.Thread(target=run, args=(uid,)) for uid in range(len(callers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    for c in clients:
        c.close()
    for s in raws:
        s.close()
    assert not failures, failures

    workers = [c.cookies.get("dp_worker") for c in clients] + [s.http.cookies.get("dp_worker") for s in raws]
    assert all(w in ("w0", "w1") for w in workers), workers
    for uid, (prompt, seed, actions, export) in sorted(results.items()):
        want = replay(cluster.checkpoint, prompt, seed, actions)
        got = {"text": export["text"], "tokens": [step["token"] for step in export["steps"]]}
        assert got == want, f"visitor {uid} on {workers[uid]}"
        assert len(actions) > 20


# ---- the work runs in both processes ----

def burst(url: str, config: dict, cookies: list[str], steps: int) -> float:
    """One raw session per cookie, each a reset then `steps` steps back to back, all at once;
    returns the seconds until the last one finishes."""
    sessions = []
    for cookie in cookies:
        s = RawSession(url, config=config)
        s.http.cookies.set("dp_worker", cookie)
        sessions.append(s)
    errors: list[str] = []

    def run(i, s):
        for reply in [s.call("reset", f"ROMEO {i}", i, "", False)] + [
                s.call("step", {"temperature": 0.9}) for _ in range(steps)]:
            if not reply.ok:
                errors.append(reply.error)
    threads = [threading.Thread(target=run, args=(i, s)) for i, s in enumerate(sessions)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    seconds = time.monotonic() - t0
    for s in sessions:
        s.close()
    assert not errors, errors[:5]
    return seconds


def joins_by_worker(cluster: Cluster, since: int) -> tuple[Counter, int]:
    """How many POST queue/join requests nginx passed to each worker (0, 1, ...) since
    `since` in its access log, and the log's length now."""
    text = (cluster.run_dir / "access.log").read_text()
    worker_of = {str(port): i for i, (_, port) in enumerate(cluster.workers)}
    ports = re.findall(r'"POST /gradio_api/queue/join[^"]*" cookie=\S* worker=\S+ upstream=127\.0\.0\.1:(\d+)',
                       text[since:])
    return Counter(worker_of[p] for p in ports), len(text)


def test_a_burst_runs_on_both_workers(cluster, record_property):
    """The same burst (8 clients, each a reset and 30 steps) pinned to one worker by its
    cookie, then spread over both. Asserted from nginx's access log: the pinned burst's calls
    all reached w0, the spread one's split evenly, and every call was answered. The wall-clock
    times are recorded, not asserted: on 2 cores shared with other jobs they measure the
    neighbours as much as the cluster (benchmarks/bench_load.py --workers 1 vs 2 measures the
    room's throughput)."""
    config = httpx.get(cluster.url + "config").json()
    calls = 8 * (1 + 30)
    _, mark = joins_by_worker(cluster, 0)
    for kind, cookies, expected in (("pinned", ["w0"] * 8, {0: calls}),
                                    ("spread", ["w0", "w1"] * 4, {0: calls // 2, 1: calls // 2})):
        seconds = burst(cluster.url, config, cookies, steps=30)
        joins, mark = joins_by_worker(cluster, mark)
        assert joins == expected, (kind, joins)
        record_property(f"{kind}_burst_seconds", round(seconds, 2))
        print(f"{kind} burst of 8 x 30 steps: {seconds:.1f} s")


# ---- stopping ----

def test_a_killed_worker_is_started_again_on_its_port_and_the_other_keeps_its_sessions(tmp_path, checkpoint):
    """kill -9 worker 1: the cluster says which worker died, how (SIGKILL), shows the end of
    its log, and starts it again on the same port, behind the same nginx; worker 0's session
    goes on as if nothing happened. Worker 1's visitors reach the new process, which holds no
    session for them and says so (a page rebuilds it: tests/test_restart.py)."""
    c = launch_cluster(tmp_path, checkpoint, workers=2)  # its own: it kills worker 1
    try:
        nginx_pid = c.wait_for(r"^nginx: pid (\d+)", 10).group(1)
        config = httpx.get(c.url + "config").json()  # fetched apart: a session's cookie is set once
        kept, lost = RawSession(c.url, config=config), RawSession(c.url, config=config)
        kept.http.cookies.set("dp_worker", "w0")
        lost.http.cookies.set("dp_worker", "w1")
        for s, prompt in ((kept, "To be"), (lost, "Or not")):
            assert s.call("reset", prompt, 1, "", False).ok
            assert all(s.call("step", {"temperature": 0.8}).ok for _ in range(5))
        before = kept.call("export").data

        old_pid, port = c.workers[1]
        worker = psutil.Process(old_pid)
        worker.kill()
        worker.wait(timeout=30)
        # While it starts again (its imports alone take seconds), its visitors are told so:
        # Gradio's client gets JSON it shows, a browser a page that asks again by itself.
        down = lost.http.get(c.url + "gradio_api/app_id")
        assert down.status_code == 502 and "restarting" in down.json()["detail"]
        down = lost.http.get(c.url)
        assert down.status_code == 502 and 'http-equiv="refresh"' in down.text
        new_pid, new_port = c.back(1)
        assert (new_port, c.proc.poll()) == (port, None)
        assert new_pid != old_pid
        out = c.output()
        died = re.search(rf"worker 1 \(pid {old_pid}, port {port}\) was killed by SIGKILL[^\n]*after serving", out)
        assert died, out
        assert f"The end of {c.run_dir / 'worker-1.log'}:" in out
        assert c.wait_for(r"^nginx: pid (\d+)", 1).group(1) == nginx_pid and "Stopping the cluster" not in out
        assert "started again by the cluster (restart 1)" in (c.run_dir / "worker-1.log").read_text()

        assert kept.call("export").data == before  # untouched, and still going
        assert kept.call("step", {"temperature": 0.8}).ok
        reply = lost.call("step", {"temperature": 0.8})
        assert not reply.ok and "No model is loaded in this tab" in reply.error
        assert lost.http.get(c.url + "config").headers["x-worker"] == f"127.0.0.1:{port}"
        kept.close()
        lost.close()
    finally:
        assert stop(c.proc) == 0, c.output()


def test_a_worker_that_dies_at_every_start_is_given_up_and_its_visitors_go_to_the_other(tmp_path, checkpoint):
    """Worker 1 is killed, then its port is taken, so that every start fails at once. With
    --give-up-after 2 the second quick death in a row gives up (the kill itself counts as one
    or not, by how long the worker had served): the cluster says so plainly, keeps serving,
    and nginx sends worker 1's visitors to worker 0 (a new cookie), without touching the
    sessions there."""
    c = launch_cluster(tmp_path, checkpoint, workers=2, extra=["--give-up-after", "2"])
    taken = socket.socket()
    try:
        kept = RawSession(c.url, config=httpx.get(c.url + "config").json())
        kept.http.cookies.set("dp_worker", "w0")
        assert kept.call("reset", "To be", 1, "", False).ok
        assert kept.call("step", {"temperature": 0.8}).ok
        before = kept.call("export").data

        old_pid, port = c.workers[1]
        worker = psutil.Process(old_pid)
        worker.kill()
        worker.wait(timeout=30)  # its listening socket is closed
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", port))
        taken.listen()
        c.wait_for(r"worker 1 died 2 times in a row, before it answered or within \d+ s of it: it is left stopped")
        c.wait_for(r"nginx now sends the visitors of worker 1 to the other workers")
        out = c.output()
        assert re.search(rf"worker 1 \(pid \d+, port {port}\) exited with code 1, before it answered", out), out
        assert "Cannot find empty port" in out  # the end of its log says why

        with httpx.Client(cookies={"dp_worker": "w1"}) as http:
            r = http.get(c.url + "config")
        assert r.status_code == 200 and r.headers["x-worker"] == f"127.0.0.1:{c.workers[0][1]}"
        assert r.headers["set-cookie"].startswith("dp_worker=w0;")
        assert kept.call("export").data == before
        kept.close()
        assert c.proc.poll() is None
    finally:
        taken.close()
        stop(c.proc)


def test_sigterm_stops_nginx_and_every_worker(tmp_path, checkpoint):
    c = launch_cluster(tmp_path, checkpoint, workers=1)
    children = psutil.Process(c.proc.pid).children(recursive=True)
    assert len(children) >= 3  # one worker, nginx's master and its worker
    assert stop(c.proc) == 0, c.log.read_text()
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"left running: {alive}"
    assert "SIGTERM: stopping" in c.log.read_text()


def test_a_reload_counts_as_done_only_once_no_old_nginx_worker_accepts(tmp_path):
    """SIGHUP only asks nginx to reload; until each old worker has closed its listening socket,
    a new connection may still be routed by the old config (to a given-up worker's port). The
    cluster announces the new routing after wait_for_reload, which must see the new worker
    running and the old one shutting down, even while the old one still serves a request."""
    import shutil
    import signal
    import subprocess

    from deploy.cluster import nginx_workers, wait_for_reload
    from testkit.server import free_port

    port = free_port()
    conf = tmp_path / "nginx.conf"
    temp = " ".join(f"{kind}_temp_path {tmp_path}/{kind};"
                    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf.write_text(f"daemon off; pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log warn; "
                    f"worker_processes 1; events {{ worker_connections 64; }} "
                    f"http {{ {temp} access_log off; server {{ listen 127.0.0.1:{port}; "
                    f"location / {{ return 200 'config 1'; }} }} }}")
    nginx = subprocess.Popen([shutil.which("nginx") or "/usr/sbin/nginx", "-p", str(tmp_path),
                              "-c", str(conf), "-e", str(tmp_path / "error.log")])
    held = None
    try:
        for _ in range(600):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/").text == "config 1":
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        else:
            pytest.fail(f"nginx did not answer on port {port}: {(tmp_path / 'error.log').read_text()}")
        before = nginx_workers(nginx.pid)
        assert len(before) == 1 and "worker process" in next(iter(before.values())), before
        held = socket.create_connection(("127.0.0.1", port))
        held.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # half a request keeps the old worker busy

        conf.write_text(conf.read_text().replace("config 1", "config 2"))
        nginx.send_signal(signal.SIGHUP)
        assert wait_for_reload(nginx.pid, set(before)) == ""
        after = nginx_workers(nginx.pid)
        old = next(iter(before))
        assert old not in after or "shutting down" in after[old], after
        # Every new connection now meets the new config.
        assert {httpx.get(f"http://127.0.0.1:{port}/").text for _ in range(20)} == {"config 2"}

        # A config nginx refuses: no new worker starts, the running one keeps serving, and the
        # wait says both rather than that the new routing is live.
        before = nginx_workers(nginx.pid)
        conf.write_text(conf.read_text().replace("return 200", "return_nonsense 200"))
        nginx.send_signal(signal.SIGHUP)
        problem = wait_for_reload(nginx.pid, set(before), timeout=1.0)
        assert "no worker with the new config started" in problem, problem
        serving = sorted(pid for pid, title in before.items() if "shutting down" not in title)
        assert f"old workers still accept connections: pids {serving}" in problem, problem
        assert httpx.get(f"http://127.0.0.1:{port}/").text == "config 2"
    finally:
        if held is not None:
            held.close()
        nginx.terminate()
        nginx.wait(timeout=30)

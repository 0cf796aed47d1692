"""Workshop load: a room of simulated students on one playground server.

    python benchmarks/bench_load.py                       # 2 rooms of 50 users, 60 s each
    python benchmarks/bench_load.py --users 10 --seconds 20 --waves 1 --json out.json
    python benchmarks/bench_load.py --client raw          # browser-like client, for comparison

The server runs as a subprocess (`python app.py --port FREE`, loopback only) and every user is
its own gradio_client session, in its own process (as each student has a laptop): reset with
its own prompt and seed, slider moves (/distribution), step, pick, undo, short generates, with
a pause between clicks as a person makes. Each wave is one such room; then:

- latency: requests served, errors, median and p95 of each endpoint (a step is the target);
- isolation: each user's final text (from /export) must equal a replay of that user's own
  actions alone, in this process with model.session.DecodingSession and the same seed;
- memory: the server's RSS (psutil) at start, at its peak, and after every client has closed
  its connection (the app frees a tab's session when Gradio reports it gone); a second wave on
  the same server shows whether what stays is a leak (it grows) or a floor (it does not).

Every loop is bounded in count and time; the script stops the server and exits by itself.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import psutil  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))  # test_hostile.RawSession, for --client raw

PROMPTS = [
    "To be, or not to be", "ROMEO:\nBut, soft! what light", "KING HENRY:\nOnce more unto the breach",
    "Shall I compare thee", "First Citizen:\nBefore we proceed", "O Romeo, Romeo!",
    "Friends, Romans, countrymen", "Now is the winter of our discontent", "HAMLET:\n",
    "The quality of mercy", "All the world's a stage", "If music be the food of love",
    "", "Is this a dagger which I see", "Double, double toil and trouble", "LEAR:\nBlow, winds",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, model: str | None, log_path: Path) -> subprocess.Popen:
    cmd = [sys.executable, str(ROOT / "app.py"), "--port", str(port)]
    if model:
        cmd += ["--model", model]
    env = os.environ | {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
                        "PYTHONUNBUFFERED": "1"}
    log = open(log_path, "w")
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 120.0) -> float:
    """Seconds until the page answers; startup is 8-20 s here (torch and gradio imports)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return time.monotonic() - t0
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the server did not answer at {url} within {timeout:.0f} s")


def rss_mb(proc: psutil.Process) -> float:
    return proc.memory_info().rss / 2**20


def slider_settings(rng: random.Random) -> dict:
    """Settings as a student leaves the sliders: mostly temperature and one filter or two."""
    s = {"temperature": round(rng.choice([0.0, rng.uniform(0.1, 1.6)]), 2)}
    if rng.random() < 0.5:
        s["top_k"] = rng.choice([1, 5, 20, 40, 200])
    if rng.random() < 0.5:
        s["top_p"] = round(rng.uniform(0.3, 1.0), 2)
    if rng.random() < 0.2:
        s["min_p"] = round(rng.uniform(0.0, 0.3), 2)
    if rng.random() < 0.15:
        s["repetition_penalty"] = round(rng.uniform(0.8, 1.6), 2)
    if rng.random() < 0.1:
        s["temperature_last"] = True
    return s


class User:
    """One student: a gradio_client session and the actions that changed its text."""

    OPS = ("distribution", "step", "pick", "undo", "generate", "reset")
    WEIGHTS = (5, 4, 1, 1, 1, 0.15)

    def __init__(self, uid: int, client, think: tuple[float, float], max_requests: int):
        self.uid, self.client = uid, client
        self.rng = random.Random(uid)
        self.prompt = PROMPTS[uid % len(PROMPTS)]
        self.seed = 1000 + 7919 * uid
        self.think, self.max_requests = think, max_requests
        self.actions: list[tuple] = []  # since the last reset
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: list[str] = []
        self.last_tokens: list[int] = []
        self.export: dict | None = None

    def call(self, name: str, *args):
        t0 = time.monotonic()
        try:
            if not hasattr(self.client, "predict"):  # a RawSession
                reply = self.client.call(name, *args)
                if not reply.ok:
                    raise RuntimeError(reply.error)
                result = reply.data
            elif name == "generate":
                # result() waits for the stream's end and raises the job's error, if any
                result = self.client.submit(*args, api_name="/generate").result(timeout=180)
            else:
                result = self.client.predict(*args, api_name=f"/{name}")
        except Exception as e:  # counted, reported; the run goes on
            self.errors.append(f"user {self.uid} /{name}{args!r:.120}: {type(e).__name__}: {e!s:.200}")
            return None
        self.latency[name].append(time.monotonic() - t0)
        return result

    def reset(self):
        if self.call("reset", self.prompt, self.seed) is not None:
            self.actions = []

    def run(self, deadline: float):
        time.sleep(self.rng.uniform(0, 2))  # a room opens its tabs over a second or two
        self.reset()
        for _ in range(self.max_requests):
            if time.monotonic() >= deadline:
                break
            time.sleep(self.rng.uniform(*self.think))
            op = self.rng.choices(self.OPS, self.WEIGHTS)[0]
            settings = slider_settings(self.rng)
            if op == "distribution":
                out = self.call("distribution", settings, 20)
                if out:
                    self.last_tokens = [t["id"] for t in out["tokens"]]
            elif op == "step":
                if self.call("step", settings) is not None:
                    self.actions.append(("step", settings))
            elif op == "pick":  # a click on a bar of the last chart (or any id)
                token = self.rng.choice(self.last_tokens) if self.last_tokens else self.rng.randrange(4096)
                if self.call("pick", token, settings) is not None:
                    self.actions.append(("pick", token, settings))
            elif op == "undo":
                if self.call("undo") is not None:
                    self.actions.append(("undo",))
            elif op == "generate":
                n = self.rng.randint(2, 8)
                if self.call("generate", n, settings) is not None:
                    self.actions.append(("generate", n, settings))
            else:
                self.reset()
        self.export = self.call("export")


def connect(url: str, kind: str, config: dict):
    """One user's session: a gradio_client Client, or a RawSession with a heartbeat (as a
    browser tab has one, so the server frees it when it closes)."""
    if kind == "gradio_client":
        from gradio_client import Client
        return Client(url, verbose=False)
    from test_hostile import RawSession
    return RawSession(url, heartbeat=True, config=config)


def worker(uids, url, kind, think, max_requests, seconds, conn):
    """Runs in its own process: a share of the users, one thread each. 50 gradio_clients in
    one process spend their time waiting for its GIL, and that would be measured as latency."""
    config = json.loads(urllib.request.urlopen(url + "config", timeout=60).read())
    clients: dict[int, object] = {}

    def open_one(uid):
        for attempt in range(3):
            try:
                clients[uid] = connect(url, kind, config)
                return
            except Exception:
                time.sleep(1 + attempt)
    threads = [threading.Thread(target=open_one, args=(u,)) for u in uids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    users = [User(uid, clients[uid], think, max_requests) for uid in uids if uid in clients]
    conn.send(len(users))
    start_at = conn.recv()  # the same wall-clock start for every process
    time.sleep(max(0.0, start_at - time.time()))
    cpu0 = psutil.Process().cpu_times()
    deadline = time.monotonic() + seconds
    threads = [threading.Thread(target=u.run, args=(deadline,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 180)  # a stuck request cannot hang the run
    cpu1 = psutil.Process().cpu_times()
    for u in users:
        u.client.close()
    conn.send({"cpu_s": cpu1.user + cpu1.system - cpu0.user - cpu0.system,
               "users": [{"uid": u.uid, "prompt": u.prompt, "seed": u.seed, "actions": u.actions,
                          "latency": dict(u.latency), "errors": u.errors, "export": u.export}
                         for u in users]})
    conn.close()


def replay(user: dict, gpt, tokenizer, max_prompt_chars: int) -> dict:
    """The user's actions since their last reset, alone, in this process."""
    from model.sampling import SamplingSettings
    from model.session import DecodingSession

    s = DecodingSession(gpt, tokenizer, seed=user["seed"], max_prompt_chars=max_prompt_chars)
    s.reset(user["prompt"], seed=user["seed"])
    for action in user["actions"]:
        kind, args = action[0], action[1:]
        if kind == "step":
            s.step(SamplingSettings.from_dict(args[0]))
        elif kind == "pick":
            s.pick(args[0], SamplingSettings.from_dict(args[1]))
        elif kind == "undo":
            s.undo()
        elif kind == "generate":  # as app.api_generate: stop at end-of-text
            settings = SamplingSettings.from_dict(args[1])
            for _ in range(args[0]):
                if s.step(settings).token == s.eot:
                    break
    return {"text": s.text, "tokens": [r.token for r in s.history]}


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def run_wave(args, url: str, ps: psutil.Process) -> dict:
    """One room: the users connect, work for args.seconds, leave; then their texts are checked
    against replays and the server's memory is watched while it frees their sessions."""
    out: dict = {}
    ctx = multiprocessing.get_context("spawn")
    pipes, procs = [], []
    for k in range(args.procs):
        uids = list(range(k, args.users, args.procs))
        mine, theirs = ctx.Pipe()
        proc = ctx.Process(target=worker, daemon=True, args=(
            uids, url, args.client, tuple(args.think), args.max_requests, args.seconds, theirs))
        proc.start()
        pipes.append(mine)
        procs.append(proc)
    out["clients_connected"] = sum(c.recv() if c.poll(300) else 0 for c in pipes)

    peak = [rss_mb(ps)]
    sampling = threading.Event()

    def sample_rss():
        while not sampling.wait(0.5):
            peak.append(rss_mb(ps))
    threading.Thread(target=sample_rss, daemon=True).start()

    out["rss_before_mb"] = round(rss_mb(ps), 1)
    out["load_avg_at_start"] = [round(x, 2) for x in os.getloadavg()]
    cpu0 = ps.cpu_times()
    t0 = time.monotonic()
    start_at = time.time() + 1.0
    for c in pipes:
        c.send(start_at)
    done = [c.recv() if c.poll(args.seconds + 300) else {"cpu_s": 0.0, "users": []} for c in pipes]
    for proc in procs:
        proc.join(timeout=30)
    users = [u for d in done for u in d["users"]]
    out["load_wall_s"] = round(time.monotonic() - t0, 1)
    # Who used the two cores: the server, or the simulated users?
    cpu1 = ps.cpu_times()
    out["server_cpu_s"] = round(cpu1.user + cpu1.system - cpu0.user - cpu0.system, 1)
    out["clients_cpu_s"] = round(sum(d["cpu_s"] for d in done), 1)
    out["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]

    latency: dict[str, list[float]] = defaultdict(list)
    for u in users:
        for k, v in u["latency"].items():
            latency[k] += v
    errors = [e for u in users for e in u["errors"]]
    out["requests"] = sum(len(v) for v in latency.values()) + len(errors)
    out["errors"] = len(errors)
    out["error_samples"] = errors[:10]
    out["server_cpu_ms_per_request"] = round(1000 * out["server_cpu_s"] / max(1, out["requests"]), 1)
    out["latency_s"] = {k: {"n": len(v), "p50": round(statistics.median(v), 3),
                            "p95": round(pct(v, 0.95), 3), "max": round(max(v), 3)}
                        for k, v in sorted(latency.items()) if v}

    # Isolation: every user's text against a replay of its own actions alone.
    import torch

    import app
    from model.loading import load_model
    torch.set_num_threads(1)  # this process shares the cores with the server
    gpt, tokenizer = load_model(str(ROOT / args.model))
    mismatches = []
    for u in users:
        if u["export"] is None:
            mismatches.append(f"user {u['uid']}: no export")
            continue
        want = replay(u, gpt, tokenizer, app.MAX_PROMPT_CHARS)
        got = {"text": u["export"]["text"], "tokens": [s["token"] for s in u["export"]["steps"]]}
        if got != want:
            mismatches.append(f"user {u['uid']}: server {got['text'][-60:]!r} != replay {want['text'][-60:]!r}")
    out["isolation_checked"] = len(users)
    out["isolation_mismatches"] = len(mismatches)
    out["isolation_samples"] = mismatches[:5]
    out["steps_committed"] = sum(len(u["export"]["steps"]) for u in users if u["export"])

    # Memory: the workers closed every client; Gradio sees each heartbeat connection drop
    # and runs the app's unload handler, which frees that tab's session.
    t_close = time.monotonic()
    settled = [rss_mb(ps)]
    while time.monotonic() - t_close < args.settle:
        time.sleep(2)
        settled.append(rss_mb(ps))
        # settled: three samples in a row within 1 MB, after the heartbeat window
        if time.monotonic() - t_close > 30 and max(settled[-3:]) - min(settled[-3:]) < 1:
            break
    sampling.set()
    out["rss_peak_mb"] = round(max(peak), 1)
    out["rss_after_close_mb"] = round(settled[-1], 1)
    out["rss_settle_s"] = round(time.monotonic() - t_close, 1)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=50)
    p.add_argument("--seconds", type=float, default=60.0, help="length of the load phase")
    p.add_argument("--think", type=float, nargs=2, default=(0.3, 2.0), metavar=("MIN", "MAX"),
                   help="seconds a user waits between clicks (uniform); 0 0 = no pause")
    p.add_argument("--max-requests", type=int, default=400, help="per user, a bound on the loop")
    p.add_argument("--model", default="checkpoints/shakespeare")
    p.add_argument("--settle", type=float, default=90.0,
                   help="seconds to wait, at most, for the server's memory to come back after "
                        "the clients close (Gradio notices a closed client within ~15 s)")
    p.add_argument("--client", choices=("gradio_client", "raw"), default="gradio_client",
                   help="raw: tests/test_hostile.RawSession, the same queue protocol without "
                        "gradio_client's 50 ms polling (closer to a browser tab)")
    p.add_argument("--waves", type=int, default=2,
                   help="rooms in a row on the same server: memory after each must stay level")
    p.add_argument("--procs", type=int, default=0,
                   help="processes the users are spread over (default 0: one per user, as each "
                        "student has their own laptop; gradio_client is CPU-hungry, and many in "
                        "one process wait for its GIL, which would be measured as latency)")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    args.procs = min(args.procs or args.users, args.users)

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_load_server_{port}.log"
    server = start_server(port, args.model, log_path)
    results: dict = {"users": args.users, "seconds": args.seconds, "think_s": list(args.think),
                     "client": args.client, "client_processes": args.procs,
                     "model": args.model, "cpu_count": os.cpu_count()}
    try:
        results["startup_s"] = round(wait_ready(url, server), 1)
        ps = psutil.Process(server.pid)
        results["load_avg_at_start"] = [round(x, 2) for x in os.getloadavg()]
        time.sleep(2)
        results["rss_start_mb"] = round(rss_mb(ps), 1)
        # Safe default: with no --host the server listens on loopback only.
        results["listening_on"] = sorted({f"{c.laddr.ip}:{c.laddr.port}" for c in ps.net_connections("inet")
                                          if c.status == psutil.CONN_LISTEN})

        print(f"server up in {results['startup_s']} s, RSS {results['rss_start_mb']} MB", flush=True)
        results["waves"] = []
        for wave in range(args.waves):
            results["waves"].append(run_wave(args, url, ps))
            w = results["waves"][-1]
            print(f"wave {wave + 1}: {w['requests']} requests, {w['errors']} errors, step p50 "
                  f"{w['latency_s'].get('step', {}).get('p50')} s p95 {w['latency_s'].get('step', {}).get('p95')} s, "
                  f"RSS peak {w['rss_peak_mb']} MB, after close {w['rss_after_close_mb']} MB", flush=True)
        for key in ("requests", "errors", "isolation_checked", "isolation_mismatches"):
            results[key] = sum(w[key] for w in results["waves"])
        results["rss_after_close_mb"] = [w["rss_after_close_mb"] for w in results["waves"]]
        results["server_alive"] = server.poll() is None
        with urllib.request.urlopen(url, timeout=10) as r:
            results["server_answers_after"] = r.status == 200
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()

    print(json.dumps(results, indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    ok = results.get("errors") == 0 and results.get("isolation_mismatches") == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

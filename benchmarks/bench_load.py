"""Workshop load: a room of simulated students on one playground server, or on several
workers behind nginx.

    python -m benchmarks.bench_load                       # 2 rooms of 50 users, 60 s each
    python -m benchmarks.bench_load --users 10 --seconds 20 --waves 1 --json out.json
    python -m benchmarks.bench_load --client raw          # browser-like client, for comparison
    python -m benchmarks.bench_load --workers 2           # 2 app.py behind nginx (deploy/cluster.py)
    python -m benchmarks.bench_load --url http://127.0.0.1:7860/ --model smollm2   # a running server

The server runs as a subprocess (`python app.py --port FREE`, loopback only; with --workers N,
`python -m deploy.cluster --workers N`) and every user is its own session, in its own process
(as each student has a laptop): reset with its own prompt and seed, slider moves
(/distribution), step, pick, undo, short generates, with a pause between clicks as a person
makes. Each wave is one such room; then:

- latency: requests served, errors, median and p95 of each endpoint (a step is the target);
- isolation: each user's final text (from /export) must equal a replay of that user's own
  actions alone, in this process with model.session.DecodingSession and the same seed;
- memory: the server's RSS (psutil; with several workers, their sum) at start, at its peak,
  and after every client has closed its connection (the app frees a tab's session when Gradio
  reports it gone); a second wave on the same server shows whether what stays is a leak (it
  grows) or a floor (it does not). Not measured with --url (the server is not ours to watch).

The last line is a verdict. It is FAIL, and the exit status 1, when any user could not
connect, any request failed, any export differs from its replay, the server died, or the room
made far fewer requests than its users' pace implies (users x seconds / mean think time):
a run in which nothing ran is not a success.

Every loop is bounded in count and time; the script stops the server and exits by itself.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

import psutil

# Importing testkit.server sets the offline environment (no analytics, no hub) for this
# process and the servers it starts.
from testkit.server import cluster_workers, free_port, start_app, start_cluster, wait_ready

ROOT = Path(__file__).resolve().parents[1]

PROMPTS = [
    "To be, or not to be", "ROMEO:\nBut, soft! what light", "KING HENRY:\nOnce more unto the breach",
    "Shall I compare thee", "First Citizen:\nBefore we proceed", "O Romeo, Romeo!",
    "Friends, Romans, countrymen", "Now is the winter of our discontent", "HAMLET:\n",
    "The quality of mercy", "All the world's a stage", "If music be the food of love",
    "", "Is this a dagger which I see", "Double, double toil and trouble", "LEAR:\nBlow, winds",
]


def rss_mb(servers: list[psutil.Process]) -> float:
    """The server processes' resident memory together (each worker holds its own model)."""
    return sum(p.memory_info().rss for p in servers) / 2**20


def cpu_s(servers: list[psutil.Process]) -> float:
    return sum(t.user + t.system for t in (p.cpu_times() for p in servers))


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
    from testkit.raw_client import RawSession
    return RawSession(url, heartbeat=True, config=config)


def worker(uids, url, kind, think, max_requests, seconds, conn):
    """Runs in its own process: a share of the users, one thread each. 50 gradio_clients in
    one process spend their time waiting for its GIL, and that would be measured as latency."""
    clients: dict[int, object] = {}
    failed: dict[int, str] = {}
    try:
        config = json.loads(urllib.request.urlopen(url + "config", timeout=60).read())
    except Exception as e:  # every user of this process fails to connect, and says why
        config, failed = None, {u: f"GET {url}config: {type(e).__name__}: {e}" for u in uids}

    def open_one(uid):
        for attempt in range(3):
            try:
                clients[uid] = connect(url, kind, config)
                failed.pop(uid, None)
                return
            except Exception as e:  # kept: the verdict names it
                failed[uid] = f"user {uid}: {type(e).__name__}: {e!s:.200}"
                time.sleep(1 + attempt)
    threads = [threading.Thread(target=open_one, args=(u,)) for u in uids] if config else []
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for uid in uids:
        if uid not in clients:
            failed.setdefault(uid, f"user {uid}: not connected within 120 s")
    users = [User(uid, clients[uid], think, max_requests) for uid in uids if uid in clients]
    conn.send({"connected": len(users), "failed": sorted(failed.values())})
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


def replay(user: dict, gpt, tokenizer) -> dict:
    """The user's actions since their last reset, alone, in this process. (The prompts are far
    shorter than the server's prompt limit, so no cut applies on either side.)"""
    from testkit.replay import replay as replay_actions

    return replay_actions(gpt, tokenizer, user["prompt"], user["seed"], user["actions"])


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def receive(conn, proc, timeout: float, empty):
    """One message from a client process, or `empty` if it died or fell silent."""
    try:
        if conn.poll(timeout):
            return conn.recv()
    except (EOFError, OSError):
        pass
    return empty(f"client process {proc.pid} sent nothing (exit code {proc.exitcode})")


def run_wave(args, url: str, servers: list[psutil.Process]) -> dict:
    """One room: the users connect, work for args.seconds, leave; then their texts are checked
    against replays and the servers' memory is watched while they free their sessions.
    `servers`: the processes that serve the room (empty with --url: nothing is watched)."""
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
    hellos = [receive(c, proc, 300, lambda why: {"connected": 0, "failed": [why]})
              for c, proc in zip(pipes, procs)]
    out["clients_connected"] = sum(h["connected"] for h in hellos)
    out["connect_failures"] = [f for h in hellos for f in h["failed"]][:10]

    peak = [rss_mb(servers)]
    sampling = threading.Event()

    def sample_rss():
        while not sampling.wait(0.5):
            peak.append(rss_mb(servers))
    threading.Thread(target=sample_rss, daemon=True).start()

    out["rss_before_mb"] = round(rss_mb(servers), 1)
    out["load_avg_at_start"] = [round(x, 2) for x in os.getloadavg()]
    cpu0 = cpu_s(servers)
    t0 = time.monotonic()
    start_at = time.time() + 1.0
    for c in pipes:
        c.send(start_at)
    done = [receive(c, proc, args.seconds + 300, lambda why: {"cpu_s": 0.0, "users": [], "lost": why})
            for c, proc in zip(pipes, procs)]
    for proc in procs:
        proc.join(timeout=30)
    users = [u for d in done for u in d["users"]]
    out["load_wall_s"] = round(time.monotonic() - t0, 1)
    # Who used the two cores: the server, or the simulated users?
    out["server_cpu_s"] = round(cpu_s(servers) - cpu0, 1)
    out["clients_cpu_s"] = round(sum(d["cpu_s"] for d in done), 1)
    out["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]

    latency: dict[str, list[float]] = defaultdict(list)
    for u in users:
        for k, v in u["latency"].items():
            latency[k] += v
    errors = [e for u in users for e in u["errors"]] + [d["lost"] for d in done if "lost" in d]
    out["requests"] = sum(len(v) for v in latency.values()) + len(errors)
    out["errors"] = len(errors)
    out["error_samples"] = errors[:10]
    out["requests_per_s"] = round(out["requests"] / args.seconds, 1)
    out["server_cpu_ms_per_request"] = round(1000 * out["server_cpu_s"] / max(1, out["requests"]), 1)
    out["latency_s"] = {k: {"n": len(v), "p50": round(statistics.median(v), 3),
                            "p95": round(pct(v, 0.95), 3), "max": round(max(v), 3)}
                        for k, v in sorted(latency.items()) if v}

    # Isolation: every user's text against a replay of its own actions alone.
    import torch

    from model.loading import load_model
    torch.set_num_threads(1)  # this process shares the cores with the server
    local = ROOT / args.model
    loaded = load_model(local if local.exists() else args.model, mode=args.mode)  # a path, or a name
    mismatches = []
    for u in users:
        if u["export"] is None:
            mismatches.append(f"user {u['uid']}: no export")
            continue
        want = replay(u, loaded.gpt, loaded.tokenizer)
        got = {"text": u["export"]["text"], "tokens": [s["token"] for s in u["export"]["steps"]]}
        if got != want:
            mismatches.append(f"user {u['uid']} (server model {u['export'].get('model')!r}): server "
                              f"{got['text'][-60:]!r} != replay {want['text'][-60:]!r}")
    out["isolation_checked"] = len(users)
    out["isolation_mismatches"] = len(mismatches)
    out["isolation_samples"] = mismatches[:5]
    out["steps_committed"] = sum(len(u["export"]["steps"]) for u in users if u["export"])

    # Memory: the workers closed every client; Gradio sees each heartbeat connection drop
    # and runs the app's unload handler, which frees that tab's session.
    t_close = time.monotonic()
    settled = [rss_mb(servers)]
    while servers and time.monotonic() - t_close < args.settle:
        time.sleep(2)
        settled.append(rss_mb(servers))
        # settled: three samples in a row within 1 MB, after the heartbeat window
        if time.monotonic() - t_close > 30 and max(settled[-3:]) - min(settled[-3:]) < 1:
            break
    sampling.set()
    if servers:
        out["rss_peak_mb"] = round(max(peak), 1)
        out["rss_after_close_mb"] = round(settled[-1], 1)
        out["rss_settle_s"] = round(time.monotonic() - t_close, 1)
    return out


def verdict(results: dict, args) -> list[str]:
    """Why this run does not count as a success (empty: it does). A run that connected no one
    or made no requests has nothing to show and must not pass as '0 errors'."""
    problems = [results["failure"]] if "failure" in results else []
    waves = results.get("waves", [])
    if len(waves) < args.waves:
        problems.append(f"{len(waves)} of {args.waves} waves ran")
    for n, w in enumerate(waves, 1):
        if w["clients_connected"] < args.users:
            first = w["connect_failures"][0] if w["connect_failures"] else "no reason given"
            problems.append(f"wave {n}: {w['clients_connected']} of {args.users} users connected "
                            f"(first failure: {first})")
        if w["requests"] < results["requests_floor"]:
            pace = (f"the {results['requests_expected']} the users' pace implies"
                    if results["requests_expected"] else "2 per user (a reset and an export)")
            problems.append(f"wave {n}: {w['requests']} requests, far below {pace} "
                            f"(floor {results['requests_floor']})")
        if w["errors"]:
            problems.append(f"wave {n}: {w['errors']} requests failed, e.g. {w['error_samples'][0]}")
        if w["isolation_mismatches"]:
            problems.append(f"wave {n}: {w['isolation_mismatches']} of {w['isolation_checked']} "
                            f"exports differ from their replay, e.g. {w['isolation_samples'][0]}")
    if waves and not (results.get("server_alive") and results.get("server_answers_after")):
        problems.append("the server was not alive and answering after the rooms")
    return problems


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=50)
    p.add_argument("--seconds", type=float, default=60.0, help="length of the load phase")
    p.add_argument("--think", type=float, nargs=2, default=(0.3, 2.0), metavar=("MIN", "MAX"),
                   help="seconds a user waits between clicks (uniform); 0 0 = no pause")
    p.add_argument("--max-requests", type=int, default=400, help="per user, a bound on the loop")
    p.add_argument("--mode", choices=("exact", "fast"), default="exact",
                   help="the server's --mode (the replay runs the same mode)")
    p.add_argument("--model", default="checkpoints/shakespeare",
                   help="the model the server serves by default, for the replay (with --url: "
                        "the one that server was started with)")
    p.add_argument("--settle", type=float, default=90.0,
                   help="seconds to wait, at most, for the server's memory to come back after "
                        "the clients close (Gradio notices a closed client within ~15 s)")
    p.add_argument("--client", choices=("gradio_client", "raw"), default="gradio_client",
                   help="raw: testkit.raw_client.RawSession, the same queue protocol without "
                        "gradio_client's 50 ms polling (closer to a browser tab)")
    p.add_argument("--waves", type=int, default=2,
                   help="rooms in a row on the same server: memory after each must stay level")
    p.add_argument("--procs", type=int, default=0,
                   help="processes the users are spread over (default 0: one per user, as each "
                        "student has their own laptop; gradio_client is CPU-hungry, and many in "
                        "one process wait for its GIL, which would be measured as latency)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=0,
                       help="serve the room from N app.py workers behind nginx, started with "
                            "python -m deploy.cluster (default 0: one python app.py, no nginx)")
    where.add_argument("--url", help="a server already running (e.g. deploy/cluster.py's nginx): "
                                     "nothing is started, and its memory is not measured")
    p.add_argument("--min-request-fraction", type=float, default=0.2,
                   help="FAIL when a wave makes fewer requests than this fraction of users x "
                        "seconds / mean think time (default 0.2)")
    p.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                   help="one more argument for every app.py the benchmark starts, e.g. "
                        "--server-arg=--prompt-cache-mb=0; repeat for several")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    if args.users < 1 or args.seconds <= 0 or args.workers < 0:
        p.error(f"need --users >= 1, --seconds > 0, --workers >= 0; got {args.users}, "
                f"{args.seconds}, {args.workers}")
    if args.url and args.server_arg:
        p.error(f"--server-arg {' '.join(args.server_arg)} needs a server the benchmark starts; "
                "with --url, start that server with those arguments yourself")
    args.procs = min(args.procs or args.users, args.users)

    # What the room should make: each user clicks once per mean think time (less the time
    # its requests take, which is why only a fraction is required).
    mean_think = sum(args.think) / 2
    expected = args.users * args.seconds / mean_think if mean_think > 0 else None
    floor = max(2 * args.users, round(args.min_request_fraction * expected) if expected else 0)
    results: dict = {"users": args.users, "seconds": args.seconds, "think_s": list(args.think),
                     "client": args.client, "client_processes": args.procs, "model": args.model,
                     "server_args": args.server_arg,
                     "cpu_count": os.cpu_count(), "requests_expected": round(expected) if expected else None,
                     "requests_floor": floor}
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    server, servers = None, []
    if args.url:
        url = args.url.rstrip("/") + "/"
        results["server"] = f"external: {url}"
    else:
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        log_path = tmp / f"bench_load_server_{port}.log"
        if args.workers:
            results["server"] = f"deploy.cluster, {args.workers} workers behind nginx"
            server = start_cluster(port, args.workers, ["--model", args.model, "--mode", args.mode, *args.server_arg],
                                   tmp / f"bench_load_cluster_{port}",
                                   log_path)
        else:
            results["server"] = "python app.py"
            server = start_app(port, ["--model", args.model, "--mode", args.mode, *args.server_arg], log_path)
        results["server_log"] = str(log_path)
    try:
        # A server of ours may take minutes (a first SmolLM2 load converts it); one that
        # should already be running answers at once.
        results["startup_s"] = round(wait_ready(url, server, timeout=15 if args.url else 300), 1)
        if server is not None:
            pids = [pid for pid, _ in cluster_workers(log_path)] if args.workers else [server.pid]
            servers = [psutil.Process(pid) for pid in pids]
            time.sleep(2)
            results["rss_start_mb"] = round(rss_mb(servers), 1)
            # Safe default: with no --host the server listens on loopback only.
            results["listening_on"] = sorted({f"{c.laddr.ip}:{c.laddr.port}" for ps in servers
                                              for c in ps.net_connections("inet")
                                              if c.status == psutil.CONN_LISTEN})
        results["load_avg_at_start"] = [round(x, 2) for x in os.getloadavg()]
        rss = f"RSS {results['rss_start_mb']} MB" if servers else "RSS not measured"
        print(f"server up in {results['startup_s']} s ({results['server']}), {rss}", flush=True)
        results["waves"] = []
        for wave in range(args.waves):
            results["waves"].append(run_wave(args, url, servers))
            w = results["waves"][-1]
            print(f"wave {wave + 1}: {w['clients_connected']}/{args.users} users connected, "
                  f"{w['requests']} requests ({w['requests_per_s']}/s), {w['errors']} errors, step p50 "
                  f"{w['latency_s'].get('step', {}).get('p50')} s p95 {w['latency_s'].get('step', {}).get('p95')} s"
                  + (f", RSS peak {w['rss_peak_mb']} MB, after close {w['rss_after_close_mb']} MB"
                     if servers else ""), flush=True)
        for key in ("requests", "errors", "isolation_checked", "isolation_mismatches"):
            results[key] = sum(w[key] for w in results["waves"])
        results["rss_after_close_mb"] = [w.get("rss_after_close_mb") for w in results["waves"]]
        results["server_alive"] = server is None or server.poll() is None
        with urllib.request.urlopen(url, timeout=10) as r:
            results["server_answers_after"] = r.status == 200
    except (RuntimeError, OSError) as e:  # the verdict says what did not run
        results["failure"] = f"{type(e).__name__}: {e}"
    finally:
        if server is not None:
            server.terminate()  # the cluster stops nginx and its workers itself
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()

    print(json.dumps(results, indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    problems = verdict(results, args)
    waves = results.get("waves", [])
    if problems:
        print("verdict: FAIL: " + "; ".join(problems))
        return 1
    pace = (f"the users' pace implies ~{expected:.0f}" if expected else "no think time: as fast "
            "as the server answers")
    print(f"verdict: PASS: {len(waves)} wave(s) of {args.users} users, all connected; "
          f"{results['requests']} requests (at least {floor} per wave needed; {pace}), 0 errors; "
          f"{results['isolation_checked']} exports equal their replay")
    return 0


if __name__ == "__main__":
    sys.exit(main())

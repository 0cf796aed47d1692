"""Serve one room from several playground processes behind nginx, on one port.

    python -m deploy.cluster --workers 2 --port 7860 -- --model smollm2
    python -m deploy.cluster --workers 4 --host 0.0.0.0 --port 8080 -- --model smollm2
    python -m deploy.cluster --workers 1 --remote 10.0.0.2:7861 --remote 10.0.0.3:7861

One Python process saturates one core, so a room gets one `app.py` per core (each on a free
loopback port, one torch thread each) and nginx in front. Every browser stays on the worker
that holds its session, by a cookie nginx sets on first contact (deploy/nginx.conf.template
says how). Arguments after `--` go to every app.py. Ctrl+C or SIGTERM stops nginx and every
worker. A worker that exits on its own is reported (how it ended, the end of its log) and
started again on its own port, so only its visitors notice, and their pages rebuild their
sessions; one that keeps dying at once is backed off and finally left stopped, its visitors
sent to the others (deploy/workers.py). Each worker loads its own copy of the model: memory
grows with --workers.
"""

from __future__ import annotations

import argparse
import ctypes
import getpass
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from deploy.workers import GIVEN_UP, RestartPolicy, Worker, clock, log_tail

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = Path(__file__).with_name("nginx.conf.template")
# Flags the cluster sets itself on every worker; a worker must listen on loopback only.
RESERVED_APP_FLAGS = ("--host", "--port", "--share")


class Stop(Exception):
    """Ctrl+C or SIGTERM: stop everything."""


def _raise_stop(signum, frame):
    raise Stop(signal.Signals(signum).name)


def _die_with_parent():
    """Runs in each child before exec (Linux): the kernel sends it SIGTERM if the cluster
    itself is killed, even by SIGKILL, so no worker outlives it."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (all held open until every one is chosen)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def check_port_free(host: str, port: int) -> None:
    """Before starting anything: a busy port would only show once nginx fails to bind."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as nginx binds
        try:
            s.bind((host, port))
        except OSError as e:
            raise SystemExit(f"cannot listen on {host}:{port} ({e.strerror}): stop whatever uses "
                             "it, or choose another --port") from None


def find_nginx() -> str:
    path = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
                                          if os.access(p, os.X_OK)), None)
    if path is None:
        raise SystemExit("nginx is not installed: `apt-get install -y nginx` (Debian/Ubuntu) or "
                         "`brew install nginx`, then run this again")
    return path


def render_config(upstreams: list[str], listen: str, run_dir: Path, left_out=frozenset()) -> str:
    """The nginx config: upstreams are "host:port" of the workers, in order (w0, w1, ...).
    Workers whose index is in `left_out` get no visitors: a cookie naming one of them is
    treated as no cookie, and the visitor is given one of the others."""
    names = [(f"w{i}", u) for i, u in enumerate(upstreams) if i not in left_out]
    if not names:
        raise ValueError(f"no worker left to serve: all {len(upstreams)} are left out")
    share = f"{100 / len(names):.2f}%"
    fields = {
        "RUN_DIR": str(run_dir),
        "LISTEN": listen,
        # As root, nginx's workers would switch to `nobody`, who cannot enter a private run
        # directory: they run as the user who started the cluster, as the app workers do.
        "USER_LINE": f"user {getpass.getuser()};" if os.geteuid() == 0 else "",
        "UPSTREAMS": "\n".join(f"    upstream {n} {{ server {u} max_fails=0; keepalive 16; }}" for n, u in names),
        "SPLIT": "\n".join([f"        {share} {n};" for n, _ in names[:-1]] + [f"        * {names[-1][0]};"]),
        "KNOWN": "\n".join(f"        {n} {n};" for n, _ in names),
    }
    text = TEMPLATE.read_text()
    for key, value in fields.items():
        text = text.replace("{{" + key + "}}", value)
    if left := re.findall(r"{{\w+}}", text):
        raise RuntimeError(f"{TEMPLATE} has fields render_config does not fill: {left}")
    return text


def wait_ready(url: str, proc: subprocess.Popen | None, what: str, log: Path | None,
               timeout: float) -> None:
    """Until `url` answers 200; fails at once, with the end of its log, if `proc` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before answering; "
                               f"the end of {log}:\n{log_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{what} did not answer at {url} within {timeout:.0f} s"
                       + (f"; the end of {log}:\n{log_tail(log)}" if log else ""))


class Cluster:
    """The processes of one run: local workers (deploy/workers.py), then nginx. stop() ends
    them all."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.workers: list[Worker] = []
        self.nginx: subprocess.Popen | None = None

    def spawn(self, cmd: list[str], log: Path, append: bool = False) -> subprocess.Popen:
        env = os.environ | {"GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
        with open(log, "a" if append else "w") as out:
            # Its own session: a Ctrl+C in the terminal reaches only the cluster, which then
            # stops nginx first and the workers after, in order.
            return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True,
                                    preexec_fn=_die_with_parent if sys.platform == "linux" else None)

    def stop(self, grace: float = 10.0) -> None:
        """nginx first, so that no request reaches a stopping worker; then every worker at once.
        Whatever has not exited after `grace` seconds is killed."""
        nginx = [("nginx", self.nginx)] if self.nginx else []
        for group in (nginx, [(w.name, w.proc) for w in self.workers if w.proc]):
            for _, proc in group:
                if proc.poll() is None:
                    proc.terminate()
            deadline = time.monotonic() + grace
            for name, proc in group:
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    print(f"{name} did not stop within {grace:.0f} s: killed", flush=True)
                    proc.kill()
                    proc.wait()


def parse_args(argv: list[str]):
    ours, app_args = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    p = argparse.ArgumentParser(prog="python -m deploy.cluster",
                                description=__doc__.split("\n\n")[0],
                                epilog="Arguments after -- go to every app.py, e.g. -- --model smollm2")
    p.add_argument("--workers", type=int, default=2,
                   help="app.py processes on this machine (default 2; one per core is the rule)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address nginx listens on (0.0.0.0 = every interface, for a room)")
    p.add_argument("--port", type=int, default=7860, help="port nginx listens on (default 7860)")
    p.add_argument("--remote", action="append", default=[], metavar="HOST:PORT",
                   help="a worker another machine runs (python app.py --host IP --port PORT "
                        "--threads 1); repeat for several")
    p.add_argument("--run-dir", type=Path,
                   help="where the nginx config, logs and temp files go (default: a new temporary "
                        "directory, removed after a clean stop)")
    p.add_argument("--startup-timeout", type=float, default=300.0,
                   help="seconds each worker may take to answer (a first SmolLM2 load converts it)")
    p.add_argument("--give-up-after", type=int, default=RestartPolicy.give_up_after, metavar="N",
                   help="a worker that exits is started again; after N deaths in a row, each soon after "
                        f"its start, it is left stopped and its visitors go to the others (default "
                        f"{RestartPolicy.give_up_after})")
    args = p.parse_args(ours)
    if args.give_up_after < 1:
        p.error(f"--give-up-after must be at least 1, but is {args.give_up_after}")
    if args.workers < 0 or args.workers + len(args.remote) < 1:
        p.error(f"need at least one worker: --workers {args.workers} and {len(args.remote)} --remote")
    for flag in RESERVED_APP_FLAGS:
        if any(a == flag or a.startswith(flag + "=") for a in app_args):
            p.error(f"{flag} after -- is set by the cluster itself (workers listen on loopback; "
                    "give --host and --port before --)")
    return args, app_args


def say(text: str) -> None:
    print(text, flush=True)


RELOAD_TIMEOUT_S = 10.0


def nginx_workers(master_pid: int) -> dict[int, str]:
    """The nginx master's children, pid -> process title ("nginx: worker process", or "nginx:
    worker process is shutting down" once it has closed its listening socket). Read from /proc;
    empty where there is none."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # pid (comm) state ppid ...; comm may hold spaces and parentheses, so split after the last ")"
            text = stat.read_text()
            ppid = int(text[text.rindex(")") + 2:].split()[1])
            if ppid == master_pid:
                title = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").strip()
                children[int(stat.parent.name)] = title.decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue  # it exited while we read
    return children


def wait_for_reload(master_pid: int, before: set[int], timeout: float = RELOAD_TIMEOUT_S) -> str:
    """After SIGHUP, nginx starts workers with the new config and tells the old ones to stop
    accepting. Until each old one has, a new connection may still reach it and be routed by the
    old config. Returns "" once a new worker runs and every old one is gone or shutting down (it
    closes its listening socket in the same step as it changes its title), at once where /proc
    cannot tell (not Linux); else, after `timeout` seconds, what is still not so."""
    if not Path(f"/proc/{master_pid}/stat").exists():
        return ""
    deadline = time.monotonic() + timeout
    while True:
        workers = nginx_workers(master_pid)
        started = workers.keys() - before
        still_accepting = sorted(pid for pid in before if pid in workers and "shutting down" not in workers[pid])
        if started and not still_accepting:
            return ""
        if time.monotonic() >= deadline:
            return "; ".join(part for part in (
                "" if started else "no worker with the new config started (nginx may have refused it)",
                f"old workers still accept connections: pids {still_accepting}" if still_accepting else "",
            ) if part)
        time.sleep(0.05)


def supervise(cluster: Cluster, upstreams: list[str], listen: str, conf: Path) -> int:
    """Until Ctrl+C (Stop), nginx exiting, or no worker left: keep every local worker running
    (Worker.tick), and once one is given up, send its visitors to the others."""
    left_out: set[int] = set()
    while True:
        now = time.monotonic()
        for w in cluster.workers:
            w.tick(now)
        given_up = {w.index for w in cluster.workers if w.state == GIVEN_UP} - left_out
        if given_up:
            left_out |= given_up
            if len(left_out) == len(upstreams):
                say("No worker is left to serve the room: stopping the cluster.")
                return 1
            conf.write_text(render_config(upstreams, listen, cluster.run_dir, frozenset(left_out)))
            before = nginx_workers(cluster.nginx.pid)
            cluster.nginx.send_signal(signal.SIGHUP)  # nginx reloads its config, dropping no connection
            names = ", ".join(f"worker {i}" for i in sorted(given_up))
            problem = wait_for_reload(cluster.nginx.pid, set(before))
            if problem:
                say(f"{clock()} nginx (pid {cluster.nginx.pid}) has not taken its new config after "
                    f"{RELOAD_TIMEOUT_S:.0f} s: {problem}. Visitors of {names} may still be sent to "
                    f"it and see 'restarting'. Check {conf} and the end of "
                    f"{cluster.run_dir / 'error.log'}:\n{log_tail(cluster.run_dir / 'error.log')}")
            else:
                say(f"{clock()} nginx now sends the visitors of {names} to the other workers; their "
                    f"pages rebuild their sessions there. {len(upstreams) - len(left_out)} of "
                    f"{len(upstreams)} workers serve the room now.")
        if cluster.nginx.poll() is not None:
            say(f"nginx (pid {cluster.nginx.pid}) exited with code {cluster.nginx.returncode}: no visitor "
                f"can reach the workers. The end of {cluster.run_dir / 'error.log'}:\n"
                f"{log_tail(cluster.run_dir / 'error.log')}\nStopping the cluster.")
            return 1
        time.sleep(0.25)


def main(argv: list[str] | None = None) -> int:
    args, app_args = parse_args(sys.argv[1:] if argv is None else argv)
    nginx = find_nginx()
    check_port_free(args.host, args.port)
    keep_run_dir = args.run_dir is not None
    run_dir = (args.run_dir or Path(tempfile.mkdtemp(prefix="playground-cluster-"))).resolve()
    (run_dir / "tmp").mkdir(parents=True, exist_ok=True)
    cluster = Cluster(run_dir)
    signal.signal(signal.SIGINT, _raise_stop)
    signal.signal(signal.SIGTERM, _raise_stop)
    code = 0
    try:
        ports = free_ports(args.workers)
        policy = RestartPolicy(give_up_after=args.give_up_after, startup_timeout_s=args.startup_timeout)
        for i, port in enumerate(ports):
            cmd = [sys.executable, str(ROOT / "app.py"), "--threads", "1", *app_args,
                   "--host", "127.0.0.1", "--port", str(port)]
            worker = Worker(i, port, cmd, run_dir / f"worker-{i}.log", cluster.spawn, say, policy)
            cluster.workers.append(worker)
            worker.start(time.monotonic())
        upstreams = [f"127.0.0.1:{p}" for p in ports] + args.remote
        for w in cluster.workers:
            # At the start a failure stops everything: the room has not come in yet.
            wait_ready(w.url, w.proc, w.name, w.log, args.startup_timeout)
            w.serving(time.monotonic())
            print(f"worker {w.index}: pid {w.proc.pid}, {w.url} (log {w.log})", flush=True)
        for i, upstream in enumerate(args.remote, start=args.workers):
            wait_ready(f"http://{upstream}/", None, f"remote worker {upstream}", None, args.startup_timeout)
            print(f"worker {i}: remote, http://{upstream}/", flush=True)

        conf = run_dir / "nginx.conf"
        listen = f"{args.host}:{args.port}"
        conf.write_text(render_config(upstreams, listen, run_dir))
        cluster.nginx = cluster.spawn([nginx, "-p", str(run_dir), "-c", str(conf),
                                       "-e", str(run_dir / "error.log")], run_dir / "nginx.log")
        shown = "127.0.0.1" if args.host in ("0.0.0.0", "") else args.host
        url = f"http://{shown}:{args.port}/"
        wait_ready(url, cluster.nginx, "nginx", run_dir / "error.log", 30)
        print(f"nginx: pid {cluster.nginx.pid}, config {conf}", flush=True)
        print(f"The playground: {url} ({len(upstreams)} workers; Ctrl+C stops everything)", flush=True)
        if shown != args.host:
            print(f"listening on every interface: visitors use this machine's address, "
                  f"http://ADDRESS:{args.port}/", flush=True)
        code = supervise(cluster, upstreams, listen, conf)
    except Stop as e:
        print(f"{e}: stopping nginx and {args.workers} workers", flush=True)
    except RuntimeError as e:
        print(f"error: {e}", flush=True)
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl+C must not cut the cleanup short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        cluster.stop()
    if code == 0 and not keep_run_dir and not any(w.deaths for w in cluster.workers):
        shutil.rmtree(run_dir, ignore_errors=True)
    elif not keep_run_dir:
        print(f"logs kept in {run_dir}", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())

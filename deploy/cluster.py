"""Serve one room from several playground processes behind nginx, on one port.

    python -m deploy.cluster --workers 2 --port 7860 -- --model smollm2
    python -m deploy.cluster --workers 4 --host 0.0.0.0 --port 8080 -- --model smollm2
    python -m deploy.cluster --workers 1 --remote 10.0.0.2:7861 --remote 10.0.0.3:7861

One Python process saturates one core, so a room gets one `app.py` per core (each on a free
loopback port, one torch thread each) and nginx in front. Every browser stays on the worker
that holds its session, by a cookie nginx sets on first contact (deploy/nginx.conf.template
says how). Arguments after `--` go to every app.py. Ctrl+C or SIGTERM stops nginx and every
worker; if one of them exits on its own, the cluster says so, shows the end of its log and
stops the rest. Each worker loads its own copy of the model: memory grows with --workers.
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


def render_config(upstreams: list[str], listen: str, run_dir: Path) -> str:
    """The nginx config: upstreams are "host:port" of the workers, in order (w0, w1, ...)."""
    names = [f"w{i}" for i in range(len(upstreams))]
    share = f"{100 / len(names):.2f}%"
    fields = {
        "RUN_DIR": str(run_dir),
        "LISTEN": listen,
        # As root, nginx's workers would switch to `nobody`, who cannot enter a private run
        # directory: they run as the user who started the cluster, as the app workers do.
        "USER_LINE": f"user {getpass.getuser()};" if os.geteuid() == 0 else "",
        "UPSTREAMS": "\n".join(f"    upstream {n} {{ server {u} max_fails=0; keepalive 16; }}"
                               for n, u in zip(names, upstreams)),
        "SPLIT": "\n".join([f"        {share} {n};" for n in names[:-1]] + [f"        * {names[-1]};"]),
        "KNOWN": "\n".join(f"        {n} {n};" for n in names),
    }
    text = TEMPLATE.read_text()
    for key, value in fields.items():
        text = text.replace("{{" + key + "}}", value)
    if left := re.findall(r"{{\w+}}", text):
        raise RuntimeError(f"{TEMPLATE} has fields render_config does not fill: {left}")
    return text


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


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
    """The processes of one run: local workers, then nginx. stop() ends them all."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.procs: list[tuple[str, subprocess.Popen, Path]] = []  # (name, process, log)

    def spawn(self, name: str, cmd: list[str], log: Path) -> subprocess.Popen:
        env = os.environ | {"GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
        with open(log, "w") as out:
            # Its own session: a Ctrl+C in the terminal reaches only the cluster, which then
            # stops nginx first and the workers after, in order.
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True,
                                    preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        self.procs.append((name, proc, log))
        return proc

    def first_exit(self):
        """(name, process, log) of the first process that has exited, or None."""
        return next((p for p in self.procs if p[1].poll() is not None), None)

    def stop(self, grace: float = 10.0) -> None:
        """nginx first, so that no request reaches a stopping worker; then every worker at once.
        Whatever has not exited after `grace` seconds is killed."""
        nginx = [p for p in self.procs if p[0] == "nginx"]
        for group in (nginx, [p for p in self.procs if p[0] != "nginx"]):
            for _, proc, _ in group:
                if proc.poll() is None:
                    proc.terminate()
            deadline = time.monotonic() + grace
            for name, proc, _ in group:
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
    args = p.parse_args(ours)
    if args.workers < 0 or args.workers + len(args.remote) < 1:
        p.error(f"need at least one worker: --workers {args.workers} and {len(args.remote)} --remote")
    for flag in RESERVED_APP_FLAGS:
        if any(a == flag or a.startswith(flag + "=") for a in app_args):
            p.error(f"{flag} after -- is set by the cluster itself (workers listen on loopback; "
                    "give --host and --port before --)")
    return args, app_args


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
        for i, port in enumerate(ports):
            cmd = [sys.executable, str(ROOT / "app.py"), "--threads", "1", *app_args,
                   "--host", "127.0.0.1", "--port", str(port)]
            cluster.spawn(f"worker {i}", cmd, run_dir / f"worker-{i}.log")
        upstreams = [f"127.0.0.1:{p}" for p in ports] + args.remote
        for i, (upstream, (name, proc, log)) in enumerate(zip(upstreams, cluster.procs)):
            wait_ready(f"http://{upstream}/", proc, name, log, args.startup_timeout)
            print(f"worker {i}: pid {proc.pid}, http://{upstream}/ (log {log})", flush=True)
        for i, upstream in enumerate(args.remote, start=args.workers):
            wait_ready(f"http://{upstream}/", None, f"remote worker {upstream}", None, args.startup_timeout)
            print(f"worker {i}: remote, http://{upstream}/", flush=True)

        conf = run_dir / "nginx.conf"
        conf.write_text(render_config(upstreams, f"{args.host}:{args.port}", run_dir))
        proc = cluster.spawn("nginx", [nginx, "-p", str(run_dir), "-c", str(conf),
                                       "-e", str(run_dir / "error.log")], run_dir / "nginx.log")
        shown = "127.0.0.1" if args.host in ("0.0.0.0", "") else args.host
        url = f"http://{shown}:{args.port}/"
        wait_ready(url, proc, "nginx", run_dir / "error.log", 30)
        print(f"nginx: pid {proc.pid}, config {conf}", flush=True)
        print(f"The playground: {url} ({len(upstreams)} workers; Ctrl+C stops everything)", flush=True)
        if shown != args.host:
            print(f"listening on every interface: visitors use this machine's address, "
                  f"http://ADDRESS:{args.port}/", flush=True)

        while (gone := cluster.first_exit()) is None:
            time.sleep(0.5)
        name, proc, log = gone
        lost = "; its visitors' sessions are gone" if name.startswith("worker") else ""
        print(f"{name} (pid {proc.pid}) exited with code {proc.returncode}{lost}. The end of "
              f"{log}:\n{log_tail(log)}\nStopping the cluster.", flush=True)
        code = 1
    except Stop as e:
        print(f"{e}: stopping nginx and {args.workers} workers", flush=True)
    except RuntimeError as e:
        print(f"error: {e}", flush=True)
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl+C must not cut the cleanup short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        cluster.stop()
    if code == 0 and not keep_run_dir:
        shutil.rmtree(run_dir, ignore_errors=True)
    elif code:
        print(f"logs kept in {run_dir}", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())

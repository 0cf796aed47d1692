"""Servers for tests and benchmarks: free loopback ports, the app in this process or in its
own, and waiting until it answers (startup is 8-20 s on a busy 2-core machine: torch and
gradio imports)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STARTUP_S = 90.0
ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
       "PYTHONUNBUFFERED": "1"}
os.environ.update({k: os.environ.get(k, v) for k, v in ENV.items()})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = STARTUP_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listens on port {port} after {timeout:.0f} s")


def launch(demo, **kw) -> str:
    """Start a Blocks on a free loopback port in this process; returns its URL."""
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                ssr_mode=False, quiet=True, **kw)
    wait_for_port(port)
    return f"http://127.0.0.1:{port}/"


def start_app(port: int, args: list[str], log_path: Path | None = None,
              cwd: Path = ROOT) -> subprocess.Popen:
    """`python app.py --port PORT ARGS...` as its own process (loopback unless ARGS say)."""
    log = open(log_path, "w") if log_path else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), *args],
                            cwd=cwd, env=os.environ | ENV, stdout=log, stderr=subprocess.STDOUT)


def wait_ready(url: str, proc: subprocess.Popen | None = None, timeout: float = 120.0) -> float:
    """Seconds until the page answers 200; fails at once if `proc` exits first."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return time.monotonic() - t0
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the server did not answer at {url} within {timeout:.0f} s")


def rss_mb(pid: int) -> float:
    import psutil
    return psutil.Process(pid).memory_info().rss / 2**20


# ---- several workers behind nginx (deploy/cluster.py) ----

WORKER_LINE = re.compile(r"^worker (\d+): pid (\d+), http://127\.0\.0\.1:(\d+)/", re.MULTILINE)


def start_cluster(port: int, workers: int, app_args: list[str], run_dir: Path,
                  log_path: Path, cwd: Path = ROOT, env: dict | None = None,
                  options: list[str] = ()) -> subprocess.Popen:
    """`python -m deploy.cluster --workers N --port PORT --run-dir DIR OPTIONS -- APP_ARGS`
    as its own process, as a teacher starts it: N app.py workers behind nginx on PORT. Its
    output (one line per worker, then the URL) goes to log_path; `env` adds to the
    environment its processes inherit (e.g. TMPDIR, to keep their temporary files in a test's
    directory)."""
    log = open(log_path, "w")
    cmd = [sys.executable, "-m", "deploy.cluster", "--workers", str(workers), "--port", str(port),
           "--run-dir", str(run_dir), *options, "--", *app_args]
    return subprocess.Popen(cmd, cwd=cwd, env=os.environ | ENV | (env or {}), stdout=log,
                            stderr=subprocess.STDOUT)


def cluster_workers(log_path: Path) -> list[tuple[int, int]]:
    """(pid, port) of each local worker of a cluster, in upstream order (w0, w1, ...), read
    from the lines it prints once the worker answers."""
    found = sorted((int(i), int(pid), int(port))
                   for i, pid, port in WORKER_LINE.findall(Path(log_path).read_text()))
    return [(pid, port) for _, pid, port in found]


def wait_streams_ended(demo, timeout: float = 60.0) -> None:
    """Wait until no session of an in-process app (app.build_demo) has a Generate stream
    running. A stream counts as ended once it has handed its last payload to Gradio."""
    def running() -> list:
        return [u for u in demo.sessions.live() if u.streaming is not None and not u.streaming.is_set()]
    deadline = time.monotonic() + timeout
    for user in running():
        if not user.streaming.wait(max(0.0, deadline - time.monotonic())):
            raise TimeoutError(f"a Generate stream is still running after {timeout:.0f} s")

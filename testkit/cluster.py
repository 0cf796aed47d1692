"""A cluster for tests, started as a teacher starts it (`python -m deploy.cluster`, a
subprocess) and stopped with SIGTERM, as Ctrl+C would. Its processes write only under the
test's directory. nginx must be installed: without it a test fails, never skips."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from .server import cluster_workers, free_port, start_cluster, wait_ready

STARTUP_S = 300.0  # two workers importing torch and gradio at once on 2 busy cores


@dataclass
class Cluster:
    url: str
    proc: subprocess.Popen
    workers: list[tuple[int, int]]  # (pid, port), w0 first
    run_dir: Path
    log: Path
    checkpoint: Path

    def port_of(self, cookie: str) -> int:
        return self.workers[int(cookie.removeprefix("w"))][1]

    def output(self) -> str:
        return self.log.read_text()

    def wait_for(self, pattern: str, timeout: float = STARTUP_S) -> re.Match:
        """The first match of `pattern` in the cluster's output, once it is there; fails with
        the whole output if the cluster exits or the time runs out first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if found := re.search(pattern, self.output(), re.MULTILINE):
                return found
            if self.proc.poll() is not None:
                pytest.fail(f"the cluster exited ({self.proc.returncode}) before printing {pattern!r}:\n"
                            f"{self.output()}")
            time.sleep(0.2)
        pytest.fail(f"the cluster did not print {pattern!r} within {timeout:.0f} s:\n{self.output()}")

    def back(self, index: int, timeout: float = STARTUP_S) -> tuple[int, int]:
        """(pid, port) of worker `index` once the cluster says it is back after a death."""
        found = self.wait_for(rf"^\S+ worker {index} is back: pid (\d+), http://127\.0\.0\.1:(\d+)/", timeout)
        return int(found.group(1)), int(found.group(2))


def launch_cluster(tmp: Path, checkpoint: Path, workers: int, extra: list[str] = ()) -> Cluster:
    try:
        from deploy.cluster import find_nginx
        find_nginx()
    except SystemExit as e:  # a missing tool fails the test; CI installs it
        pytest.fail(str(e))
    port, log = free_port(), tmp / "cluster.out"
    # Workers and nginx write only under tmp: the run directory, and TMPDIR for Gradio's files.
    (tmp / "tmp").mkdir()
    proc = start_cluster(port, workers, ["--model", str(checkpoint)], tmp / "run", log,
                         env={"TMPDIR": str(tmp / "tmp"), "GRADIO_TEMP_DIR": str(tmp / "tmp" / "gradio")},
                         options=list(extra))
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_ready(url, proc, timeout=STARTUP_S)
    except RuntimeError as e:
        stop(proc)
        pytest.fail(f"{e}; the cluster printed:\n{log.read_text()}")
    found = cluster_workers(log)
    assert len(found) == workers, log.read_text()
    return Cluster(url, proc, found, tmp / "run", log, checkpoint)


def stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()

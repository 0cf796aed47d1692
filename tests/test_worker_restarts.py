"""How deploy/workers.py keeps a cluster's worker running, with stand-in workers: small Python
processes that print a line and exit (or keep running), on a port nothing answers. The
restart policy runs on the times the test hands to tick(), so backing off is checked without
waiting for it.

The same policy on real workers behind nginx: tests/test_workers.py; the pages that rebuild
their sessions afterwards: tests/test_restart.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from deploy.workers import GIVEN_UP, SERVING, STARTING, WAITING, RestartPolicy, Worker, describe_exit
from testkit.server import free_port

DIES = [sys.executable, "-c", "print('loading the model'); print('MemoryError: out of memory'); raise SystemExit(3)"]
LIVES = [sys.executable, "-c", "import time; time.sleep(600)"]


def spawn(cmd: list[str], log: Path, append: bool) -> subprocess.Popen:
    with open(log, "a" if append else "w") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)


class Stand:
    """A Worker on a stand-in command, and everything it says."""

    def __init__(self, tmp: Path, cmd: list[str], policy: RestartPolicy = RestartPolicy()):
        self.said: list[str] = []
        self.worker = Worker(1, free_port(), cmd, tmp / "worker-1.log", spawn, self.said.append, policy)

    def exited(self, now: float) -> None:
        """Wait for the process to end (a condition, not a time), then tick at `now`."""
        self.worker.proc.wait(timeout=60)
        self.worker.tick(now)

    def close(self):
        if self.worker.proc is not None and self.worker.proc.poll() is None:
            self.worker.proc.kill()
            self.worker.proc.wait()


@pytest.fixture
def stands(tmp_path):
    made = []

    def make(cmd, policy=RestartPolicy()):
        made.append(Stand(tmp_path, cmd, policy))
        return made[-1]
    yield make
    for s in made:
        s.close()


def test_the_wait_doubles_after_each_quick_death_and_the_last_one_gives_up():
    policy = RestartPolicy(first_delay_s=2.0, give_up_after=5)
    assert [policy.delay(n) for n in range(6)] == [0.0, 0.0, 2.0, 4.0, 8.0, None]


def test_a_worker_that_served_and_died_is_started_again_at_once_and_reported(stands):
    s = stands(LIVES)
    w = s.worker
    w.start(0.0)
    w.serving(0.0)  # it answered
    first = w.proc.pid
    w.proc.kill()
    s.exited(1000.0)
    assert w.state == WAITING and w.quick_deaths == 0
    said = s.said[-1]
    assert f"worker 1 (pid {first}, port {w.port}) was killed by SIGKILL" in said
    assert "after serving for 17 min" in said and "Its visitors' sessions are gone" in said
    assert said.endswith(f"Starting worker 1 again on port {w.port} now.")
    w.tick(1000.0)
    assert w.state == STARTING and w.proc.pid != first and w.restarts == 1
    w.serving(1012.5)
    assert w.state == SERVING
    assert s.said[-1].endswith(f"worker 1 is back: pid {w.proc.pid}, http://127.0.0.1:{w.port}/ "
                               f"(12.5 s after it went down; log {w.log})")


def test_a_worker_that_dies_at_every_start_backs_off_then_is_given_up_with_its_log(stands):
    s = stands(DIES, RestartPolicy(quick_s=60.0, first_delay_s=2.0, give_up_after=4))
    w = s.worker
    w.start(0.0)
    s.exited(1.0)  # 1st quick death: again at once
    assert (w.state, w.next_start) == (WAITING, 1.0)
    assert "exited with code 3, before it answered" in s.said[-1]
    assert "MemoryError: out of memory" in s.said[-1]  # the end of its log
    w.tick(1.0)
    s.exited(2.0)  # 2nd: 2 s
    assert (w.state, w.next_start) == (WAITING, 4.0)
    assert s.said[-1].endswith("again on port %d in 2 s (2 quick deaths in a row)." % w.port)
    w.tick(3.9)
    assert w.state == WAITING  # not before its time
    w.tick(4.0)
    s.exited(5.0)  # 3rd: 4 s
    assert (w.state, w.next_start) == (WAITING, 9.0)
    w.tick(9.0)
    s.exited(10.0)  # 4th: given up
    assert w.state == GIVEN_UP
    assert "worker 1 died 4 times in a row, before it answered or within 60 s of it: it is left stopped" in s.said[-1]
    w.tick(1000.0)
    assert w.state == GIVEN_UP and w.restarts == 3  # never started again
    log = w.log.read_text()
    assert log.count("MemoryError") == 4  # every run's output kept, each after its own header
    assert "started again by the cluster (restart 3)" in log


def test_a_death_long_after_a_start_clears_the_count_of_quick_ones(stands):
    s = stands(DIES, RestartPolicy(quick_s=60.0, first_delay_s=2.0, give_up_after=3))
    w = s.worker
    w.start(0.0)
    s.exited(1.0)
    w.tick(1.0)
    s.exited(2.0)
    assert w.quick_deaths == 2
    w.tick(4.0)
    w.serving(5.0)
    s.exited(500.0)  # it served for minutes before this death: a new accident
    assert (w.state, w.quick_deaths, w.next_start) == (WAITING, 0, 500.0)


def test_a_start_that_never_answers_is_killed_and_counted_as_a_death(stands):
    s = stands(LIVES, RestartPolicy(startup_timeout_s=30.0))
    w = s.worker
    w.start(0.0)
    first = w.proc
    w.tick(10.0)
    assert w.state == STARTING  # nothing answers on its port, but there is time
    w.tick(31.0)
    assert first.poll() is not None and w.state == WAITING and w.quick_deaths == 1
    assert "did not answer within 30 s and was killed, before it answered" in s.said[-1]


@pytest.mark.parametrize("code, said", [(0, "exited with code 0"), (3, "exited with code 3"),
                                        (-9, "was killed by SIGKILL (kill -9, or the system's out-of-memory killer"),
                                        (-15, "was killed by SIGTERM"), (-11, "was killed by SIGSEGV (a crash"),
                                        (-99, "was killed by signal 99")])
def test_an_exit_is_described_by_its_code_or_signal(code, said):
    assert describe_exit(code).startswith(said)


def test_a_death_soon_after_answering_counts_as_quick(stands):
    s = stands(LIVES, RestartPolicy(quick_s=30.0))
    w = s.worker
    w.start(0.0)
    w.serving(200.0)  # a slow start is no sign of trouble
    w.proc.kill()
    s.exited(210.0)  # but dying 10 s after answering is
    assert (w.state, w.quick_deaths) == (WAITING, 1)

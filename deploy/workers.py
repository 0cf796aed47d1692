"""Keeping a cluster's local workers running.

A worker that exits is started again with the same command on the same loopback port, so
nginx's mapping (cookie wN -> 127.0.0.1:PORT) still holds: that worker's visitors come back to
it, and their pages rebuild their sessions from what they show (ui/static/reconnect.js). The
other workers, and their visitors, are not touched.

A worker that dies soon after every start (a bad argument, memory that is not there) must not
spin: each quick death in a row waits twice as long as the one before, and after
`give_up_after` of them the worker is left stopped and reported; the cluster then sends its
visitors to the workers that are left (deploy/cluster.py).
"""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# What a worker is doing: starting (not answering yet), serving, waiting to be started again,
# or given up (left stopped after too many quick deaths in a row).
STARTING, SERVING, WAITING, GIVEN_UP = "starting", "serving", "waiting", "given up"


@dataclass(frozen=True)
class RestartPolicy:
    # A worker that dies before it answers, or within this long of answering, died "at once";
    # one that served longer than that died of a new accident, and is restarted at once.
    quick_s: float = 30.0
    # The wait before the start after the 2nd quick death in a row; it doubles after each.
    # The 1st is restarted at once: a one-off crash should cost its visitors nothing more.
    first_delay_s: float = 2.0
    give_up_after: int = 5  # quick deaths in a row
    startup_timeout_s: float = 300.0  # a start that does not answer by then counts as a death

    def delay(self, quick_deaths: int) -> float | None:
        """Seconds to wait before the next start after `quick_deaths` quick deaths in a row
        (0: the last death was not quick); None: give up."""
        if quick_deaths >= self.give_up_after:
            return None
        if quick_deaths <= 1:
            return 0.0
        return self.first_delay_s * 2 ** (quick_deaths - 2)


def clock() -> str:
    """The wall-clock time, for the teacher reading the cluster's output."""
    return time.strftime("%H:%M:%S")


def describe_exit(returncode: int) -> str:
    """How a process ended, from Popen.returncode (negative: the signal that ended it)."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    why = {"SIGKILL": " (kill -9, or the system's out-of-memory killer: `dmesg | tail` says which)",
           "SIGSEGV": " (a crash inside native code)"}.get(name, "")
    return f"was killed by {name}{why}"


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.1f} s"
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes < 90 else f"{minutes / 60:.1f} h"


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def answers(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


class Worker:
    """One local app.py: its command, port and log, the process running it now, and where it
    stands. tick() is called over and over by the cluster's loop; it never blocks for long."""

    def __init__(self, index: int, port: int, cmd: list[str], log: Path,
                 spawn: Callable[[list[str], Path, bool], subprocess.Popen],
                 say: Callable[[str], None], policy: RestartPolicy = RestartPolicy()):
        self.index, self.port, self.cmd, self.log = index, port, cmd, log
        self.name = f"worker {index}"
        self.url = f"http://127.0.0.1:{port}/"
        self._spawn, self._say, self.policy = spawn, say, policy
        self.proc: subprocess.Popen | None = None
        self.state = WAITING
        self.started_at = self.serving_at = self.next_start = 0.0
        self.died_at: float | None = None
        self.quick_deaths = 0  # in a row
        self.deaths = self.restarts = 0

    def start(self, now: float) -> None:
        """Start the process (again, if it ran before: its log is appended to)."""
        again = self.proc is not None
        if again:
            self.restarts += 1
            with open(self.log, "a") as out:
                out.write(f"\n=== {clock()} started again by the cluster (restart {self.restarts}) ===\n")
        self.proc = self._spawn(self.cmd, self.log, again)
        self.state, self.started_at = STARTING, now

    def serving(self, now: float) -> None:
        """The process answers: from now on a death is a new accident."""
        self.state, self.serving_at = SERVING, now
        if self.died_at is not None:
            self._say(f"{clock()} {self.name} is back: pid {self.proc.pid}, {self.url} "
                      f"({now - self.died_at:.1f} s after it went down; log {self.log})")
            self.died_at = None

    def tick(self, now: float) -> None:
        if self.state == WAITING and self.proc is not None and now >= self.next_start:
            self.start(now)
        elif self.state in (STARTING, SERVING) and self.proc.poll() is not None:
            self._died(now, describe_exit(self.proc.returncode))
        elif self.state == STARTING:
            if answers(self.url):
                self.serving(now)
            elif now - self.started_at > self.policy.startup_timeout_s:
                self.proc.kill()
                self.proc.wait()
                self._died(now, f"did not answer within {self.policy.startup_timeout_s:.0f} s and was killed")

    def _died(self, now: float, how: str) -> None:
        self.deaths += 1
        before = self.state == STARTING
        lived = now - (self.started_at if before else self.serving_at)
        quick = before or lived < self.policy.quick_s
        self.quick_deaths = self.quick_deaths + 1 if quick else 0
        if self.died_at is None:
            self.died_at = now
        pid = self.proc.pid
        delay = self.policy.delay(self.quick_deaths)
        when = "before it answered" if before else f"after serving for {duration(lived)}"
        lost = "" if before else " Its visitors' sessions are gone; their pages rebuild them once it is back."
        head = (f"{clock()} {self.name} (pid {pid}, port {self.port}) {how}, {when}.{lost} "
                f"The end of {self.log}:\n{log_tail(self.log)}\n")
        if delay is None:
            self.state = GIVEN_UP
            times = f"{self.quick_deaths} time{'' if self.quick_deaths == 1 else 's'}"
            self._say(head + f"{self.name} died {times} in a row, before it answered or within "
                      f"{self.policy.quick_s:.0f} s of it: it is left stopped. Read its log above; "
                      "once the cause is fixed, start the cluster again to bring it back.")
            return
        self.state, self.next_start = WAITING, now + delay
        again = f"in {delay:.0f} s ({self.quick_deaths} quick deaths in a row)" if delay else "now"
        self._say(head + f"Starting {self.name} again on port {self.port} {again}.")

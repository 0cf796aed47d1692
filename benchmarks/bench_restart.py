"""A killed worker, back: from `kill -9` of one of a cluster's workers until it serves again.

    python -m benchmarks.bench_restart                       # the default model and SmolLM2, 3 kills each
    python -m benchmarks.bench_restart --models smollm2 --tries 5 --page

Per model, a cluster as a teacher starts it (`python -m deploy.cluster --workers 2 -- ARGS`),
then --tries times: kill -9 worker 1 and time, from the kill,
- until its own port answers the page again (GET / = 200): serving again;
- until a request carrying its cookie is answered through nginx by it;
- until the cluster prints that it is back;
- with --page, until a Chromium tab it served (a prompt and three steps) says its session was
  rebuilt: the page looks every 5 s, so this adds up to 5 s to the rest.
Medians and the slowest of the tries. The target: serving again within 30 s.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from testkit.server import cluster_workers, free_port, start_cluster, wait_ready

MODELS = {"default": [], "smollm2": ["--model", "smollm2"]}
TARGET_S = 30.0
STARTUP_S = 600.0


def back_lines(log: Path) -> list[tuple[int, int]]:
    """(pid, port) of worker 1 each time the cluster said it was back, in order."""
    return [(int(pid), int(port)) for pid, port in
            re.findall(r"worker 1 is back: pid (\d+), http://127\.0\.0\.1:(\d+)/", log.read_text())]


def wait_until(what: str, check, deadline: float, poll: float = 0.05):
    while time.monotonic() < deadline:
        if (got := check()) is not None:
            return got
        time.sleep(poll)
    sys.exit(f"gave up waiting for {what}")


def answers(url: str, cookie: str | None = None, worker: str | None = None) -> bool:
    try:
        r = httpx.get(url, cookies={"dp_worker": cookie} if cookie else None, timeout=2)
    except httpx.HTTPError:
        return False
    return r.status_code == 200 and (worker is None or r.headers.get("x-worker") == worker)


def gone(pid: int) -> bool:
    """Dead, its sockets closed (a zombie counts: the kernel has closed them already)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


class PageTab:
    """One Chromium tab held by worker 1: a prompt and three steps."""

    def __init__(self, url: str):
        from playwright import sync_api

        from testkit.browser import launch
        from testkit.page import Tab

        self.pw = sync_api.sync_playwright().start()
        self.browser = launch(self.pw)
        self.tab = Tab(self.browser, url, cookies={"dp_worker": "w1"})
        self.tab.type_into(".dp-prompt", "To be, or not to be")
        self.tab.ready()
        for n in range(1, 4):
            self.tab.click(".dp-step")
            self.tab.wait_steps(n)

    def wait_rebuilt(self) -> None:
        self.tab.wait("() => document.querySelector('.dp-status').textContent.includes('rebuilt from this page')",
                      timeout=int(STARTUP_S * 1000))
        # The next kill's message must be a new one: clear the line as the next action would.
        self.tab.page.evaluate("() => { document.querySelector('.dp-status').textContent = ''; }")

    def close(self) -> None:
        self.browser.close()
        self.pw.stop()


def bench(name: str, tries: int, page: bool, run_root: Path) -> dict:
    port, run_dir, log = free_port(), run_root / name, run_root / f"{name}.out"
    proc = start_cluster(port, 2, MODELS[name], run_dir, log)
    url = f"http://127.0.0.1:{port}/"
    times: dict[str, list[float]] = {"port": [], "nginx": [], "said": [], "page": []}
    tab = None
    try:
        wait_ready(url, proc, timeout=STARTUP_S)
        pid, wport = cluster_workers(log)[1]
        tab = PageTab(url) if page else None
        for k in range(tries):
            t0 = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            deadline = t0 + STARTUP_S
            wait_until("the killed worker to be gone", lambda p=pid: True if gone(p) else None, deadline, 0.01)
            wait_until("its port to answer", lambda: True if answers(f"http://127.0.0.1:{wport}/") else None, deadline)
            times["port"].append(time.monotonic() - t0)
            wait_until("nginx to reach it", lambda: True if answers(url + "config", "w1", f"127.0.0.1:{wport}")
                       else None, deadline)
            times["nginx"].append(time.monotonic() - t0)
            pid, back_port = wait_until("the cluster to say it is back", lambda n=k: (
                back_lines(log)[n] if len(back_lines(log)) > n else None), deadline)
            times["said"].append(time.monotonic() - t0)
            if back_port != wport:
                sys.exit(f"worker 1 came back on port {back_port}, not {wport}")
            if tab:
                tab.wait_rebuilt()
                times["page"].append(time.monotonic() - t0)
            print(f"  {name}, kill {k + 1}: serving again after {times['port'][-1]:.1f} s", flush=True)
    finally:
        if tab:
            tab.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    return times


def cell(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} s (slowest {max(values):.1f})" if values else "-"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--tries", type=int, default=3, help="kills per model (default 3)")
    ap.add_argument("--page", action="store_true", help="also time a Chromium tab's rebuild")
    args = ap.parse_args(argv)
    if args.tries < 1:
        ap.error(f"--tries must be at least 1, but is {args.tries}")
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-restart-") as tmp:
        for name in args.models:
            results[name] = bench(name, args.tries, args.page, Path(tmp))
    print(f"\n{args.tries} kills per model (kill -9 of worker 1 of 2), medians; load average "
          f"{os.getloadavg()[0]:.1f} at the end")
    print("| model | kill → its port serves the page | → through nginx, by its cookie | "
          "→ the cluster says it is back | → a tab says its session is rebuilt |")
    print("|---|---|---|---|---|")
    for name, t in results.items():
        print(f"| {name} | {cell(t['port'])} | {cell(t['nginx'])} | {cell(t['said'])} | {cell(t['page'])} |")
    slowest = max(max(t["port"]) for t in results.values())
    print(f"slowest kill → serving again {slowest:.1f} s (target ≤ {TARGET_S:.0f} s): "
          f"{'met' if slowest <= TARGET_S else 'NOT met'}")
    return 0 if slowest <= TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())

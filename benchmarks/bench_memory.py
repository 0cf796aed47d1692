"""A server under a memory budget: many long sessions held open at once, as a room of tabs
holds them, against `python app.py --memory-budget-mb N`.

    python -m benchmarks.bench_memory                       # SmolLM2, 100 sessions, 4 GB budget
    python -m benchmarks.bench_memory --model checkpoints/shakespeare --sessions 100 --budget-mb 1200

Each session (its own raw queue client, so nothing is shared) resets with a 4,000-character
prompt and takes 20 steps; up to --concurrency at once. Sampled all along: the server's
resident memory (psutil, from outside). At the end: every session is asked for its export, so
those the server closed to keep its budget say so (they must: nothing is dropped silently),
and a newcomer must still get a normal step. Exits non-zero when the server went over its
budget, failed to answer, or a session lost its text without being told.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from testkit.raw_client import RawSession
from testkit.server import free_port, rss_mb, start_app, wait_ready

TEXT = ("Now is the winter of our discontent made glorious summer by this sun of York; and all "
        "the clouds that lour'd upon our house in the deep bosom of the ocean buried. ")


def prompt(i: int, chars: int) -> str:
    return (f"{i}: " + TEXT * (chars // len(TEXT) + 1))[:chars]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2")
    p.add_argument("--sessions", type=int, default=100)
    p.add_argument("--chars", type=int, default=4000)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--budget-mb", type=int, default=4000)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log = Path("/tmp") / f"bench_memory_{port}.log"
    server = start_app(port, ["--model", args.model, "--memory-budget-mb", str(args.budget_mb)], log)
    samples, stop = [], threading.Event()
    out: dict = {"model": args.model, "sessions": args.sessions, "budget_mb": args.budget_mb}
    try:
        out["startup_s"] = round(wait_ready(url, server, timeout=600), 1)
        warm = RawSession(url)
        assert warm.call("reset", "warm up", 0, "", False).ok  # loads the model
        out["rss_idle_mb"] = round(rss_mb(server.pid))

        def sample():
            while not stop.is_set():
                samples.append(rss_mb(server.pid))
                time.sleep(0.25)
        threading.Thread(target=sample, daemon=True).start()

        def open_session(i: int):
            s = RawSession(url)
            r = s.call("reset", prompt(i, args.chars), i, "", False)
            if not r.ok:
                return s, f"reset: {r.error}"
            for _ in range(args.steps):
                r = s.call("step", {"temperature": 0.8, "top_k": 40})
                if not r.ok:
                    return s, f"step: {r.error}"
            return s, None

        t0 = time.monotonic()
        with ThreadPoolExecutor(args.concurrency) as pool:
            opened = list(pool.map(open_session, range(args.sessions)))
        out["open_s"] = round(time.monotonic() - t0, 1)
        out["errors_while_opening"] = [e for _, e in opened if e][:5]
        kept = closed = silent = 0
        for s, _ in opened:
            r = s.call("export")
            if r.ok and len(r.data["steps"]) == args.steps:
                kept += 1
            elif not r.ok and "closed to keep the server's memory" in (r.error or ""):
                closed += 1
            else:
                silent += 1
            s.close()
        newcomer = RawSession(url)
        fine = newcomer.call("reset", "To be", 1, "", False).ok and newcomer.call("step", {}).ok
        newcomer.close()
        warm.close()
        stop.set()
        out |= {"kept": kept, "closed_with_message": closed, "lost_silently": silent,
                "newcomer_served": fine, "rss_peak_mb": round(max(samples)),
                "rss_end_mb": round(rss_mb(server.pid)), "server_alive": server.poll() is None}
    finally:
        stop.set()
        server.terminate()
        server.wait(timeout=30)
    out["under_budget"] = out.get("rss_peak_mb", 1e9) <= args.budget_mb
    ok = (out["under_budget"] and out.get("newcomer_served") and out.get("lost_silently") == 0
          and not out.get("errors_while_opening"))
    out["verdict"] = "PASS" if ok else "FAIL"
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Hostile input, the long run: tens of thousands of generated values against one server.

    python -m benchmarks.bench_fuzz                         # 10,000 inputs (at most 15 min)
    python -m benchmarks.bench_fuzz --inputs 3000 --seconds 300 --json out.json

tests/test_hostile.py sends ~2,000; this sends many more with the same strategies and checks
(testkit/hostile.py: draw_args, send, check), against the server as a workshop runs it: a subprocess,
`python app.py --model checkpoints/shakespeare`, on 127.0.0.1. Alongside the generated inputs:

- a bystander (gradio_client) keeps stepping, undoing and generating the whole time; at the end
  its text must equal a replay of its own actions;
- "chaos" sessions call endpoints out of order (step before reset, undo on nothing, a 1 MB
  prompt, NaN settings) concurrently with everything else;
- the server's log must hold no traceback, it must still answer, and its RSS is reported.

The loops are bounded in count and time; the script stops the server and exits by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time
import types
import urllib.request
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from testkit.hostile import Fuzz, check, draw_args, keep_room, send
from testkit.raw_client import RawSession
from testkit.server import ROOT, free_port, rss_mb, start_app, wait_ready

# Every endpoint the page and the API share, with how often each is drawn: the classic seven
# most (they are what a room calls), then scoring, the lens, many futures, the tree, the
# comparison of models.
SHARES = {"reset": 3, "distribution": 4, "step": 4, "pick": 3, "generate": 2, "undo": 1, "export": 1,
          "score": 1, "lens": 1, "sample": 1, "continuations": 1, "open_continuation": 1, "beam": 1,
          "beam_open": 1, "blocks": 1, "tree": 1, "goto": 1, "load_tree": 1, "compare_models": 1}
BYSTANDER_SETTINGS = [{"temperature": 0.8, "top_k": 40}, {"temperature": 0.0},
                      {"temperature": 1.2, "top_p": 0.9}, {"min_p": 0.1, "repetition_penalty": 1.3}]


def bystander(url: str, stop: threading.Event, out: dict):
    """An ordinary student, all through the run; records what it did for the replay."""
    from gradio_client import Client

    c = Client(url, verbose=False)
    try:
        c.predict("ROMEO:\n", 5, api_name="/reset")
        actions, i = [], 0
        while not stop.is_set() and i < 5000:
            s = BYSTANDER_SETTINGS[i % len(BYSTANDER_SETTINGS)]
            if i % 25 == 24:
                c.predict("ROMEO:\n", 5, api_name="/reset")
                actions = []
            elif i % 7 == 6:
                c.predict(api_name="/undo")
                actions.append(("undo",))
            elif i % 5 == 4:
                c.submit(3, s, api_name="/generate").result(timeout=120)
                actions.append(("generate", 3, s))
            else:
                c.predict(s, api_name="/step")
                actions.append(("step", s))
            i += 1
        out.update(calls=i, actions=actions, export=c.predict(api_name="/export"))
    except Exception as e:
        out["error"] = f"{type(e).__name__}: {e!s:.300}"
    finally:
        c.close()


def replay_bystander(model: str, actions: list) -> str:
    import torch

    from model.loading import load_model
    from testkit.replay import replay

    torch.set_num_threads(1)
    gpt, tokenizer, _ = load_model(str(ROOT / model))
    return replay(gpt, tokenizer, "ROMEO:\n", 5, actions)["text"]


CHAOS = [("step", ({"temperature": float("nan")},)), ("undo", ()), ("pick", (float("inf"), {})),
         ("generate", (5, {})), ("export", ()), ("reset", ("\ud800" * 3, 0, "", False)),
         ("reset", ("x" * 1_000_000, 1, "", False)), ("undo", ()), ("undo", ()),
         ("step", ({"top_k": 2**70},)), ("distribution", ({"temperature": -1}, 5)),
         ("generate", (3, {"temperature": 0.5})), ("pick", (3, {"no_repeat_ngram_size": 1})),
         ("reset", (None, None, None, None)), ("step", ("not a dict",))]


def chaos(url: str, stop: threading.Event, tally: Counter, problems: list, srv):
    """Fresh sessions calling things in an order no page would: concurrent with the rest."""
    rounds = 0
    while not stop.is_set() and rounds < 2000:
        s = RawSession(url)
        try:
            for name, args in CHAOS:
                if stop.is_set():
                    break
                reply = s.call(name, *args)
                tally["chaos"] += 1
                try:
                    check(srv, name, reply, args)
                except AssertionError as e:
                    problems.append(f"chaos: {e!s:.300}")
        finally:
            s.close()
        rounds += 1


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--inputs", type=int, default=10_000, help="generated inputs to send")
    p.add_argument("--seconds", type=float, default=900, help="stop sending after this long")
    p.add_argument("--chaos", type=int, default=2, help="concurrent out-of-order sessions")
    p.add_argument("--model", default="checkpoints/shakespeare")
    p.add_argument("--seed", type=int, default=0, help="hypothesis seed (same seed, same inputs)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)

    from gradio_client import Client

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_fuzz_server_{port}.log"
    server = start_app(port, ["--model", args.model], log_path)
    results: dict = {"inputs_target": args.inputs, "model": args.model, "seed": args.seed}
    stop = threading.Event()
    try:
        results["startup_s"] = round(wait_ready(url, server), 1)
        results["rss_start_mb"] = round(rss_mb(server.pid), 1)
        config = json.loads((ROOT / args.model / "config.json").read_text())
        srv = types.SimpleNamespace(url=url, model=args.model, vocab=config["gpt"]["vocab_size"],
                                    raw=RawSession(url), client=Client(url, verbose=False))
        srv.raw.call("reset", "To be", 1, "", False)
        srv.client.predict("To be", 1, api_name="/reset")

        by: dict = {}
        tally: Counter = Counter()
        problems: list[str] = []
        peak = [rss_mb(server.pid)]
        threads = [threading.Thread(target=bystander, args=(url, stop, by))]
        threads += [threading.Thread(target=chaos, args=(url, stop, tally, problems, srv))
                    for _ in range(args.chaos)]
        for t in threads:
            t.start()

        t0 = time.monotonic()
        deadline = t0 + args.seconds

        @seed(args.seed)
        @settings(max_examples=args.inputs, deadline=None, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(data=st.data())
        def fuzz(data):
            # Draw first, always: hypothesis needs every example to draw the same way, so past
            # the deadline the examples are still drawn (cheap), only not sent.
            name = data.draw(st.sampled_from([n for n, w in SHARES.items() for _ in range(w)]))
            call_args = draw_args(data, name, srv)
            # undo and export take no arguments; hypothesis never generates the same example
            # twice, so give them something to vary: how often, and how far apart
            repeat, pause = ((data.draw(st.integers(1, 4)), data.draw(st.floats(0, 0.02)))
                             if not call_args else (1, 0.0))
            if time.monotonic() > deadline:
                return
            for _ in range(repeat):
                time.sleep(pause)
                reply = send(srv, name, *call_args)
                tally[f"{name} {'ok' if reply.ok else 'refused'}"] += 1
                try:
                    check(srv, name, reply, call_args)
                except AssertionError as e:
                    problems.append(f"{e!s:.400}")
                keep_room(srv, reply)
            if Fuzz.sent % 500 < repeat:
                peak.append(rss_mb(server.pid))
                print(f"{Fuzz.sent} inputs, {time.monotonic() - t0:.0f} s, RSS {peak[-1]:.0f} MB, "
                      f"{len(problems)} problems", flush=True)

        fuzz()
        results["fuzz_wall_s"] = round(time.monotonic() - t0, 1)
        stop.set()
        for t in threads:
            t.join(timeout=180)
        results["inputs_sent"] = Fuzz.sent
        results["chaos_calls"] = tally.pop("chaos", 0)
        results["by_endpoint"] = dict(sorted(tally.items()))
        results["problems"] = len(problems)
        results["problem_samples"] = problems[:10]

        results["bystander_calls"] = by.get("calls")
        if "error" in by:
            results["bystander"] = "error: " + by["error"]
        else:
            want = replay_bystander(args.model, by["actions"])
            results["bystander"] = "unchanged" if by["export"]["text"] == want else "DIFFERS from its replay"
        with urllib.request.urlopen(url, timeout=10) as r:
            results["server_answers_after"] = r.status == 200
        after = Client(url, verbose=False)
        results["normal_step_after"] = after.predict("To be", 1, api_name="/reset")["seed"] == 1 and \
            after.predict({"temperature": 0}, api_name="/step")["how"] == "greedy"
        after.close()
        srv.client.close()
        srv.raw.close()
        results["rss_peak_mb"] = round(max(peak), 1)
        results["rss_end_mb"] = round(rss_mb(server.pid), 1)
        results["server_alive"] = server.poll() is None
    finally:
        stop.set()
        server.terminate()
        try:
            server.wait(timeout=20)
        except Exception:
            server.kill()
    log = log_path.read_text(errors="replace")
    results["server_tracebacks"] = len(re.findall(r"^Traceback", log, flags=re.M))
    results["server_log"] = str(log_path)
    reached = {key.rsplit(" ", 1)[0] for key in results.get("by_endpoint", {})}
    results["endpoints_not_reached"] = sorted(set(SHARES) - reached)
    print(json.dumps(results, indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    ok = (results.get("problems") == 0 and results.get("server_tracebacks") == 0
          and results.get("bystander") == "unchanged" and results.get("normal_step_after")
          and not results["endpoints_not_reached"])
    print(f"verdict: {'PASS' if ok else 'FAIL'}: {results.get('inputs_sent', 0)} inputs over "
          f"{len(reached)} of {len(SHARES)} endpoints, {results.get('problems')} problems, "
          f"{results.get('server_tracebacks')} tracebacks in the server's log, bystander "
          f"{results.get('bystander')}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Opening a link that holds a text's token ids: the server's side, before the page can draw.

    python -m benchmarks.bench_link                       # both models, 1,000 tokens
    python -m benchmarks.bench_link --models default --repeats 5 --threads 1

A link carries the prompt, settings, seed and the text's token ids; opening it sends the page's
'start' with `ids`, and the server starts a session, replays the ids (DecodingSession.replay_many,
through ui/actions.py) and sends one snapshot: the chart's logits and the whole text, each token
with its alternatives. Per model, the ids are a fixed passage's tokens (any ids a vocabulary
has make a valid link; where the seed's u does not give one, its step is recorded as picked).
Then, alternating in each repeat:

- link: the page's start handler end to end, as a visitor's browser calls it, split into the
  session's start (the prompt's prefill), the replay (the model, model/decode_rows.py, and the
  steps' pipelines and records) and the snapshot (built, and its size);
- one by one: the same ids through DecodingSession.replay, one forward per token (how links
  opened before replay_many);
- for scale, one batched forward over the last context window: a prefill computes the same
  function, but its logits differ in the last bits from a decode step's, so replay does not
  use it (the rows that came out equal are counted).

Both replays must give the same session, record for record (checked on the last repeat).
Medians over --repeats; the load average is printed, since the cores are shared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gradio as gr
import torch

import model.session as session_module
from model.kv_cache import context_window
from model.sampling import SamplingSettings
from model.session import DecodingSession
from ui.actions import Actions, Limits
from ui.handlers import PageHandlers
from ui.state import ModelRegistry

SOURCES = {"default": "checkpoints/shakespeare", "smollm2": "smollm2"}
PROMPTS = {"default": "ROMEO:\n", "smollm2": "The history of the printing press"}
PASSAGE = ("But soft, what light through yonder window breaks? It is the east, and Juliet is the "
           "sun. Arise, fair sun, and kill the envious moon, who is already sick and pale with "
           "grief that thou, her maid, art far more fair than she. ")
SETTINGS = SamplingSettings(temperature=0.9, top_k=40)


class Clock:
    """Seconds spent inside one function, by wrapping it where the session looks it up."""

    def __init__(self, module, name: str):
        self.total, real = 0.0, getattr(module, name)

        def timed(*args, **kw):
            start = time.perf_counter()
            try:
                return real(*args, **kw)
            finally:
                self.total += time.perf_counter() - start
        setattr(module, name, timed)


def link_ids(registry: ModelRegistry, name: str, n: int) -> list[int]:
    tok = registry.get(name).tokenizer
    ids = tok.encode_ordinary(PASSAGE)
    return (ids * (n // len(ids) + 1))[:n]


def open_link(handlers: PageHandlers, name: str, prompt: str, ids: list[int], forward: Clock) -> dict:
    """The page's start with a link's ids: seconds in all and by part, and the snapshot's size."""
    data = {"id": 1, "model": name, "prompt": prompt, "seed": 0, "ids": ids,
            "settings": SETTINGS.to_dict()}
    actions = handlers.actions
    parts = {}
    real_start, real_replay, real_snapshot = actions.start, actions.replay, handlers.view.snapshot

    def timed(key, fn):
        def run(*args, **kw):
            start = time.perf_counter()
            try:
                return fn(*args, **kw)
            finally:
                parts[key] = parts.get(key, 0.0) + time.perf_counter() - start
        return run
    actions.start, actions.replay = timed("start", real_start), timed("replay", real_replay)
    handlers.view.snapshot = timed("snapshot", real_snapshot)
    before = forward.total
    start = time.perf_counter()
    try:
        out = list(handlers.start(None, gr.EventData(None, data), None))
    finally:
        actions.start, actions.replay, handlers.view.snapshot = real_start, real_replay, real_snapshot
    total = time.perf_counter() - start
    user, payload = out[-1][0], out[-1][1]
    text = json.loads(payload)["text"]
    if len(text["tokens"]) != len(ids):
        sys.exit(f"the link restored {len(text['tokens'])} of {len(ids)} tokens: {json.loads(payload).get('notice')}")
    parts["replay: model"] = forward.total - before
    parts["replay: records"] = parts["replay"] - parts["replay: model"]
    return {"total": total, "parts": parts, "payload_bytes": len(payload.encode()),
            "text_bytes": len(json.dumps(text, ensure_ascii=False).encode()), "session": user.session}


def one_by_one(registry: ModelRegistry, name: str, prompt: str, ids: list[int]) -> tuple[float, DecodingSession]:
    loaded = registry.get(name)
    s = DecodingSession(loaded.gpt, loaded.tokenizer, seed=0, max_prompt_chars=Limits().prompt_chars)
    s.reset(prompt)
    start = time.perf_counter()
    for t in ids:
        s.replay(t, SETTINGS)
    return time.perf_counter() - start, s


@torch.inference_mode()
def batched_forward(registry: ModelRegistry, name: str, session: DecodingSession) -> tuple[float, int, int]:
    """One prefill over the window the replayed session's cache holds: seconds, and how many
    of its positions' logits equal the replay's (kept by the session's newest records)."""
    gpt = registry.get(name).gpt
    window = context_window(len(session.ids), gpt.config.block_size)
    start = time.perf_counter()
    logits = gpt(torch.tensor([session.ids[window:]]))[0].float()  # (T, V)
    seconds = time.perf_counter() - start
    compared = equal = 0
    for record in session.history:
        if record.logits is not None and record.position - 1 >= window:
            compared += 1
            equal += torch.equal(logits[record.position - 1 - window], record.logits)
    return seconds, equal, compared


def same_session(a: DecodingSession, b: DecodingSession) -> bool:
    def fields(r):
        return {k: v for k, v in r.__dict__.items() if k != "logits"}
    return (a.ids == b.ids and torch.equal(a.logits, b.logits) and a._cache.pos == b._cache.pos
            and all(fields(x) == fields(y) for x, y in zip(a.history, b.history)))


def bench(short: str, n: int, repeats: int, skip_one_by_one: bool) -> dict:
    name = SOURCES[short]
    registry = ModelRegistry([name])
    registry.get(name)
    forward = Clock(session_module, "decode_rows")
    handlers = PageHandlers(Actions(registry, Limits()))
    ids, prompt = link_ids(registry, name, n), PROMPTS[short]
    open_link(handlers, name, prompt, ids[:8], forward)  # warm up; the model's row check runs once
    links, singles, prefills = [], [], []
    for _ in range(repeats):
        links.append(open_link(handlers, name, prompt, ids, forward))
        if not skip_one_by_one:
            singles.append(one_by_one(registry, name, prompt, ids))
        prefills.append(batched_forward(registry, name, links[-1]["session"]))
    if singles and not same_session(links[-1]["session"], singles[-1][1]):
        sys.exit(f"{short}: the link's replay and the one-by-one replay made different sessions")
    med = statistics.median
    return {"model": short, "tokens": n, "vocab": registry.get(name).gpt.config.vocab_size,
            "link_s": med(r["total"] for r in links),
            "parts": {k: med(r["parts"][k] for r in links) for k in links[0]["parts"]},
            "payload_kb": links[-1]["payload_bytes"] / 1024, "text_kb": links[-1]["text_bytes"] / 1024,
            "one_by_one_s": med(s for s, _ in singles) if singles else None,
            "prefill_s": med(p[0] for p in prefills), "prefill_equal": prefills[-1][1:],
            "sampled": sum(r.how == "sampled" for r in links[-1]["session"].history)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=list(SOURCES), choices=list(SOURCES))
    ap.add_argument("--tokens", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-one-by-one", action="store_true",
                    help="do not time the one-forward-per-token replay (minutes for SmolLM2)")
    args = ap.parse_args(argv)
    if not 1 <= args.tokens <= Limits().session_tokens or args.repeats < 1:
        print(f"--tokens must be in [1, {Limits().session_tokens}] and --repeats at least 1",
              file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.tokens} tokens, {args.repeats} "
          f"repeats, medians; load average {os.getloadavg()[0]:.1f}")
    results = [bench(m, args.tokens, args.repeats, args.skip_one_by_one) for m in args.models]
    print(f"load average {os.getloadavg()[0]:.1f} at the end\n")
    print("| model | link, server side (s) | start | replay: model | replay: records | snapshot | "
          "one by one (s) | one batched forward (s) | payload (KB, text) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        p = r["parts"]
        single = f"{r['one_by_one_s']:.2f}" if r["one_by_one_s"] is not None else "not run"
        print(f"| {r['model']} | {r['link_s']:.2f} | {p['start']:.2f} | {p['replay: model']:.2f} | "
              f"{p['replay: records']:.2f} | {p['snapshot']:.2f} | {single} | {r['prefill_s']:.2f} | "
              f"{r['payload_kb']:.0f} ({r['text_kb']:.0f}) |")
    for r in results:
        eq, n = r["prefill_equal"]
        print(f"{r['model']}: {r['sampled']} of {r['tokens']} steps recorded as sampled; the batched "
              f"forward's logits equal the replay's at {eq} of {n} positions compared")
    return 0


if __name__ == "__main__":
    sys.exit(main())

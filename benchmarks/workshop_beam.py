"""The numbers quoted by the workshop's beam-search exercise (docs/workshop.md), on SmolLM2.

    python -m benchmarks.workshop_beam [--mode exact|fast] [--tokens 60] [--samples 5] [--json PATH]

For each prompt, the same number of new tokens by:
  greedy           temperature 0 (a session's Step, over and over);
  beam search      4 beams, length penalty 1, early stopping False (model/beam.py, as
                   transformers' generate(num_beams=4) does), ending at end-of-text;
  sampling T = 1   the raw distribution, `--samples` seeds (0, 1, ...), averaged;
  top-p 0.9        temperature 0.8, the same seeds.
Reported per text: its new tokens, "repeated" (tokens that complete a 4-gram already seen in
the new text), distinct tokens / tokens, and the mean surprisal -ln p of its tokens under the
raw model (T = 1, no filters): how predictable the model itself finds the text. Every number
comes from the engine with fixed seeds; it exits non-zero if a text came out empty.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmarks.workshop_figures import repeated_ngrams
from model.beam import beam_search
from model.chat import IM_END, apply_chat_template
from model.loading import load_model
from model.sampling import SamplingSettings
from model.session import DecodingSession

PROMPTS = (("story", "Write a short story about a lighthouse keeper.", True),
           ("press", "The printing press changed Europe because", False))
SAMPLERS = {"sampling T = 1": SamplingSettings(temperature=1.0),
            "top-p 0.9, T = 0.8": SamplingSettings(temperature=0.8, top_p=0.9)}


def measure(ids: list[int], logprobs: list[float]) -> dict:
    if not ids:
        raise SystemExit("a text came out empty: nothing to measure")
    return {"tokens": len(ids), "repeated": repeated_ngrams(ids), "distinct": len(set(ids)) / len(ids),
            "surprisal": -sum(logprobs) / len(logprobs)}


def session_text(s: DecodingSession, prompt: str, n: int, settings: SamplingSettings, stops: set[int]):
    s.reset(prompt)
    ids, logprobs = [], []
    for record in s.generate(n, settings):
        ids.append(record.token)
        logprobs.append(math.log(record.raw_prob))
        if record.token in stops:
            break
    return ids, logprobs


def figures(gpt, tok, n: int, samples: int) -> dict:
    out = {}
    for name, question, chat in PROMPTS:
        prompt = apply_chat_template(tok, question) if chat else question
        end = tok.encode_single_token(IM_END) if chat else gpt.config.eot_token
        stops = {end, tok.eot_token}
        s = DecodingSession(gpt, tok, seed=0)
        rows = {}
        ids, lps = session_text(s, prompt, n, SamplingSettings(temperature=0), stops)
        rows["greedy"] = measure(ids, lps) | {"text": tok.decode(ids)}
        result = beam_search(gpt, tok.encode(prompt, allowed_special="all"), n, 4, 1.0, False,
                             eos_token_id=end, record=False)
        best = result.best.tokens
        rows["beam search, 4 beams"] = measure(best, [result.best.logprob / len(best)] * len(best)) | {
            "text": tok.decode(best)}
        for label, settings in SAMPLERS.items():
            runs = []
            for seed in range(samples):
                s.set_seed(seed)
                ids, lps = session_text(s, prompt, n, settings, stops)
                runs.append(measure(ids, lps) | {"text": tok.decode(ids)})
            rows[label] = {k: statistics.mean(r[k] for r in runs) for k in ("tokens", "repeated", "distinct",
                                                                           "surprisal")}
            rows[label]["text"] = runs[0]["text"]  # the first seed's, to read
        out[name] = {"prompt": question, "chat": chat, "rows": rows}
    return out


def show(figs: dict, n: int, samples: int) -> None:
    for name, f in figs.items():
        print(f"\n{name}: {f['prompt']!r}{' (chat template)' if f['chat'] else ''}, up to {n} tokens; "
              f"sampling rows: mean of {samples} seeds")
        print(f"  {'':22} {'tokens':>6} {'repeated':>8} {'distinct':>8} {'surprisal':>9}")
        for label, r in f["rows"].items():
            print(f"  {label:22} {r['tokens']:6.1f} {r['repeated']:8.1f} {r['distinct']:8.2f} {r['surprisal']:9.2f}")
        for label, r in f["rows"].items():
            print(f"  {label}: {r['text'][:160]!r}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.workshop_beam", description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--mode", default="exact", choices=("exact", "fast"))
    ap.add_argument("--tokens", type=int, default=60)
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args(argv)
    gpt, tok, _ = load_model(args.model, mode=args.mode)
    figs = figures(gpt, tok, args.tokens, args.samples)
    show(figs, args.tokens, args.samples)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(figs, f, indent=1, ensure_ascii=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The numbers quoted by the workshop's exercises 6-9 (docs/workshop.md), on SmolLM2-135M-Instruct.

    python -m benchmarks.workshop_figures [--mode exact|fast] [--json PATH]

Every number comes from the engine (DecodingSession), with fixed seeds; nothing is typed in.
Exits non-zero if a scenario produced nothing.

a. DRY against a loop: greedy, repetition penalty 1.3 (Hugging Face's) and DRY (multiplier
   0.8, base 1.75, allowed length 2, llama.cpp's defaults otherwise), 60 tokens each. "Repeated"
   counts the generated tokens that complete a 4-gram (four tokens in a row) already seen
   earlier in the generated text.
b. XTC (probability 1, threshold 0.1) on a prompt whose top token is very likely and nothing
   else passes 10% (XTC needs two), and on the first of a few prompts where two tokens pass.
c. Mirostat 2 (τ 5, η 0.1), 60 sampled steps at temperature 1 and 1.5: μ at steps 1, 10, 30,
   60, and the mean surprise of the chosen tokens (-log2 of their probability after mirostat's
   cut, which is what μ is steered by).
d. Min-p 0.1 at temperatures 1.5 and 0.5, temperature first (the default chain) and last.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from model.chat import apply_chat_template
from model.loading import load_model
from model.sampling import SamplingSettings
from model.session import DecodingSession

SEED = 0
N_TOKENS = 60
LOOP_PROMPTS = (("song", "The song goes: la la la", False),
                ("poem", "Write a poem about the sea.", True))
LOOP_SETTINGS = {
    "greedy": {"temperature": 0.0},
    "repetition penalty 1.3": {"temperature": 0.0, "repetition_penalty": 1.3},
    "DRY 0.8": {"temperature": 0.0, "dry_multiplier": 0.8, "dry_base": 1.75, "dry_allowed_length": 2},
}
XTC_SURE = "The capital of France is"
XTC_PROMPTS = ("Roses are red, violets are", "The Eiffel Tower is in", "Ladies and")
MINP_PROMPT = "The cat sat on the"
MIROSTAT_PROMPT = "Once upon a time, there was a little"
MIROSTAT_TEMPERATURES = (1.0, 1.5)


def repeated_ngrams(ids: list[int], n: int = 4) -> int:
    """How many tokens of ids complete an n-gram that already occurred earlier in ids."""
    seen, count = set(), 0
    for i in range(n - 1, len(ids)):
        gram = tuple(ids[i - n + 1:i + 1])
        count += gram in seen
        seen.add(gram)
    return count


def loops(gpt, tok) -> dict:
    out = {}
    for key, prompt, chat in LOOP_PROMPTS:
        text = apply_chat_template(tok, prompt) if chat else prompt
        runs = {}
        for name, values in LOOP_SETTINGS.items():
            s = DecodingSession(gpt, tok, seed=SEED)
            s.reset(text)
            start = len(s.ids)
            records = list(s.generate(N_TOKENS, SamplingSettings(**values)))
            new = s.ids[start:]
            runs[name] = {"tokens": len(records), "repeated": repeated_ngrams(new),
                          "new_lines": s.generated_text.count("\n"),
                          "text": s.generated_text}
        out[key] = {"prompt": prompt, "chat_template": chat, "runs": runs}
    return out


def xtc_on(s, prompt: str) -> dict:
    """XTC (probability 1, threshold 0.1) on one prompt, against no filter."""
    s.reset(prompt)
    before = s.distribution(SamplingSettings()).probs
    after = s.distribution(SamplingSettings(xtc_probability=1.0, xtc_threshold=0.1)).probs
    top = before.topk(5)
    above = [int(i) for p, i in zip(top.values, top.indices) if p >= 0.1]
    return {"prompt": prompt,
            "above_threshold": [{"token": s.piece(i), "prob": float(before[i])} for i in above],
            "kept_of_them": [s.piece(i) for i in above if after[i] > 0],
            "top": s.piece(int(top.indices[0])), "top_before": float(top.values[0]),
            "top_after": float(after[int(top.indices[0])]),
            "new_top": s.piece(int(after.argmax())), "new_top_before": float(before[int(after.argmax())]),
            "new_top_after": float(after.max()), "kept_count": int((after > 0).sum())}


def xtc(gpt, tok) -> dict:
    """A prompt with one sure token (XTC needs two above the threshold, so it leaves it), and
    the first of XTC_PROMPTS where two or more tokens pass the threshold."""
    s = DecodingSession(gpt, tok, seed=SEED)
    out = {"sure": xtc_on(s, XTC_SURE)}
    for prompt in XTC_PROMPTS:
        d = xtc_on(s, prompt)
        if len(d["above_threshold"]) >= 2:
            return out | {"acts": d}
    return {}


def mirostat(gpt, tok) -> dict:
    """60 sampled steps at temperature 1 and at 1.5 (mirostat's chain is temperature, then
    mirostat): μ as the steps go, and the mean surprise of the chosen tokens against τ."""
    out = {}
    for temperature in MIROSTAT_TEMPERATURES:
        settings = SamplingSettings(temperature=temperature, mirostat=2, mirostat_tau=5.0,
                                    mirostat_eta=0.1)
        s = DecodingSession(gpt, tok, seed=SEED)
        s.reset(MIROSTAT_PROMPT)
        records = list(s.generate(N_TOKENS, settings))
        if not records:
            return {}
        surprise = [-math.log2(r.prob) for r in records]
        running = [sum(surprise[:i + 1]) / (i + 1) for i in range(len(surprise))]
        out[f"T={temperature:g}"] = {
            "temperature": temperature, "tau": settings.mirostat_tau, "eta": settings.mirostat_eta,
            "steps": len(records),
            "mu": {str(i): records[i - 1].mu for i in (1, 10, 30, 60) if i <= len(records)},
            "mu_next": s.mirostat_mu,
            "mean_surprise": {str(i): running[i - 1] for i in (10, 30, 60) if i <= len(records)},
            "mean_surprise_last_30": sum(surprise[30:]) / max(1, len(surprise[30:])),
            "text": s.generated_text}
    return {"prompt": MIROSTAT_PROMPT, "runs": out}


def min_p(gpt, tok) -> dict:
    s = DecodingSession(gpt, tok, seed=SEED)
    s.reset(MINP_PROMPT)
    out = {"prompt": MINP_PROMPT, "min_p": 0.1,
           "no_filter_T1": int((s.distribution(SamplingSettings()).probs > 0).sum())}
    for t in (1.5, 0.5):
        for last in (False, True):
            probs = s.distribution(SamplingSettings(temperature=t, min_p=0.1, temperature_last=last)).probs
            out[f"T={t} temperature {'last' if last else 'first'}"] = int((probs > 0).sum())
    return out


def show(figures: dict) -> None:
    print(f"SmolLM2-135M-Instruct, {figures['mode']} mode, seed {SEED}\n")
    print(f"a. loops: tokens of {N_TOKENS} that complete a 4-gram already generated")
    for key, d in figures["loops"].items():
        print(f"  {key}: {d['prompt']!r}{' (chat template)' if d['chat_template'] else ''}")
        for name, r in d["runs"].items():
            first = r["text"].strip().split("\n")[0][:100]
            print(f"    {name:24s} repeated {r['repeated']:2d}/{r['tokens']}, line breaks {r['new_lines']:2d}"
                  f"  {first!r}")
    print("\nb. XTC, probability 1, threshold 0.1")
    for x in figures["xtc"].values():
        print(f"   {x['prompt']!r}: above 0.1: "
              + ", ".join(f"{a['token']!r} {a['prob']:.1%}" for a in x["above_threshold"])
              + f"; XTC keeps of them: {', '.join(map(repr, x['kept_of_them']))}")
        print(f"     top {x['top']!r} {x['top_before']:.1%} -> {x['top_after']:.1%}; the top is now "
              f"{x['new_top']!r} ({x['new_top_before']:.1%} -> {x['new_top_after']:.1%}); "
              f"{x['kept_count']} tokens kept")
    print(f"\nc. mirostat 2 on {figures['mirostat']['prompt']!r}")
    for name, m in figures["mirostat"]["runs"].items():
        print(f"   {name}, tau {m['tau']:g}, eta {m['eta']:g}: mu at steps "
              + ", ".join(f"{k}: {v:.2f}" for k, v in m["mu"].items()) + f" (next {m['mu_next']:.2f})")
        print("     mean surprise of the chosen tokens (bits) after "
              + ", ".join(f"{k} steps: {v:.2f}" for k, v in m["mean_surprise"].items())
              + f"; steps 31-60: {m['mean_surprise_last_30']:.2f}")
        print(f"     text: {m['text'][:100]!r}")
    d = figures["min_p"]
    print(f"\nd. min-p 0.1 on {d['prompt']!r} (no filter at T = 1: {d['no_filter_T1']} tokens)")
    for k, v in d.items():
        if k.startswith("T="):
            print(f"   {k}: {v} kept")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mode", default="exact", choices=("exact", "fast"))
    ap.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = ap.parse_args(argv)
    gpt, tok, card = load_model("smollm2", mode=args.mode)
    figures = {"mode": args.mode, "seed": SEED, "loops": loops(gpt, tok), "xtc": xtc(gpt, tok),
               "mirostat": mirostat(gpt, tok), "min_p": min_p(gpt, tok)}
    empty = [k for k in ("loops", "xtc", "mirostat", "min_p") if not figures[k]]
    empty += [f"loops/{k}/{n}" for k, d in figures["loops"].items()
              for n, r in d["runs"].items() if r["tokens"] == 0]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1, ensure_ascii=False)
    if empty:
        print(f"no figures from: {', '.join(empty)}", file=sys.stderr)
        return 1
    show(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())

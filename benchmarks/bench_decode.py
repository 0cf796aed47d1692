"""Greedy decoding speed on CPU: our `model.generate` against Hugging Face's `generate`.

Both run the same GPT-2-124M-shaped model (random weights, copied from ours into
transformers' GPT2LMHeadModel), the same 64-token prompt and 128 new tokens, alternating in
one process so that load from other work on the machine hits both alike. Reports the median
tokens/s of each, their ratio, whether the tokens are identical, and the time of one decode
step at a short and a long context.

    python -m benchmarks.bench_decode                 # about 3 minutes on 2 CPU cores
    python -m benchmarks.bench_decode --repeats 3 --threads 1
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch

from model import GPT, GPTConfig, generate
from model.checkpoint import build_model
from model.hf_gpt2 import CONV1D

GPT2_124M = GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768)


def to_hf(gpt: GPT):
    """The same weights in transformers' GPT2LMHeadModel (its Conv1D stores (in, out))."""
    from transformers import GPT2Config, GPT2LMHeadModel

    c = gpt.config
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=c.vocab_size, n_positions=c.block_size,
                                    n_embd=c.n_embd, n_layer=c.n_layer, n_head=c.n_head,
                                    layer_norm_epsilon=c.norm_eps)).eval()
    state = {k: (v.t() if k.endswith(CONV1D) else v).contiguous()
             for k, v in gpt.state_dict().items()}
    missing, unexpected = hf.load_state_dict(state, strict=False)
    if unexpected or set(missing) - {"lm_head.weight"}:
        raise RuntimeError(f"weights did not map onto GPT2LMHeadModel: missing {missing}, "
                           f"unexpected {unexpected}")
    if hf.lm_head.weight.data_ptr() != hf.transformer.wte.weight.data_ptr():
        raise RuntimeError("GPT2LMHeadModel's head is not tied to its embeddings")
    return hf


@torch.inference_mode()
def ours_generate(gpt: GPT, prompt: torch.Tensor, n: int) -> torch.Tensor:
    return generate(gpt, prompt, max_new_tokens=n, temperature=0.0)


@torch.inference_mode()
def hf_generate(hf, prompt: torch.Tensor, n: int) -> torch.Tensor:
    return hf.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                       use_cache=True, max_new_tokens=n, min_new_tokens=n,
                       pad_token_id=hf.config.eos_token_id)


def timed(fn, *args):
    """(wall seconds, CPU seconds of this process, result). With one torch thread the CPU time
    barely changes when other work competes for the cores; wall time can change tenfold."""
    start, cpu = time.perf_counter(), time.process_time()
    out = fn(*args)
    return time.perf_counter() - start, time.process_time() - cpu, out


@torch.inference_mode()
def ours_step_ms(gpt: GPT, context: int, steps: int) -> tuple[float, float]:
    """Median (wall, CPU) milliseconds of one cached decode step after `context` positions."""
    ids = torch.randint(0, gpt.config.vocab_size, (1, context + steps),
                        generator=torch.Generator().manual_seed(1))
    cache = gpt.new_cache()
    gpt(ids[:, :context], cache=cache, last_only=True)
    times = []
    for i in range(context, context + steps):
        wall, cpu, _ = timed(gpt, ids[:, i:i + 1], None, cache)
        times.append((wall, cpu))
    return tuple(1e3 * statistics.median(t) for t in zip(*times))


@torch.inference_mode()
def hf_step_ms(hf, context: int, steps: int) -> tuple[float, float]:
    """The same for transformers' model forward with its own cache (no `generate`)."""
    ids = torch.randint(0, hf.config.vocab_size, (1, context + steps),
                        generator=torch.Generator().manual_seed(1))
    cache = hf(ids[:, :context], use_cache=True).cache
    times = []
    for i in range(context, context + steps):
        wall, cpu, out = timed(lambda x, cache=cache: hf(x, cache=cache, use_cache=True), ids[:, i:i + 1])
        cache = out.cache
        times.append((wall, cpu))
    return tuple(1e3 * statistics.median(t) for t in zip(*times))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="timed runs of each, alternating")
    ap.add_argument("--prompt-tokens", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--step-samples", type=int, default=16,
                    help="decode steps timed at each context length")
    ap.add_argument("--plain-layout", action="store_true",
                    help="keep nn.Linear's row-major weights (skip GPT.use_decode_layout)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    import transformers

    print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"{torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs, "
          f"{platform.processor() or platform.machine()}")
    torch.manual_seed(0)
    gpt = GPT(GPT2_124M).eval()
    if not args.plain_layout:  # what load_model returns: the same weights, decode layout
        gpt = build_model(GPT2_124M, gpt.state_dict(), Path("random weights"))
    hf = to_hf(gpt)
    prompt = torch.randint(0, GPT2_124M.vocab_size, (1, args.prompt_tokens),
                           generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        gap = (gpt(prompt) - hf(prompt).logits).abs().max().item()
    print(f"GPT-2 124M shape, random weights, {'row-major' if args.plain_layout else 'decode'} "
          f"layout; max |logit difference| ours vs HF: {gap:.2e}")

    # Warm up both (allocator, thread pool, lazy initialisation), then alternate.
    ours_generate(gpt, prompt, 8)
    hf_generate(hf, prompt, 8)
    n = args.new_tokens
    ours_wall, hf_wall, ours_cpu, hf_cpu, ratios, same = [], [], [], [], [], True
    for r in range(args.repeats):
        t_ours, c_ours, out_ours = timed(ours_generate, gpt, prompt, n)
        t_hf, c_hf, out_hf = timed(hf_generate, hf, prompt, n)
        same &= torch.equal(out_ours, out_hf)
        ours_wall.append(t_ours)
        hf_wall.append(t_hf)
        ours_cpu.append(c_ours)
        hf_cpu.append(c_hf)
        ratios.append(t_hf / t_ours)
        print(f"  run {r + 1}: ours {n / t_ours:6.1f} tok/s   HF {n / t_hf:6.1f} tok/s   "
              f"ratio {t_hf / t_ours:.2f}x   (per CPU-second: ours {n / c_ours:.1f}, HF {n / c_hf:.1f})")
    ours_rate = n / statistics.median(ours_wall)
    hf_rate = n / statistics.median(hf_wall)
    print(f"greedy, {args.prompt_tokens}-token prompt + {n} new tokens, median of {args.repeats}:")
    print(f"  wall clock:  ours {ours_rate:.1f} tok/s, HF generate {hf_rate:.1f} tok/s, "
          f"ratio of medians {ours_rate / hf_rate:.2f}x, median of per-run ratios "
          f"{statistics.median(ratios):.2f}x")
    print(f"  CPU time:    ours {n / statistics.median(ours_cpu):.1f} tok/s, HF generate "
          f"{n / statistics.median(hf_cpu):.1f} tok/s, ratio "
          f"{statistics.median(hf_cpu) / statistics.median(ours_cpu):.2f}x")
    print(f"  same tokens: {'yes' if same else 'NO'}")

    print(f"one decode step, median of {args.step_samples}, milliseconds wall / CPU:")
    for context in (32, 512):
        ours_ms = ours_step_ms(gpt, context, args.step_samples)
        hf_ms = hf_step_ms(hf, context, args.step_samples)
        print(f"  context {context:4d}: ours {ours_ms[0]:6.1f} / {ours_ms[1]:6.1f}   "
              f"HF forward with its cache {hf_ms[0]:6.1f} / {hf_ms[1]:6.1f}")
        if context == 32:
            short = hf_ms[0]
    # A float32 decode step reads every weight once; nothing exact can be quicker than that.
    floor = read_floor_ms(gpt, args.step_samples)
    print(f"reading the model's {weight_bytes(gpt) / 2**20:.0f} MiB of weights once (a sum over as "
          f"many bytes): {floor:.1f} ms, so a float32 decoder can be at most {short / floor:.2f}x "
          f"HF's step at context 32 on this machine and thread count")
    return 0 if same else 1


def weight_bytes(gpt) -> int:
    """Bytes a decode step reads: every parameter once (the tied head counted once)."""
    return sum(p.numel() * p.element_size() for p in gpt.parameters())  # parameters() yields a tied one once


def read_floor_ms(gpt, samples: int) -> float:
    """Milliseconds to stream as many bytes as the weights hold, once: the memory-bandwidth
    floor under any float32 decode step."""
    flat = torch.randn(weight_bytes(gpt) // 4)
    times = []
    for _ in range(samples):
        t = time.perf_counter()
        flat.sum()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


if __name__ == "__main__":
    sys.exit(main())

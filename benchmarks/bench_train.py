"""Training throughput of training.train's own step (forward, backward, clip, AdamW).

CPU (default): nanoGPT's small CPU shape (4 layers, 4 heads, 128 wide, block 64, batch 12,
65-symbol vocabulary), one process with every core against DDP on 2 processes of one thread
each (batch 12 per process). The two alternate, round after round, in the same run, so load
from other work hits both alike; medians and their ratio are reported.

    python -m benchmarks.bench_train --rounds 5

GPU (--device cuda): GPT-2 124M (12 layers, 768 wide, block 1024, vocab 50304), bf16 autocast,
compiled, batch 32 x 1024 per step, fused AdamW; tokens/s and MFU against the card's dense
bf16 peak (training.train.PEAK_BF16, or --peak-tflops).

    python -m benchmarks.bench_train --device cuda
    torchrun --standalone --nproc_per_node=8 -m benchmarks.bench_train --worker --device cuda --parallel fsdp ...

Workers print one JSON line; the driver starts them as subprocesses.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CPU_SHAPE = dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch=12, vocab=65)
GPU_SHAPE = dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, batch=32, vocab=50304)


def worker(args) -> None:
    import numpy as np
    import torch

    from model import GPT, GPTConfig
    from training.data import WindowStream
    from training.distributed import parallelize, setup, teardown
    from training.optim import build_optimizer
    from training.train import flops_per_token, peak_flops, train_step

    rt = setup(args.parallel, args.device, 300)
    try:
        cuda = rt.device.type == "cuda"
        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        config = GPTConfig(vocab_size=args.vocab, block_size=args.block_size, n_layer=args.n_layer,
                           n_head=args.n_head, n_embd=args.n_embd, dropout=0.0)
        torch.manual_seed(0)
        raw = GPT(config).to(rt.device)
        bf16 = cuda and not args.fp32
        model = parallelize(raw, rt, torch.bfloat16 if bf16 else torch.float32, args.compile)
        optimizer = build_optimizer(model, 6e-4, 0.1, (0.9, 0.95), rt.device.type)
        autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if bf16 and args.parallel != "fsdp" \
            else contextlib.nullcontext
        tokens = np.random.default_rng(0).integers(0, args.vocab, 2_000_000, dtype=np.uint16)
        stream = WindowStream(tokens, args.block_size, seed=0)
        times = []
        for step in range(args.warmup + args.steps):
            t0 = time.perf_counter()
            loss, _ = train_step(model, stream, step, rt, optimizer, 6e-4, args.batch, 1, 1.0, autocast)
            loss.item()  # waits for the device
            if cuda:
                torch.cuda.synchronize()
            if step >= args.warmup:
                times.append(time.perf_counter() - t0)
        step_s = statistics.median(times)
        tps = rt.world * args.batch * args.block_size / step_s
        peak = peak_flops(rt, args.peak_tflops)
        result = {"parallel": args.parallel, "world": rt.world, "threads": torch.get_num_threads(),
                  "device": torch.cuda.get_device_name(rt.device) if cuda else "cpu",
                  "params": raw.num_params(), "step_ms": round(step_s * 1000, 2), "tokens_per_s": round(tps, 1),
                  "loss": round(loss.item(), 4)}
        if peak:
            result["mfu"] = round(flops_per_token(raw) * tps / (peak * rt.world), 4)
        if cuda:
            result["max_memory_gib"] = round(torch.cuda.max_memory_allocated(rt.device) / 2**30, 2)
        if rt.is_main:
            print(json.dumps(result), flush=True)
    finally:
        teardown()


def shape_flags(shape: dict) -> list[str]:
    return [f"--{k.replace('_', '-')}={v}" for k, v in shape.items()]


def run_worker(nproc: int, flags: list[str], env: dict) -> dict:
    module = ["-m", "benchmarks.bench_train", "--worker", *flags]
    cmd = [sys.executable, *module] if nproc == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *module]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"benchmark worker failed: {' '.join(cmd)}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def drive_cpu(args) -> None:
    flags = shape_flags({k: getattr(args, k) for k in CPU_SHAPE}) + \
        ["--device=cpu", f"--steps={args.steps}", f"--warmup={args.warmup}"]
    base = {**os.environ, "PYTHONPATH": str(ROOT)}
    cores = os.cpu_count() or 1
    single_env = {**base, "OMP_NUM_THREADS": str(cores)}  # one process gets every core
    ddp_env = {**base, "OMP_NUM_THREADS": str(max(1, cores // args.nproc))}  # cores shared out
    single, ddp = [], []
    for r in range(args.rounds):
        single.append(run_worker(1, flags + ["--parallel=none"], single_env))
        ddp.append(run_worker(args.nproc, flags + ["--parallel=ddp"], ddp_env))
        print(f"round {r + 1}: single {single[-1]['tokens_per_s']:.0f} tokens/s "
              f"({single[-1]['threads']} threads), DDP x{args.nproc} {ddp[-1]['tokens_per_s']:.0f} tokens/s",
              flush=True)
    s = statistics.median(x["tokens_per_s"] for x in single)
    d = statistics.median(x["tokens_per_s"] for x in ddp)
    print(f"median over {args.rounds} rounds: single process {s:.0f} tokens/s, DDP on {args.nproc} processes "
          f"{d:.0f} tokens/s, ratio DDP/single {d / s:.2f}")
    print(json.dumps({"single_tokens_per_s": s, "ddp_tokens_per_s": d, "ratio": d / s,
                      "single_runs": single, "ddp_runs": ddp}))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="cpu: nanoGPT's CPU shape; "
                    "cuda: GPT-2 124M")
    ap.add_argument("--rounds", type=int, default=5, help="CPU: alternating single/DDP rounds")
    ap.add_argument("--nproc", type=int, default=2, help="CPU: DDP processes")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per run (default 30 CPU, 50 GPU)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 5 CPU, 15 GPU)")
    ap.add_argument("--no-compile", action="store_true", help="GPU: skip torch.compile")
    ap.add_argument("--peak-tflops", type=float, default=0, help="dense bf16 peak for MFU (0 = by GPU name)")
    ap.add_argument("--worker", action="store_true", help="internal: run one measurement and print JSON")
    ap.add_argument("--parallel", default="none", choices=("none", "ddp", "fsdp"), help="worker: parallelism")
    ap.add_argument("--compile", action="store_true", help="worker: torch.compile")
    ap.add_argument("--fp32", action="store_true", help="worker: no bf16 on CUDA")
    for k, v in CPU_SHAPE.items():
        ap.add_argument(f"--{k.replace('_', '-')}", type=int, default=None, help=f"model/batch shape (CPU default {v})")
    args = ap.parse_args(argv)
    shape = GPU_SHAPE if args.device == "cuda" else CPU_SHAPE
    for k, v in shape.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.steps is None:
        args.steps = 50 if args.device == "cuda" else 30
    if args.warmup is None:
        args.warmup = 15 if args.device == "cuda" else 5
    if args.worker:
        worker(args)
    elif args.device == "cpu":
        drive_cpu(args)
    else:
        flags = shape_flags({k: getattr(args, k) for k in GPU_SHAPE}) + \
            ["--device=cuda", f"--steps={args.steps}", f"--warmup={args.warmup}", f"--parallel={args.parallel}",
             f"--peak-tflops={args.peak_tflops}"] + ([] if args.no_compile else ["--compile"])
        print(json.dumps(run_worker(1, flags, {**os.environ, "PYTHONPATH": str(ROOT)})))


if __name__ == "__main__":
    main()

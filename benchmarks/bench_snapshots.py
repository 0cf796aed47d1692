"""Training snapshots: their size, their distance from the float32 weights, the time to take one.

    python -m benchmarks.bench_snapshots [--model checkpoints/shakespeare runs/shakespeare]
        [--data data/shakespeare] [--positions 1024] [--repeats 5] [--threads 2]

Fidelity and size: each --model is a float32 checkpoint (its weights at the step its
config.json names); the first model's initialisation, rebuilt from its snapshot index's seed,
is measured too. Each is stored two ways, int8 with a float32 scale per row (what training
writes, model/snapshots.py) and float16, and compared with float32 over --positions tokens of
the validation split (windows of the model's context): the largest |logit difference|,
KL(float32 || stored) per position (mean, 99th percentile, max) and how often the top token is
the same. Sizes are the files' bytes.

Time: writing one snapshot (quantize + save), float16's save and float32's, alternating,
median of --repeats; and what a snapshot step adds to training besides: one evaluation pass
over the validation split and one over the same number of training tokens (timed: one pass
over the validation windows, counted twice).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from model.checkpoint import build_model, export_state_dict, read_model_config, read_weights
from model.quant import divergence
from model.snapshots import init_gpt, pack, read_index, unpack
from training.data import val_windows
from training.distributed import Runtime
from training.train import evaluate


def stored_ways(state: dict, config) -> dict[str, tuple[dict, dict]]:
    """name -> (the tensors a file holds, the float32 state they load back as)."""
    int8 = pack(state, config)
    fp16 = {k: v.half() for k, v in export_state_dict(state, config).items()}
    return {"int8, scale per row": (int8, unpack(int8, Path("int8"))),
            "float16": (fp16, {k: v.float() for k, v in fp16.items()}),
            "float32": (export_state_dict(state, config), state)}


def file_bytes(tensors: dict) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "w.safetensors"
        save_file(tensors, path)
        return path.stat().st_size


@torch.no_grad()
def fidelity(config, state: dict, ids: torch.Tensor, label: str) -> None:
    reference = build_model(config, state, Path(label))(ids)
    for way, (tensors, loaded) in stored_ways(state, config).items():
        if way == "float32":
            print(f"| {label} | {way} | {file_bytes(tensors) / 1e6:.2f} MB | 0 | 0 | 0 | 0 | 100% |")
            continue
        logits = build_model(config, loaded, Path(way))(ids)
        d = divergence(reference, logits)
        print(f"| {label} | {way} | {file_bytes(tensors) / 1e6:.2f} MB | "
              f"{(logits - reference).abs().max().item():.4f} | {d['mean_kl']:.2e} | {d['p99_kl']:.2e} | "
              f"{d['max_kl']:.2e} | {100 * d['top1']:.1f}% |")


def write_times(state: dict, config, repeats: int) -> None:
    def int8(path):
        save_file(pack(state, config), path)

    def fp16(path):
        save_file({k: v.half() for k, v in export_state_dict(state, config).items()}, path)

    def fp32(path):
        save_file(export_state_dict(state, config), path)

    times = {f.__name__: [] for f in (int8, fp16, fp32)}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):  # alternating: each sees the same background load
            for f in (int8, fp16, fp32):
                t = time.perf_counter()
                f(Path(tmp) / f"{f.__name__}.safetensors")
                times[f.__name__].append(time.perf_counter() - t)
    print("\n| write one snapshot | median of %d | runs |\n|---|---|---|" % repeats)
    for name, ts in times.items():
        print(f"| {name} | {1e3 * statistics.median(ts):.1f} ms | {' / '.join(f'{1e3 * t:.0f}' for t in ts)} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_snapshots", description=__doc__.splitlines()[0])
    ap.add_argument("--model", nargs="+", default=["checkpoints/shakespeare"], help="float32 checkpoints")
    ap.add_argument("--data", default="data/shakespeare", help="the prepared data (its val.bin is the text)")
    ap.add_argument("--positions", type=int, default=1024, help="validation tokens to compare logits on")
    ap.add_argument("--repeats", type=int, default=5, help="timed writes of each kind")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    val_path = Path(args.data) / "val.bin"
    if not val_path.is_file():
        raise SystemExit(f"{val_path} is missing: run `python -m training.prepare --out {args.data}` first")
    tokens = np.memmap(val_path, dtype=np.uint16, mode="r")

    print("| weights | stored as | file | max abs logit diff | mean KL | p99 KL | max KL | top-1 same |")
    print("|---|---|---|---|---|---|---|---|")
    first = None
    for directory in map(Path, args.model):
        config, card = read_model_config(directory)
        block = config.block_size
        ids = torch.from_numpy(tokens[:args.positions // block * block].astype(np.int64)).reshape(-1, block)
        state = read_weights(directory)
        step = (card.get("training") or {}).get("step", "?")
        if first is None:
            first = (directory, config, state)
            with contextlib.suppress(FileNotFoundError):  # no snapshots: no seed to rebuild step 0 from
                seed = read_index(directory)["init"]["seed"]
                fidelity(config, init_gpt(config, seed).state_dict(), ids, f"{directory} step 0")
        fidelity(config, state, ids, f"{directory} step {step}")

    directory, config, state = first
    write_times(state, config, args.repeats)
    gpt = build_model(config, state, directory)
    val = val_windows(tokens, config.block_size)
    rt = Runtime(0, 0, 1, torch.device("cpu"), "none")
    t = time.perf_counter()
    evaluate(gpt, val, rt, 16, contextlib.nullcontext)
    seconds = time.perf_counter() - t
    print(f"\nevaluation, one pass over the validation split ({val[:, 1:].numel():,} tokens, one process, "
          f"{args.threads} threads): {seconds:.1f} s. A snapshot step runs two such passes, the validation split "
          "and a training sample of the same size (one, at a step that evaluates anyway).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

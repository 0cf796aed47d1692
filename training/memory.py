"""What each training process holds in memory, measured by the process itself.

After the first optimizer step every rank counts the bytes of the parameters, gradients and
optimizer state it holds (under FSDP2 these are DTensors: only the local shard, `to_local()`,
is in this process's memory) and reads its own resident and peak memory. Rank 0 writes them,
one entry per rank, to OUT/memory.json next to metrics.jsonl, so the exported checkpoint
carries a record of its own run (model.inspect.read_run_memory reads it back):

    DDP:  every rank holds the whole model, its whole gradient and the whole AdamW state.
    FSDP: every rank holds about 1/world of each (dim-0 shards; uneven ones differ by a row).
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from model.inspect import MEMORY_FILE

from .distributed import Runtime

NOTE = ("Bytes each process held after its first optimizer step, counted by that process: "
        "parameters, gradients and optimizer state (AdamW: exp_avg and exp_avg_sq, one value per "
        "parameter each, plus a step counter per tensor). Under FSDP each is the local shard. "
        "rss_bytes is the whole process's resident memory then (Python, torch and the data "
        "included); peak_rss_bytes its peak since the process started, which also counts the "
        "whole model every rank builds before FSDP shards it. The CUDA peak starts after the "
        "model is built and sharded: it adds what a step needs briefly (activations; under "
        "FSDP the gathered block; under DDP the gradient buckets).")


def local_bytes(t: torch.Tensor) -> int:
    """Bytes of `t` in this process: a DTensor's local shard, a plain tensor whole."""
    local = t.to_local() if hasattr(t, "to_local") else t
    return local.numel() * local.element_size()


def peak_rss_bytes() -> int:
    """This process's peak resident memory. Linux reports ru_maxrss in KiB, macOS in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def rss_bytes() -> int | None:
    """This process's resident memory now (Linux /proc; None elsewhere). Unlike the peak, it
    drops when large buffers are freed, e.g. the whole model once FSDP has sharded it."""
    try:
        # Hand freed heap pages back first, so the figure is memory in use, not memory the
        # allocator keeps for later (glibc only; elsewhere the number includes that slack).
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def reset_peak(rt: Runtime) -> None:
    """Start the CUDA peak here (after the model is built and sharded): the peak then shows
    what training needs, not the whole model every rank holds before fully_shard."""
    if rt.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(rt.device)


def measure(model: torch.nn.Module, optimizer: torch.optim.Optimizer, rt: Runtime) -> dict:
    """This rank's own numbers. Call after optimizer.step() and before zero_grad, while the
    gradients still exist."""
    params = list(model.parameters())  # a tied weight is yielded once
    optimizer_state: dict[str, int] = {}
    for state in optimizer.state.values():
        for key, value in state.items():
            if torch.is_tensor(value):
                optimizer_state[key] = optimizer_state.get(key, 0) + local_bytes(value)
    # The kernel's high-water mark (ru_maxrss) is updated lazily and can trail the resident
    # size read a moment earlier by a few pages; the peak is never below what is resident now.
    rss = rss_bytes()
    entry = {
        "rank": rt.rank, "local_rank": rt.local_rank, "device": str(rt.device),
        "param_bytes": sum(local_bytes(p) for p in params),
        "grad_bytes": sum(local_bytes(p.grad) for p in params if p.grad is not None),
        "optimizer_state_bytes": sum(optimizer_state.values()),
        "optimizer_state": optimizer_state,
        "rss_bytes": rss, "peak_rss_bytes": max(peak_rss_bytes(), rss or 0),
        "cuda_allocated_bytes": None, "peak_cuda_allocated_bytes": None, "peak_cuda_reserved_bytes": None,
    }
    if rt.device.type == "cuda":
        entry["cuda_allocated_bytes"] = torch.cuda.memory_allocated(rt.device)
        entry["peak_cuda_allocated_bytes"] = torch.cuda.max_memory_allocated(rt.device)
        entry["peak_cuda_reserved_bytes"] = torch.cuda.max_memory_reserved(rt.device)
    return entry


def record(out: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, rt: Runtime,
           step: int) -> None:
    """Measure on every rank, gather the entries to rank 0, write OUT/memory.json there.
    A collective when distributed: call on every rank."""
    entry = measure(model, optimizer, rt)
    entries = [entry]
    if rt.distributed and rt.world > 1:
        entries = [None] * rt.world
        dist.all_gather_object(entries, entry)
    if not rt.is_main:
        return
    params = list(model.parameters())
    local = params[0].to_local() if hasattr(params[0], "to_local") else params[0]
    summary = {
        "format_version": 1, "parallel": rt.parallel, "world": rt.world, "step": step,
        "param_dtype": str(local.dtype).removeprefix("torch."),
        # the whole model, for comparison: a DTensor's numel() is its global size
        "model_params": sum(p.numel() for p in params),
        "model_param_bytes": sum(p.numel() * p.element_size() for p in params),
        "note": NOTE, "ranks": sorted(entries, key=lambda e: e["rank"]),
    }
    path = Path(out) / MEMORY_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(summary, indent=1) + "\n")
    tmp.replace(path)  # readers see the old record or the new, never half of one

"""Processes, devices and parallelism: each a small function applied to a plain GPT.

The model file knows nothing of any of this. Order of application (as in torchtitan):
    compile (the whole model, or each block under FSDP) -> DDP wrapper, or
    fully_shard(each block) then fully_shard(root).

Launching (torchrun sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT):
    python -m training.train ...                                  one process
    torchrun --standalone --nproc_per_node=2 -m training.train --parallel ddp ...
    # two machines, 8 processes each; run on both, same --rdzv-endpoint (host:port of node 0)
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv-backend=c10d --rdzv-endpoint=node0:29500 \
        --rdzv-id=shakespeare -m training.train --parallel fsdp ...
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

PARALLEL_MODES = ("none", "ddp", "fsdp")


@dataclass
class Runtime:
    rank: int
    local_rank: int
    world: int
    device: torch.device
    parallel: str
    mesh: object | None = None  # a 1-D DeviceMesh under FSDP

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return dist.is_available() and dist.is_initialized()


def pick_device(name: str, local_rank: int) -> torch.device:
    match name:
        case "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        case "cpu" | "cuda":
            pass
        case _:
            raise ValueError(f"--device must be auto, cpu or cuda, but is {name!r}")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for, but torch sees no CUDA device; use --device cpu")
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"local rank {local_rank} has no GPU: this node has {torch.cuda.device_count()}; "
                             "start at most that many processes per node (--nproc_per_node)")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def setup(parallel: str, device_name: str, timeout_s: float) -> Runtime:
    """Join the process group torchrun set up (or make a one-process one), pick the device."""
    if parallel not in PARALLEL_MODES:
        raise ValueError(f"--parallel must be one of {PARALLEL_MODES}, but is {parallel!r}")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if parallel == "none" and world > 1:
        raise ValueError(f"--parallel none trains in one process, but {world} were started; "
                         "pass --parallel ddp or fsdp, or start one process")
    device = pick_device(device_name, local_rank)
    rt = Runtime(rank, local_rank, world, device, parallel)
    if parallel == "none":
        return rt
    backend = "nccl" if device.type == "cuda" else "gloo"
    timeout = datetime.timedelta(seconds=timeout_s)
    if "MASTER_ADDR" in os.environ:
        dist.init_process_group(backend, timeout=timeout,
                                device_id=device if device.type == "cuda" else None)
    else:
        # `python -m training.train --parallel fsdp`: a group of one, no network needed.
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1, timeout=timeout)
    if parallel == "fsdp":
        from torch.distributed.device_mesh import init_device_mesh
        rt.mesh = init_device_mesh(device.type, (world,), mesh_dim_names=("dp",))
    return rt


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def compile_blocks(model: torch.nn.Module) -> None:
    """Compile each transformer block in place: the same code repeats, so it compiles once,
    and parameter names (and so checkpoints) stay unchanged."""
    for block in model.transformer.h:
        block.compile()


def apply_ddp(model: torch.nn.Module, rt: Runtime) -> torch.nn.Module:
    from torch.nn.parallel import DistributedDataParallel as DDP
    # DDP broadcasts rank 0's weights at construction, so every replica starts identical.
    return DDP(model, device_ids=[rt.local_rank] if rt.device.type == "cuda" else None)


def apply_fsdp(model: torch.nn.Module, rt: Runtime, param_dtype: torch.dtype) -> torch.nn.Module:
    """FSDP2: shard each block, then the root (embeddings, final norm, the tied head).
    Each block's weights are gathered just before it runs and freed after it, so memory per
    process holds one block unsharded at a time. Gradients are reduced in fp32."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mp = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)
    for block in model.transformer.h:
        fully_shard(block, mesh=rt.mesh, mp_policy=mp)
    fully_shard(model, mesh=rt.mesh, mp_policy=mp)
    return model


def parallelize(model: torch.nn.Module, rt: Runtime, param_dtype: torch.dtype, compile: bool) -> torch.nn.Module:
    """The model to train: `model` itself (compiled/sharded in place) or a DDP wrapper."""
    if compile and rt.parallel == "fsdp":
        compile_blocks(model)  # FSDP's gather/free hooks sit between blocks
    elif compile:
        # One graph for the whole forward: the head's cast and the cross-entropy fuse too,
        # which matters with a 50k vocabulary. In place, so parameter names stay unchanged.
        model.compile()
    match rt.parallel:
        case "none":
            return model
        case "ddp":
            return apply_ddp(model, rt)
        case "fsdp":
            return apply_fsdp(model, rt, param_dtype)
        case _:
            raise ValueError(f"unknown --parallel {rt.parallel!r}")


@contextlib.contextmanager
def gradient_sync(model: torch.nn.Module, rt: Runtime, sync: bool):
    """Accumulating micro-steps skip the gradient all-reduce; only the last one pays for it
    (the gradients summed locally first are the same, communication happens once)."""
    if rt.parallel == "ddp" and not sync:
        with model.no_sync():
            yield
    elif rt.parallel == "fsdp":
        model.set_requires_gradient_sync(sync)
        yield
    else:
        yield


def all_reduce_sum(t: torch.Tensor, rt: Runtime) -> torch.Tensor:
    # gloo has no AVG reduction: sum everywhere, divide by the caller's count.
    if rt.distributed and rt.world > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def barrier(rt: Runtime) -> None:
    if rt.distributed and rt.world > 1:
        dist.barrier()


def full_state_dict(model: torch.nn.Module, rt: Runtime) -> dict[str, torch.Tensor]:
    """Every weight, whole, on the CPU, on rank 0 (empty elsewhere). Call on every rank."""
    if rt.parallel == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
        # Gathers the shards (a collective); cpu_offload keeps the result only on rank 0.
        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    plain = model.module if rt.parallel == "ddp" else model
    if not rt.is_main:
        return {}
    return {k: v.detach().to("cpu", copy=True) for k, v in plain.state_dict().items()}


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") and not hasattr(model, "transformer") else model

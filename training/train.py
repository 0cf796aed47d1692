"""Train a GPT on a prepared token folder, in one process or many (DDP or FSDP2).

    python -m training.train --data data/shakespeare --out runs/small --max-steps 2000
    torchrun --standalone --nproc_per_node=2 -m training.train --parallel ddp --data ... --out ...
    torchrun --standalone --nproc_per_node=8 -m training.train --parallel fsdp --data ... --out ...

Multi-node uses torchrun's standard rendezvous; start the same command on every node:
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv-backend=c10d --rdzv-endpoint=HOST0:29500 \
        --rdzv-id=run1 -m training.train --parallel fsdp --data DATA --out OUT
(DATA must exist on every node; OUT must be a shared filesystem for --resume checkpoints.)

--batch-size is the global batch: sequences per optimizer step summed over every process. Each
process runs --micro-batch-size sequences per forward and accumulates
batch / (micro * processes) micro-steps, so any number of processes trains on the same rows.

OUT receives: metrics.jsonl (one JSON object per logged step), memory.json (the bytes each
process held after its first step; see training/memory.py), the app's checkpoint
(config.json, model.safetensors, tokenizer files; rewritten at every evaluation and at the
end, loadable with model.load_model(OUT)), snapshots/ (the weights at --snapshots steps,
loadable with model.load_model(OUT, step=N); see training/snapshots.py) and resume/ (see
training/checkpointing.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shlex
import shutil
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from model.checkpoint import read_metrics, save_checkpoint
from model.config import GPTConfig
from model.gpt import GPT
from model.snapshots import SNAPSHOT_DIR, init_gpt

from . import checkpointing, memory, snapshots
from .data import DataDir, WindowStream, val_windows
from .distributed import Runtime, all_reduce_sum, full_state_dict, gradient_sync, parallelize, setup, teardown, unwrap
from .optim import build_optimizer, lr_at

# Dense bf16 peak of one device, for MFU (FLOP/s); matched against torch's device name.
PEAK_BF16 = (("H100 PCIe", 756e12), ("H100", 989e12), ("H200", 989e12), ("GH200", 989e12),
             ("B200", 2250e12), ("A100", 312e12), ("L40S", 362e12), ("A10G", 70e12), ("L4", 121e12))
ARCH_FLAGS = ("n_layer", "n_head", "n_embd", "block_size", "dropout")


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder written by training.prepare")
    ap.add_argument("--out", required=True, help="folder for metrics, the exported model and resume checkpoints")
    ap.add_argument("--parallel", default="none", choices=("none", "ddp", "fsdp"),
                    help="none = one process; ddp = replicas + gradient all-reduce; fsdp = FSDP2 sharding")
    ap.add_argument("--device", default="auto", help="auto (cuda if present), cpu or cuda")
    g = ap.add_argument_group("model (flags override --model-config, which overrides the defaults)")
    g.add_argument("--model-config", default=None,
                   help="JSON file of GPTConfig fields, e.g. {\"norm\": \"rmsnorm\", \"position\": \"rope\", "
                        "\"mlp\": \"swiglu\", \"n_kv_head\": 2, \"bias\": false}")
    g.add_argument("--n-layer", type=int, default=None, help="transformer blocks (default 4)")
    g.add_argument("--n-head", type=int, default=None, help="attention heads (default 4)")
    g.add_argument("--n-embd", type=int, default=None, help="model width (default 128)")
    g.add_argument("--block-size", type=int, default=None, help="context length in tokens (default 128)")
    g.add_argument("--dropout", type=float, default=None, help="dropout probability (default 0.0)")
    g = ap.add_argument_group("optimization")
    g.add_argument("--batch-size", type=int, default=32, help="global sequences per optimizer step")
    g.add_argument("--micro-batch-size", type=int, default=0,
                   help="sequences per forward per process (0 = batch / processes: no accumulation)")
    g.add_argument("--max-steps", type=int, default=1000, help="optimizer steps in the whole run")
    g.add_argument("--stop-at-step", type=int, default=0,
                   help="end after this step (saving and exporting), on the schedule of --max-steps: "
                        "reruns the first steps of a longer run exactly (0 = run to --max-steps)")
    g.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    g.add_argument("--min-lr", type=float, default=None, help="final learning rate (default lr / 10)")
    g.add_argument("--warmup-steps", type=int, default=100, help="linear warmup steps before the cosine")
    g.add_argument("--weight-decay", type=float, default=0.1, help="AdamW decay of matrices")
    g.add_argument("--beta1", type=float, default=0.9, help="AdamW's first-moment decay")
    g.add_argument("--beta2", type=float, default=0.95,
                   help="AdamW's second-moment decay (0.99 steadies small batches)")
    g.add_argument("--grad-clip", type=float, default=1.0, help="clip the global gradient norm (0 = off)")
    g.add_argument("--dtype", default="auto", choices=("auto", "fp32", "bf16"),
                   help="auto = bf16 on CUDA (autocast; FSDP: bf16 parameters), fp32 on CPU")
    g.add_argument("--compile", action="store_true", help="torch.compile the model (each block under FSDP)")
    g.add_argument("--seed", type=int, default=1337, help="initial weights, data order and dropout")
    g = ap.add_argument_group("evaluation, logging, checkpoints")
    g.add_argument("--eval-every", type=int, default=200, help="evaluate and export every N steps (and at the end)")
    g.add_argument("--eval-tokens", type=int, default=0, help="validation tokens per evaluation (0 = all)")
    g.add_argument("--eval-batch-size", type=int, default=16, help="sequences per evaluation forward")
    g.add_argument("--log-every", type=int, default=10, help="write a metrics line every N steps")
    g.add_argument("--save-every", type=int, default=None,
                   help="write a resume checkpoint every N steps (default = --eval-every; 0 = only at the end)")
    g.add_argument("--keep-checkpoints", type=int, default=2, help="resume checkpoints kept (0 = all)")
    g.add_argument("--snapshots", default="auto",
                   help="steps whose weights to keep in OUT/snapshots (int8, a quarter of the checkpoint): "
                        f"50,200,1000; auto = step 0 and {snapshots.DEFAULT_COUNT} steps log-spaced to the end; "
                        "none. Step 0 is always kept (rebuilt from --seed, it stores nothing)")
    g.add_argument("--resume", nargs="?", const="latest", default=None,
                   help="continue from OUT/resume's newest checkpoint, or from the given step folder")
    g.add_argument("--max-minutes", type=float, default=0,
                   help="stop (saving and exporting) after this much wall time (0 = no limit)")
    g.add_argument("--peak-tflops", type=float, default=0,
                   help="device's dense bf16 peak for MFU (0 = look it up from the GPU's name)")
    g.add_argument("--dist-timeout-s", type=float, default=600, help="collective timeout in seconds")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    return ap.parse_args(argv)


def build_config(args, vocab_size: int, eot_token: int) -> GPTConfig:
    values = {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 128, "dropout": 0.0}
    if args.model_config:
        path = Path(args.model_config)
        try:
            values.update(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"--model-config {path} could not be read as JSON ({e})") from e
    values.update({k: getattr(args, k) for k in ARCH_FLAGS if getattr(args, k) is not None})
    values.setdefault("vocab_size", vocab_size)
    if values["vocab_size"] < vocab_size:
        raise ValueError(f"the model's vocab_size {values['vocab_size']} is smaller than the tokenizer's "
                         f"{vocab_size}; remove vocab_size from --model-config or raise it")
    values["eot_token"] = eot_token
    return GPTConfig.from_dict(values)


def flops_per_token(model: GPT) -> float:
    """Training FLOPs per token: 6 per matmul weight (forward + backward) plus attention's
    score and value products (PaLM's appendix B, as in nanoGPT)."""
    c = model.config
    matmul = model.num_params(non_embedding=True)
    if c.tie_embeddings:
        matmul += c.vocab_size * c.n_embd  # the head is wte: counted once, but it is a matmul
    return 6 * matmul + 12 * c.n_layer * c.n_embd * c.block_size


def peak_flops(rt: Runtime, override_tflops: float) -> float | None:
    if override_tflops:
        return override_tflops * 1e12
    if rt.device.type != "cuda":
        return None  # no meaningful bf16 peak for CPUs: MFU is reported on GPUs only
    name = torch.cuda.get_device_name(rt.device)
    return next((peak for key, peak in PEAK_BF16 if key in name), None)


@torch.no_grad()
def evaluate(model, windows: torch.Tensor, rt: Runtime, batch: int, autocast) -> float:
    """Mean loss per validation token, over every rank's share of the windows (N, T + 1).
    Every rank runs the same number of forwards: FSDP gathers weights collectively."""
    net = unwrap(model) if rt.parallel == "ddp" else model
    net.eval()
    mine = windows[rt.rank::rt.world]
    calls = math.ceil(math.ceil(len(windows) / rt.world) / batch)
    total = torch.zeros(2, dtype=torch.float64, device=rt.device)  # (nats, tokens)
    for i in range(calls):
        chunk = mine[i * batch:(i + 1) * batch]
        real = len(chunk) > 0
        chunk = (chunk if real else windows[:1]).to(rt.device)
        with autocast():
            loss = net(chunk[:, :-1], chunk[:, 1:])
        if real:
            n = chunk[:, 1:].numel()
            total += torch.stack([loss.double() * n, torch.tensor(n, dtype=torch.float64, device=rt.device)])
    all_reduce_sum(total, rt)
    net.train()
    return (total[0] / total[1]).item()


def train_step(model, stream: WindowStream, step: int, rt: Runtime, optimizer, lr: float, micro: int,
               accum: int, grad_clip: float, autocast, after_step=None) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on global batch `step`; returns (this rank's mean loss, grad norm).
    after_step(): called after the update and before the gradients are freed."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    global_batch = micro * accum * rt.world
    loss_sum = torch.zeros((), device=rt.device)
    for m in range(accum):
        # rows of the global batch: micro-step m of rank r reads its own `micro` windows
        first = step * global_batch + (m * rt.world + rt.rank) * micro
        x, y = stream.batch(first, micro)  # (micro, T) each
        if rt.device.type == "cuda":  # pinned memory lets the copy run without blocking
            x, y = x.pin_memory(), y.pin_memory()
        x, y = x.to(rt.device, non_blocking=True), y.to(rt.device, non_blocking=True)
        with gradient_sync(model, rt, sync=m == accum - 1):
            with autocast():
                loss = model(x, y)
            (loss / accum).backward()  # gradients sum over micro-steps: divide to average
        loss_sum += loss.detach()
    norm = torch.zeros(())
    if grad_clip > 0:
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        if hasattr(norm, "full_tensor"):  # FSDP2: a DTensor
            norm = norm.full_tensor()
    optimizer.step()
    if after_step is not None:
        after_step()
    optimizer.zero_grad(set_to_none=True)
    return loss_sum / accum, norm


def main(argv=None) -> int:
    args = parse_args(argv)
    rt = None
    try:
        rt = setup(args.parallel, args.device, args.dist_timeout_s)
        run(args, rt)
        return 0
    except (ValueError, FileNotFoundError) as e:
        print(f"error{f' (rank {rt.rank})' if rt and rt.world > 1 else ''}: {e}", file=sys.stderr)
        return 2
    finally:
        teardown()


def run(args, rt: Runtime) -> None:
    data = DataDir(args.data)
    config = build_config(args, data.vocab_size, data.tokenizer.eot_token)
    micro = args.micro_batch_size or args.batch_size // rt.world
    if micro < 1 or args.batch_size % (micro * rt.world):
        raise ValueError(f"--batch-size {args.batch_size} must be a multiple of --micro-batch-size ({micro}) x "
                         f"processes ({rt.world}); pick a batch divisible by {rt.world}")
    accum = args.batch_size // (micro * rt.world)
    for name in ("max_steps", "eval_every", "log_every"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, but is {getattr(args, name)}")
    if not 0 <= args.stop_at_step <= args.max_steps:
        raise ValueError(f"--stop-at-step must be in [0, --max-steps {args.max_steps}], but is {args.stop_at_step}")
    end = args.stop_at_step or args.max_steps  # the run's last step
    snap_steps = snapshots.plan_steps(args.snapshots, end, "--stop-at-step" if args.stop_at_step else "--max-steps")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bf16 = args.dtype == "bf16" or (args.dtype == "auto" and rt.device.type == "cuda")
    if rt.device.type == "cuda":  # fp32 matmuls (outside autocast) may use TF32 tensor cores
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    # FSDP casts parameters itself; otherwise autocast runs matmuls in bf16 on fp32 weights.
    use_autocast = bf16 and rt.parallel != "fsdp"
    autocast = (lambda: torch.autocast(rt.device.type, dtype=torch.bfloat16)) if use_autocast \
        else contextlib.nullcontext

    raw: GPT = init_gpt(config, args.seed).to(rt.device)  # the same initial weights on every rank
    fpt = flops_per_token(raw)
    model = parallelize(raw, rt, torch.bfloat16 if bf16 else torch.float32, args.compile)
    optimizer = build_optimizer(model, args.lr, args.weight_decay, (args.beta1, args.beta2), rt.device.type)
    torch.manual_seed(args.seed + 1 + rt.rank)  # dropout masks differ between ranks

    stream = WindowStream(data.train, config.block_size, args.seed)
    val = val_windows(data.val, config.block_size, args.eval_tokens or None)
    cpt = data.chars_per_token("val")
    min_lr = args.lr / 10 if args.min_lr is None else args.min_lr
    save_every = args.eval_every if args.save_every is None else args.save_every
    peak = peak_flops(rt, args.peak_tflops)

    step, metrics, run_id = 0, [], snapshots.new_run_id()
    if args.resume:
        path = checkpointing.find(out, args.resume)
        state = checkpointing.load(path, model, optimizer, rt)
        step = int(state["step"])
        run_id = state.get("run_id", run_id)  # the resumed run's snapshots stay one run
        metrics = [m for m in read_metrics(out) if m.get("step", 0) <= step]
        if rt.is_main:
            print(f"resumed from {path} at step {step}", file=sys.stderr)
    elif rt.is_main:
        if checkpointing.complete_checkpoints(checkpointing.resume_root(out)):
            print(f"note: {out} holds resume checkpoints; starting from step 0 anyway (pass --resume to "
                  "continue), and its metrics.jsonl and snapshots start over", file=sys.stderr)
        shutil.rmtree(out / SNAPSHOT_DIR, ignore_errors=True)  # another run's snapshots
    if rt.is_main:
        (out / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
        print(f"{raw.num_params() / 1e6:.2f}M parameters, {rt.world} process(es), parallel={rt.parallel}, "
              f"device={rt.device}, batch {args.batch_size} = {micro} x {accum} micro-steps x {rt.world}, "
              f"{args.batch_size * config.block_size} tokens/step", file=sys.stderr)

    def log(row: dict) -> None:
        metrics.append(row)
        if rt.is_main:
            with open(out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")

    def export(row: dict) -> None:
        state = full_state_dict(model, rt)  # a collective under FSDP: every rank calls it
        if rt.is_main:
            extra = {"training": {"step": row["step"], "tokens_seen": row["tokens_seen"],
                                  "val_loss": row.get("val_loss"), "val_nats_per_char": row.get("val_nats_per_char"),
                                  "data": data.meta.get("source"), "command": command}}
            save_checkpoint(out, state, config, data.tokenizer, metrics=metrics, extra=extra)

    tokens_per_step = args.batch_size * config.block_size
    command = " ".join(["python -m training.train"] + [shlex.quote(a) for a in sys.argv[1:]])
    # as many training windows as validation windows: the two losses are equally precise
    sample = snapshots.train_sample(data.train, config.block_size, len(val))
    header = snapshots.run_header(run_id, config, args.seed, sample, val[:, 1:].numel(), tokens_per_step,
                                  command)

    def snapshot(at: int, val_loss: float | None) -> None:
        if val_loss is None:
            val_loss = evaluate(model, val, rt, args.eval_batch_size, autocast)
        losses = {"train_loss": evaluate(model, sample, rt, args.eval_batch_size, autocast),
                  "val_loss": val_loss, "val_nats_per_char": val_loss / cpt}
        state = full_state_dict(model, rt) if at else None  # a collective under FSDP; step 0 stores none
        if rt.is_main:
            snapshots.record(out, header, at, losses, state, config)

    if step == 0 and 0 in snap_steps:
        snapshot(0, None)
    memory.reset_peak(rt)  # the CUDA peak recorded after the first step starts here
    bar = tqdm(total=end, initial=step, disable=not rt.is_main or args.no_progress or None,
               desc="train", unit="step", file=sys.stderr, dynamic_ncols=True)
    started = time.time()
    t_log, steps_since = time.perf_counter(), 0
    first_step = step
    while step < end:
        lr = lr_at(step, args.lr, args.warmup_steps, args.max_steps, min_lr)
        # This process's first step: each rank records what it holds (OUT/memory.json).
        record = (lambda at=step + 1: memory.record(out, model, optimizer, rt, at)) \
            if step == first_step else None
        loss, norm = train_step(model, stream, step, rt, optimizer, lr, micro, accum, args.grad_clip, autocast,
                                after_step=record)
        step += 1
        steps_since += 1
        bar.update(1)
        last = step == end
        if args.max_minutes and step % args.log_every == 0:
            # every rank must agree to stop, or the others would wait in a collective forever
            over = torch.tensor([float(time.time() - started > 60 * args.max_minutes)], device=rt.device)
            last = last or all_reduce_sum(over, rt).item() > 0
        do_eval = step % args.eval_every == 0 or last
        logged, val_loss = step % args.log_every == 0 or do_eval, None
        if logged:
            loss = all_reduce_sum(loss.detach().clone(), rt) / rt.world
            dt = time.perf_counter() - t_log
            tps = steps_since * tokens_per_step / dt
            row = {"step": step, "train_loss": round(loss.item(), 6), "lr": lr,
                   "grad_norm": round(float(norm), 4), "tokens_seen": step * tokens_per_step,
                   "tokens_per_s": round(tps, 1), "elapsed_s": round(time.time() - started, 1)}
            if peak:
                row["mfu"] = round(fpt * tps / (peak * rt.world), 4)
            if do_eval:
                val_loss = evaluate(model, val, rt, args.eval_batch_size, autocast)
                row.update(val_loss=round(val_loss, 6), val_nats_per_char=round(val_loss / cpt, 6))
            log(row)
            bar.set_postfix(loss=f"{row['train_loss']:.3f}",
                            **({"val_nats_per_char": f"{row['val_nats_per_char']:.3f}"} if do_eval else {}))
            if do_eval:
                export(row)
        # Before the resume checkpoint: a run resumed from this step has taken its snapshot.
        snap = step in snap_steps
        if snap:
            snapshot(step, val_loss)
        save = bool(save_every and step % save_every == 0) or last
        if save:
            checkpointing.save(out, step, model, optimizer, rt,
                               {"windows_consumed": step * args.batch_size, "run_id": run_id}, args.keep_checkpoints)
        if logged or snap or save:
            t_log, steps_since = time.perf_counter(), 0  # evaluation and saving are not training time
        if last:
            break
    bar.close()
    if rt.is_main:
        print(f"done at step {step}; model exported to {out}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

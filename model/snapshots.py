"""Snapshots: a training run's weights at chosen steps, stored small, to watch a model learn.

    CHECKPOINT/snapshots/index.json                the run: its id, config, seed and init
                                                   recipe; one entry per step (step, tokens
                                                   seen, train and validation loss, file)
    CHECKPOINT/snapshots/step_0000316.safetensors  the weights after step 316

    from model import list_snapshots, load_model
    list_snapshots("checkpoints/shakespeare")           # [{"step": 0, "tokens_seen": 0, ...}, ...]
    gpt, tokenizer, card = load_model("checkpoints/shakespeare", step=316)

Step 0 is the initialisation. It has no file: `init_gpt(config, seed)` built the run's model
and rebuilds it here, bit for bit (same torch version). Every other step stores each matrix as
int8 codes with one float32 scale per row (w = scale * code, Q8_0's rounding with the row as
its group: quant.int8_groups) and each vector (biases, norms) as float32: a quarter of the
float32 size, with the logits within BENCHMARKS.md's measured distance of the float32 weights.

training/snapshots.py decides when to take them; this module owns the format, so the app can
read them without importing training.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpoint import Loaded, build_model, export_state_dict, read_model_config, write_atomically
from .config import GPTConfig
from .gpt import GPT
from .quant import int8_groups
from .tokenizer import load_tokenizer

SNAPSHOT_DIR = "snapshots"
INDEX_FILE = "index.json"
STORAGE = "int8 codes with a float32 scale per row of each matrix; vectors float32"
INIT_RECIPE = "torch.manual_seed(seed) on the CPU generator, then GPT(config) on the CPU in float32"
SCALE = ".row_scale"  # the key of a matrix's scales: its name plus this suffix
REDO = "copy the checkpoint's snapshots/ folder again, whole, or retrain with --snapshots (training/README.md)"


def init_gpt(config: GPTConfig, seed: int) -> GPT:
    """The run's initial weights (INIT_RECIPE): training builds its model with this, and
    step 0 is rebuilt with it. The caller's random state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        return GPT(config)


def snapshot_file(step: int) -> str:
    return f"step_{step:07d}.safetensors"


def pack(state: dict[str, torch.Tensor], config: GPTConfig) -> dict[str, torch.Tensor]:
    """Full float32 state dict -> the tensors a snapshot file stores (a tied head once)."""
    tensors = {}
    for name, t in export_state_dict(state, config).items():
        if t.is_floating_point() and t.dim() == 2:
            codes, scale, _ = int8_groups(t.float(), group=t.shape[1])
            tensors[name] = codes.to(torch.int8)  # (rows, cols)
            tensors[name + SCALE] = scale.reshape(-1).contiguous()  # (rows,)
        else:
            tensors[name] = t.float() if t.is_floating_point() else t
    return tensors


def unpack(tensors: dict[str, torch.Tensor], source: Path) -> dict[str, torch.Tensor]:
    """A snapshot file's tensors -> a float32 state dict."""
    state = {}
    for name, t in tensors.items():
        if name.endswith(SCALE):
            continue
        if t.dtype == torch.int8:
            scale = tensors.get(name + SCALE)
            if scale is None or scale.shape != (t.shape[0],):
                raise ValueError(f"{source}: {name} holds int8 codes without one scale per row; {REDO}")
            t = t.float() * scale[:, None]
        state[name] = t
    return state


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_index_file(path: Path) -> dict:
    try:
        index = json.loads(path.read_text())
        steps = [int(e["step"]) for e in index["snapshots"]]
        int(index["init"]["seed"])
        GPTConfig.from_dict(index["config"])
        str(index["run_id"])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path} is not a readable snapshot index ({type(e).__name__}: {e}); {REDO}") from e
    if steps != sorted(set(steps)):
        raise ValueError(f"{path} lists steps out of order or twice ({steps}); {REDO}")
    return index


def read_index(directory: str | Path) -> dict:
    """The snapshot index of a checkpoint directory; a clear error when there is none."""
    path = Path(directory) / SNAPSHOT_DIR / INDEX_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory} has no snapshots ({path} is missing): retrain with "
                                "`python -m training.train ... --snapshots` (training/README.md) to record them")
    return _read_index_file(path)


def list_snapshots(directory: str | Path) -> list[dict]:
    """One dict per snapshot, in step order: step, tokens_seen, train_loss, val_loss (nats per
    token), val_nats_per_char, file (None for step 0, which is rebuilt), bytes. [] when the
    checkpoint has no snapshots."""
    if not (Path(directory) / SNAPSHOT_DIR / INDEX_FILE).is_file():
        return []
    return [dict(e) for e in read_index(directory)["snapshots"]]


def save_snapshot(directory: str | Path, run: dict, entry: dict,
                  state: dict[str, torch.Tensor] | None, config: GPTConfig) -> dict:
    """Record one snapshot: its file (none for step 0: state None), then its entry in the index,
    replacing one of the same step. run: the index's header (run_id, config, init, ...); an index
    of another run_id is started afresh. Returns the entry as stored."""
    folder = Path(directory) / SNAPSHOT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    step = int(entry["step"])
    entry = {**entry, "step": step, "file": None, "bytes": 0}
    if step == 0:
        if state is not None:
            raise ValueError("step 0 is rebuilt from the seed: it stores no weights")
    else:
        from safetensors.torch import save_file

        path = folder / snapshot_file(step)
        meta = {"run_id": str(run["run_id"]), "step": str(step)}
        write_atomically(path, lambda tmp: save_file(pack(state, config), tmp, metadata=meta))
        entry.update(file=path.name, bytes=path.stat().st_size, sha256=_sha256(path))
    index_path = folder / INDEX_FILE
    try:  # an index of another run, or one that cannot be read, is started afresh
        previous = _read_index_file(index_path) if index_path.is_file() else {}
    except ValueError:
        previous = {}
    old = previous["snapshots"] if previous.get("run_id") == run["run_id"] else []
    entries = sorted([e for e in old if e["step"] != step] + [entry], key=lambda e: e["step"])
    index = {"format_version": 1, **run, "storage": STORAGE, "snapshots": entries}
    write_atomically(index_path, lambda tmp: Path(tmp).write_text(json.dumps(index, indent=1) + "\n"))
    return entry


def _read_snapshot(path: Path, index: dict, step: int) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError, safe_open

    index_path = path.parent / INDEX_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing ({index_path} lists it for step {step}); {REDO}")
    try:
        with safe_open(path, "pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ValueError(f"{path} is corrupt: not a readable safetensors file ({e}); {REDO}") from e
    # Which run a file belongs to is checked before its bytes: a file copied in from another
    # run differs in both, and "another run" is the more useful thing to hear.
    if meta.get("run_id") != index["run_id"] or meta.get("step") != str(step):
        raise ValueError(f"{path} is a snapshot of another run or step (run {meta.get('run_id')}, step "
                         f"{meta.get('step')}; {index_path} is run {index['run_id']}, step {step}); {REDO}")
    entry = next(e for e in index["snapshots"] if e["step"] == step)
    if entry.get("sha256") and _sha256(path) != entry["sha256"]:
        raise ValueError(f"{path} is corrupt: its bytes differ from those {index_path} recorded "
                         f"(damaged on disk or in a copy); {REDO}")
    return tensors


class RowInt8Linear(nn.Module):
    """A snapshot's matrix kept as its file stores it, int8 codes (out, in) and one float32
    scale per row, widened to float32 at each call exactly as unpack() does: the same weights
    in a quarter of the memory, for a server that keeps every snapshot of a run loaded."""

    def __init__(self, codes: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.register_buffer("codes", codes)  # (out, in) int8
        self.register_buffer("scale", scale)  # (out,) float32
        self.bias = bias

    @property
    def weight(self) -> torch.Tensor:
        return self.codes.float() * self.scale[:, None]  # (out, in), as unpack() widens it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


def _keep_int8(gpt: GPT, tensors: dict[str, torch.Tensor]) -> None:
    """Swap each block's nn.Linear for a RowInt8Linear on the file's own codes (the embedding
    and the tied head stay float32: the embedding is looked up, not multiplied)."""
    for block_name, block in gpt.transformer.h.named_children():
        for name, module in list(block.named_modules()):
            key = f"transformer.h.{block_name}.{name}.weight"
            if isinstance(module, nn.Linear) and tensors.get(key) is not None and tensors[key].dtype == torch.int8:
                parent = block.get_submodule(name.rpartition(".")[0]) if "." in name else block
                setattr(parent, name.rpartition(".")[2],
                        RowInt8Linear(tensors[key], tensors[key + SCALE], module.bias))


def load_snapshot(directory: str | Path, step: int, compact: bool = False) -> Loaded:
    """The model as it was after `step` optimizer steps; load_model(directory, step=step) calls
    this. card["snapshot"] is the step's entry (losses, tokens seen). compact: keep the blocks'
    matrices as int8 codes (RowInt8Linear; the same logits in a quarter of the memory)."""
    directory = Path(directory)
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be a whole number of steps >= 0, but is {step!r}")
    config, card = read_model_config(directory)
    index = read_index(directory)
    index_path = directory / SNAPSHOT_DIR / INDEX_FILE
    steps = [e["step"] for e in index["snapshots"]]
    if step not in steps:
        raise ValueError(f"{directory} has no snapshot at step {step}; it has steps {steps} "
                         f"({index_path})")
    if index["config"] != config.to_dict():
        differ = sorted(k for k in config.to_dict() if index["config"].get(k) != getattr(config, k))
        raise ValueError(f"{index_path} holds snapshots of another model: its config differs from "
                         f"{directory / 'config.json'} in {differ}; {REDO}")
    if step == 0:
        gpt = init_gpt(config, int(index["init"]["seed"])).use_decode_layout().eval()
    else:
        path = directory / SNAPSHOT_DIR / snapshot_file(step)
        tensors = _read_snapshot(path, index, step)
        gpt = build_model(config, unpack(tensors, path), path)
        if compact:
            _keep_int8(gpt, tensors)
    entry = next(e for e in index["snapshots"] if e["step"] == step)
    card = {**card, "name": f"{card['name']} @ step {step}", "snapshot": {**entry, "storage":
            "rebuilt from the seed: exact" if step == 0 else STORAGE}}
    return Loaded(gpt, load_tokenizer(directory), card)

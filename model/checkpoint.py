"""Checkpoints: one directory = one model.

    config.json         {"model_type": "playground-gpt", "gpt": {...GPTConfig...}, ...}
    model.safetensors   the weights; a tied weight is stored once (as transformer.wte.weight)
    tokenizer.tiktoken  tiktoken ranks  +  tokenizer_meta.json  (split pattern, special tokens)
    metrics.jsonl       optional: the training curve, one JSON object per line

Weights are only ever read from safetensors or with `torch.load(weights_only=True)`: nothing
here unpickles arbitrary objects, so a checkpoint cannot run code when it is opened.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import NamedTuple

import torch

from .config import GPTConfig
from .gpt import GPT, Rotary
from .tokenizer import load_tokenizer, save_tokenizer

MODEL_TYPE = "playground-gpt"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
METRICS_FILE = "metrics.jsonl"
TIED_KEY, HEAD_KEY = "transformer.wte.weight", "lm_head.weight"


class Loaded(NamedTuple):
    """What load_model returns: the model, its tokenizer, and its card (name, source,
    licence, how it was made: whatever the files say about it)."""
    gpt: GPT
    tokenizer: object  # tiktoken.Encoding
    card: dict


def write_atomically(path: Path, write) -> None:
    """write(tmp_path) then rename over path: readers see the old file or the new, never half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes files private; a checkpoint is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export_state_dict(state: dict[str, torch.Tensor], config: GPTConfig) -> dict[str, torch.Tensor]:
    """The tensors to store: contiguous CPU copies, a tied head dropped (it is wte)."""
    out = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    if config.tie_embeddings:
        out.pop(HEAD_KEY, None)
    return out


def save_checkpoint(directory: str | Path, model_or_state, config: GPTConfig, tokenizer,
                    metrics: list[dict] | None = None, extra: dict | None = None) -> Path:
    """Write a checkpoint directory. model_or_state: a GPT or its full state dict."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = model_or_state.state_dict() if isinstance(model_or_state, torch.nn.Module) else model_or_state
    tensors = export_state_dict(state, config)
    write_atomically(directory / WEIGHTS_FILE, lambda tmp: save_file(tensors, tmp))
    save_tokenizer(tokenizer, directory)
    meta = {"model_type": MODEL_TYPE, "format_version": 1, "gpt": config.to_dict(), **(extra or {})}
    write_atomically(directory / CONFIG_FILE,
                      lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2) + "\n"))
    if metrics is not None:
        lines = "".join(json.dumps(m) + "\n" for m in metrics)
        write_atomically(directory / METRICS_FILE, lambda tmp: Path(tmp).write_text(lines))
    return directory


def read_config(directory: Path) -> dict:
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: a model directory needs {CONFIG_FILE} "
                                f"and {WEIGHTS_FILE} (or a Hugging Face GPT-2 snapshot)")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from e


def read_weights(directory: Path, names=(WEIGHTS_FILE,), allow_torch_bin: bool = False):
    """Tensors from the first weights file present; errors name the file and the problem."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    for name in names:
        path = directory / name
        if not path.is_file():
            continue
        if name.endswith(".safetensors"):
            try:
                return load_file(path)
            except (SafetensorError, OSError, ValueError) as e:
                raise ValueError(f"{path} is not a readable safetensors file ({e}); it may be "
                                 "truncated: export or copy it again") from e
        if allow_torch_bin:
            try:  # weights_only: tensors and plain containers only, never arbitrary objects
                return torch.load(path, map_location="cpu", weights_only=True)
            except Exception as e:
                # torch's own message runs to many lines and suggests weights_only=False, the
                # one thing never to do with an untrusted file: keep only its first line.
                first = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip().splitlines()[:1]
                raise ValueError(f"{path} could not be read as plain tensors ({type(e).__name__}"
                                 f"{': ' + first[0] if first else ''}); only weights-only "
                                 "checkpoints are accepted: re-save it as safetensors") from e
    raise FileNotFoundError(f"no weights file in {directory}: expected one of {list(names)}")


def build_model(config: GPTConfig, state: dict[str, torch.Tensor], source: Path) -> GPT:
    """A GPT holding exactly `state` (checked against the config), with tied weights re-tied."""
    state = dict(state)
    if config.tie_embeddings:
        if HEAD_KEY in state and TIED_KEY in state and not torch.equal(state[HEAD_KEY], state[TIED_KEY]):
            raise ValueError(f"{source}: config says the embeddings are tied, but lm_head.weight "
                             "differs from transformer.wte.weight")
        state.pop(HEAD_KEY, None)
    with torch.device("meta"):
        gpt = GPT(config)
    expected = {k: v.shape for k, v in gpt.state_dict().items()}
    if config.tie_embeddings:
        expected.pop(HEAD_KEY)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k}: file {tuple(state[k].shape)}, config {tuple(expected[k])}"
             for k in expected if k in state and state[k].shape != expected[k]]
    if missing or unexpected or wrong:
        problems = ([f"missing {missing[:5]}"] if missing else []) + \
                   ([f"unexpected {unexpected[:5]}"] if unexpected else []) + wrong[:5]
        raise ValueError(f"{source}: the weights do not match config.json: " + "; ".join(problems))
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    gpt.load_state_dict(state, strict=False, assign=True)
    if config.tie_embeddings:
        gpt.lm_head.weight = gpt.transformer.wte.weight
    if gpt.rotary is not None:  # its buffers are computed, not stored: build them for real
        gpt.rotary = Rotary(config.head_dim, config.block_size, config.rope_theta)
    return gpt.use_decode_layout().eval()  # loaded models are for decoding: see GPT


def read_model_config(directory: Path) -> tuple[GPTConfig, dict]:
    """The GPTConfig of one of our checkpoint directories, and its card (what config.json
    says about the model: name, source, licence, how it was trained)."""
    meta = read_config(directory)
    try:
        config = GPTConfig.from_dict(meta["gpt"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{directory / CONFIG_FILE}: bad model config ({e})") from e
    card = {"name": directory.name, "source": str(directory)} | dict(meta.get("card") or {})
    if "training" in meta:
        card.setdefault("training", meta["training"])
    return config, card


def load_checkpoint(directory: str | Path) -> Loaded:
    directory = Path(directory)
    config, card = read_model_config(directory)
    gpt = build_model(config, read_weights(directory), directory / WEIGHTS_FILE)
    return Loaded(gpt, load_tokenizer(directory), card)


def read_metrics(directory: str | Path) -> list[dict]:
    path = Path(directory) / METRICS_FILE
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by an interrupted run: the rest is still a curve
    return rows

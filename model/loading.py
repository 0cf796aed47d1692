"""`load_model(path)`: one entry point for every kind of model the playground serves."""

from __future__ import annotations

from pathlib import Path

from .checkpoint import MODEL_TYPE, Loaded, load_checkpoint, read_config
from .quant import apply_mode, check_mode
from .registry import NAMED_MODELS
from .snapshots import load_snapshot


def load_model(path, mode: str = "exact", step: int | None = None) -> Loaded:
    """Returns (gpt, tokenizer, card): gpt in eval mode on the CPU, tokenizer a
    tiktoken.Encoding, card a dict that says what the model is and where it came from.

    path: one of our checkpoint directories, a Hugging Face GPT-2 snapshot directory, a name
    in model/registry.py ("smollm2": SmolLM2-135M-Instruct, fetched once, then cached), or a
    Llama-architecture .gguf file (converted once into the cache; see model/gguf/).

    mode: "exact" computes in float32 on the weights as loaded (for a GGUF, exactly what its
    blocks describe, equal to Hugging Face transformers); "fast" computes on 4-bit and 8-bit
    weights with bfloat16 activations: about twice as fast to decode, close to exact but not
    equal (model/quant.py says how; tests/test_fast.py bounds how far). Any model can be made
    fast: a Q4_1 GGUF keeps its own codes, a float32 checkpoint is quantized the same way
    (lossy). card["mode"] and card["arithmetic"] say which mode the model runs in and what it
    computes with.

    step: the model as it was after that many training steps, from the checkpoint's snapshots
    (model/snapshots.py; list_snapshots(path) says which steps there are); card["snapshot"]
    holds that step's losses. Only our own checkpoints have snapshots.
    """
    check_mode(mode)
    if step is not None and (str(path) in NAMED_MODELS or Path(path).suffix.lower() == ".gguf"):
        raise ValueError(f"step={step}: {str(path)!r} has no training snapshots; only checkpoints "
                         "trained with training/ and --snapshots do")
    if str(path) in NAMED_MODELS:
        return NAMED_MODELS[str(path)].load(mode=mode)
    directory = Path(path)
    if directory.suffix.lower() == ".gguf" and directory.is_file():
        from .smollm2 import load_gguf_file
        return load_gguf_file(directory, mode=mode)
    if not directory.exists():
        raise FileNotFoundError(f"model path {str(path)!r} does not exist; pass a checkpoint "
                                "directory, a Hugging Face GPT-2 snapshot directory, a .gguf "
                                f"file or one of {sorted(NAMED_MODELS)}")
    if not directory.is_dir():
        raise ValueError(f"model path {str(path)!r} is a file; pass the directory that holds "
                         "config.json and the weights")
    meta = read_config(directory)
    kind = meta.get("model_type")
    if kind == MODEL_TYPE:
        return apply_mode(load_checkpoint(directory) if step is None else load_snapshot(directory, step), mode)
    if step is not None:
        raise ValueError(f"step={step}: {directory} (model_type {kind!r}) has no training snapshots; "
                         "only checkpoints trained with training/ and --snapshots do")
    if kind == "gpt2":
        from .hf_gpt2 import load_gpt2_snapshot
        return apply_mode(load_gpt2_snapshot(directory, meta), mode)
    raise ValueError(f"{directory / 'config.json'}: model_type {kind!r} is not supported; "
                     f"expected {MODEL_TYPE!r} (our checkpoints) or 'gpt2'")

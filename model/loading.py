"""`load_model(path)`: one entry point for every kind of model the playground serves."""

from __future__ import annotations

from pathlib import Path

from .checkpoint import MODEL_TYPE, Loaded, load_checkpoint, read_config
from .registry import NAMED_MODELS


def load_model(path) -> Loaded:
    """Returns (gpt, tokenizer, card): gpt in eval mode on the CPU, tokenizer a
    tiktoken.Encoding, card a dict that says what the model is and where it came from.

    path: one of our checkpoint directories, a Hugging Face GPT-2 snapshot directory, a name
    in model/registry.py ("smollm2": SmolLM2-135M-Instruct, fetched once, then cached), or a
    Llama-architecture .gguf file (converted once into the cache; see model/gguf/).
    """
    if str(path) in NAMED_MODELS:
        return NAMED_MODELS[str(path)].load()
    directory = Path(path)
    if directory.suffix.lower() == ".gguf" and directory.is_file():
        from .smollm2 import load_gguf_file
        return load_gguf_file(directory)
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
        return load_checkpoint(directory)
    if kind == "gpt2":
        from .hf_gpt2 import load_gpt2_snapshot
        return load_gpt2_snapshot(directory, meta)
    raise ValueError(f"{directory / 'config.json'}: model_type {kind!r} is not supported; "
                     f"expected {MODEL_TYPE!r} (our checkpoints) or 'gpt2'")

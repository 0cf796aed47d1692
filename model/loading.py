"""`load_model(path)`: one entry point for every kind of model the playground serves."""

from __future__ import annotations

from pathlib import Path

from .checkpoint import MODEL_TYPE, load_checkpoint, read_config


def load_model(path):
    """Returns (gpt, tokenizer): gpt in eval mode on the CPU, tokenizer a tiktoken.Encoding.

    path: one of our checkpoint directories, or a Hugging Face GPT-2 snapshot directory.
    """
    directory = Path(path)
    if not directory.exists():
        raise FileNotFoundError(f"model path {str(path)!r} does not exist; pass a checkpoint "
                                "directory or a Hugging Face GPT-2 snapshot directory")
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

"""What a GGUF file says about itself: the architecture (as metadata keys such as
"llama.block_count"), its provenance and licence, and the reader that opens it.

    reader = open_gguf(path); config = gguf_config(reader, path)
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from ..config import GPTConfig


def open_gguf(path: Path):
    """A gguf.GGUFReader over the file, with errors that name it."""
    import gguf

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file {path} does not exist")
    try:
        reader = gguf.GGUFReader(path)
    except Exception as e:  # the reader raises ValueError, IndexError, ... on a damaged file
        raise ValueError(f"{path} is not a readable GGUF file ({type(e).__name__}: {e}); it may be "
                         "truncated or not a GGUF at all: download or copy it again") from e
    size = path.stat().st_size
    end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
    if end > size:
        raise ValueError(f"{path} is truncated: its tensors need {end:,} bytes but the file has "
                         f"{size:,}; download or copy it again")
    return reader


def field(reader, key: str, path: Path, default=...):
    field = reader.fields.get(key)
    if field is None:
        if default is ...:
            raise ValueError(f"{path}: GGUF metadata key {key!r} is missing")
        return default
    return field.contents()


def gguf_config(reader, path: Path) -> GPTConfig:
    """Our GPTConfig for a llama-architecture GGUF; anything we would compute wrongly is refused."""
    arch = field(reader, "general.architecture", path)
    if arch != "llama":
        raise ValueError(f"{path}: architecture {arch!r} is not supported; only 'llama' "
                         "(e.g. SmolLM2) GGUF files can be loaded")

    def key(name, default=...):
        return field(reader, f"llama.{name}", path, default)

    for name in ("expert_count", "rope.scaling.factor"):
        value = key(name, None)
        if value not in (None, 0, 1, 1.0):
            raise ValueError(f"{path}: llama.{name} = {value!r} is not supported (no mixture of "
                             "experts, no rope scaling)")
    scaling = key("rope.scaling.type", "none")
    if scaling not in ("none", "linear"):
        raise ValueError(f"{path}: llama.rope.scaling.type = {scaling!r} is not supported")
    tensors = {t.name for t in reader.tensors}
    if "rope_freqs.weight" in tensors:
        raise ValueError(f"{path}: it has rope_freqs.weight (Llama 3.1-style rope scaling), "
                         "which is not supported")
    n_embd, n_head = int(key("embedding_length")), int(key("attention.head_count"))
    head_dim = n_embd // n_head if n_head else 0
    for name in ("rope.dimension_count", "attention.key_length", "attention.value_length"):
        value = key(name, None)
        if value is not None and int(value) != head_dim:
            raise ValueError(f"{path}: llama.{name} = {value} but the head size is {head_dim}; "
                             "partial rotary and odd head sizes are not supported")
    vocab = int(_embedding(reader, path)[1])
    try:
        return GPTConfig(
            vocab_size=vocab, block_size=int(key("context_length")),
            n_layer=int(key("block_count")), n_head=n_head, n_embd=n_embd,
            n_kv_head=int(key("attention.head_count_kv", n_head)),
            mlp_hidden=int(key("feed_forward_length")), bias=False, norm="rmsnorm",
            # Stored as float32; its shortest spelling (1e-05, not 9.9999997e-06) is the
            # value the model was trained with.
            norm_eps=float(str(np.float32(key("attention.layer_norm_rms_epsilon")))),
            position="rope", rope_theta=float(key("rope.freq_base", 10000.0)), mlp="swiglu",
            tie_embeddings="output.weight" not in tensors, eot_token=_eot_token(reader, path))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: bad llama metadata ({e})") from e


def _embedding(reader, path: Path):
    for t in reader.tensors:
        if t.name == "token_embd.weight":
            return t.shape  # ggml order: (C, V)
    raise ValueError(f"{path}: tensor 'token_embd.weight' is missing")


def _eot_token(reader, path: Path) -> int:
    """<|endoftext|>, the document separator (an empty prompt starts a document), else EOS."""
    tokens = field(reader, "tokenizer.ggml.tokens", path)
    if "<|endoftext|>" in tokens:
        return tokens.index("<|endoftext|>")
    return int(field(reader, "tokenizer.ggml.eos_token_id", path))


def describe(reader, config: GPTConfig, path: Path, sha256: str, n_params: int) -> dict:
    """What the app shows about the model, from the file's own metadata."""
    types = Counter(t.tensor_type.name for t in reader.tensors)
    quantized = [t for t in types if t not in ("F32", "F16", "BF16")]
    weights = "float32"
    if quantized:
        weights += f" (dequantized from the file's {' and '.join(quantized)} blocks)"
    license_ = field(reader, "general.license", path, None)
    return {
        "name": field(reader, "general.name", path, Path(path).stem),
        "architecture": "llama",
        "license": license_ or "not stated in the file",
        "organization": field(reader, "general.organization", path, None),
        "file": Path(path).name,
        "file_sha256": sha256,
        "file_tensor_types": dict(types.most_common()),
        "weights": weights,
        "parameters": n_params,
        "context": config.block_size,
        "vocab_size": config.vocab_size,
        "chat_template": field(reader, "tokenizer.chat_template", path, None),
        "eos_token_id": field(reader, "tokenizer.ggml.eos_token_id", path, None),
    }

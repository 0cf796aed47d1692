"""Hugging Face GPT-2 snapshots: config.json (model_type "gpt2") plus model.safetensors or
pytorch_model.bin, and vocab.json + merges.txt for the tokenizer. Read offline, from a folder
the user supplies.

GPT-2's checkpoints use a Conv1D layer whose weight is stored (in, out): the transpose of
nn.Linear's (out, in). Those four matrices per block are transposed on the way in.
"""

from __future__ import annotations

from pathlib import Path

from .checkpoint import Loaded, build_model, read_weights
from .config import GPTConfig
from .tokenizer import gpt2_tokenizer_from_snapshot

CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def gpt2_config(hf: dict, source: Path) -> GPTConfig:
    act = hf.get("activation_function", "gelu_new")
    if act not in ("gelu_new", "gelu_pytorch_tanh"):
        raise ValueError(f"{source}: activation_function {act!r} is not supported; "
                         "GPT-2's tanh-approximated GELU ('gelu_new') is")
    try:
        return GPTConfig(vocab_size=hf["vocab_size"], block_size=hf.get("n_positions", 1024),
                         n_layer=hf["n_layer"], n_head=hf["n_head"], n_embd=hf["n_embd"],
                         mlp_hidden=hf.get("n_inner"), bias=True,
                         norm_eps=hf.get("layer_norm_epsilon", 1e-5),
                         tie_embeddings=hf.get("tie_word_embeddings", True),
                         eot_token=hf.get("eos_token_id"))
    except KeyError as e:
        raise ValueError(f"{source}: GPT-2 config lacks {e}") from e
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from e


def load_gpt2_snapshot(directory: Path, hf: dict) -> Loaded:
    config = gpt2_config(hf, directory / "config.json")
    raw = read_weights(directory, ("model.safetensors", "pytorch_model.bin"), allow_torch_bin=True)
    state = {}
    for key, tensor in raw.items():
        if key.endswith((".attn.bias", ".attn.masked_bias")):
            continue  # causal-mask buffers, not weights
        name = key if key.startswith(("transformer.", "lm_head.")) else f"transformer.{key}"
        if name.endswith(CONV1D):
            tensor = tensor.t()
        state[name] = tensor.contiguous()
    gpt = build_model(config, state, directory)
    card = {"name": hf.get("_name_or_path") or directory.name, "architecture": "gpt2",
            "source": f"Hugging Face snapshot {directory}"}
    return Loaded(gpt, gpt2_tokenizer_from_snapshot(directory), card)

"""A GGUF file's weights as our state dict, in float32.

Most of them are quantized (Q4_1: blocks of 32 weights sharing a float16 scale and offset, 4
bits each); the `gguf` package (llama.cpp's own reader) dequantizes them. Two things differ
from a Hugging Face Llama checkpoint and are undone here:
- llama.cpp's converter permutes the rows of the query and key matrices so that its rotary
  code can rotate adjacent pairs (dims 2i, 2i+1); our rotary rotates halves (dims i, i + hs/2)
  like Hugging Face's, so the rows go back to their original order.
- separate q/k/v and gate/up matrices are stacked into our fused c_attn and c_fc.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..config import GPTConfig


def dequantize(tensor) -> torch.Tensor:
    """One GGUF tensor as float32, in PyTorch's (out, in) order (ggml lists shapes reversed)."""
    from gguf.quants import dequantize as gguf_dequantize

    shape = tuple(int(d) for d in reversed(tensor.shape))
    w = np.ascontiguousarray(gguf_dequantize(tensor.data, tensor.tensor_type), dtype=np.float32)
    if not w.flags.writeable:  # float32 tensors come straight from the read-only file mapping
        w = w.copy()
    return torch.from_numpy(w.reshape(shape))


def unpermute(w: torch.Tensor, heads: int) -> torch.Tensor:
    """Undo llama.cpp's Q/K row permutation. Within each head, GGUF row 2j + s holds the
    original row s * hs/2 + j, so that rotating pairs (2j, 2j+1) there equals rotating halves
    (j, j + hs/2) here. w: (heads * hs, C) -> (heads * hs, C)."""
    rows, C = w.shape
    return w.view(heads, rows // heads // 2, 2, C).transpose(1, 2).reshape(rows, C)


def gguf_state_dict(reader, config: GPTConfig, path: Path) -> dict[str, torch.Tensor]:
    """Our state dict (float32) from a llama GGUF's tensors."""
    tensors = {t.name: t for t in reader.tensors}
    used = set()

    def get(name):
        if name not in tensors:
            raise ValueError(f"{path}: tensor {name!r} is missing")
        used.add(name)
        return dequantize(tensors[name])

    state = {"transformer.wte.weight": get("token_embd.weight"),  # (V, C)
             "transformer.ln_f.weight": get("output_norm.weight")}
    if not config.tie_embeddings:
        state["lm_head.weight"] = get("output.weight")  # (V, C)
    for i in range(config.n_layer):
        b, ours = f"blk.{i}.", f"transformer.h.{i}."
        q = unpermute(get(b + "attn_q.weight"), config.n_head)  # (nh * hs, C)
        k = unpermute(get(b + "attn_k.weight"), config.kv_heads)  # (nkv * hs, C)
        v = get(b + "attn_v.weight")  # (nkv * hs, C): values are not rotated, not permuted
        state[ours + "attn.c_attn.weight"] = torch.cat([q, k, v])  # ((nh + 2 nkv) * hs, C)
        state[ours + "attn.c_proj.weight"] = get(b + "attn_output.weight")
        state[ours + "mlp.c_fc.weight"] = torch.cat(
            [get(b + "ffn_gate.weight"), get(b + "ffn_up.weight")])  # (2 * hidden, C)
        state[ours + "mlp.c_proj.weight"] = get(b + "ffn_down.weight")  # (C, hidden)
        state[ours + "ln_1.weight"] = get(b + "attn_norm.weight")
        state[ours + "ln_2.weight"] = get(b + "ffn_norm.weight")
    extra = sorted(set(tensors) - used)
    if extra:  # e.g. attention biases (Qwen-style): silently dropping them would be wrong
        raise ValueError(f"{path}: tensors {extra[:5]} have no place in a Llama model; this "
                         "file's architecture is not plain Llama")
    return state

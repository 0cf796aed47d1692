"""Tiny GGUF files written the way llama.cpp's convert_hf_to_gguf writes them: a small
byte-level BPE laid out as SmolLM2's (specials first, then bytes, then merges) and random
llama weights in Hugging Face's layout under llama.cpp's tensor names. The GGUF tests and the
fast-mode tests load these instead of a real model."""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import torch

from .models import CORPUS_LINES

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # ids 0, 1, 2, as in SmolLM2
VOCAB = 384
C, N_LAYER, N_HEAD, N_KV, HIDDEN, CONTEXT = 64, 2, 4, 2, 96, 128  # in-dims multiples of 32 for Q4_1

# ---- writing GGUF files the way llama.cpp does ----

def smollm2_pre_tokenizer():
    """SmolLM2's tokenizer.json pre-tokenizer: every digit alone, then GPT-2's regex."""
    from tokenizers import pre_tokenizers

    return pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)])


def train_vocab():
    """(tokens by id, merges) of a small byte-level BPE: specials first, then bytes, then merges."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = smollm2_pre_tokenizer()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS_LINES * 3, trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    tokens = sorted(model["vocab"], key=model["vocab"].get)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    return tokens, merges


def llamacpp_permute(w: np.ndarray, heads: int) -> np.ndarray:
    """convert_hf_to_gguf.py's LlamaModel.permute: rows reordered for interleaved rotary."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def hf_weights(vocab: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random weights in Hugging Face's layout, under llama.cpp's tensor names."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=0.2):
        return (torch.randn(*shape, generator=g) * scale).numpy()

    hs = C // N_HEAD
    w = {"token_embd.weight": rnd(vocab, C, scale=1.0), "output_norm.weight": 1 + rnd(C, scale=0.1)}
    for i in range(N_LAYER):
        b = f"blk.{i}."
        w.update({b + "attn_norm.weight": 1 + rnd(C, scale=0.1),
                  b + "attn_q.weight": rnd(N_HEAD * hs, C), b + "attn_k.weight": rnd(N_KV * hs, C),
                  b + "attn_v.weight": rnd(N_KV * hs, C), b + "attn_output.weight": rnd(C, C),
                  b + "ffn_norm.weight": 1 + rnd(C, scale=0.1),
                  b + "ffn_gate.weight": rnd(HIDDEN, C), b + "ffn_up.weight": rnd(HIDDEN, C),
                  b + "ffn_down.weight": rnd(C, HIDDEN)})
    return w


def write_gguf(path: Path, qtype: str = "F32", arch: str = "llama", vocab=None,
               weights: dict | None = None, drop_tokens: int = 0) -> Path:
    """A llama GGUF like convert_hf_to_gguf writes. qtype: "F32", "Q8_0" or "Q4_1" (the
    embedding is then Q8_0, as in the SmolLM2 file)."""
    tokens, merges = vocab
    if drop_tokens:
        tokens = tokens[:-drop_tokens]
        merges = merges[:-drop_tokens]
    weights = weights if weights is not None else hf_weights(len(tokens))
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name("tiny-llama")
    w.add_license("apache-2.0")
    w.add_context_length(CONTEXT)
    w.add_embedding_length(C)
    w.add_block_count(N_LAYER)
    w.add_feed_forward_length(HIDDEN)
    w.add_rope_dimension_count(C // N_HEAD)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_KV)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(100000.0)
    w.add_vocab_size(len(tokens))
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types([3 if t in SPECIALS else 1 for t in tokens])
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_pad_token_id(2)
    w.add_add_bos_token(False)
    for name, arr in weights.items():
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if name.endswith("attn_q.weight"):
            arr = llamacpp_permute(arr, N_HEAD)
        elif name.endswith("attn_k.weight"):
            arr = llamacpp_permute(arr, N_KV)
        kind = "Q8_0" if name == "token_embd.weight" and qtype == "Q4_1" else qtype
        if arr.ndim == 1 or kind == "F32":
            w.add_tensor(name, arr)
        else:
            q = gguf.GGMLQuantizationType[kind]
            w.add_tensor(name, gguf.quants.quantize(arr, q), raw_dtype=q)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path

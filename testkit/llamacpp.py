"""llama.cpp's own samplers, called through llama-cpp-python's low-level API, as the reference
tests/test_llamacpp_samplers.py and benchmarks/bench_sampler_agreement.py compare ours with.

`survivors(sampler, logits, history)` builds a llama_token_data_array from (V,) logits, feeds
the history through llama_sampler_accept (penalties and DRY learn from it), applies the
sampler and returns {token id: (logit, p)} for the candidates left. Two details of the C side
(/work/shared/NOTES.md, "Checked 2026-12-03"): XTC moves the array's data pointer, so the
survivors are read through the array, never the original buffer; top-nσ leaves masked entries
inside `size` with logit -inf, so those are dropped here.
"""

from __future__ import annotations

import ctypes

import llama_cpp as L
import numpy as np

# llama_token_data as numpy sees it: {id int32, logit float32, p float32}, 12 bytes.
TOKEN_DATA = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])
assert TOKEN_DATA.itemsize == ctypes.sizeof(L.llama_token_data)


def survivors(sampler, logits, history=()) -> dict[int, tuple[float, float]]:
    """Apply `sampler` (then free it) to float32 copies of `logits`: {id: (logit, p)}."""
    logits = np.asarray(logits, dtype=np.float32)
    n = len(logits)
    table = np.zeros(n, dtype=TOKEN_DATA)
    table["id"], table["logit"] = np.arange(n), logits
    data = (L.llama_token_data * n).from_buffer(table)  # shares the numpy array's memory
    array = L.llama_token_data_array(data=data, size=n, selected=-1, sorted=False)
    try:
        for token in history:
            L.llama_sampler_accept(sampler, int(token))
        L.llama_sampler_apply(sampler, ctypes.byref(array))
        # Read through array.data: XTC moves the pointer past the tokens it removed.
        size = int(array.size)
        if size == 0:
            return {}
        start = ctypes.addressof(array.data.contents)
        out = np.frombuffer((ctypes.c_char * (size * TOKEN_DATA.itemsize)).from_address(start), TOKEN_DATA)
        out = out[out["logit"] != -np.inf]
        return dict(zip(out["id"].tolist(), zip(out["logit"].tolist(), out["p"].tolist())))
    finally:
        L.llama_sampler_free(sampler)


def chain(*samplers):
    """One llama.cpp chain of `samplers`, in order (duplicates allowed)."""
    c = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
    for s in samplers:
        L.llama_sampler_chain_add(c, s)
    return c


def logit_bias(n_vocab: int, pairs) -> object:
    biases = (L.llama_logit_bias * len(pairs))(*[L.llama_logit_bias(t, b) for t, b in pairs])
    return L.llama_sampler_init_logit_bias(n_vocab, len(pairs), biases)


def dry(vocab, multiplier, base, allowed_length, last_n, breakers):
    encoded = [b.encode("utf-8") for b in breakers]
    array = (ctypes.c_char_p * max(1, len(encoded)))(*encoded)
    return L.llama_sampler_init_dry(vocab, multiplier, base, allowed_length, last_n, array, len(encoded))


def load_vocab(gguf_path):
    """A GGUF's vocabulary only (no weights): what DRY needs to match its sequence breakers."""
    params = L.llama_model_default_params()
    params.vocab_only = True
    model = L.llama_model_load_from_file(str(gguf_path).encode(), params)
    if not model:
        raise RuntimeError(f"llama.cpp could not load the vocabulary of {gguf_path}")
    return model, L.llama_model_get_vocab(model)

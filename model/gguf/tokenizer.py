"""A GGUF file's tokenizer: its tokens, merges and pre-tokenizer name, as a tiktoken Encoding.

Only byte-level BPE vocabularies ("gpt2" in llama.cpp's terms) are supported; llama.cpp's
control tokens (<|im_start|>, ...) become tiktoken's special tokens, matched whole.
"""

from __future__ import annotations

from pathlib import Path

import tiktoken

from ..tokenizer import PRE_TOKENIZERS, encoding_from_vocab
from .metadata import field

# llama.cpp's token types (llama_token_type): only NORMAL tokens are BPE pieces.
NORMAL, CONTROL = 1, 3


def gguf_tokenizer(reader, path: Path) -> tiktoken.Encoding:
    """The file's byte-level BPE, ids unchanged (for SmolLM2 its encodings equal Hugging
    Face's on a 1.7M-token mixed corpus)."""
    kind = field(reader, "tokenizer.ggml.model", path)
    if kind != "gpt2":
        raise ValueError(f"{path}: tokenizer.ggml.model = {kind!r} is not supported; only "
                         "byte-level BPE ('gpt2') vocabularies are")
    pre = field(reader, "tokenizer.ggml.pre", path, "gpt-2")
    if pre not in PRE_TOKENIZERS:
        raise ValueError(f"{path}: pre-tokenizer {pre!r} is not supported; supported: "
                         f"{sorted(PRE_TOKENIZERS)}")
    tokens = field(reader, "tokenizer.ggml.tokens", path)
    types = field(reader, "tokenizer.ggml.token_type", path, [NORMAL] * len(tokens))
    pieces, special = {}, {}
    for i, (token, kind) in enumerate(zip(tokens, types)):
        (pieces if kind == NORMAL else special)[token] = i
    merges = field(reader, "tokenizer.ggml.merges", path)
    return encoding_from_vocab(Path(path).stem.split(".")[0], pieces, merges, special, pre, path)

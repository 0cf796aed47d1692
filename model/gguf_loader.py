"""GGUF files (llama.cpp's format) of Llama-architecture models, converted to our checkpoints.

A GGUF holds everything in one file: the architecture as metadata keys ("llama.block_count",
...), the tokenizer (tokens, merges, the name of its pre-tokenizer), and the weights, most of
them quantized (Q4_1: blocks of 32 weights sharing a float16 scale and offset, 4 bits each).

Reading uses the `gguf` package (llama.cpp's own reader) and its dequantizers; the weights
become float32, since CPUs without AVX-512/AMX have no fast bf16 or fp16 matmul. The
conversion runs once: the result is an ordinary checkpoint directory in the user's cache,
named after the file's SHA-256, so the next load is a plain safetensors read.

    gpt, tokenizer = load_gguf("SmolLM2-135M-Instruct.Q4_1.gguf")

Two things differ from a Hugging Face Llama checkpoint and are undone here:
- llama.cpp's converter permutes the rows of the query and key matrices so that its rotary
  code can rotate adjacent pairs (dims 2i, 2i+1); our rotary rotates halves (dims i, i + hs/2)
  like Hugging Face's, so the rows go back to their original order.
- separate q/k/v and gate/up matrices are stacked into our fused c_attn and c_fc.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import tiktoken
import torch

from .checkpoint import CONFIG_FILE, build_model, load_checkpoint, read_config, save_checkpoint
from .config import GPTConfig
from .downloads import cache_dir, sha256_file
from .tokenizer import bytes_to_unicode

CONVERTED = "converted"  # cache subfolder holding one checkpoint directory per GGUF file

# The pre-tokenizer regex for each `tokenizer.ggml.pre` name we support: the text is cut into
# pieces by this regex first, and BPE merges only within a piece.
#
# "smollm" (SmolLM2, also StarCoder2's vocabulary) is two steps in its tokenizer.json and in
# llama.cpp: split off every digit on its own (`\p{N}`), then GPT-2's regex on what is left.
# One regex does both: GPT-2's, with `\p{N}` as its own alternative, no digits inside the
# other alternatives, and the whitespace rule `\s+(?!\S)` reading a following digit as the end
# of a piece. That last part matters: "x  1" is "x", "  ", "1" (the model's tokenizer),
# where GPT-2's regex alone gives "x", " ", " 1".
_SMOLLM_PATTERN = (r"\p{N}|'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?[^\s\p{L}\p{N}@@]+"
                   r"|\s+(?![^\s\p{N}])|\s+")
_GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}@@]+|\s+(?!\S)|\s+"
PRE_TOKENIZERS = {"smollm": _SMOLLM_PATTERN, "gpt-2": _GPT2_PATTERN}
_EXCLUDED = "@@"  # where characters the vocabulary cannot spell are kept out of the regex

# llama.cpp's token types (llama_token_type): only NORMAL tokens are BPE pieces.
NORMAL, CONTROL = 1, 3


# ---- reading ----

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


def _field(reader, key: str, path: Path, default=...):
    field = reader.fields.get(key)
    if field is None:
        if default is ...:
            raise ValueError(f"{path}: GGUF metadata key {key!r} is missing")
        return default
    return field.contents()


def gguf_config(reader, path: Path) -> GPTConfig:
    """Our GPTConfig for a llama-architecture GGUF; anything we would compute wrongly is refused."""
    arch = _field(reader, "general.architecture", path)
    if arch != "llama":
        raise ValueError(f"{path}: architecture {arch!r} is not supported; only 'llama' "
                         "(e.g. SmolLM2) GGUF files can be loaded")

    def key(name, default=...):
        return _field(reader, f"llama.{name}", path, default)

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
    tokens = _field(reader, "tokenizer.ggml.tokens", path)
    if "<|endoftext|>" in tokens:
        return tokens.index("<|endoftext|>")
    return int(_field(reader, "tokenizer.ggml.eos_token_id", path))


def _dequantize(tensor) -> torch.Tensor:
    """One GGUF tensor as float32, in PyTorch's (out, in) order (ggml lists shapes reversed)."""
    from gguf.quants import dequantize

    shape = tuple(int(d) for d in reversed(tensor.shape))
    w = np.ascontiguousarray(dequantize(tensor.data, tensor.tensor_type), dtype=np.float32)
    if not w.flags.writeable:  # float32 tensors come straight from the read-only file mapping
        w = w.copy()
    return torch.from_numpy(w.reshape(shape))


def _unpermute(w: torch.Tensor, heads: int) -> torch.Tensor:
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
        return _dequantize(tensors[name])

    state = {"transformer.wte.weight": get("token_embd.weight"),  # (V, C)
             "transformer.ln_f.weight": get("output_norm.weight")}
    if not config.tie_embeddings:
        state["lm_head.weight"] = get("output.weight")  # (V, C)
    for i in range(config.n_layer):
        b, ours = f"blk.{i}.", f"transformer.h.{i}."
        q = _unpermute(get(b + "attn_q.weight"), config.n_head)  # (nh * hs, C)
        k = _unpermute(get(b + "attn_k.weight"), config.kv_heads)  # (nkv * hs, C)
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


def _excluded_chars(missing: set[int], path: Path) -> str:
    """A regex class fragment for the characters whose UTF-8 needs a byte the vocabulary lacks.

    tiktoken stops with a Rust panic when it meets a byte with no token, so the pre-tokenizer
    regex must never hand it one: such characters are left unmatched and tiktoken skips them,
    which is also what Hugging Face's BPE does with a byte it has no token for.
    """
    parts = []
    for b in sorted(missing):
        if b < 0x80:
            parts.append(f"\\x{{{b:x}}}")
        elif 0xC2 <= b <= 0xF4:  # a lead byte: one range of code points starts with it
            if b <= 0xDF:
                lo, hi = (b & 0x1F) << 6, ((b & 0x1F) << 6) | 0x3F
            elif b <= 0xEF:
                lo, hi = (b & 0x0F) << 12, ((b & 0x0F) << 12) | 0xFFF
            else:
                lo, hi = (b & 0x07) << 18, ((b & 0x07) << 18) | 0x3FFFF
            parts.append(f"\\x{{{lo:x}}}-\\x{{{hi:x}}}")
        elif b in (0xC0, 0xC1) or b >= 0xF5:
            continue  # never occurs in UTF-8
        else:
            raise ValueError(f"{path}: the vocabulary has no token for continuation byte "
                             f"0x{b:02x}; this tokenizer cannot be converted safely")
    return "".join(parts)


def gguf_tokenizer(reader, path: Path) -> tiktoken.Encoding:
    """The file's byte-level BPE as a tiktoken Encoding, ids unchanged.

    tiktoken merges the adjacent pair whose joined bytes have the lowest rank; the GGUF lists
    merges best-first. With rank = token id these agree when every merge's result has a
    larger id than the one before it, which is checked here (for SmolLM2 it holds, and its
    encodings equal Hugging Face's on a 1.7M-token mixed corpus).
    """
    kind = _field(reader, "tokenizer.ggml.model", path)
    if kind != "gpt2":
        raise ValueError(f"{path}: tokenizer.ggml.model = {kind!r} is not supported; only "
                         "byte-level BPE ('gpt2') vocabularies are")
    pre = _field(reader, "tokenizer.ggml.pre", path, "gpt-2")
    if pre not in PRE_TOKENIZERS:
        raise ValueError(f"{path}: pre-tokenizer {pre!r} is not supported; supported: "
                         f"{sorted(PRE_TOKENIZERS)}")
    tokens = _field(reader, "tokenizer.ggml.tokens", path)
    types = _field(reader, "tokenizer.ggml.token_type", path, [NORMAL] * len(tokens))
    merges = _field(reader, "tokenizer.ggml.merges", path)
    to_byte = {c: b for b, c in bytes_to_unicode().items()}
    ranks, special = {}, {}
    for i, (token, kind) in enumerate(zip(tokens, types)):
        if kind != NORMAL:  # control tokens (<|im_start|>, ...) are matched whole, never merged
            special[token] = i
            continue
        try:
            piece = bytes(to_byte[c] for c in token)
        except KeyError:
            raise ValueError(f"{path}: token {i} {token!r} is not in the byte-level alphabet") from None
        if piece in ranks:
            raise ValueError(f"{path}: tokens {ranks[piece]} and {i} spell the same bytes {piece!r}")
        ranks[piece] = i
    last = -1
    ids = {token: i for i, token in enumerate(tokens)}
    for n, merge in enumerate(merges):
        merged = ids.get(merge.replace(" ", "", 1))
        if merged is None or merged <= last:
            raise ValueError(f"{path}: merge {n} ({merge!r}) does not follow the token ids, so this "
                             "vocabulary cannot be expressed as tiktoken ranks")
        last = merged
    missing = {b for b in range(256) if bytes([b]) not in ranks}
    pattern = PRE_TOKENIZERS[pre].replace(_EXCLUDED, _excluded_chars(missing, path))
    name = Path(path).stem.split(".")[0]
    enc = tiktoken.Encoding(name=name, pat_str=pattern, mergeable_ranks=ranks,
                            special_tokens=special)
    for b in missing:  # prove the regex keeps every such character away from the BPE
        if b < 0x80:
            c = chr(b)
            try:
                enc.encode(f"a{c}b !{c}! {c} 1{c}\n{c}", disallowed_special=())
            except BaseException as e:  # tiktoken's panic is not an Exception
                raise ValueError(f"{path}: byte 0x{b:02x} has no token and the pre-tokenizer "
                                 f"cannot skip it ({type(e).__name__})") from None
    return enc


# ---- converting and caching ----

def describe(reader, config: GPTConfig, path: Path, sha256: str, n_params: int) -> dict:
    """What the app shows about the model, from the file's own metadata."""
    from collections import Counter

    types = Counter(t.tensor_type.name for t in reader.tensors)
    quantized = [t for t in types if t not in ("F32", "F16", "BF16")]
    weights = "float32"
    if quantized:
        weights += f" (dequantized from the file's {' and '.join(quantized)} blocks)"
    license_ = _field(reader, "general.license", path, None)
    return {
        "name": _field(reader, "general.name", path, Path(path).stem),
        "architecture": "llama",
        "license": license_ or "not stated in the file",
        "organization": _field(reader, "general.organization", path, None),
        "file": Path(path).name,
        "file_sha256": sha256,
        "file_tensor_types": dict(types.most_common()),
        "weights": weights,
        "parameters": n_params,
        "context": config.block_size,
        "vocab_size": config.vocab_size,
        "chat_template": _field(reader, "tokenizer.chat_template", path, None),
        "eos_token_id": _field(reader, "tokenizer.ggml.eos_token_id", path, None),
    }


def convert_gguf(path: Path, out_dir: Path, card: dict | None = None,
                 sha256: str | None = None) -> Path:
    """Write the GGUF at `path` as one of our checkpoint directories, `out_dir`.

    The directory appears whole or not at all: it is written under a temporary name and
    renamed, so an interrupted conversion is never mistaken for a finished one.
    """
    path, out_dir = Path(path), Path(out_dir)
    sha = sha256 or sha256_file(path)
    reader = open_gguf(path)
    config = gguf_config(reader, path)
    tokenizer = gguf_tokenizer(reader, path)
    if tokenizer.n_vocab != config.vocab_size:
        raise ValueError(f"{path}: {tokenizer.n_vocab} tokens but the embedding has "
                         f"{config.vocab_size} rows")
    state = gguf_state_dict(reader, config, path)
    gpt = build_model(config, state, path)  # checks every shape against the config
    info = {**describe(reader, config, path, sha, gpt.num_params()), **(card or {})}
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    tmp.chmod(0o755)  # mkdtemp's 0700 would hide the model from other users of a shared cache
    try:
        save_checkpoint(tmp, gpt, config, tokenizer, extra={"card": info})
        try:
            tmp.rename(out_dir)
        except OSError:
            if not (out_dir / CONFIG_FILE).is_file():  # not another process's finished copy
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def converted_dir(sha256: str, stem: str, cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / CONVERTED / f"{stem}-{sha256[:16]}"


def load_converted(directory: Path):
    """(gpt, tokenizer) from a converted directory; gpt.card is its card dict."""
    gpt, tokenizer = load_checkpoint(directory)
    gpt.card = read_config(directory).get("card", {})
    return gpt, tokenizer


def load_gguf(path, cache: Path | None = None, card: dict | None = None, sha256: str | None = None):
    """(gpt, tokenizer) for a llama GGUF file, converting it on first use.

    sha256: the file's hash if the caller already checked it (saves reading the file again).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file {path} does not exist")
    sha = sha256 or sha256_file(path)
    out = converted_dir(sha, path.name.split(".")[0], cache)
    if not (out / CONFIG_FILE).is_file():
        convert_gguf(path, out, card, sha)
    return load_converted(out)

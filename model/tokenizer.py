"""Tokenizers, all as `tiktoken.Encoding` objects.

- Our own byte-level BPE: trained with Hugging Face `tokenizers` (seconds for a few MB), then
  converted to tiktoken's mergeable ranks and saved in tiktoken's `.tiktoken` format next to a
  small JSON with its split pattern and special tokens.
- Any published byte-level BPE vocabulary (a GPT-2 snapshot's vocab.json + merges.txt, the
  tokens and merges inside a GGUF file) through one builder, `encoding_from_vocab`.

Why ranks = ids works: a byte-level BPE trainer gives the 256 single bytes the first ids and
each merge the next id, so a token's id is also its merge priority, which is exactly what
tiktoken's ranks mean.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from pathlib import Path

import tiktoken

EOT = "<|endoftext|>"
RANKS_FILE = "tokenizer.tiktoken"
META_FILE = "tokenizer_meta.json"


def split_pattern(pre: str = "gpt-2", excluded: str = "") -> str:
    """The pre-tokenizer regex: text is cut into pieces by it first, and BPE merges only
    within a piece. GPT-2's: contractions, letter runs, digit runs, punctuation runs,
    whitespace (a run of spaces leaves its last one to the word after it).

    "smollm" (SmolLM2, also StarCoder2's vocabulary) is two steps in its tokenizer.json and in
    llama.cpp: split off every digit on its own, then GPT-2's regex on what is left. One regex
    does both: every digit its own piece, no digit runs, and the whitespace rule reading a
    following digit as the end of a piece ("x  1" is "x", "  ", "1", where GPT-2 gives "x",
    " ", " 1"). `excluded`: characters kept out of every piece (see encoding_from_vocab).
    """
    if pre not in PRE_TOKENIZERS:
        raise ValueError(f"pre-tokenizer {pre!r} is not supported; supported: {list(PRE_TOKENIZERS)}")
    digits_alone = pre == "smollm"
    return "|".join([
        *([r"\p{N}"] if digits_alone else []),
        r"'(?:[sdmt]|ll|ve|re)",
        r" ?\p{L}+",
        *([] if digits_alone else [r" ?\p{N}+"]),
        r" ?[^\s\p{L}\p{N}" + excluded + "]+",
        r"\s+(?![^\s\p{N}])" if digits_alone else r"\s+(?!\S)",
        r"\s+",
    ])


PRE_TOKENIZERS = ("gpt-2", "smollm")  # names as GGUF files spell them (tokenizer.ggml.pre)
GPT2_PATTERN = split_pattern("gpt-2")


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters (used in vocab.json)."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(printable, map(chr, chars)))


def _unicode_to_bytes() -> dict[str, int]:
    return {c: b for b, c in bytes_to_unicode().items()}


def train_bpe(texts: Iterable[str], vocab_size: int, name: str = "bpe",
              pattern: str = GPT2_PATTERN) -> tiktoken.Encoding:
    """Train a byte-level BPE of `vocab_size` tokens (the last one is <|endoftext|>)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    if vocab_size < 257:
        raise ValueError(f"vocab_size must be at least 257 (256 bytes + end-of-text), but is {vocab_size}")
    tok = Tokenizer(models.BPE())
    # Split exactly as tiktoken will (the same regex), then map bytes to GPT-2's characters.
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - 1, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[])
    tok.train_from_iterator(texts, trainer=trainer)
    decode_char = _unicode_to_bytes()
    ranks = {bytes(decode_char[c] for c in token): i for token, i in tok.get_vocab().items()}
    # ids 0..255 are the single bytes (in the trainer's own order), 256.. the merges in order.
    return tiktoken.Encoding(name=name, pat_str=pattern, mergeable_ranks=ranks,
                             special_tokens={EOT: len(ranks)})


def save_tokenizer(enc: tiktoken.Encoding, directory: str | Path) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ranks = enc._mergeable_ranks
    lines = [f"{base64.b64encode(token).decode()} {rank}" for token, rank in
             sorted(ranks.items(), key=lambda item: item[1])]
    (directory / RANKS_FILE).write_text("\n".join(lines) + "\n")
    meta = {"name": enc.name, "pat_str": enc._pat_str, "special_tokens": enc._special_tokens}
    (directory / META_FILE).write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")


def load_tokenizer(directory: str | Path) -> tiktoken.Encoding:
    directory = Path(directory)
    ranks_path, meta_path = directory / RANKS_FILE, directory / META_FILE
    for path in (ranks_path, meta_path):
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer file {path} is missing; a checkpoint directory "
                                    f"needs {RANKS_FILE} and {META_FILE}")
    try:
        meta = json.loads(meta_path.read_text())
        ranks = {}
        for line in ranks_path.read_text().splitlines():
            if line:
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
        return tiktoken.Encoding(name=meta["name"], pat_str=meta["pat_str"], mergeable_ranks=ranks,
                                 special_tokens=meta["special_tokens"])
    except (ValueError, KeyError, json.JSONDecodeError) as e:
        raise ValueError(f"tokenizer files in {directory} are corrupt: {e}") from e


def gpt2_tokenizer_from_snapshot(directory: str | Path) -> tiktoken.Encoding:
    """GPT-2's encoding from a Hugging Face snapshot (vocab.json + merges.txt), offline."""
    directory = Path(directory)
    vocab_path, merges_path = directory / "vocab.json", directory / "merges.txt"
    if not vocab_path.is_file() or not merges_path.is_file():
        try:  # tiktoken's own copy, if it is cached on this machine
            return tiktoken.get_encoding("gpt2")
        except Exception as e:
            raise FileNotFoundError(
                f"{directory} has no vocab.json + merges.txt and tiktoken's gpt2 files are not "
                f"available offline ({type(e).__name__}); copy the snapshot's tokenizer files there") from e
    vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
    merges = [line for line in merges_path.read_text(encoding="utf-8").splitlines()
              if line and not line.startswith("#version")]
    special = {EOT: vocab[EOT]} if EOT in vocab else {}
    pieces = {token: i for token, i in vocab.items() if token not in special}
    return encoding_from_vocab("gpt2", pieces, merges, special, "gpt-2", vocab_path, merges_path)


def encoding_from_vocab(name: str, pieces: dict[str, int], merges: list[str],
                        special: dict[str, int], pre: str, source,
                        merges_source=None) -> tiktoken.Encoding:
    """A published byte-level BPE as a tiktoken Encoding, ids unchanged.

    pieces: token -> id, each token spelled in GPT-2's byte alphabet (bytes_to_unicode);
    merges: "left right" pairs, best first; special: tokens matched whole, never merged;
    pre: the pre-tokenizer (split_pattern); source (and merges_source, where the merges come
    from another file): named in every error.

    tiktoken merges the adjacent pair whose joined bytes have the lowest rank; the file lists
    merges best-first. With rank = token id these agree when every merge's result has an id
    no smaller than the one before it, which is checked here.
    """
    to_byte = _unicode_to_bytes()
    ranks: dict[bytes, int] = {}
    for token, i in pieces.items():
        try:
            piece = bytes(to_byte[c] for c in token)
        except KeyError:
            raise ValueError(f"{source}: token {i} {token!r} is not in GPT-2's byte alphabet") from None
        if piece in ranks:
            raise ValueError(f"{source}: tokens {ranks[piece]} and {i} spell the same bytes {piece!r}")
        ranks[piece] = i
    last = -1
    for n, merge in enumerate(merges):
        merged = pieces.get(merge.replace(" ", "", 1))
        if merged is None or merged < last:
            raise ValueError(f"{merges_source or source}: merge {n} ({merge!r}) does not follow the token ids, so "
                             "this vocabulary cannot be expressed as tiktoken ranks")
        last = merged
    missing = {b for b in range(256) if bytes([b]) not in ranks}
    enc = tiktoken.Encoding(name=name, pat_str=split_pattern(pre, _excluded_chars(missing, source)),
                            mergeable_ranks=ranks, special_tokens=special)
    for b in missing:  # prove the regex keeps every such character away from the BPE
        if b < 0x80:
            c = chr(b)
            try:
                enc.encode(f"a{c}b !{c}! {c} 1{c}\n{c}", disallowed_special=())
            except BaseException as e:  # tiktoken's panic is not an Exception
                raise ValueError(f"{source}: byte 0x{b:02x} has no token and the pre-tokenizer "
                                 f"cannot skip it ({type(e).__name__})") from None
    return enc


def _excluded_chars(missing: set[int], source) -> str:
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
            raise ValueError(f"{source}: the vocabulary has no token for continuation byte "
                             f"0x{b:02x}; this tokenizer cannot be converted safely")
    return "".join(parts)



def validate_ids(ids, vocab_size: int, name: str = "token ids") -> list[int]:
    ids = list(ids)
    for t in ids:
        if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < vocab_size:
            raise ValueError(f"{name} must be integers in [0, {vocab_size}), but contain {t!r}")
    return ids

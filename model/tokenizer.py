"""Tokenizers, all as `tiktoken.Encoding` objects.

- Our own byte-level BPE: trained with Hugging Face `tokenizers` (seconds for a few MB), then
  converted to tiktoken's mergeable ranks and saved in tiktoken's `.tiktoken` format next to a
  small JSON with its split pattern and special tokens.
- GPT-2's encoding, built offline from a Hugging Face snapshot's `vocab.json` + `merges.txt`.

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

# GPT-2's pre-tokenizer: contractions, letter runs, digit runs, punctuation runs, whitespace.
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
EOT = "<|endoftext|>"
RANKS_FILE = "tokenizer.tiktoken"
META_FILE = "tokenizer_meta.json"


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
        for n, line in enumerate(ranks_path.read_text().splitlines(), 1):
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
    decode_char = _unicode_to_bytes()
    special = {EOT: vocab[EOT]} if EOT in vocab else {}
    ranks = {}
    for token, i in vocab.items():
        if token in special:
            continue
        try:
            ranks[bytes(decode_char[c] for c in token)] = i
        except KeyError:
            raise ValueError(f"{vocab_path}: token {token!r} is not in GPT-2's byte alphabet") from None
    _check_merge_order(ranks, merges_path, decode_char)
    return tiktoken.Encoding(name="gpt2", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                             special_tokens=special)


def _check_merge_order(ranks: dict[bytes, int], merges_path: Path, decode_char) -> None:
    """tiktoken merges by the rank of the merged token; HF by the merge's line. They agree
    when every merge's result has an id above both of its parts, in line order."""
    last = -1
    for line in merges_path.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#version"):
            continue
        left, right = line.split(" ")
        merged = bytes(decode_char[c] for c in left + right)
        rank = ranks.get(merged)
        if rank is None or rank < last:
            raise ValueError(f"{merges_path}: merge {line!r} does not follow vocab.json's ids; "
                             "this snapshot cannot be converted to tiktoken ranks")
        last = rank


def validate_ids(ids, vocab_size: int, name: str = "token ids") -> list[int]:
    ids = list(ids)
    for t in ids:
        if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < vocab_size:
            raise ValueError(f"{name} must be integers in [0, {vocab_size}), but contain {t!r}")
    return ids

"""Convert a GGUF file once into one of our checkpoint directories in the user's cache, named
after the file's SHA-256, so the next load is a plain safetensors read."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..checkpoint import CONFIG_FILE, Loaded, build_model, load_checkpoint, save_checkpoint
from ..downloads import cache_dir, sha256_file
from .metadata import describe, gguf_config, open_gguf
from .tokenizer import gguf_tokenizer
from .weights import gguf_state_dict

CONVERTED = "converted"  # cache subfolder holding one checkpoint directory per GGUF file


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


def load_or_convert(out: Path, source: Callable[[], Path], card: dict | None,
                    sha256: str) -> Loaded:
    """The converted checkpoint at `out`, converting source() into it first if need be
    (source is only called then: it may fetch the file)."""
    if not (out / CONFIG_FILE).is_file():
        path = source()
        print(f"Converting {Path(path).name} to float32 in {out} (once) ...", file=sys.stderr)
        convert_gguf(path, out, card, sha256)
    return load_checkpoint(out)


def load_gguf(path, cache: Path | None = None, card: dict | None = None,
              sha256: str | None = None) -> Loaded:
    """(gpt, tokenizer, card) for a llama GGUF file, converting it on first use.

    sha256: the file's hash if the caller already checked it (saves reading the file again).
    The card is what convert_gguf stored: the file's own metadata, merged with `card`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file {path} does not exist")
    sha = sha256 or sha256_file(path)
    return load_or_convert(converted_dir(sha, path.name.split(".")[0], cache), lambda: path, card, sha)

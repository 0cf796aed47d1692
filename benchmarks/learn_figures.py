"""The workshop's "watch it learn" figures: a text scored by every snapshot of the default
model, its loss against ln V, and the mean surprisal of each kind of token at each step (which
kinds are learned first).

    python -m benchmarks.learn_figures
"""

from __future__ import annotations

import math
import re
import statistics
import sys

import torch

from model import list_snapshots, load_model
from model.inspect import token_text
from model.learning import snapshot_views
from testkit.models import HAMLET

DEFAULT = "checkpoints/shakespeare"
TEXT = "HAMLET:\n" + HAMLET  # Hamlet is held out: the run never trained on it
COMMON = {"the", "and", "to", "of", "a", "i", "my", "that", "in", "is", "not", "be", "by", "there", "no"}


def kind(text: str) -> str:
    """A token's kind, by what it spells."""
    if re.fullmatch(r"\s*\n\s*", text):
        return "line break"
    if re.fullmatch(r"[\s\W_]+", text):
        return "punctuation"
    word = text.strip().lower()
    if not text.startswith(" ") and not text[:1].isupper():
        return "rest of a word"
    return "common word" if word in COMMON else "other word start"


def main() -> int:
    torch.set_num_threads(1)
    gpt, tok, _ = load_model(DEFAULT)
    ids = tok.encode(TEXT)
    kinds = [kind(token_text(tok, t)) for t in ids[1:]]
    snaps = [(e["step"], load_model(DEFAULT, step=e["step"]).gpt) for e in list_snapshots(DEFAULT)]
    views = snapshot_views(snaps + [("final", gpt)], ids)
    names = sorted(set(kinds), key=lambda k: -kinds.count(k))
    print(f"{len(ids)} tokens of Hamlet (held out); ln V = {math.log(tok.n_vocab):.3f}")
    print("step    loss   " + "  ".join(f"{n} ({kinds.count(n)})" for n in names))
    for v in views:
        by = {n: statistics.mean(s for s, k in zip(v["surprisal"], kinds) if k == n) for n in names}
        print(f"{v['step']!s:6s} {v['loss']:6.3f}   " + "  ".join(f"{by[n]:{len(n) + 5}.2f}" for n in names))
    return 0


if __name__ == "__main__":
    sys.exit(main())

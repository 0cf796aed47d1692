"""Command line: print a model's continuation of a prompt.

    python -m model.generate --model checkpoints/shakespeare --prompt "ROMEO:" \
        --max-new-tokens 60 --temperature 0.8 --top-k 40 --seed 1 --show-probs
"""

from __future__ import annotations

import argparse
import codecs
import sys
import types

from .decode import generate
from .loading import load_model
from .sampling import SamplingSettings
from .session import DecodingSession

DEFAULT_MODEL = "checkpoints/shakespeare"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m model.generate", description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_MODEL, help="checkpoint dir or HF GPT-2 snapshot dir")
    ap.add_argument("--prompt", default="", help="text to continue ('' = start of a document)")
    ap.add_argument("--max-new-tokens", type=int, default=100)
    ap.add_argument("--temperature", type=float, default=1.0, help="0 = greedy")
    ap.add_argument("--top-k", type=int, default=0, help="0 = off")
    ap.add_argument("--top-p", type=float, default=1.0, help="1 = off")
    ap.add_argument("--min-p", type=float, default=0.0, help="0 = off")
    ap.add_argument("--typical-p", type=float, default=1.0, help="1 = off")
    ap.add_argument("--repetition-penalty", type=float, default=1.0, help="1 = off")
    ap.add_argument("--temperature-last", action="store_true",
                    help="apply temperature after the filters (llama.cpp's order)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--show-probs", action="store_true",
                    help="print each step's top candidates and their probabilities")
    args = ap.parse_args(argv)
    try:
        settings = SamplingSettings(
            temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
            typical_p=args.typical_p, repetition_penalty=args.repetition_penalty,
            temperature_last=args.temperature_last)
        if args.max_new_tokens < 0:
            raise ValueError(f"--max-new-tokens must be >= 0, but is {args.max_new_tokens}")
        gpt, tokenizer = load_model(args.model)
        session = DecodingSession(gpt, tokenizer, seed=args.seed)
        notice = session.reset(args.prompt)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if notice:
        print(f"note: {notice}", file=sys.stderr)
    if not args.show_probs:
        sys.stdout.write(args.prompt)
    # A character can span several tokens (most emoji do in GPT-2): decode the byte stream, so
    # a character is printed once its last byte arrives instead of as one U+FFFD per token.
    text = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for record in session.generate(args.max_new_tokens, settings):
        if args.show_probs:
            top = record.candidates[list(record.candidates)[-1]][:5]
            alts = "  ".join(f"{tokenizer.decode([t])!r} {p:.3f}" for t, p in top if p > 0)
            print(f"[{record.position}] {record.piece!r} p={record.prob:.3f} ({record.how})   top: {alts}")
        else:
            sys.stdout.write(text.decode(tokenizer.decode_single_token_bytes(record.token)))
            sys.stdout.flush()
    if not args.show_probs:
        sys.stdout.write(text.decode(b"", final=True) + "\n")
    return 0


class _CallableModule(types.ModuleType):
    """`from model import generate` is the decoding function, and this CLI module has the same
    name: importing it (`import model.generate`) rebinds the package attribute to the module.
    Calling the module calls the function, so `model.generate(gpt, idx, n)` works either way."""

    def __call__(self, *args, **kwargs):
        return generate(*args, **kwargs)


if __name__ in sys.modules and __name__ != "__main__":
    sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    sys.exit(main())

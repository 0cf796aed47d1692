"""Command line: print a model's continuation of a prompt.

    python -m model.generate --model checkpoints/shakespeare --prompt "ROMEO:" \
        --max-new-tokens 60 --temperature 0.8 --top-k 40 --seed 1 --show-probs
"""

from __future__ import annotations

import argparse
import codecs
import sys
import types

from .beam import MAX_BEAMS, beam_search
from .chain import parse_letters
from .decode import generate
from .loading import load_model
from .quant import MODES
from .sampling import SEED_MAX, SETTINGS, SamplingSettings
from .session import DecodingSession

DEFAULT_MODEL = "checkpoints/shakespeare"


# llama.cpp's names for our settings (its llama-cli flags), accepted as well as ours.
LLAMA_FLAGS = {"temperature": ["--temp"], "typical_p": ["--typical"],
               "repetition_penalty": ["--repeat-penalty"], "penalty_last_n": ["--repeat-last-n"],
               "dynatemp_exponent": ["--dynatemp-exp"], "mirostat_tau": ["--mirostat-ent"],
               "mirostat_eta": ["--mirostat-lr"]}


def add_setting_flags(ap: argparse.ArgumentParser) -> None:
    """One flag per sampling setting, from the table in model/sampling.py: its name with
    dashes (and llama.cpp's name where it differs), its type, its default and its help. The
    list settings take llama.cpp's forms: --samplers "penalties;top_k;temperature" or
    --sampling-seq edskypmxt, --dry-sequence-breaker (repeated; "none" = no breakers) and
    --logit-bias ID+BIAS or ID-inf (repeated)."""
    for x in SETTINGS.values():
        flags = ["--" + x.name.replace("_", "-")] + LLAMA_FLAGS.get(x.name, [])
        if x.name == "dry_sequence_breakers":
            ap.add_argument("--dry-sequence-breaker", dest=x.name, action="append", default=None,
                            help=f"{x.help} Repeat the flag for each; \"none\" = no breakers "
                                 f"(default {list(x.default)})")
        elif x.name == "logit_bias":
            ap.add_argument("--logit-bias", dest=x.name, action="append", default=None, type=_bias_flag,
                            help="Add BIAS to token ID's logit: ID+BIAS or ID-BIAS; ID-inf bans it. "
                                 "Repeat the flag for each token.")
        elif x.name == "samplers":
            ap.add_argument(*flags, dest=x.name, default=None, help=x.help)
            ap.add_argument("--sampling-seq", dest=x.name, default=None, type=_letters_flag,
                            help="The chain as llama.cpp's letters only: e penalties, d dry, "
                                 "s top_n_sigma, k top_k, y typical, p top_p, m min_p, x xtc, "
                                 "t temperature (default: today's order)")
        elif x.kind == "bool":
            ap.add_argument(*flags, dest=x.name, action="store_true", help=x.help)
        else:
            ap.add_argument(*flags, dest=x.name, type=int if x.kind == "int" else float,
                            default=x.default, help=f"{x.help} (default {x.default:g})")


def _letters_flag(text: str) -> list[str]:
    try:
        return parse_letters(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _bias_flag(text: str) -> list:
    """llama.cpp's --logit-bias form, TOKEN_ID(+/-)BIAS, as a [id, bias] pair (-inf: false)."""
    for i, c in enumerate(text):
        if c in "+-" and i > 0:
            token, bias = text[:i], text[i:]
            break
    else:
        raise argparse.ArgumentTypeError(f"--logit-bias takes ID+BIAS or ID-BIAS (e.g. 15043+1 or "
                                         f"15043-inf), but got {text!r}")
    try:
        return [int(token), False if bias == "-inf" else float(bias)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--logit-bias takes ID+BIAS or ID-BIAS (e.g. 15043+1 or "
                                         f"15043-inf), but got {text!r}") from None


def _early_stopping_flag(text: str):
    choices = {"true": True, "false": False, "never": "never"}
    if text.lower() not in choices:
        raise argparse.ArgumentTypeError(f"--early-stopping takes true, false or never, but got {text!r}")
    return choices[text.lower()]


def add_beam_flags(ap: argparse.ArgumentParser) -> None:
    """Beam search, with transformers' names and meanings (model/beam.py)."""
    ap.add_argument("--num-beams", type=int, default=None,
                    help=f"search with this many beams (1 to {MAX_BEAMS}) instead of sampling; "
                         "prints the best finished sequence as transformers' generate does "
                         "(sampling flags are ignored)")
    ap.add_argument("--length-penalty", type=float, default=1.0,
                    help="a finished beam scores sum(log p) / length ** this (default 1.0; "
                         "> 0 favours longer text, < 0 shorter)")
    ap.add_argument("--early-stopping", type=_early_stopping_flag, default=False,
                    help="true: stop once num-beams sequences finished; false: stop when no "
                         "running beam is likely to do better (default); never: only when none can")


def print_beams(args, session) -> int:
    """The search's best sequence (with --show-probs: the whole ranking and its scores)."""
    try:
        result = beam_search(session.gpt, session.ids, args.max_new_tokens, args.num_beams,
                             args.length_penalty, args.early_stopping, eos_token_id=session.eot,
                             record=False)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    decode = session.tokenizer.decode
    if args.show_probs:
        for rank, h in enumerate(result.ranking, 1):
            print(f"#{rank} score {h.score:.4f} (sum log p {h.logprob:.3f}, {len(h.tokens)} tokens): "
                  f"{decode(h.tokens)!r}")
    else:
        print(args.prompt + decode(result.best.tokens))
    return 0


def settings_from_flags(args) -> SamplingSettings:
    values = {name: getattr(args, name) for name in SETTINGS if getattr(args, name) is not None}
    if values.get("dry_sequence_breakers") == ["none"]:
        values["dry_sequence_breakers"] = []
    return SamplingSettings.from_dict(values)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m model.generate", description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_MODEL,
                    help="checkpoint dir, HF GPT-2 snapshot dir, .gguf file or 'smollm2'")
    ap.add_argument("--mode", choices=MODES, default="exact",
                    help="exact: float32, the weights as loaded; fast: 4-bit and 8-bit weights, "
                         "faster and close to exact (default exact)")
    ap.add_argument("--prompt", default="", help="text to continue ('' = start of a document)")
    ap.add_argument("--max-new-tokens", type=int, default=100)
    add_setting_flags(ap)
    ap.add_argument("--seed", type=int, default=0, help=f"0 to {SEED_MAX}")
    add_beam_flags(ap)
    ap.add_argument("--show-probs", action="store_true",
                    help="print each step's top candidates and their probabilities")
    args = ap.parse_args(argv)
    try:
        settings = settings_from_flags(args)
        if args.num_beams is not None:
            from .beam import check_beam_args
            check_beam_args(args.num_beams, args.max_new_tokens, args.length_penalty, args.early_stopping)
        if args.max_new_tokens < 0:
            raise ValueError(f"--max-new-tokens must be >= 0, but is {args.max_new_tokens}")
        gpt, tokenizer, _ = load_model(args.model, mode=args.mode)
        session = DecodingSession(gpt, tokenizer, seed=args.seed)
        notice = session.reset(args.prompt)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if notice:
        print(f"note: {notice}", file=sys.stderr)
    if args.num_beams is not None:
        return print_beams(args, session)
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

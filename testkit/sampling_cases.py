"""Random sampling cases: settings over every stage (the newer ones each on in about a third
of the cases), chains in every form `samplers` accepts, logits with ties, contexts with
repeats, and a stand-in tokenizer for DRY's sequence breakers. tests/test_pipeline_js.py
holds the page's pipeline to the engine on them; tests/test_survivors.py holds the engine to
the whole-vector reference (testkit/full_pipeline.py).
"""

from __future__ import annotations

import random

from model.chain import CHAIN_STAGES, LETTERS, PRESETS
from model.sampling import breaker_heads, draw_stage_u


def random_settings(rng: random.Random) -> dict:
    pick = rng.choice
    return {
        "temperature": pick([0.0, 1.0, rng.uniform(0.05, 2.0), rng.uniform(0.05, 2.0), 3.0]),
        "top_k": pick([0, 0, 1, 2, rng.randint(1, 60), 10_000]),
        "top_p": pick([1.0, rng.random(), rng.random(), 0.0, 0.9]),
        "min_p": pick([0.0, 0.0, rng.random() * 0.5, 1.0]),
        "typical_p": pick([1.0, 1.0, rng.random(), 0.2]),
        "repetition_penalty": pick([1.0, rng.uniform(0.5, 2.0), 1.3]),
        "presence_penalty": pick([0.0, 0.0, rng.uniform(-2, 2)]),
        "frequency_penalty": pick([0.0, 0.0, rng.uniform(-2, 2)]),
        "no_repeat_ngram_size": pick([0, 0, 0, 1, 2, 3]),
        "temperature_last": rng.random() < 0.5,
        **lab_settings(rng),
    }


def random_chain(rng: random.Random):
    """A random order in each of the forms `samplers` accepts, duplicates included."""
    form = rng.choice(["default", "list", "letters", "names", "preset"])
    if form == "default":
        return None
    if form == "preset":
        return rng.choice(list(PRESETS))
    if form == "letters":
        return "".join(rng.choice(list(LETTERS)) for _ in range(rng.randint(1, 12)))
    names = [rng.choice(CHAIN_STAGES) for _ in range(rng.randint(1, 12))]
    return names if form == "list" else ";".join(names)


def lab_settings(rng: random.Random) -> dict:
    """The newer stages, each on in about a third of the cases, in random chains."""
    pick, on = rng.choice, (lambda: rng.random() < 0.3)
    out = {}
    if on():
        out["top_n_sigma"] = pick([-1.0, 0.0, rng.uniform(0.1, 3.0), 1.0])
    if on():
        out["xtc_probability"] = pick([1.0, rng.random()])
        out["xtc_threshold"] = pick([0.1, rng.uniform(0.0, 0.3), 0.6])
    if on():
        out["dry_multiplier"] = rng.uniform(0.1, 3.0)
        out["dry_base"] = pick([1.75, rng.uniform(1.0, 3.0)])
        out["dry_allowed_length"] = pick([0, 1, 2, 3])
        out["dry_penalty_last_n"] = pick([-1, 0, 5, 20])
        out["dry_sequence_breakers"] = pick([[], ["b"], ["\n", ":"], ["ab", "c"]])
    if on():
        out["dynatemp_range"] = rng.uniform(0.0, 1.5)
        out["dynatemp_exponent"] = pick([1.0, rng.uniform(0.0, 3.0)])
    if on():
        out["penalty_last_n"] = pick([-1, 0, 1, 4, 100])
    if on():
        out["epsilon_cutoff"] = pick([rng.uniform(0, 0.05), 0.001])
    if on():
        out["eta_cutoff"] = pick([rng.uniform(0, 0.05), 0.001])
    if rng.random() < 0.15:
        out["mirostat"] = pick([1, 2])
        out["mirostat_tau"] = rng.uniform(0.5, 8.0)
        out["mirostat_eta"] = rng.uniform(0.0, 1.0)
    if rng.random() < 0.2:
        out["logit_bias"] = pick([[[0, rng.uniform(-5, 5)], [1, False]], {"2": rng.uniform(-5, 5)}])
    chain = random_chain(rng)
    if chain is not None:
        out["samplers"] = chain
    return out


class LetterVocab:
    """A stand-in tokenizer whose token i is one letter (a to z, then ':' and '\n', cycling):
    enough for DRY's sequence breakers to find heads and tails."""

    def __init__(self, n: int):
        alphabet = "abcdefghijklmnopqrstuvwxyz:\n"
        self.n_vocab = n
        self.pieces = [alphabet[i % len(alphabet)].encode() for i in range(n)]

    def decode_single_token_bytes(self, i: int) -> bytes:
        return self.pieces[i]

    def encode_ordinary(self, text: str) -> list[int]:
        return [self.pieces.index(c.encode()) for c in text]


def random_case(rng: random.Random, vocab: int) -> dict:
    logits = [rng.gauss(0, 3) for _ in range(vocab)]
    if rng.random() < 0.3:  # ties at the k-th value and at the top
        logits = [round(v) for v in logits]
    context = [rng.randrange(vocab) for _ in range(rng.choice([0, 1, 5, 30]))]
    if rng.random() < 0.3:  # repeats, for DRY and the penalties to find
        context = (context[:6] * 6)[:30]
    settings = random_settings(rng)
    seed = rng.randrange(2**32)
    case = {"logits": logits, "context": context, "settings": settings, "u": rng.random(), "seed": seed,
            "draws": {"xtc": draw_stage_u(seed, len(context), "xtc")},
            "mu": pick_mu(rng), "dry_heads": None}
    breakers = settings.get("dry_sequence_breakers")
    if breakers:
        heads = breaker_heads(LetterVocab(vocab), tuple(breakers), vocab)
        case["dry_heads"] = {str(k): [list(t) for t in v] for k, v in heads.items()}
    return case


def pick_mu(rng: random.Random):
    return rng.choice([None, rng.uniform(-2.0, 12.0)])

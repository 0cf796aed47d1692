"""The order of the sampler chain, and the settings that are lists or objects rather than
numbers: `samplers`, `dry_sequence_breakers` and `logit_bias`. Each decoder here takes what a
user may type (llama.cpp's forms included) and returns one normal form, or raises ValueError
naming the bad value and saying what is accepted.

`samplers` takes
- a list of stage names: ["top_k", "temperature"] (a stage may appear twice);
- llama.cpp's `--sampling-seq` letters: "edskypmxt" (a string that is also a name, such as
  "typ" or "temp", is read as the name; the CLI's --sampling-seq reads letters only);
- llama.cpp's `--samplers` names separated by ";": "penalties;dry;top_k;temperature"
  (llama.cpp's own spellings such as typ_p, top-k, topk, nucleus and temp included);
- a preset: "hf", "llama.cpp" or "webui" (text-generation-webui's default sampler_priority).
"""

from __future__ import annotations

import math

# The stages a chain may name, in our spelling (model/sampling.py's table).
CHAIN_STAGES = ("penalties", "dry", "top_n_sigma", "top_k", "typical_p", "top_p", "min_p", "xtc",
                "temperature", "epsilon", "eta")
# llama.cpp's letters (common/sampling.cpp, common_sampler_type_to_chr).
LETTERS = {"e": "penalties", "d": "dry", "s": "top_n_sigma", "k": "top_k", "y": "typical_p",
           "p": "top_p", "m": "min_p", "x": "xtc", "t": "temperature"}
# Other names for the stages: llama.cpp's names and their kebab-case and no-dash aliases, and
# the names text-generation-webui and transformers use.
ALIASES = {"typ_p": "typical_p", "typ": "typical_p", "typical": "typical_p", "nucleus": "top_p",
           "temp": "temperature", "epsilon_cutoff": "epsilon", "eps_cutoff": "epsilon",
           "eta_cutoff": "eta", "repetition_penalty": "penalties"}
for _name in CHAIN_STAGES + ("typ_p", "epsilon_cutoff", "eta_cutoff"):
    if "_" in _name:
        ALIASES.setdefault(_name.replace("_", "-"), ALIASES.get(_name, _name))
        ALIASES.setdefault(_name.replace("_", ""), ALIASES.get(_name, _name))
NAMES = {name: name for name in CHAIN_STAGES} | ALIASES

# Today's order (Hugging Face's: penalties, temperature, then the filters), with the newer
# stages in their places; each runs only when its setting is changed.
DEFAULT_CHAIN = ("penalties", "dry", "temperature", "top_n_sigma", "top_k", "top_p", "min_p",
                 "typical_p", "epsilon", "eta", "xtc")
PRESETS = {
    # transformers' generate(): processors (penalties) first, then the warpers in this order.
    "hf": ("penalties", "temperature", "top_k", "top_p", "min_p", "typical_p", "epsilon", "eta"),
    # llama.cpp's default --sampling-seq (common/common.h).
    "llama.cpp": tuple(LETTERS[c] for c in "edskypmxt"),
    # text-generation-webui's default sampler_priority, the stages we have.
    "webui": ("penalties", "dry", "temperature", "top_n_sigma", "top_k", "top_p", "typical_p",
              "epsilon", "eta", "min_p", "xtc"),
}
PRESETS["default"] = DEFAULT_CHAIN
# The names the page's chain editor gives the presets, in its order.
# A preset's button label (short: the four fit one row of the chain's column) and its name.
PRESET_LABELS = {"default": "Default", "hf": "HF", "llama.cpp": "llama.cpp", "webui": "webui"}
PRESET_NAMES = {"default": "this playground's default", "hf": "Hugging Face transformers' generate",
                "llama.cpp": "llama.cpp", "webui": "text-generation-webui"}
MAX_CHAIN = 32

_ACCEPTED = ("a list of stage names, llama.cpp's letters (e.g. \"edskypmxt\"), its names separated "
             "by \";\" (e.g. \"penalties;top_k;temperature\") or a preset (" + ", ".join(PRESETS) + ")")


def _known() -> str:
    letters = " ".join(f"{c}={name}" for c, name in LETTERS.items())
    return f"known stages: {', '.join(CHAIN_STAGES)}; letters: {letters}"


def parse_samplers(value) -> tuple[str, ...]:
    """Any accepted form of the chain -> a tuple of stage names (see the module's docstring)."""
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in PRESETS:
            return PRESETS[text.lower()]
        if ";" in text or text.lower() in NAMES:
            names = [n.strip() for n in text.split(";") if n.strip()]
        elif text and all(c in LETTERS for c in text.lower()):
            return _checked_length(tuple(LETTERS[c] for c in text.lower()), value)
        else:
            unknown = sorted({c for c in text.lower() if c not in LETTERS})
            raise ValueError(f"samplers {value!r:.80} is neither a preset, a stage name nor "
                             f"llama.cpp's letters (unknown letters {''.join(unknown)!r:.40}); "
                             f"{_known()}; presets: {', '.join(PRESETS)}")
    elif isinstance(value, (list, tuple)):
        names = list(value)
    else:
        raise ValueError(f"samplers must be {_ACCEPTED}, but is {type(value).__name__} {value!r:.80}")
    out = []
    for name in names:
        if not isinstance(name, str) or name.strip().lower() not in NAMES:
            raise ValueError(f"samplers names an unknown stage {name!r:.40}; {_known()}")
        out.append(NAMES[name.strip().lower()])
    return _checked_length(tuple(out), value)


def parse_letters(value) -> list[str]:
    """llama.cpp's --sampling-seq: letters only (so "typ" is t, y, p here, while as a
    `samplers` value it is the name typ = typical_p)."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"--sampling-seq takes llama.cpp's letters such as \"edskypmxt\", "
                         f"but is {value!r:.80}")
    unknown = sorted({c for c in value.strip().lower() if c not in LETTERS})
    if unknown:
        raise ValueError(f"--sampling-seq {value!r:.80} has unknown letters {''.join(unknown)!r}; {_known()}")
    return [LETTERS[c] for c in value.strip().lower()]


def _checked_length(chain: tuple[str, ...], value) -> tuple[str, ...]:
    if len(chain) > MAX_CHAIN:
        raise ValueError(f"samplers holds {len(chain)} stages; at most {MAX_CHAIN}, but is {value!r:.80}")
    return chain


def chain_letters(chain) -> str:
    """The chain as llama.cpp's letters where every stage has one, else ""."""
    back = {name: c for c, name in LETTERS.items()}
    return "".join(back[n] for n in chain) if all(n in back for n in chain) else ""


# ---- DRY's sequence breakers ----

MAX_BREAKERS = 16
MAX_BREAKER_BYTES = 40  # llama.cpp cuts longer ones to 40 bytes; here they are refused


def parse_breakers(value) -> tuple[str, ...]:
    """A list of non-empty strings, each at most MAX_BREAKER_BYTES bytes of UTF-8."""
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ValueError(f'dry_sequence_breakers must be a list of strings such as ["\\n", ":"], '
                         f"but is {type(value).__name__} {value!r:.80}")
    if len(value) > MAX_BREAKERS:
        raise ValueError(f"dry_sequence_breakers holds {len(value)} strings; at most {MAX_BREAKERS}")
    for b in value:
        if not isinstance(b, str) or not b:
            raise ValueError(f"each DRY sequence breaker must be non-empty text, but one is {b!r:.40}")
        try:
            size = len(b.encode("utf-8"))
        except UnicodeEncodeError:
            raise ValueError(f"DRY sequence breaker {b!r:.40} is not valid Unicode") from None
        if size > MAX_BREAKER_BYTES:
            raise ValueError(f"DRY sequence breaker {b!r:.60} is {size} bytes long; at most "
                             f"{MAX_BREAKER_BYTES}")
    return tuple(value)


# ---- logit bias ----

MAX_BIASES = 1024
MAX_BIAS_TEXT = 100  # characters of a text entry


def parse_logit_bias(value) -> tuple[tuple[int | str, float | bool], ...]:
    """llama.cpp server's forms -> ((token id or text, bias), ...). Accepts a list of
    [id or text, bias] pairs or an object {"id": bias} (a key that is not a whole number is
    text). A bias of false bans the token. Ids are checked against the vocabulary when the
    chain runs (resolve_logit_bias), where the tokenizer turns text into its tokens."""
    if isinstance(value, dict):
        pairs = [(int(k) if isinstance(k, str) and k.strip().lstrip("-").isdigit() else k, b)
                 for k, b in value.items()]
    elif isinstance(value, (list, tuple)):
        pairs = []
        for pair in value:
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise ValueError(f"logit_bias entries must be [token id or text, bias] pairs, "
                                 f"but one is {pair!r:.60}")
            pairs.append(tuple(pair))
    else:
        raise ValueError(f'logit_bias must be a list of [token id or text, bias] pairs or an object '
                         f'{{"id": bias}}, but is {type(value).__name__} {value!r:.80}')
    if len(pairs) > MAX_BIASES:
        raise ValueError(f"logit_bias holds {len(pairs)} entries; at most {MAX_BIASES}")
    out = []
    for key, bias in pairs:
        if isinstance(key, bool) or not isinstance(key, (int, str)):
            raise ValueError(f"a logit_bias key must be a token id or text, but is {key!r:.40}")
        if isinstance(key, int) and key < 0:
            raise ValueError(f"logit_bias names token id {key}; ids are >= 0")
        if isinstance(key, str) and not 0 < len(key) <= MAX_BIAS_TEXT:
            raise ValueError(f"a logit_bias text must hold 1 to {MAX_BIAS_TEXT} characters, but is "
                             f"{key!r:.60}")
        if bias is False:
            out.append((key, False))
            continue
        if isinstance(bias, bool) or not isinstance(bias, (int, float)) or not math.isfinite(bias) \
                or abs(bias) > 1e6:
            raise ValueError(f"the logit_bias for {key!r:.40} must be a number in [-1e6, 1e6] or false "
                             f"(ban), but is {bias!r:.40}")
        out.append((key, float(bias)))
    return tuple(out)


def resolve_logit_bias(entries, vocab_size: int, encode=None) -> list[tuple[int, float]]:
    """((key, bias), ...) -> [(token id, bias)], false as -inf. A text's bias goes to each of
    its tokens (as llama.cpp's server does); text needs `encode` (the tokenizer's)."""
    out = []
    for key, bias in entries:
        value = float("-inf") if bias is False else bias
        if isinstance(key, str):
            if encode is None:
                raise ValueError(f"logit_bias names the text {key!r:.40}, which needs the model's "
                                 "tokenizer; give token ids here instead")
            out.extend((t, value) for t in encode(key))
        elif key >= vocab_size:
            raise ValueError(f"logit_bias names token id {key}, but the vocabulary has ids 0 to "
                             f"{vocab_size - 1}")
        else:
            out.append((key, value))
    return out

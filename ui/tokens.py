"""How tokens look on the page: labels with visible whitespace, prompt chips, coloured text.

A token is a run of bytes, not always whole characters: GPT-2 splits "é" or an emoji across
tokens. Labels show such partial bytes as \\xNN escapes; the running text decodes bytes
incrementally, so each character appears under the token that completed it.
"""

from __future__ import annotations

import codecs
import html
import math
import unicodedata

# Whitespace and control characters made visible, so " the" and "the" look different.
VISIBLE = {" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍", "\x7f": "␡"}


def visible(text: str) -> str:
    """Spaces, newlines, tabs and other control characters as visible symbols."""
    out = []
    for ch in text:
        if ch in VISIBLE:
            out.append(VISIBLE[ch])
        elif ord(ch) < 0x20:
            out.append(chr(0x2400 + ord(ch)))  # the Control Pictures block: ␀ ␁ ␂ ...
        elif unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") and ch != "\u200d":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def token_bytes(tokenizer, token: int) -> bytes | None:
    """The token's bytes, or None for ids the model has but the tokenizer lacks (padding)."""
    try:
        return tokenizer.decode_single_token_bytes(token)
    except (KeyError, ValueError):
        return None


def token_label(tokenizer, token: int) -> str:
    """A short, unambiguous label: visible whitespace, partial UTF-8 as \\xNN escapes."""
    data = token_bytes(tokenizer, token)
    if data is None:
        return f"⟨unused {token}⟩"
    return visible(data.decode("utf-8", errors="backslashreplace"))


def vocab_labels(tokenizer, vocab_size: int) -> list[str]:
    """Labels for every id the model can output (the chart looks them up by id)."""
    return [token_label(tokenizer, t) for t in range(vocab_size)]


def token_texts(tokenizer, ids: list[int]) -> list[str]:
    """Each token's share of the decoded text: a character split over several tokens
    appears under the token that completes it (earlier parts get "")."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    out = []
    for t in ids:
        data = token_bytes(tokenizer, t)
        out.append(decoder.decode(data if data is not None else b"\xef\xbf\xbd"))
    out[-1:] = [out[-1] + decoder.decode(b"", final=True)] if out else []
    return out


# ---- HTML ----

def prompt_chips_html(tokenizer, ids: list[int], eot: int | None, wrapped: str | None = None,
                      notice: str = "") -> str:
    """The prompt as the model sees it: one chip per token with its id."""
    chips = []
    for i, t in enumerate(ids):
        label = token_label(tokenizer, t)
        special = t == eot or (t < tokenizer.n_vocab and tokenizer.is_special_token(t))
        cls = "dp-chip dp-chip-special" if special else "dp-chip"
        chips.append(f'<span class="{cls}" title="position {i}, id {t}">'
                     f'<span class="dp-chip-text">{html.escape(label)}</span>'
                     f'<span class="dp-chip-id">{t}</span></span>')
    parts = [f'<div class="dp-chips-head">{len(ids)} token{"s" if len(ids) != 1 else ""} '
             f'<span class="dp-muted">␣ = space, ↵ = newline; the small number is the id</span></div>']
    if wrapped is not None:
        parts.append('<div class="dp-wrapped"><div class="dp-muted">The chat template wraps your '
                     'text; the model reads:</div><pre>' + html.escape(wrapped) + '</pre></div>')
    if len(ids) == 1 and ids[0] == eot and not wrapped:
        parts.append('<div class="dp-muted">An empty prompt starts from the end-of-text token, '
                     'as if a new document began.</div>')
    if notice:
        parts.append(f'<div class="dp-note">{html.escape(notice)}</div>')
    parts.append('<div class="dp-chips">' + "".join(chips) + "</div>")
    return '<div class="dp-prompt-tokens">' + "".join(parts) + "</div>"


def _alternatives(tokenizer, record, top: int = 5) -> list:
    """The model's top raw candidates at that step, each with its final probability (None
    when it is outside the final top list the record keeps)."""
    final = dict(record.candidates[list(record.candidates)[-1]])  # the last stage run = final
    return [[token_label(tokenizer, t), round(p, 4), None if t not in final else round(final[t], 4)]
            for t, p in record.candidates["raw"][:top]]


def text_tokens(tokenizer, session, start: int = 0) -> list[dict]:
    """The generated tokens from step `start` on, as the page draws them: each one's share of
    the text (a character split over tokens appears under the one completing it), label,
    probabilities, how it was chosen, and the model's top alternatives for its tooltip."""
    # A character spans at most 4 bytes, so at most 4 tokens: decoding from 4 tokens earlier
    # gives the new tokens their exact text, at a cost that does not grow with the text.
    first = session.prompt_len + start
    lo = max(0, first - 4)
    texts = token_texts(tokenizer, session.ids[lo:])[first - lo:]
    out = []
    for n in range(start, len(session.history)):
        record = session.history[n]
        out.append({"step": n, "token": record.token, "text": texts[n - start],
                    "eot": record.token == session.eot,
                    "label": token_label(tokenizer, record.token), "p": round(record.prob, 4),
                    "raw": round(record.raw_prob, 4), "how": record.how,
                    "u": None if record.u is None else round(record.u, 4),
                    "mu": None if record.mu is None else round(record.mu, 4),
                    **_entropy_fields(record),
                    "alt": _alternatives(tokenizer, record)})
    return out


def _entropy_fields(record) -> dict:
    """The entropy strip's numbers, in bits: h, the entropy of the final distribution the token
    was drawn from (after the settings); hr, the raw model's; sb, the token's surprisal
    −log2 p under the final distribution (None for a picked token the settings had removed)."""
    return {"h": None if record.entropy is None else round(record.entropy, 4),
            "hr": None if record.raw_entropy is None else round(record.raw_entropy, 4),
            "sb": round(-math.log2(record.prob), 4) if record.prob > 0 else None}


def prompt_text(tokenizer, session) -> dict:
    """The prompt as the text box shows it before the generated tokens."""
    prompt_ids = session.ids[:session.prompt_len]
    return {"text": "".join(token_texts(tokenizer, session.ids)[:session.prompt_len]),
            "start_of_text": prompt_ids == [session.eot]}

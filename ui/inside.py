"""Views of the inside of the model, for the page and the API: a text scored the way
pretraining scores it, and the logit lens on the session's next token. (Weight tying and the
training run's memory are in the model panel, ui/model_panel.py.)

    inside = Inside(actions)
    loaded, result = inside.score(user, "To be, or not to be")   # model.inspect.score_text
    loaded, where, result = inside.lens(user, 5)                  # model.inspect.logit_lens

Both validate the way ui/actions.py does: a UserError whose message says what to do. The page
gets one JSON payload (score_page, lens_page), the API plain data (score_result, lens_result).

Pretraining predicts every position of a text and averages the losses; inference reads only
the last position's vector. A scored text shows both: the per-token surprisal whose mean is
the training loss, and the prediction after its last token, which is exactly the
distribution the playground charts with that text as the prompt.
"""

from __future__ import annotations

import html
import itertools
import json

from model.inspect import logit_lens, score_text, token_text

from .actions import Actions, as_user_error, check_integer, check_score_text
from .tokens import token_label, token_texts

TOP_N = 5  # alternatives per scored token, tokens per lens layer (the page's default)
NEXT_N = 10  # the next-token list beside a scored text


def _r(x: float | None, digits: int = 5) -> float | None:
    """A probability or a loss for the page: enough digits to read, a quarter of the bytes."""
    return None if x is None else float(f"{x:.{digits}g}")


def _last_val(metrics: list[dict]) -> dict | None:
    """The training run's last evaluation (metrics.jsonl), if it logged one."""
    rows = [m for m in metrics if isinstance(m, dict) and isinstance(m.get("val_loss"), (int, float))]
    return rows[-1] if rows else None


class Inside:
    def __init__(self, actions: Actions):
        self.actions = actions
        self._counter = itertools.count(1)  # numbers the scorer's payloads (its own seq)

    # ---- the actions ----

    def model_of(self, user):
        """The tab's model (the default before its first load)."""
        name = user.model if user is not None and user.model else self.actions.registry.default
        try:
            return self.actions.registry.get(name)
        except Exception as e:
            raise as_user_error(e) from None

    def score(self, user, text, step=None):
        """Every token of `text` scored by the tab's model, or by its training snapshot at
        `step` (None: the model itself): (loaded, score_text's dict)."""
        text = check_score_text(text, self.actions.limits.score_chars)
        loaded = self.model_of(user)
        if step is not None:
            step = check_integer("training step", step, 0, 10**9)
            try:
                loaded = self.actions.variants.get(f"{loaded.name}@{step}")
            except Exception as e:
                raise as_user_error(e) from None
        try:
            return loaded, score_text(loaded.gpt, loaded.tokenizer, text, top_n=TOP_N)
        except Exception as e:
            raise as_user_error(e) from None

    def lens(self, user, top_n=None):
        """The logit lens after the session's last token, over the window its logits saw:
        (loaded, {"ids", "start", "steps"}, logit_lens's dict)."""
        s = self.actions.session(user)
        limit = min(self.actions.limits.lens_top_n, s.vocab_size)
        top_n = check_integer("top_n", TOP_N if top_n is None else top_n, 1, limit,
                              " (tokens listed per layer)")
        loaded = self.model_of(user)
        with s.lock:  # one consistent view of a session another request may be stepping
            ids, start, steps = list(s.ids), s.window, len(s.history)
        try:
            result = logit_lens(loaded.gpt, ids[start:], top_n)
        except Exception as e:
            raise as_user_error(e) from None
        return loaded, {"ids": ids, "start": start, "steps": steps}, result

    # ---- what the API returns ----

    def score_result(self, loaded, r: dict) -> dict:
        tok = loaded.tokenizer
        tokens = [{"index": t["index"], "id": t["id"], "text": t["text"],
                   "label": token_label(tok, t["id"]), "prob": t["prob"], "rank": t["rank"],
                   "surprisal": t["surprisal_nats"], "surprisal_bits": t["surprisal_bits"],
                   "top": t["top"]} for t in r["tokens"]]
        return {
            "model": loaded.name, "tokens": tokens,
            "note": r["note"] + " surprisal = -ln prob in nats; the mean over the predicted "
                                "tokens is mean_loss_nats_per_token, the training loss.",
            "n_tokens": r["n_tokens"], "window": r["window"], "predicted": r["predicted"],
            "mean_loss_nats_per_token": r["mean_loss_nats"], "total_nats": r["total_nats"],
            "nats_per_char": r["nats_per_char"], "bits_per_byte": r["bits_per_byte"],
            "perplexity": r["perplexity"], "predicted_chars": r["predicted_chars"],
            "next": self._next_top(loaded, r, NEXT_N, text=True),
        }

    def lens_result(self, loaded, where: dict, r: dict) -> dict:
        tok = loaded.tokenizer
        final = r["final_token"]
        return {
            "model": loaded.name, "position": len(where["ids"]), "steps": where["steps"],
            "window": {"start": where["start"] + r["window"]["start"], "count": r["window"]["count"]},
            "final_token": {"id": final, "text": token_text(tok, final), "label": token_label(tok, final)},
            "layers": [{"layer": layer["layer"],
                        "top": [[i, token_text(tok, i), p] for i, p in layer["top"]],
                        "final_rank": layer["final_rank"], "final_prob": layer["final_prob"]}
                       for layer in r["layers"]],
            "note": "One entry per layer: the embedding's output first, the last block last. Each "
                    "is the last position's residual stream after that layer put through the "
                    "final norm and the output head, as if the model ended there; the last entry "
                    "is the model's own output. final_rank: where that layer ranks final_token "
                    "(1 = its top choice).",
        }

    @staticmethod
    def _next_top(loaded, r: dict, n: int, text: bool = False) -> list:
        probs = r["next_logits"].softmax(-1)  # (V,)
        top = probs.topk(min(n, probs.numel()))
        tok = loaded.tokenizer
        return [[i, token_text(tok, i) if text else token_label(tok, i), p]
                for i, p in zip(top.indices.tolist(), top.values.tolist())]

    # ---- what the page draws ----

    def score_page(self, user, text, ack=None, step=None) -> str:
        """The scorer's payload; a failure becomes its message (never raised). step: score with
        that training snapshot of the tab's model; `snapshots` lists the steps it has."""
        try:
            loaded, r = self.score(user, text, step)
            payload = self._score_payload(loaded, r) | {"step": step, "snapshots": self._steps(user)}
        except Exception as e:
            payload = {"error": str(as_user_error(e))}
        return json.dumps({"seq": next(self._counter), "ack": ack} | payload,
                          ensure_ascii=False, allow_nan=False)

    def _steps(self, user) -> list[int]:
        """The training steps the tab's model has snapshots of, for the scorer's slider."""
        try:
            return [e["step"] for e in self.actions.variants.steps(self.model_of(user).name)]
        except (ValueError, OSError):  # a broken index: the slider stays hidden, the score stands
            return []

    def _score_payload(self, loaded, r: dict) -> dict:
        tok = loaded.tokenizer
        ids = [t["id"] for t in r["tokens"]]
        shares = token_texts(tok, ids)  # each token's share of the text (a split character
        tokens = []                     # shows under the token that completes it)
        for t, share in zip(r["tokens"], shares):
            tokens.append({"i": t["index"], "id": t["id"], "text": share, "label": token_label(tok, t["id"]),
                           "p": _r(t["prob"]), "rank": t["rank"], "s": _r(t["surprisal_nats"]),
                           "h": _r(t["entropy_bits"]),
                           "top": None if t["top"] is None else
                           [[i, token_label(tok, i), _r(p)] for i, _, p in t["top"]]})
        return {
            "model": loaded.name, "model_title": loaded.card.get("name") or loaded.name,
            "chat": loaded.chat, "vocab": loaded.gpt.config.vocab_size,
            "block_size": loaded.gpt.config.block_size,
            "n_tokens": r["n_tokens"], "window": r["window"], "predicted": r["predicted"],
            "mean": _r(r["mean_loss_nats"], 6), "total": _r(r["total_nats"], 6),
            "nats_per_char": _r(r["nats_per_char"], 6), "bits_per_byte": _r(r["bits_per_byte"], 6),
            "perplexity": _r(r["perplexity"], 6), "chars": r["predicted_chars"],
            "tokens": tokens,
            "next": [[i, label, _r(p)] for i, label, p in self._next_top(loaded, r, NEXT_N)],
            "explain": explain_score(loaded, r),
        }

    def lens_page(self, user, top_n=None) -> dict:
        """The lens part of a playground payload (raises UserError; the handler reports it)."""
        loaded, where, r = self.lens(user, top_n)
        tok = loaded.tokenizer
        final = r["final_token"]
        gpt, last = loaded.gpt, where["ids"][-1]
        return {
            "model": loaded.name, "position": len(where["ids"]), "steps": where["steps"],
            "context": where["ids"], "window_start": where["start"] + r["window"]["start"],
            "final": {"id": final, "label": token_label(tok, final)},
            "last": {"id": last, "label": token_label(tok, last)},
            "tied": gpt.lm_head.weight is gpt.transformer.wte.weight,
            "layers": [{"layer": layer["layer"], "rank": layer["final_rank"], "p": _r(layer["final_prob"]),
                        "top": [[i, token_label(tok, i), _r(p)] for i, p in layer["top"]]}
                       for layer in r["layers"]],
        }


# ---- the scorer's explanation, in the page's voice, with this text's numbers ----

def _code(label: str) -> str:
    return f"<code>{html.escape(label)}</code>"


def explain_score(loaded, r: dict) -> str:
    tok = loaded.tokenizer
    first = r["tokens"][0]
    parts = []
    if r["window"]["cut"]:
        parts.append(f"The text has {r['n_tokens']:,} tokens and the model's context is "
                     f"{r['window']['block_size']:,}: only the window of its last "
                     f"{r['window']['count']:,} is scored (the earlier ones are shown faded).")
    parts.append(f"The first token, {_code(token_label(tok, first['id']))}, has no prediction: "
                 "nothing before it is in view to predict it from, so it is drawn grey and is not "
                 "part of the mean.")
    if r["predicted"]:
        mean, ppl = r["mean_loss_nats"], r["perplexity"]
        parts.append(
            f"<b>Pretraining predicts every position and averages these losses</b>: here "
            f"{r['predicted']:,} predictions, one forward pass, {r['total_nats']:.1f} nats in all, "
            f"a mean of <b>{mean:.3f} nats per token</b>. That mean is this text's pretraining loss, "
            f"exactly what <code>GPT.forward(ids[:-1], targets=ids[1:])</code> returns for it: the "
            f"number training makes smaller. Per character it is {r['nats_per_char']:.3f} nats; "
            f"the perplexity e<sup>{mean:.2f}</sup> = {ppl:,.1f} says the model was, on average, "
            f"as unsure as a pick among {ppl:,.0f} equally likely tokens.")
        val = _last_val(loaded.metrics)
        if val is not None:
            per_char = (f" ({val['val_nats_per_char']:.3f} per character)"
                        if isinstance(val.get("val_nats_per_char"), (int, float)) else "")
            parts.append(f"For comparison, its loss on held-out text at the end of training was "
                         f"{val['val_loss']:.3f} nats per token{per_char}.")
        scored = [t for t in r["tokens"] if t["prob"] is not None]
        worst = max(scored, key=lambda t: t["surprisal_nats"])
        best = min(scored, key=lambda t: t["surprisal_nats"])
        parts.append(f"Most surprising: {_code(token_label(tok, worst['id']))} (p = {worst['prob']:.2g}, "
                     f"{worst['surprisal_nats']:.2f} nats, rank {worst['rank']:,}); least: "
                     f"{_code(token_label(tok, best['id']))} (p = {best['prob']:.2g}).")
    last = r["tokens"][-1]
    parts.append(f"<b>Inference reads only the last position's vector</b>: the one after "
                 f"{_code(token_label(tok, last['id']))} gives the next-token prediction shown "
                 "beside the text, the only one generation uses. It is exactly the distribution the "
                 "playground charts with this text as the prompt.")
    return " ".join(parts)


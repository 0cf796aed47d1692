"""Watch it learn, and compare two models: what the page's "Training and comparison" section
is sent (static/learn.js, static/compare.js), over the action layer.

    learning = Learning(actions)
    learning.view(user)                       # every snapshot on the tab's text: charts, losses
    learning.generate(user, 40, settings)     # the same Generate from each snapshot, same seed
    learning.compare(user, "ckpt@316", "ckpt")   # ui/actions.py's compare_models, for the page
    learning.compare_at(user, a, b, 12)       # both charts at position 12, same settings and u

Every snapshot reads the tab's context (the window its model sees), and its chart is drawn with
the tab's u, so moving the slider changes only the weights. The charts are sent as logits
(ui/chart.py's payload, once per snapshot): the page redraws them without asking again.
"""

from __future__ import annotations

import itertools
import json
import math

import gradio as gr
import torch

from model.compare import all_logits
from model.decode import generate as generate_tokens
from model.learning import snapshot_views
from model.sampling import SETTINGS, breaker_heads, draw_stage_u, draw_u

from .actions import Actions, UserError, as_user_error, check_integer, check_text, settings_from
from .chart import FULL_LABELS_UP_TO, LABELS_ALWAYS, encode_logits
from .handlers import event_data
from .inside import _r as _round
from .tokens import token_label, token_texts

GENERATE_DEFAULT = 40  # tokens each snapshot writes on the page


def _r(x, digits: int = 5):
    """inside._r, with an infinite KL (a token one model rules out) sent as null."""
    return None if x is not None and not math.isfinite(x) else _round(x, digits)


def chart_payload(loaded, logits: torch.Tensor, context: list[int], seed: int, position: int,
                  prompt: str = "", chat: bool = False, max_steps: int = 0) -> dict:
    """ui/chart.py's payload for logits that no session step made (a snapshot's, a compared
    model's): the same keys, the u of (seed, position), nothing chosen yet."""
    vocab = int(logits.numel())
    breakers = SETTINGS["dry_sequence_breakers"].default
    labels = {}
    if vocab > FULL_LABELS_UP_TO:
        top = torch.topk(logits, min(LABELS_ALWAYS, vocab)).indices.tolist()
        labels = {str(t): token_label(loaded.tokenizer, t) for t in set(top) | set(context[-64:])}
    return {
        "version": 1, "model": loaded.name, "mode": "live", "inspect": None, "vocab": vocab,
        "logits": encode_logits(logits), "context": list(context), "u": draw_u(seed, position),
        "draws": {"xtc": draw_stage_u(seed, position, "xtc")}, "mu": None,
        "dry_heads": {str(k): [list(t) for t in v]
                      for k, v in breaker_heads(loaded.tokenizer, tuple(breakers), vocab).items()},
        "seed": seed, "position": position, "step": 0, "steps": 0, "max_steps": max_steps,
        "eot": loaded.tokenizer.eot_token, "chosen": None, "chosen_settings": None,
        "prompt": prompt, "chat": chat, "labels": labels, "notice": "",
    }


def _curve(metrics: list[dict], key: str) -> list[list[float]]:
    return [[m["step"], m[key]] for m in metrics
            if isinstance(m, dict) and isinstance(m.get("step"), int) and isinstance(m.get(key), (int, float))]


class Learning:
    def __init__(self, actions: Actions):
        self.actions = actions

    def _labels(self, loaded, have) -> str | None:
        """The model's whole label table, unless the page says it has it (or it is large: then
        each chart carries its own top labels)."""
        if isinstance(have, list) and loaded.name in have:
            return None
        return loaded.labels_json if loaded.gpt.config.vocab_size <= 65536 else None

    # ---- watch it learn ----

    def view(self, user, have_labels=None) -> dict:
        """Every snapshot of the tab's model on the tab's context (its window): the charts'
        logits, this text's loss and per-token surprisal at each, the run's curve."""
        s = self.actions.session(user)
        loaded = self.actions.registry.get(user.model)
        try:
            snaps = self.actions.variants.snapshots(user.model)
        except Exception as e:
            raise as_user_error(e) from None
        if not snaps:
            return {"model": user.model, "snapshots": [],
                    "why": f"{loaded.card.get('name') or user.model} has no training snapshots: only "
                           "checkpoints trained here with --snapshots keep them (training/README.md)."}
        with s.lock:
            ids, start, seed, position = list(s.ids), s.window, s.seed, len(s.ids)
            prompt, chat = user.prompt, user.chat
        seen = ids[start:]
        try:
            views = snapshot_views([(e["step"], m.gpt) for e, m in snaps], seen)
        except Exception as e:
            raise as_user_error(e) from None
        base = chart_payload(loaded, views[0]["next_logits"], seen, seed, position, prompt, chat)
        base["model"] = loaded.name  # the labels the page caches are the served model's
        tok = loaded.tokenizer
        vocab = loaded.gpt.config.vocab_size
        return {
            "model": user.model, "title": loaded.card.get("name") or user.model, "vocab": vocab,
            "ln_v": math.log(vocab), "position": position, "steps_taken": len(s.history),
            "snapshots": [{k: e.get(k) for k in ("step", "tokens_seen", "train_loss", "val_loss",
                                                 "val_nats_per_char")} for e, _ in snaps],
            "curve": {"train": _curve(loaded.metrics, "train_loss"), "val": _curve(loaded.metrics, "val_loss")},
            "chart": base,
            "logits": [encode_logits(v["next_logits"]) for v in views],
            "loss": [_r(v["loss"], 6) for v in views],
            "surprisal": [[_r(x, 4) for x in v["surprisal"]] for v in views],
            "tokens": [{"label": token_label(tok, t), "text": share}
                       for t, share in zip(seen, token_texts(tok, seen))],
            "window_start": start,
            "memory_mb": round(self.actions.variants.snapshot_bytes(user.model) / 2**20, 1),
            "_labels_json": self._labels(loaded, have_labels),
        }

    def generate(self, user, n, settings) -> dict:
        """The tab's prompt continued by every snapshot with the tab's seed and settings: the
        same u at every position, so only the weights differ."""
        s = self.actions.session(user)
        n = check_integer("tokens to generate", GENERATE_DEFAULT if n is None else n, 1,
                          self.actions.limits.generate_tokens)
        with s.lock:
            ids, seed = list(s.ids[:s.prompt_len]), s.seed
        if not ids:
            raise UserError("The prompt is empty: type a prompt for the snapshots to continue.")
        try:
            snaps = self.actions.variants.snapshots(user.model)
            rows = []
            for e, m in snaps:
                out = generate_tokens(m.gpt, torch.tensor([ids]), n, settings, seed=seed,
                                      tokenizer=m.tokenizer)[0, len(ids):].tolist()
                rows.append({"step": e["step"], "ids": out, "text": m.tokenizer.decode(out)})
        except Exception as e:
            raise as_user_error(e) from None
        return {"model": user.model, "seed": seed, "n": n, "rows": rows}

    # ---- compare two models ----

    def compare(self, user, a, b, mode=None, have_labels=None) -> dict:
        """Two models on the tab's text (ui/actions.py's compare_models), with both charts at
        the position where they disagree most."""
        la, lb, r = self.actions.compare_models(user, a, b, None, mode)
        out = {k: v for k, v in r.items() if k not in ("positions", "ids", "a", "b")} | {
            "a": self._side(la, a) | r.get("a", {}), "b": self._side(lb, b) | r.get("b", {})}
        if r["mode"] == "tokens":
            tok = la.tokenizer
            out["tokens"] = [{"index": p["index"], "label": token_label(tok, p["id"]),
                              "kl_pq": _r(p["kl_pq"]), "kl_qp": _r(p["kl_qp"]), "agree": p["agree"],
                              "top_a": token_label(tok, p["top_a"]), "top_b": token_label(tok, p["top_b"]),
                              "prob_a": _r(p["prob_a"]), "prob_b": _r(p["prob_b"])} for p in r["positions"]]
            out["first"] = {"index": r["start"], "label": token_label(tok, r["ids"][0])}
            out["text_length"] = len(r["ids"]) + r["start"]
            worst = r["disagree"][0] if r["disagree"] else r["start"] + 1
            out |= self.compare_at(user, a, b, worst, have_labels)
        return out

    @staticmethod
    def _side(loaded, spec) -> dict:
        return {"spec": spec, "name": loaded.card.get("name") or spec, "mode": loaded.card.get("mode", "exact"),
                "vocab": loaded.gpt.config.vocab_size}

    def compare_at(self, user, a, b, index, have_labels=None) -> dict:
        """Both models' charts for the token at `index` of the tab's text: the distributions it
        was predicted from, on the same context and the same u."""
        s = self.actions.session(user)
        a, b = check_text("model_a", a), check_text("model_b", b)
        with s.lock:
            ids, seed, prompt, chat = list(s.ids), s.seed, user.prompt, user.chat
        index = check_integer("position", index, 1, max(1, len(ids) - 1),
                              " (a token of the text after the first)")
        if index >= len(ids):
            raise UserError("The text has changed since the comparison: press Compare again.")
        try:
            models = [self.actions.variants.get(x) for x in (a, b)]
            block = min(m.gpt.config.block_size for m in models)
            context = ids[max(0, index - block):index]
            charts = []
            for m in models:
                logits = all_logits(m.gpt, context)[-1]  # (V,) the prediction of ids[index]
                charts.append(chart_payload(m, logits, context, seed, index, prompt, chat))
        except Exception as e:
            raise as_user_error(e) from None
        labels = self._labels(models[0], have_labels)
        return {"at": index, "actual": token_label(models[0].tokenizer, ids[index]),
                "charts": charts, "label_model": models[0].name, "_labels_json": labels}


def page_json(payload: dict, seq: int, ack) -> str:
    """A section payload as the component's value; the label table (already JSON) spliced in."""
    payload = {"seq": seq, "ack": ack} | dict(payload)
    full = payload.pop("_labels_json", None)
    text = json.dumps(payload, ensure_ascii=False, allow_nan=False)
    return text[:-1] + ', "labels_all": ' + (full or "null") + "}"


class LearnPage:
    """The section's event handlers: the event's data in, one JSON payload out. They never
    raise (a failure is the payload's `error`), and they read the tab's session without
    changing it, so the state is only an input."""

    def __init__(self, actions: Actions):
        self.learning = Learning(actions)
        self._seq = itertools.count(1)

    def _answer(self, evt, kind: str, fn) -> str:
        d = event_data(evt)
        try:
            payload = {"kind": kind} | fn(d)
        except Exception as e:
            payload = {"kind": kind, "error": str(as_user_error(e))}
        return page_json(payload, next(self._seq), d.get("id"))

    def learn(self, user, evt: gr.EventData) -> str:
        return self._answer(evt, "learn", lambda d: self.learning.view(user, d.get("have")))

    def learn_generate(self, user, evt: gr.EventData) -> str:
        return self._answer(evt, "generate", lambda d: self.learning.generate(
            user, d.get("n"), settings_from(d.get("settings"))))

    def compare(self, user, evt: gr.EventData) -> str:
        return self._answer(evt, "compare", lambda d: self.learning.compare(
            user, d.get("a"), d.get("b"), d.get("mode"), d.get("have")))

    def compare_at(self, user, evt: gr.EventData) -> str:
        return self._answer(evt, "compare_at", lambda d: self.learning.compare_at(
            user, d.get("a"), d.get("b"), d.get("index"), d.get("have")))

"""The scripting API (gradio_client): plain data in, plain data out, over the same actions as
the page. Each gradio_client.Client is its own session.

    reset(prompt, seed, model="", chat=False)   distribution(settings, top_n)   step(settings)
    pick(token, settings)   undo()   generate(n, settings) (streams)   export()
    score(text)   lens(top_n)   compare_models(model_a, model_b, text="", mode="auto")

Settings are a JSON object of SamplingSettings fields; missing ones keep their defaults.
A failure is a gradio error whose message names the bad value and what to do.
"""

from __future__ import annotations

import math

import gradio as gr

from .actions import Actions, as_user_error, check_text, settings_from
from .chart import distribution_summary
from .inside import Inside
from .tokens import token_label


def _record(session, record) -> dict:
    out = record.to_dict()
    out["label"] = token_label(session.tokenizer, record.token)
    out["candidates"] = {stage: [[t, p] for t, p in pairs] for stage, pairs in record.candidates.items()}
    return out | {"text": session.text, "generated": session.generated_text,
                  "steps": len(session.history), "notice": session.notice}


def _fail(e: Exception) -> gr.Error:
    return gr.Error(str(as_user_error(e)), print_exception=False)


class API:
    """One method per endpoint; each takes the caller's UserState first."""

    def __init__(self, actions: Actions):
        self.actions = actions
        self.inside = Inside(actions)

    def reset(self, user, prompt, seed, model, chat, request: gr.Request = None):
        a = self.actions
        try:
            user = a.start(user, check_text("model", model) or None, prompt, seed, bool(chat),
                           owner=getattr(request, "session_hash", "") or "")
        except Exception as e:
            raise _fail(e) from None
        s = user.session
        tokens = [{"id": t, "label": token_label(s.tokenizer, t)} for t in s.ids]
        return user, {"model": user.model, "prompt": user.prompt, "model_text": user.model_text(),
                      "prompt_tokens": tokens, "text": s.text, "seed": s.seed, "notice": s.notice,
                      "mode": a.registry.get(user.model).card.get("mode", "exact")}

    def step(self, user, settings):
        try:
            record = self.actions.step(user, settings_from(settings))
        except Exception as e:
            raise _fail(e) from None
        return _record(user.session, record)

    def pick(self, user, token, settings):
        try:
            record = self.actions.pick(user, token, settings_from(settings))
        except Exception as e:
            raise _fail(e) from None
        return _record(user.session, record)

    def undo(self, user):
        try:
            record = self.actions.undo(user)
        except Exception as e:
            raise _fail(e) from None
        s = user.session
        return {"undone": None if record is None else record.to_dict(), "text": s.text,
                "steps": len(s.history)}

    def distribution(self, user, settings, top_n):
        try:
            settings = settings_from(settings)
            pipe, top_n = self.actions.distribution(user, settings, top_n)
        except Exception as e:
            raise _fail(e) from None
        s = user.session
        summary = distribution_summary(pipe, s.tokenizer, settings, s.seed, len(s.ids), top_n)
        return summary | {"position": len(s.ids), "steps": len(s.history)}

    def generate(self, user, n, settings):
        try:
            settings = settings_from(settings)
            for record in self.actions.generate(user, 20 if n is None else n, settings):
                yield _record(user.session, record)
        except Exception as e:
            raise _fail(e) from None

    def export(self, user):
        try:
            return self.actions.export(user)
        except Exception as e:
            raise _fail(e) from None

    def score(self, user, text):
        """Every token of `text` scored by the session's model (the default before a reset):
        probability, rank, surprisal, top alternatives; the mean loss; the next token."""
        try:
            loaded, result = self.inside.score(user, text)
            return self.inside.score_result(loaded, result)
        except Exception as e:
            raise _fail(e) from None

    def lens(self, user, top_n):
        """The logit lens after the session's last token: each layer's top_n, and where it
        ranks the model's final choice."""
        try:
            loaded, where, result = self.inside.lens(user, top_n)
            return self.inside.lens_result(loaded, where, result)
        except Exception as e:
            raise _fail(e) from None

    def compare_models(self, user, model_a, model_b, text, mode):
        """Model A (p) against model B (q) on `text` (empty: the session's text). Models: a
        served one, NAME@STEP (a training snapshot), NAME:fast / NAME:exact. Same vocabulary:
        KL(p‖q), KL(q‖p) and top-1 agreement at every position; different: loss per character."""
        try:
            la, lb, r = self.actions.compare_models(user, model_a, model_b, text, mode)
        except Exception as e:
            raise _fail(e) from None
        sides = {"a": {"spec": model_a, "name": la.card.get("name"), "mode": la.card.get("mode", "exact")},
                 "b": {"spec": model_b, "name": lb.card.get("name"), "mode": lb.card.get("mode", "exact")}}
        if r["mode"] == "tokens":
            r = r | {"positions": [p | {"label": token_label(la.tokenizer, p["id"]),
                                        "kl_pq": _finite(p["kl_pq"]), "kl_qp": _finite(p["kl_qp"])}
                                   for p in r["positions"]],
                     "mean_kl_pq": _finite(r["mean_kl_pq"]), "mean_kl_qp": _finite(r["mean_kl_qp"])}
        return {"models": sides} | {k: v for k, v in r.items() if k != "names"}


def _finite(x: float) -> float | None:
    """JSON has no infinity: an infinite KL (a token one model rules out) is null."""
    return x if math.isfinite(x) else None

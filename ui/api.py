"""The scripting API (gradio_client): plain data in, plain data out, over the same actions as
the page. Each gradio_client.Client is its own session.

    reset(prompt, seed, model="", chat=False)   distribution(settings, top_n)   step(settings)
    pick(token, settings)   undo()   generate(n, settings) (streams)   export()
    score(text)   lens(top_n)   compare_models(model_a, model_b, text="", mode="auto")
    sample(n, settings)   continuations(n, m, settings)   open_continuation(ids, settings)
    beam(n, options)   beam_open(rank, settings)
    blocks(options, settings)           probability blocks; open one with open_continuation
    tree()   goto(node)   load_tree(data)     the tree of generations; data = what export() gave

Settings are a JSON object of SamplingSettings fields; missing ones keep their defaults.
A failure is a gradio error whose message names the bad value and what to do.
"""

from __future__ import annotations

import math

import gradio as gr

from .actions import Actions, as_user_error, check_text, settings_from
from .beam_view import beam_summary
from .blocks_view import blocks_summary
from .chart import distribution_summary
from .inside import Inside
from .tokens import token_label
from .tree_view import tree_payload


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

    # ---- the tree of generations ----

    def tree(self, user):
        """Every node (parent, token, probability, label), the current node and its path."""
        try:
            s = self.actions.session(user)
            with s.lock:
                return tree_payload(s, labels=True)
        except Exception as e:
            raise _fail(e) from None

    def goto(self, user, node):
        """Stand at a node of the tree: the text, the next token's distribution and the
        settings panel follow it."""
        try:
            replayed = self.actions.goto(user, node)
        except Exception as e:
            raise _fail(e) from None
        s = user.session
        return {"node": s.node, "replayed": replayed, "text": s.text, "steps": len(s.history)}

    def load_tree(self, user, data):
        """Open an exported session (export()'s JSON): its prompt, seed and whole tree."""
        try:
            nodes = self.actions.import_tree(user, data)
        except Exception as e:
            raise _fail(e) from None
        s = user.session
        return {"nodes": nodes, "node": s.node, "text": s.text, "steps": len(s.history)}

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

    # ---- many futures ----

    def sample(self, user, n, settings):
        """n draws from the next token's final distribution (nothing committed, no model run):
        the counts [id, label, count, p] most drawn first, TV and KL(drawn ‖ p) in nats."""
        try:
            result = self.actions.sample(user, 100 if n is None else n, settings_from(settings))
        except Exception as e:
            raise _fail(e) from None
        tok = user.session.tokenizer
        counts = [[t, token_label(tok, t), c, p] for (t, c), p in zip(result.pop("counts"), result.pop("probs"))]
        return result | {"counts": counts}

    def continuations(self, user, n, m, settings):
        """n continuations of up to m tokens, each with its seed, tokens, text and
        log-probability (under the settings, and the model's own); nothing committed."""
        try:
            rows = self.actions.continuations(user, 8 if n is None else n, 30 if m is None else m,
                                              settings_from(settings))
        except Exception as e:
            raise _fail(e) from None
        tok = user.session.tokenizer
        return [r | {"text": tok.decode(r["tokens"])} for r in rows]

    def open_continuation(self, user, ids, settings):
        """Make `ids` (every generated token after the prompt, as a continuation's "ids") the
        session's text; the steps it shares with the current text stay as they are."""
        try:
            replayed = self.actions.open_path(user, ids, settings_from(settings))
        except Exception as e:
            raise _fail(e) from None
        s = user.session
        return {"text": s.text, "generated": s.generated_text, "steps": len(s.history),
                "replayed": replayed}
    # ---- beam search ----

    def beam(self, user, n, options):
        """Beam search from the session's text: every step's candidates and the final ranking
        (ui/beam_view.py); options {"num_beams", "length_penalty", "early_stopping"}."""
        try:
            result, settings, base = self.actions.beam(user, 20 if n is None else n, options)
            return beam_summary(user.session, result, base, settings)
        except Exception as e:
            raise _fail(e) from None

    def beam_open(self, user, rank, settings):
        """Make the rank-th sequence (0 = best) of the last /beam the session's text."""
        try:
            replayed = self.actions.open_beam(user, 0 if rank is None else rank, settings_from(settings))
        except Exception as e:
            raise _fail(e) from None
        s = user.session
        return {"replayed": replayed, "text": s.text, "generated": s.generated_text, "steps": len(s.history)}

    # ---- probability blocks ----

    def blocks(self, user, options, settings):
        """The likely futures of the text, breadth-first (ui/blocks_view.py); options {"depth",
        "top", "threshold", "nodes", "from"} ("from": a block's path, to expand below it). A
        block opens with open_continuation(base + its path)."""
        try:
            result, opts, base = self.actions.blocks(user, options, settings_from(settings))
            return blocks_summary(user.session, result, base, opts)
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

"""What the page is sent: one JSON payload per update, the value of the playground component.

    {"seq": 17, "ack": 5,                  numbered; acknowledges the page's action 5
     "chart": {...},                       the next token's (or a past step's) logits: ui/chart.py
     "text": {"mode": "full", "prompt": {...}, "tokens": [...]}   the whole text, or
             {"mode": "append", "from": 40, "tokens": [...]}       just the new tokens
     "chips": "<html>", "prompt_tokens": 6, "prompt": "...", "seed": 0, "model": {...},
     "status": "...", "notice": {"kind": "error", "text": "..."},
     "generating": false, "loading": "...", "evicted": true, "lost": true, "export": {...},
     "tree": {"current": 7, "path": [...], "nodes": [[parent, token, p], ...]}}   ui/tree_view.py

Every key but seq is optional: what is absent did not change. A snapshot (`full`) is the truth;
appends only ever follow on from it.
"""

from __future__ import annotations

import itertools
import json

from .chart import payload_json, step_payload
from .state import UserState
from .tokens import prompt_chips_html, prompt_text, text_tokens, token_label, token_texts
from .tree_view import tree_payload


def _dump(payload: dict, chart_json: str | None = None) -> str:
    text = json.dumps(payload, ensure_ascii=False, allow_nan=False)
    if chart_json is None:
        return text
    return text[:-1] + ', "chart": ' + chart_json + "}"  # the chart is JSON already


class PageView:
    def __init__(self, actions):
        self.actions = actions
        self._counter = itertools.count(1)

    def _next(self, user: UserState | None) -> int:
        # One counter per server: every payload a tab gets is numbered above the last, even
        # across a new UserState (a restart after a failed load).
        seq = next(self._counter)
        if user is not None:
            user.seq = seq
        return seq

    def _chart(self, user, mode="live", inspect=None) -> str:
        loaded = self.actions.registry.get(user.model)
        return payload_json(step_payload(user, loaded, max_steps=self.actions.limits.session_tokens,
                                         mode=mode, inspect=inspect))

    def snapshot(self, user: UserState, ack=None, notice: dict | None = None, **extra) -> str:
        """Everything: the chart, the whole text, the prompt's tokens, the model."""
        s = user.session
        if s is None:
            return self.message(user, ack, notice or {"kind": "error", "text": "No model is loaded."})
        loaded = self.actions.registry.get(user.model)
        wrapped = user.model_text() if user.chat else None
        payload = {
            "seq": self._next(user), "ack": ack,
            "text": {"mode": "full", "prompt": prompt_text(s.tokenizer, s),
                     "tokens": text_tokens(s.tokenizer, s)},
            "chips": prompt_chips_html(s.tokenizer, s.ids[:s.prompt_len], s.eot, wrapped),
            "prompt_tokens": s.prompt_len, "prompt": user.prompt, "seed": s.seed,
            "model": {"name": user.model, "chat": loaded.chat, "chat_on": user.chat,
                      "mode": loaded.card.get("mode", "exact")},
            "status": s.notice, "generating": False,
            "tree": tree_payload(s),  # every branch; the page's tree view (static/tree.js)
        } | extra
        if notice:
            payload["notice"] = notice
        return _dump(payload, self._chart(user))

    def tokens_since(self, user: UserState, start: int, ack=None) -> str:
        """The tokens from step `start` on, while a Generate runs."""
        s = user.session
        return _dump({"seq": self._next(user), "ack": ack, "generating": True,
                      "text": {"mode": "append", "from": start, "tokens": text_tokens(s.tokenizer, s, start)}})

    def inspect(self, user: UserState, step: int, ack=None) -> str:
        return _dump({"seq": self._next(user), "ack": ack}, self._chart(user, "inspect", step))

    def message(self, user: UserState | None, ack=None, notice: dict | None = None, **extra) -> str:
        payload = {"seq": self._next(user), "ack": ack} | extra
        if notice:
            payload["notice"] = notice
        return _dump(payload)

    def error(self, user: UserState | None, text: str, ack=None) -> str:
        """A failure: its message, and the session as it now is (an interrupted Generate may
        have been cut back), or the 'start again' state of a session the server dropped.
        `lost`: this server holds nothing for the tab (it was restarted since the tab opened,
        or the tab's first start failed); a page that had a session rebuilds it from what it
        shows (static/reconnect.js), and otherwise shows the message."""
        notice = {"kind": "error", "text": text}
        if user is None:
            return self.message(user, ack, notice, lost=True, generating=False)
        if user.evicted:
            return self.message(user, ack, notice, evicted=True, generating=False)
        if user.session is not None:
            return self.snapshot(user, ack, notice)
        return self.message(user, ack, notice, generating=False)

    # ---- many futures ----

    def continuation_rows(self, user: UserState, rows: list[dict]) -> list[dict]:
        """What the page lists for each continuation: its seed, each token's text share and
        label, its log-probabilities and the ids that open it."""
        tok = user.session.tokenizer
        out = []
        for r in rows:
            out.append({"seed": r["seed"], "ids": r["ids"], "stopped": r["stopped"],
                        "logprob": round(r["logprob"], 4), "raw_logprob": round(r["raw_logprob"], 4),
                        "texts": token_texts(tok, r["tokens"]), "labels": [token_label(tok, t) for t in r["tokens"]],
                        "p": [round(p, 4) for p in r["probs"]]})
        return out

"""The page's event handlers: an action's data in (the playground component's trigger), one
payload out (ui/views.py). They never raise: a failure becomes a message on the page, with the
session as it now is, so a visitor's bad input can only ever cost them a message.

Each handler takes the tab's UserState and returns it (Gradio keeps it in a gr.State); the
page numbers its actions, and every payload acknowledges the one it answers (`ack`).
"""

from __future__ import annotations

import threading
import time

import gradio as gr

from .actions import Actions, UserError, as_user_error, settings_from
from .beam_view import beam_summary
from .blocks_view import blocks_summary
from .inside import Inside
from .model_panel import model_panel_html
from .state import UserState, display_name
from .views import PageView


def event_data(evt) -> dict:
    data = getattr(evt, "_data", None)
    return data if isinstance(data, dict) else {}


STREAM_EVERY_S = 0.1
# How long an action that interrupts a Generate waits for the stream's last payload (it comes
# within a token's time; the bound only keeps a stuck stream from holding the action).
STREAM_SETTLE_S = 5.0


class PageHandlers:
    def __init__(self, actions: Actions):
        self.actions, self.view = actions, PageView(actions)
        self.inside = Inside(actions)

    def _guard(self, user, ack, fn):
        try:
            return fn()
        except Exception as e:
            return self.view.error(user, str(as_user_error(e)), ack)

    def _halt(self, user: UserState | None) -> None:
        """Stop this tab's Generate, if one runs, and wait until its stream has handed over its
        last payload. The action's own answer is then made, numbered and sent after every
        payload of the stream: the page keeps the newest number and drops older ones, and an
        answer that lost that race to a late stream payload used to be dropped, its
        acknowledgement with it, leaving the page waiting."""
        running = user.streaming if user is not None else None
        if running is not None and not running.is_set():
            self.actions.interrupt(user)
            running.wait(STREAM_SETTLE_S)

    def _loading(self, model: str) -> str:
        first = "" if self.actions.registry.is_loaded(model) else " (the first load of a model can take a minute)"
        return f"Loading {display_name(model)} ...{first}"

    # ---- starting, and switching models ----

    def start(self, user: UserState | None, evt: gr.EventData, request: gr.Request):
        """A tab opens: its link's model, prompt, seed, settings and text (token ids)."""
        d = event_data(evt)
        registry, problems = self.actions.registry, []
        model = d.get("model") or registry.default
        if model not in registry.names:
            problems.append(f"the model {str(model)[:80]!r} is not served here; using {registry.default}")
            model = registry.default
        yield from self._open(user, d, model, request, problems)

    def model(self, user: UserState | None, evt: gr.EventData, request: gr.Request):
        d = event_data(evt)
        yield from self._open(user, d, d.get("name"), request, [], prompt_key="prompt")

    def _open(self, user, d, model, request, problems, prompt_key="prompt"):
        ack = d.get("id")
        registry = self.actions.registry
        if isinstance(model, str) and model in registry.names and not registry.is_loaded(model):
            yield user, self.view.message(user, None, loading=self._loading(model)), gr.skip()
        try:
            if user is not None and user.session is not None:
                self._halt(user)
                self.actions.interrupt(user, d.get("keep"))
            user = self.actions.start(user, model, d.get(prompt_key), d.get("seed"), d.get("chat"),
                                      owner=getattr(request, "session_hash", "") or "")
        except Exception as e:
            yield user, self.view.error(user, str(as_user_error(e)), ack) if user and user.session else \
                self.view.message(user, ack, {"kind": "error", "text": str(as_user_error(e))},
                                  loading="", generating=False), gr.skip()
            return
        if d.get("ids"):
            try:
                self.actions.replay(user, d["ids"], settings_from(d.get("settings")))
            except UserError as e:
                problems.append(f"its text could not be restored ({e})")
        notice = {"kind": "note", "text": "In the link: " + "; ".join(problems) + "."} if problems else None
        loaded = self.actions.registry.get(user.model)
        yield (user, self.view.snapshot(user, ack, notice, loading="", models=self.actions.registry.choices()),
               model_panel_html(loaded))

    # ---- actions that change the session ----

    def _change(self, user, evt, do, interrupts=True):
        """One page action that changes the session: `do(d)` with the event's data (it may
        return a notice), then a snapshot that acknowledges the action. An action that
        interrupts a Generate first waits for its stream to end (_halt)."""
        d = event_data(evt)
        def run():
            if interrupts:
                self._halt(user)
            return self.view.snapshot(user, d.get("id"), do(d))
        return user, self._guard(user, d.get("id"), run)

    def prompt(self, user, evt: gr.EventData):
        """The prompt box or the chat switch changed: start again from it (the seed stays)."""
        def do(d):
            self.actions.reset(user, d.get("text"), None, d.get("chat"), d.get("keep"))
        return self._change(user, evt, do)

    def reset(self, user, evt: gr.EventData):
        def do(d):
            self.actions.reset(user, d.get("prompt"), d.get("seed"), d.get("chat"), d.get("keep"))
        return self._change(user, evt, do)

    def step(self, user, evt: gr.EventData):
        def do(d):
            self.actions.step(user, settings_from(d.get("settings")), d.get("keep"))
        return self._change(user, evt, do)

    def pick(self, user, evt: gr.EventData):
        """A bar was picked: append that token, whatever the filters say."""
        def do(d):
            self.actions.pick(user, d.get("token"), settings_from(d.get("settings")), d.get("keep"))
        return self._change(user, evt, do)

    def undo(self, user, evt: gr.EventData):
        def do(d):
            if not self.actions.undo(user, d.get("keep")):
                return {"kind": "note", "text": "Nothing to undo: only the prompt is left."}
        return self._change(user, evt, do)

    def rewind(self, user, evt: gr.EventData):
        def do(d):
            self.actions.rewind(user, d.get("step"), d.get("keep"))
        return self._change(user, evt, do)

    def stop(self, user, evt: gr.EventData):
        """Stop a Generate where the page stopped showing it."""
        def do(d):
            self.actions.session(user)
            self.actions.interrupt(user, d.get("keep"))
        return self._change(user, evt, do)

    def seed(self, user, evt: gr.EventData):
        """A new seed changes u for the coming positions; the text stays."""
        def do(d):
            self.actions.set_seed(user, d.get("seed"))
        return self._change(user, evt, do, interrupts=False)

    def generate(self, user, evt: gr.EventData):
        """Stream up to n tokens: each payload carries only the new tokens, and the end a full
        snapshot with the chart. The chart is not redrawn in between: drawing the whole
        vocabulary's distribution takes the page longer than a token takes the model, and a
        page busy drawing is late to notice Stop. A small model makes a token every few ms:
        those made within STREAM_EVERY_S of the last payload wait for the next one, so the
        page gets them ten times a second instead of a message per token (measured: a
        message costs the server and the page ~15 ms, and a 200-token Generate took 1.6x the
        engine's time at 30 messages a second, 1.2x at 10)."""
        d = event_data(evt)
        ack = d.get("id")
        done = threading.Event()
        if user is not None:
            user.streaming = done
        try:
            yield from self._stream(user, d, ack)
        finally:
            done.set()  # every payload of this stream has been handed over

    def _stream(self, user, d, ack):
        try:
            settings = settings_from(d.get("settings"))
            session = self.actions.session(user)
            tokens = self.actions.generate(user, d.get("n"), settings)
            sent, last = len(session.history), 0.0
            while True:
                try:
                    next(tokens)
                except StopIteration as end:
                    reason = end.value
                    break
                if user.session is not session:
                    return  # the tab closed and its session was freed: nobody to tell
                if time.monotonic() - last >= STREAM_EVERY_S:
                    yield user, self.view.tokens_since(user, sent, ack)
                    ack, sent, last = None, len(session.history), time.monotonic()
        except Exception as e:
            yield user, self.view.error(user, str(as_user_error(e)), ack)
            return
        if reason == "stopped":  # another action took over; its snapshot is the truth
            if ack is not None:
                yield user, self.view.message(user, ack)
            return
        why = {"end of text": "The model produced end-of-text: generation stopped.",
               "end of turn": "The model ended its turn: generation stopped.",
               "limit": f"This session reached {self.actions.limits.session_tokens} new tokens: "
                        "press Reset (or Undo) to continue.",
               "tree limit": f"This session's tree reached {self.actions.limits.tree_nodes:,} nodes: "
                             "Export it to keep it, then press Reset."}.get(reason)
        yield user, self.view.snapshot(user, ack, {"kind": "note", "text": why} if why else None)

    # ---- the tree of generations ----

    def goto(self, user, evt: gr.EventData):
        """A node of the tree was chosen (click, tap or keys): stand there. The page's settings
        panel follows the node: it gets the settings of the node's step."""
        d = event_data(evt)
        def run():
            self._halt(user)
            self.actions.goto(user, d.get("node"), d.get("keep"))
            s = user.session
            return self.view.snapshot(user, d.get("id"), None,
                                      node_settings=s.history[-1].settings if s.history else None)
        return user, self._guard(user, d.get("id"), run)

    def load_tree(self, user, evt: gr.EventData):
        """A tree file the visitor chose (its parsed JSON): open it, or say why not."""
        def do(d):
            n = self.actions.import_tree(user, d.get("data"))
            return {"kind": "note", "text": f"Opened a tree of {n:,} nodes."}
        return self._change(user, evt, do)

    # ---- looking ----

    def inspect(self, user, evt: gr.EventData):
        """A past token: the distribution it was drawn from."""
        d = event_data(evt)
        def run():
            self.actions.inspect(user, d.get("step"))  # validates it
            return self.view.inspect(user, int(d["step"]), d.get("id"))
        return user, self._guard(user, d.get("id"), run)

    def export(self, user, evt: gr.EventData):
        """The whole history, for the page to save as a file (no file is written here)."""
        d = event_data(evt)
        return user, self._guard(user, d.get("id"),
                                 lambda: self.view.message(user, d.get("id"), export=self.actions.export(user)))

    # ---- inside the model ----

    def lens(self, user, evt: gr.EventData):
        """The logit lens on the next token: each layer's top tokens, for the table below the
        chart (the page marks it stale when the step changes)."""
        d = event_data(evt)
        return user, self._guard(user, d.get("id"), lambda: self.view.message(
            user, d.get("id"), lens=self.inside.lens_page(user, d.get("top_n"))))

    def score(self, user, evt: gr.EventData):
        """The scorer (its own component): a text in, every token's score out. It reads the
        tab's model and changes nothing, so the state is not an output."""
        d = event_data(evt)
        return self.inside.score_page(user, d.get("text"), d.get("id"), d.get("step"))

    # ---- many futures ----

    def sample(self, user, evt: gr.EventData):
        """N draws from the next token's distribution, for the histogram over the bars."""
        d = event_data(evt)
        return user, self._guard(user, d.get("id"), lambda: self.view.message(
            user, d.get("id"), sample=self.actions.sample(user, d.get("n"), settings_from(d.get("settings")))))

    def continuations(self, user, evt: gr.EventData):
        """N continuations of M tokens, listed under the text (nothing committed)."""
        d = event_data(evt)
        def run():
            self._halt(user)
            rows = self.actions.continuations(user, d.get("n"), d.get("m"), settings_from(d.get("settings")))
            return self.view.message(user, d.get("id"), continuations=self.view.continuation_rows(user, rows))
        return user, self._guard(user, d.get("id"), run)

    def open(self, user, evt: gr.EventData):
        """Open a continuation: its tokens become the text (open_path)."""
        def do(d):
            self.actions.open_path(user, d.get("ids"), settings_from(d.get("settings")))
        return self._change(user, evt, do)

    # ---- beam search (static/beam.js) ----

    def beam(self, user, evt: gr.EventData):
        """Beam search from the text as it is: the steps' candidates and the final ranking
        for the panel. The text stays, unless a running Generate is cut back (then a
        snapshot carries the text as it now is)."""
        d = event_data(evt)
        def run():
            generating = user is not None and user.streaming is not None and not user.streaming.is_set()
            self._halt(user)
            result, settings, base = self.actions.beam(user, d.get("n"), d.get("options"), d.get("keep"))
            summary = beam_summary(user.session, result, base, settings)
            if generating:
                return self.view.snapshot(user, d.get("id"), None, beam=summary)
            return self.view.message(user, d.get("id"), beam=summary)
        return user, self._guard(user, d.get("id"), run)

    def beam_open(self, user, evt: gr.EventData):
        """A ranked beam becomes the text (Actions.open_path keeps the steps it shares)."""
        def do(d):
            self.actions.open_beam(user, d.get("rank"), settings_from(d.get("settings")))
        return self._change(user, evt, do)

    # ---- probability blocks (static/blocks.js) ----

    def blocks(self, user, evt: gr.EventData):
        """Expand the text's likely futures into blocks for the panel (nothing committed; a
        block opens through the `open` event, as a continuation does). A running Generate is
        cut back first, and then a snapshot carries the text as it now is."""
        d = event_data(evt)
        def run():
            generating = user is not None and user.streaming is not None and not user.streaming.is_set()
            self._halt(user)
            result, opts, base = self.actions.blocks(user, d.get("options"), settings_from(d.get("settings")),
                                                     d.get("keep"))
            summary = blocks_summary(user.session, result, base, opts)
            if generating:
                return self.view.snapshot(user, d.get("id"), None, blocks=summary)
            return self.view.message(user, d.get("id"), blocks=summary)
        return user, self._guard(user, d.get("id"), run)

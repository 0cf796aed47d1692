"""The action layer: everything a visitor can do to their session, for the page and the API.

The page (ui/views.py) and the API (ui/api.py) call these and differ only in how they present
the result. Every action validates its arguments here, against one Limits, and every failure
a visitor can cause comes out as a UserError whose message says what was wrong and what to
do; nothing a visitor sends can crash the server or touch another visitor's session.

A running Generate is stopped by any other action on the same session (Reset, Step, Undo, a
new prompt, another model, Stop): the action bumps `user.generation`, which the Generate
checks under the session's lock before every token. The page says how many generated tokens
it has shown (`keep`), and the session is cut back to exactly those, so what the visitor saw
when they acted is what the server holds.
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Iterator
from dataclasses import dataclass

from model.compare import MODES as COMPARE_MODES
from model.compare import compare_models
from model.sampling import SEED_MAX, SamplingSettings
from model.session import validate_text

from .state import ModelRegistry, UserState
from .variants import Variants


@dataclass(frozen=True)
class Limits:
    """What one visitor may ask of a shared server."""
    prompt_chars: int = 4000  # longer prompts keep their end
    generate_tokens: int = 200  # tokens per Generate
    session_tokens: int = 1000  # tokens a session may add before a Reset (bounds its memory)
    seed_max: int = SEED_MAX
    top_n: int = 1000  # tokens a /distribution call may list
    # A text to score: refused beyond this (one forward over all of it: ~1,100 tokens and a few
    # seconds of one core for SmolLM2, whose context is 8,192; the Shakespeare GPT sees 256).
    score_chars: int = 4000
    lens_top_n: int = 50  # tokens per layer a logit lens may list

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class UserError(ValueError):
    """A failure the visitor caused; its message is shown to them as it is."""


def as_user_error(e: Exception) -> UserError:
    """Any failure as a message for the visitor. Unexpected ones also leave their traceback
    for whoever runs the server (a room of 50 makes the expected ones by the hundred)."""
    if isinstance(e, UserError):
        return e
    if not isinstance(e, (ValueError, OSError, KeyError, TypeError)):
        traceback.print_exception(e)
        return UserError(f"Something went wrong on the server ({type(e).__name__}: {e}); "
                         "your session is unchanged. Try again, or press Reset.")
    return UserError(str(e) or type(e).__name__)


def check_integer(name: str, value, lo: int, hi: int, what: str = "") -> int:
    """An integer argument: accepts 3 and 3.0, names anything else and the range."""
    bad = (isinstance(value, bool) or not isinstance(value, (int, float))
           or (isinstance(value, float) and not (math.isfinite(value) and value == int(value))))
    if bad or not lo <= int(value) <= hi:
        raise UserError(f"{name} must be a whole number from {lo:,} to {hi:,}{what}, "
                        f"but is {value!r:.80}")
    return int(value)


def check_text(name: str, value) -> str:
    """Text (None = empty). Length is not refused here: the session keeps the end of a long
    prompt and says so."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise UserError(f"{name} must be text, but is {type(value).__name__} {value!r:.80}")
    return value


def check_score_text(value, max_chars: int) -> str:
    """A text to score: not empty, valid Unicode, at most max_chars characters (refused
    rather than cut: a score is for the text the visitor gave)."""
    text = check_text("text", value)
    if not text:
        raise UserError("The text to score is empty: type or paste some text (two tokens or "
                        "more, so that at least one of them is predicted).")
    if len(text) > max_chars:
        raise UserError(f"The text has {len(text):,} characters; at most {max_chars:,} are scored "
                        "at once. Paste a shorter piece (the model sees only its last "
                        "context-length tokens anyway).")
    try:
        return validate_text(text, "The text")
    except ValueError as e:
        raise UserError(f"{e}. Copy it again from its source.") from None


def settings_from(value) -> SamplingSettings:
    """The one decoder of settings from outside: a JSON object of SamplingSettings fields."""
    try:
        return SamplingSettings.from_dict(None if value == "" else value)
    except ValueError as e:
        raise UserError(str(e)) from None


class Actions:
    def __init__(self, registry: ModelRegistry, limits: Limits = Limits(), sessions=None):
        self.registry, self.limits = registry, limits
        self.sessions = sessions  # ui/sessions.py's table: memory budget, closed tabs
        self.variants = Variants(registry)  # snapshots, the other arithmetic: shared, loaded once

    # ---- starting ----

    def start(self, user: UserState | None, model: str | None, prompt, seed, chat=False,
              owner: str = "") -> UserState:
        """Load `model` if needed (None = the user's current one, else the default) and start
        a session on `prompt`. Returns the user's state (a new one if user is None)."""
        prompt = check_text("prompt", prompt)
        seed = self.check_seed(0 if seed is None else seed)
        if model is None or model == "":
            model = user.model if user and user.model else self.registry.default
        model = check_text("model", model)
        try:
            loaded = self.registry.get(model)
        except Exception as e:
            raise as_user_error(e) from None
        user = user or UserState()
        self.interrupt(user)
        user.new_session(loaded, prompt, seed, bool(chat), self.limits.prompt_chars)
        if owner:
            user.owner = owner
        self._touch(user)
        return user

    def reset(self, user, prompt, seed=None, chat=False, keep=None) -> str:
        """Start again from `prompt` (Reset, a new prompt, the chat switch); None keeps the seed."""
        s = self.session(user)
        prompt = check_text("prompt", prompt)
        seed = None if seed is None else self.check_seed(seed)
        self.interrupt(user)
        with s.lock:
            loaded = self.registry.get(user.model)
            notice = user.reset(prompt, bool(chat) and loaded.chat, seed)
        self._touch(user)
        return notice

    def replay(self, user, ids, settings: SamplingSettings) -> int:
        """Commit `ids` (a shared link's text) one by one: each is recorded as sampled where
        the settings and the seed's u give exactly that token, else as picked. Returns how
        many were committed; ids the vocabulary lacks are refused."""
        s = self.session(user)
        if not isinstance(ids, list):
            raise UserError(f"token ids must be a list of integers, but are {type(ids).__name__}")
        ids = [check_integer("token id", t, 0, s.vocab_size - 1) for t in ids]
        self._check_room(s, len(ids))
        with s.lock:
            self._refused(s.replay_many, ids, settings)  # the model runs over them together
        self._touch(user)
        return len(ids)

    def open_path(self, user, ids, settings: SamplingSettings) -> int:
        """Make `ids` (the generated tokens after the prompt: a continuation, a beam, a node
        of the tree) the session's text. The steps it shares with the current text are kept
        as they are (no recompute); the rest are replayed as in replay(). Returns how many
        tokens were replayed."""
        s = self.session(user)
        if not isinstance(ids, list):
            raise UserError(f"token ids must be a list of integers, but are {type(ids).__name__}")
        ids = [check_integer("token id", t, 0, s.vocab_size - 1) for t in ids]
        if len(ids) > self.limits.session_tokens:
            raise UserError(f"This path holds {len(ids)} new tokens; the limit is "
                            f"{self.limits.session_tokens}.")
        self.interrupt(user)
        with s.lock:
            now = [r.token for r in s.history]
            shared = next((i for i, (a, b) in enumerate(zip(now, ids)) if a != b), min(len(now), len(ids)))
            s.rewind(shared)
            self._refused(s.replay_many, ids[shared:], settings)
        self._touch(user)
        return len(ids) - shared

    # ---- one token at a time ----

    def step(self, user, settings: SamplingSettings, keep=None):
        s = self.session(user)
        self.interrupt(user, keep)
        with s.lock:
            self._check_room(s)
            record = self._refused(s.step, settings)
        self._touch(user)
        return record

    def pick(self, user, token, settings: SamplingSettings, keep=None):
        """Append a token the user chose, whatever the filters say."""
        s = self.session(user)
        token = check_integer("token", token, 0, s.vocab_size - 1, " (a token id)")
        self.interrupt(user, keep)
        with s.lock:
            self._check_room(s)
            record = self._refused(s.pick, token, settings)
        self._touch(user)
        return record

    def undo(self, user, keep=None):
        """Remove the last step; None when only the prompt is left."""
        s = self.session(user)
        self.interrupt(user, keep)
        record = s.undo()
        self._touch(user)
        return record

    def rewind(self, user, steps, keep=None) -> None:
        """Keep the first `steps` steps (0 = back to the prompt)."""
        s = self.session(user)
        self.interrupt(user, keep)
        with s.lock:
            s.rewind(check_integer("step", steps, 0, len(s.history)))
        self._touch(user)

    def generate(self, user, n, settings: SamplingSettings) -> Iterator:
        """Step up to n times, yielding each record; returns why it ended ("" = all n), for
        `reason = yield from actions.generate(...)`. Another action on the session stops it
        before its next token."""
        s = self.session(user)
        n = check_integer("tokens to generate", n, 1, self.limits.generate_tokens)
        self.interrupt(user)
        self._check_room(s)
        mine, stops = user.generation, user.stop_tokens()
        for _ in range(n):
            with s.lock:
                if user.generation != mine or user.session is not s:
                    return "stopped"
                if len(s.history) >= self.limits.session_tokens:
                    return "limit"
                try:
                    record = s.step(settings)
                except Exception as e:
                    raise as_user_error(e) from None
            self._touch(user)
            yield record
            if record.token in stops:
                return "end of text" if record.token == s.eot else "end of turn"
        return ""

    def interrupt(self, user: UserState, keep=None) -> None:
        """Stop a running Generate on this session, and cut the session back to the `keep`
        generated tokens the page has shown (None: keep them all)."""
        user.generation += 1
        s = user.session
        if s is None or keep is None:
            return
        keep = check_integer("tokens shown", keep, 0, self.limits.session_tokens)
        with s.lock:  # waits for a token being made right now
            if keep < len(s.history):
                s.rewind(keep)

    # ---- settings that are not sampling settings ----

    def set_seed(self, user, seed) -> None:
        """A new seed changes u for the coming positions; the tokens so far stay."""
        self.session(user).set_seed(self.check_seed(seed))

    def check_seed(self, seed) -> int:
        return check_integer("seed", seed, 0, self.limits.seed_max)

    # ---- looking ----

    def distribution(self, user, settings: SamplingSettings, top_n=None):
        s = self.session(user)
        top_n = check_integer("top_n", 20 if top_n is None else top_n, 1, self.limits.top_n)
        return self._refused(s.distribution, settings), top_n

    def inspect(self, user, step):
        """The record of a past step, with the logits it was drawn from."""
        s = self.session(user)
        if not s.history:
            raise UserError("There are no steps to look at yet: Step or Generate first.")
        step = check_integer("step", step, 0, len(s.history) - 1)
        record = s.history[step]
        if record.logits is None:
            raise UserError(f"Step {step + 1} is too far back to show (older steps drop their "
                            "logits); rewinding there still works.")
        return record

    def export(self, user) -> dict:
        s = self.session(user)
        return s.export() | {"model": user.model, "chat": user.chat}

    # ---- two models ----

    def compare_models(self, user, a, b, text=None, mode="auto"):
        """Model `a` (p) against model `b` (q), each a served model, NAME@STEP (a training
        snapshot) or NAME:fast / NAME:exact, on `text`, or on the session's text when text is
        None or empty. Returns (loaded_a, loaded_b, model.compare.compare_models' dict)."""
        a, b = (check_text(name, x) for name, x in (("model_a", a), ("model_b", b)))
        if not a or not b:
            raise UserError("Name both models to compare: model_a and model_b (a served model, "
                            "NAME@STEP for a training snapshot, NAME:fast for fast mode).")
        mode = "auto" if mode is None or mode == "" else mode
        if mode not in COMPARE_MODES:
            raise UserError(f"mode must be one of {', '.join(COMPARE_MODES)}, but is {mode!r:.80}")
        ids = None
        if text is None or text == "":
            s = self.session(user)
            with s.lock:
                ids, text = list(s.ids), s.text
            if not text:
                raise UserError("The session's text is empty: type a prompt (or give a text) to compare on.")
        else:
            text = check_score_text(text, self.limits.score_chars)
        try:
            models = [self.variants.get(x) for x in (a, b)]
            result = compare_models(models[0].gpt, models[0].tokenizer, models[1].gpt, models[1].tokenizer,
                                    text, mode=mode, names=(a, b), ids=ids)
        except Exception as e:
            raise as_user_error(e) from None
        if user is not None:
            self._touch(user)
        return models[0], models[1], result

    # ---- shared checks ----

    def session(self, user: UserState | None):
        if user is not None and user.evicted:
            raise UserError("This tab's session was closed to keep the server's memory for "
                            "everyone (the least recently used go first). Press Reset to "
                            "start again: your prompt and settings are still here.")
        if user is None or user.session is None:
            raise UserError("No model is loaded in this tab yet: choose one in the Model menu, "
                            "or wait for the loading message to clear.")
        return user.session

    def _check_room(self, s, n: int = 1) -> None:
        if len(s.history) + n > self.limits.session_tokens:
            raise UserError(f"This session holds {len(s.history)} new tokens; the limit is "
                            f"{self.limits.session_tokens}. Press Reset (or Undo) to continue.")

    @staticmethod
    def _refused(run, *args):
        """run(*args), a session's call that runs the pipeline: settings that leave no
        distribution (an n-gram ban on the whole vocabulary, values so extreme that the logits
        overflow, a chain that empties) are refused with the message that names them."""
        try:
            return run(*args)
        except ValueError as e:
            raise UserError(str(e)) from None

    def _touch(self, user: UserState) -> None:
        if self.sessions is not None:
            self.sessions.touch(user)

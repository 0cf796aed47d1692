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

import torch

from model import blocks as block_futures
from model import futures
from model.beam import EARLY_STOPPING, MAX_BEAMS, beam_search
from model.compare import MODES as COMPARE_MODES
from model.compare import compare_models
from model.sampling import SEED_MAX, SamplingSettings
from model.session import validate_text
from model.tree_io import tree_from_dict

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
    # Many futures: draws from one step (no model run), and whole continuations, each row
    # holding its own copy of the KV cache (bounded by continuation_cache_bytes together).
    sample_draws: int = 10_000
    continuations: int = 16
    continuation_tokens: int = 200
    continuation_cache_bytes: int = 512 * 2**20
    # Beam search: beams, new tokens per search, and |length_penalty|. 16 beams x 100 tokens
    # are 100 forwards of 16 rows (seconds on SmolLM2), and 3,200 candidates for the page.
    beams: int = MAX_BEAMS
    beam_tokens: int = 100
    length_penalty: float = 10.0
    # The tree of generations: nodes a session's tree may hold (each keeps a step's record,
    # about 3 KB; branches' keys and values have their own allowance, model/branch_cache.py).
    tree_nodes: int = 4000
    # Probability blocks: levels deep (a level is one batched forward of every node on it),
    # children shown per node, nodes per expansion (each runs the sampling pipeline over the
    # vocabulary once), and the smallest path probability one may ask to see.
    block_depth: int = 6
    block_children: int = 10
    block_nodes: int = 500
    block_threshold: float = 1e-4
    block_path: int = 60  # tokens of a block's path to expand from (each a one-row forward)

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


def check_number(name: str, value, lo: float, hi: float) -> float:
    """A finite number in [lo, hi]; names anything else and the range."""
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or not lo <= value <= hi):
        raise UserError(f"{name} must be a number from {lo:g} to {hi:g}, but is {value!r:.80}")
    return float(value)


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


BEAM_DEFAULTS = {"num_beams": 4, "length_penalty": 1.0, "early_stopping": False}


def beam_options(value, limits: Limits) -> dict:
    """A beam search's options from outside: a JSON object of BEAM_DEFAULTS' keys (missing
    ones take the default), each checked against the limits."""
    if value is None or value == "":
        value = {}
    if not isinstance(value, dict):
        raise UserError(f"beam options must be a JSON object such as {BEAM_DEFAULTS}, but are "
                        f"{type(value).__name__} {value!r:.80}")
    unknown = sorted(str(k) for k in value if k not in BEAM_DEFAULTS)
    if unknown:
        raise UserError(f"unknown beam option {unknown[0][:80]!r}: the options are {', '.join(BEAM_DEFAULTS)}")
    v = BEAM_DEFAULTS | value
    early = v["early_stopping"]
    if isinstance(early, str) and early.lower() in ("true", "false", "never"):
        early = {"true": True, "false": False}.get(early.lower(), "never")
    if not any(early is e for e in EARLY_STOPPING):
        raise UserError(f"early_stopping must be true, false or \"never\", but is {early!r:.80}")
    return {"num_beams": check_integer("num_beams", v["num_beams"], 1, limits.beams),
            "length_penalty": check_number("length_penalty", v["length_penalty"], -limits.length_penalty,
                                           limits.length_penalty),
            "early_stopping": early}


# "from": the path of a block to expand from (empty: the text itself).
BLOCK_DEFAULTS = dict(block_futures.DEFAULTS) | {"from": []}


def block_options(value, limits: Limits) -> dict:
    """An expansion's options from outside: a JSON object of BLOCK_DEFAULTS' keys (missing
    ones take the default), each checked against the limits."""
    if value is None or value == "":
        value = {}
    if not isinstance(value, dict):
        raise UserError(f"block options must be a JSON object such as {BLOCK_DEFAULTS}, but are "
                        f"{type(value).__name__} {value!r:.80}")
    unknown = sorted(str(k) for k in value if k not in BLOCK_DEFAULTS)
    if unknown:
        raise UserError(f"unknown block option {unknown[0][:80]!r}: the options are {', '.join(BLOCK_DEFAULTS)}")
    v = BLOCK_DEFAULTS | value
    path = v["from"]
    if not isinstance(path, list) or len(path) > limits.block_path:
        raise UserError(f"from must be a block's path, a list of at most {limits.block_path} token ids, but is "
                        f"{type(path).__name__} {path!r:.80}; to go further, open the block as text and "
                        "expand from there")
    return {"from": path,
            "depth": check_integer("depth", v["depth"], 1, limits.block_depth, " (levels of blocks)"),
            "top": check_integer("top", v["top"], 1, limits.block_children, " (children per block)"),
            "threshold": check_number("threshold", v["threshold"], limits.block_threshold, 1.0),
            "nodes": check_integer("nodes", v["nodes"], 1, limits.block_nodes, " (blocks per expansion)")}


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
            # The nodes of the tree it already has (on any branch) are stood on as they are;
            # the current path stays in the tree as a branch.
            found = s.tree.find(ids)
            self._check_nodes(s, len(ids) - len(found))
            s.goto(found[-1] if found else 0)
            self._refused(s.replay_many, ids[len(found):], settings)
        self._touch(user)
        return len(ids) - len(found)

    def goto(self, user, node, keep=None) -> int:
        """Stand at a node of the tree (0 = the prompt). Returns how many steps were replayed."""
        s = self.session(user)
        self.interrupt(user, keep)
        with s.lock:
            node = check_integer("node", node, 0, len(s.tree) - 1, " (a node of this session's tree)")
            replayed = s.goto(node)
        self._touch(user)
        return replayed

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
                if len(s.tree) >= self.limits.tree_nodes:
                    return "tree limit"
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
            s.cut(keep)  # the tokens made after those shown leave the tree too

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
        with s.lock:
            return s.export() | {"model": user.model, "chat": user.chat, "typed_prompt": user.prompt,
                                 "vocab_size": s.vocab_size}

    def import_tree(self, user, data) -> int:
        """Replace the session with an exported one (its prompt, seed and tree), standing at
        the node it stood at. A file made for another model, or malformed, is refused with
        the reason, and the session is left as it was. Returns the number of nodes."""
        s = self.session(user)
        if not isinstance(data, dict):
            raise UserError(f"A tree file is a JSON object (what Export saves), but this is "
                            f"{type(data).__name__}.")
        if data.get("model") != user.model or data.get("vocab_size") != s.vocab_size:
            raise UserError(f"This tree was made with the model {str(data.get('model'))!r:.120} "
                            f"(vocabulary {data.get('vocab_size')!r:.20}); this tab runs "
                            f"{user.model!r} (vocabulary {s.vocab_size}). Choose that model first.")
        prompt_ids = data.get("prompt_ids")
        if (not isinstance(prompt_ids, list) or not 1 <= len(prompt_ids) <= s.block_size):
            raise UserError(f"The tree's prompt_ids must be a list of 1 to {s.block_size} token ids.")
        prompt_ids = [check_integer("prompt token id", t, 0, s.vocab_size - 1) for t in prompt_ids]
        seed = self.check_seed(data.get("seed"))
        try:
            tree, current = tree_from_dict(
                data.get("tree"), vocab_size=s.vocab_size, block_size=s.block_size,
                prompt_len=len(prompt_ids), max_nodes=self.limits.tree_nodes,
                max_depth=self.limits.session_tokens, piece=s.piece, measure=s.record_bytes)
        except ValueError as e:
            raise UserError(f"This tree file cannot be opened: {e}. The current tree is unchanged.") from None
        typed = data.get("typed_prompt")
        self.interrupt(user)
        with s.lock:
            user.prompt = typed if isinstance(typed, str) else s.tokenizer.decode(prompt_ids)
            user.chat = bool(data.get("chat")) and self.registry.get(user.model).chat
            s.set_seed(seed)
            s.adopt(prompt_ids, tree, current)
        self._touch(user)
        return len(tree)

    # ---- many futures ----

    def sample(self, user, n, settings: SamplingSettings) -> dict:
        """n draws from the next token's final distribution under `settings` (model/futures.py:
        draw i uses the i-th number of the stream for (seed, position); draw 0 is Step's own).
        Nothing is committed and the model does not run. Returns the counts, most drawn first,
        and the total-variation distance and KL(drawn ‖ p) in nats."""
        s = self.session(user)
        n = check_integer("N (draws)", n, 1, self.limits.sample_draws)
        with s.lock:
            pipe = self._refused(s.distribution, settings)
            position = len(s.ids)
            draws = futures.draw_many(pipe, settings, s.seed, position, n)
            counts, tv, kl = futures.histogram(draws, pipe.probs)
        drawn = counts.nonzero().flatten()
        order = drawn[torch.sort(counts[drawn], descending=True, stable=True).indices]
        return {"n": n, "position": position, "seed": s.seed, "steps": len(s.history),
                "counts": [[t, c] for t, c in zip(order.tolist(), counts[order].tolist())],
                "probs": pipe.probs[order].tolist(), "tv": tv, "kl": kl, "first": int(draws[0])}

    def continuations(self, user, n, m, settings: SamplingSettings) -> list:
        """n continuations of up to m tokens from the current text, in one batched forward per
        position (model/futures.py: continuation j is what Generate writes with seed + j).
        Nothing is committed; open one with open_path."""
        s = self.session(user)
        lim = self.limits
        n = check_integer("continuations", n, 1, lim.continuations)
        m = check_integer("tokens per continuation", m, 1, lim.continuation_tokens)
        self.interrupt(user)
        with s.lock:
            room = futures.room(s)
            if m > room:
                raise UserError(f"The model's context has room for {room} more tokens here, not "
                                f"{m}: ask for at most {room} tokens per continuation (or Undo some).")
            if len(s.history) + m > lim.session_tokens:
                raise UserError(f"This session holds {len(s.history)} new tokens; {m} more would pass "
                                f"the limit of {lim.session_tokens}. Ask for fewer, or press Reset.")
            need = n * (s.cache.pos + m) * futures.cache_bytes_per_position(s.gpt)
            if need > lim.continuation_cache_bytes:
                raise UserError(f"{n} continuations of {m} tokens after {s.cache.pos} positions would "
                                f"hold {need / 2**20:,.0f} MiB of KV cache; the limit is "
                                f"{lim.continuation_cache_bytes / 2**20:,.0f} MiB. Ask for fewer.")
            try:
                rows = futures.continue_many(s, settings, n, m, user.stop_tokens())
            except ValueError as e:
                raise UserError(str(e)) from None
            generated = [r.token for r in s.history]
        self._touch(user)
        return [{"seed": r.seed, "tokens": r.tokens, "ids": generated + r.tokens, "probs": r.probs,
                 "logprob": r.logprob, "raw_logprob": r.raw_logprob, "stopped": r.stopped}
                for r in rows]
    # ---- beam search ----

    def beam(self, user, n, options, keep=None):
        """Beam search from the session's text as it is (the prompt and the tokens so far),
        as transformers' generate(num_beams=...) does; the text is not changed. options: a
        JSON object of BEAM_DEFAULTS' keys. The result is kept on the user, so that open_beam
        can make one of its sequences the text. Returns (result, settings, the generated
        tokens it continues)."""
        s = self.session(user)
        lim = self.limits
        n = check_integer("tokens to search", n, 1, min(lim.beam_tokens, s.block_size - 1))
        opts = beam_options(options, lim)
        self.interrupt(user, keep)
        with s.lock:
            base, ids = [r.token for r in s.history], list(s.ids)
        # One end token, as transformers' eos_token_id: the end of the turn in chat mode.
        eos = next(iter(user.stop_tokens() - {s.eot}), s.eot)
        result = self._refused(beam_search, s.gpt, ids, n, opts["num_beams"], opts["length_penalty"],
                               opts["early_stopping"], eos, True, lim.beams)
        # What the search continued, not the session itself (a freed session must not be kept).
        user.beams = (user.model, ids[:s.prompt_len], base, result)
        self._touch(user)
        return result, opts | {"tokens": n}, base

    def open_beam(self, user, rank, settings: SamplingSettings) -> int:
        """Make the rank-th sequence (0 = best) of this session's last beam search the text,
        through open_path. Returns how many tokens were replayed."""
        s = self.session(user)
        if user.beams is None:
            raise UserError("There is no beam search to open in this session: run Beam search first.")
        model, prompt, base, result = user.beams
        if model != user.model or prompt != s.ids[:s.prompt_len]:
            raise UserError("The prompt or the model changed since this beam search: run Beam search again.")
        rank = check_integer("rank", rank, 0, len(result.ranking) - 1, " (0 = the best sequence)")
        return self.open_path(user, base + result.ranking[rank].tokens, settings)

    # ---- probability blocks ----

    def blocks(self, user, options, settings: SamplingSettings, keep=None):
        """The likely futures of the text as it is, or of the block whose path is options'
        "from", breadth-first (model/blocks.py): each block's probability is the final
        distribution's under `settings`, as Step draws.
        Nothing is committed; a block opens with open_path(generated + its path). Returns
        (the expansion, the options, the generated tokens it continues)."""
        s = self.session(user)
        opts = block_options(options, self.limits)
        opts["from"] = [check_integer("token id", t, 0, s.vocab_size - 1, " (of the block's path)")
                        for t in opts["from"]]
        self.interrupt(user, keep)
        with s.lock:
            room = block_futures.room(s) - len(opts["from"])
            if room < 0:
                raise UserError(f"The block's path holds {len(opts['from'])} tokens; the model's context has "
                                f"room for {room + len(opts['from'])} more here. Expand from the text instead.")
            if opts["depth"] - 1 > room:
                raise UserError(f"The model's context has room for {room} more tokens here: ask for a "
                                f"depth of at most {room + 1}, not {opts['depth']} (or Undo some).")
            result = self._refused(block_futures.expand, s, settings, opts["depth"], opts["top"],
                                   opts["threshold"], opts["nodes"], user.stop_tokens(), opts["from"])
            base = [r.token for r in s.history]
        self._touch(user)
        return result, opts, base

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
        self._check_nodes(s, n)

    def _check_nodes(self, s, n: int) -> None:
        if len(s.tree) + n > self.limits.tree_nodes:
            raise UserError(f"This session's tree holds {len(s.tree):,} nodes; the limit is "
                            f"{self.limits.tree_nodes:,}. Export it to keep it, then press Reset "
                            "to start a new tree.")

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

"""A decoding session: one user's prompt, tokens, KV cache and history of steps.

It knows nothing of any user interface. Every operation is a method; the app, the API and the
tests drive it the same way:

    s = DecodingSession(gpt, tokenizer, seed=0)
    s.reset("To be, or not")
    s.distribution(settings)        # the pipeline for the next token, nothing committed
    s.step(settings)                # sample (or greedy at T = 0) and append
    s.pick(token_id)                # append a token the user chose
    s.undo(); s.rewind(n)           # back along the path (the steps stay in s.tree)
    s.goto(node_id)                 # any node of the tree: rewind to the shared steps, replay
    for rec in s.generate(20, settings): ...
    s.memory_bytes()                # what the session holds, for a server's memory budget

Every step made is a node of `tree` (model/tree.py): Undo, Rewind and a new token after them
leave the old path as a branch, and goto() moves to any node, its records restored as made.

Same seed + same settings + same prompt = same text: the uniform number for each position is
a function of (seed, position) only (see sampling.draw_u).

Sessions of one model may share a `batching.Batcher`: then each one-token step goes through
it, and sessions stepping at the same moment share one forward pass (the prompt's prefill
stays per session). They may share a `prompt_cache.PromptCache` too: a session starting from
a prompt another one started from recently copies its prefill instead of running the model.
Tokens and logits are the same either way.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from .branch_cache import BRANCH_BYTES, Branch, BranchCache
from .decode_rows import decode_rows, exact_group
from .kept import top_candidates
from .kv_cache import context_window
from .sampling import Pipeline, SamplingSettings, check_seed, choose, draw_stage_u, draw_u, entropy_bits, run_pipeline
from .tokenizer import validate_ids
from .tree import ROOT, Tree
from .tree_io import tree_to_dict

TOP_CANDIDATES = 10  # per stage, kept in each step's record
# The newest steps keep their raw logits, so that undo needs no model run: as many as fit in
# keep_logits_bytes (a SmolLM2 step's logits are 49,152 floats, 192 KiB: 16 MiB keeps 85),
# and never more than KEEP_LOGITS_STEPS (a small vocabulary would otherwise keep thousands).
# Undoing past them recomputes once, with a prefill.
KEEP_LOGITS_BYTES = 16 * 2**20
KEEP_LOGITS_STEPS = 256
# replay_many runs the model over at most this many tokens at once: their logits (SmolLM2:
# 192 KiB a token) are held until their steps are recorded.
REPLAY_CHUNK = 128
_INT_BYTES = sys.getsizeof(2**40)  # a Python int holding a token id, counted generously


@dataclass
class StepRecord:
    position: int  # index of the chosen token in the session's token list
    token: int
    piece: str  # the token's text (lossy where a token holds part of a UTF-8 character)
    how: str  # "sampled", "greedy" or "picked"
    u: float | None  # the uniform number drawn (None for greedy and picked tokens)
    prob: float  # the chosen token's final probability
    raw_prob: float  # ... and its probability under the raw model (T = 1, no filters)
    settings: dict
    # stage -> its TOP_CANDIDATES most likely tokens [(token, prob)] after it: probability
    # descending, ties by lower id, none of probability 0 (model.kept.top_candidates)
    candidates: dict[str, list[tuple[int, float]]]
    mu: float | None = None  # mirostat's μ for this step's cut (None: mirostat off)
    # Entropy in bits of the final distribution the token was drawn from (after the settings:
    # what typical-p and mirostat compare a token's surprisal with), and of the raw one.
    entropy: float | None = None
    raw_entropy: float | None = None
    draws: dict = field(default_factory=dict)  # the random stages' own u (XTC's), by stage
    logits: torch.Tensor | None = field(default=None, repr=False)  # (V,) the step's raw logits

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "logits"}


def validate_text(text, name: str = "prompt") -> str:
    """Text as str (UTF-8 bytes decoded), refusing what cannot be encoded (lone surrogates)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{name} is not valid UTF-8 ({e})") from None
    if not isinstance(text, str):
        raise ValueError(f"{name} must be text, but is {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{name} is not valid Unicode: {e.reason} at position {e.start} "
                         f"({text[e.start:e.end]!r})") from None
    return text


def _plain_bytes(obj) -> int:
    """sys.getsizeof of plain data and of everything inside it (dicts, lists, tuples)."""
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(_plain_bytes(k) + _plain_bytes(v) for k, v in obj.items())
    elif isinstance(obj, (list, tuple)):
        size += sum(_plain_bytes(x) for x in obj)
    return size


# One (token, probability) pair of a record's candidates: the tuple, its int and its float.
_PAIR_BYTES = sys.getsizeof((0, 0.0)) + sys.getsizeof(2**20) + sys.getsizeof(0.5)


def _record_bytes(record: StepRecord, settings_bytes: int) -> int:
    """_plain_bytes of a record's fields, without walking every pair: the settings are
    measured once per settings (settings_bytes), and the candidates' pairs all count alike."""
    fields = record.to_dict()
    candidates = fields.pop("candidates")
    fields.pop("settings")
    size = sys.getsizeof(record) + _plain_bytes(fields) + settings_bytes
    size += sys.getsizeof("candidates") + sys.getsizeof("settings") + sys.getsizeof(candidates)
    size += sum(sys.getsizeof(name) + sys.getsizeof(pairs) + len(pairs) * _PAIR_BYTES
                for name, pairs in candidates.items())
    return size


def _storage_bytes(tensors, seen: set[int]) -> int:
    """Bytes of the storages behind `tensors`, each storage counted once across calls."""
    total = 0
    for t in tensors:
        storage = t.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += storage.nbytes()
    return total


class DecodingSession:
    def __init__(self, gpt, tokenizer, seed: int = 0, max_prompt_chars: int = 1_000_000,
                 batcher=None, keep_logits_bytes: int = KEEP_LOGITS_BYTES, branch_bytes: int = BRANCH_BYTES,
                 prompt: str = "", prompt_cache=None):
        if batcher is not None and batcher.gpt is not gpt:
            raise ValueError("the batcher serves another model; give each loaded model its own "
                             "Batcher(gpt) and pass it to that model's sessions")
        if (isinstance(keep_logits_bytes, bool) or not isinstance(keep_logits_bytes, int)
                or keep_logits_bytes < 0):
            raise ValueError(f"keep_logits_bytes must be a whole number of bytes >= 0, but is "
                             f"{keep_logits_bytes!r}")
        if prompt_cache is not None:
            prompt_cache.serve(gpt)
        self.gpt, self.tokenizer, self.batcher = gpt, tokenizer, batcher
        self.prompt_cache = prompt_cache
        self.keep_logits_bytes, self.branch_bytes = keep_logits_bytes, branch_bytes
        self.vocab_size = gpt.config.vocab_size
        self.block_size = gpt.config.block_size
        self.max_prompt_chars = max_prompt_chars
        self.eot = gpt.config.eot_token if gpt.config.eot_token is not None else tokenizer.eot_token
        self._lock = threading.RLock()
        self.seed = check_seed(seed)
        self._measured_settings = (None, 0)  # the last settings a record held, and their bytes
        self.notice = ""
        self.reset(prompt)  # one prefill: a server starting a visitor's session passes the prompt here

    # ---- state ----
    @property
    def lock(self) -> threading.RLock:
        """Held by every operation; hold it to make several of them one (re-entrant)."""
        return self._lock

    @property
    def window(self) -> int:
        """Where the model's view of ids starts: the logits were computed over ids[window:]
        (0 until the context has filled once; then it slides, see kv_cache.context_window)."""
        return self._window

    @property
    def ids(self) -> list[int]:
        return self._ids

    @property
    def text(self) -> str:
        return self.tokenizer.decode(self._ids)

    @property
    def generated_text(self) -> str:
        return self.tokenizer.decode(self._ids[self.prompt_len:])

    @property
    def cache(self):
        """The KV cache holding ids[window:] (read it, don't change it: fork with .copy())."""
        return self._cache

    @property
    def mirostat_mu(self) -> float | None:
        """Mirostat's μ for the next step (None: it starts at 2τ)."""
        return self._mu

    @property
    def node(self) -> int:
        """The tree's node the session stands at (its last step; ROOT at the prompt)."""
        return self._nodes[-1] if self._nodes else ROOT

    @property
    def path_nodes(self) -> list[int]:
        """The tree's node of each step of the history."""
        return list(self._nodes)

    def piece(self, token: int) -> str:
        return self.tokenizer.decode([token])

    # ---- the model side: keep the cache holding ids[window:] and self.logits current ----
    @torch.inference_mode()
    def _prefill(self, window: int | None = None, shared: bool = False):
        """Run the model over ids[window:] and refresh the logits. window None = the last
        tokens that fit (a full context is cut to its last half, so the next slide is far).
        shared: a prompt other sessions may start from too, looked up in and kept in the
        prompt cache (the prefills of slides and jumps are this session's own)."""
        self._window = context_window(len(self._ids), self.block_size) if window is None else window
        key = tuple(self._ids[self._window:]) if shared and self.prompt_cache is not None else None
        if key is not None and (found := self.prompt_cache.get(key)) is not None:
            self._cache, self.logits = found
            return
        self._cache = self.gpt.new_cache(1)
        idx = torch.tensor([self._ids[self._window:]], dtype=torch.long)
        self.logits = self.gpt(idx, cache=self._cache, last_only=True)[0, -1].float()
        if key is not None:
            self.prompt_cache.put(key, self._cache, self.logits)

    @torch.inference_mode()
    def _append(self, token: int):
        self._ids.append(token)
        if self._cache.pos >= self.block_size:
            self._prefill()  # the context is full: slide the window
            self.notice = (f"The context is full ({self.block_size} tokens): the model now sees "
                           f"only the last {len(self._ids) - self._window}.")
            return
        if self.batcher is not None:
            self.logits = self.batcher.decode(token, self._cache)  # (V,), maybe with others
            return
        idx = torch.tensor([[token]], dtype=torch.long)
        self.logits = self.gpt(idx, cache=self._cache)[0, -1].float()

    # ---- operations ----
    def set_seed(self, seed: int) -> None:
        """Use `seed` for the draws from now on (the tokens already chosen stay)."""
        seed = check_seed(seed)
        with self._lock:
            self.seed = seed

    def reset(self, prompt: str = "", seed: int | None = None) -> str:
        """Start over from `prompt` (an empty prompt starts from the end-of-text token).
        Returns a notice ("" if none), e.g. when a long prompt was cut to its last tokens."""
        prompt = validate_text(prompt)
        if seed is not None:
            seed = check_seed(seed)
        with self._lock:
            notice = ""
            if len(prompt) > self.max_prompt_chars:
                # Keep the end: the next token depends on the most recent text.
                prompt = prompt[-self.max_prompt_chars:]
                notice = f"The prompt was cut to its last {self.max_prompt_chars:,} characters. "
            # A prompt can't make the model need more than a few bytes a token: cutting the text
            # to 8 bytes per position of context first keeps a 1 MB prompt quick to encode.
            cut = prompt[-8 * self.block_size:] if len(prompt) > 8 * self.block_size else prompt
            ids = self.tokenizer.encode(cut, allowed_special="all") if cut else [self.eot]
            cropped = len(cut) < len(prompt) or len(ids) > self.block_size
            ids = ids[-self.block_size:]
            if cropped:
                notice += (f"The prompt is longer than the model's context: it keeps the last "
                           f"{len(ids)} tokens.")
            if seed is not None:
                self.seed = seed
            self._ids = list(ids)
            self.prompt_len = len(ids)
            self.history: list[StepRecord] = []
            # The window each step's logits were computed over: undo restores it, so stepping
            # again after an undo across a slide sees exactly what the first run saw.
            self._step_windows: list[int] = []
            self._mu: float | None = None  # mirostat's state for the next step (None: 2τ)
            self.tree = Tree()  # every step made, on every branch
            self._nodes: list[int] = []  # the tree's node of each step of the history
            self.branches = BranchCache(self.branch_bytes)  # keys and values of branches left
            self._kept_logits_steps = self._kept_logits_bytes = 0  # the newest steps keeping theirs
            self._prefill(shared=True)
            self.notice = notice.strip()
            return self.notice

    def distribution(self, settings: SamplingSettings | None = None) -> Pipeline:
        """The next token's pipeline under `settings`, from the kept logits: no model run."""
        with self._lock:
            return run_pipeline(self.logits, settings or SamplingSettings(), self._ids, seed=self.seed,
                                vocab=self.tokenizer, mu=self._mu)

    def next_u(self) -> float:
        return draw_u(self.seed, len(self._ids))

    def step(self, settings: SamplingSettings | None = None) -> StepRecord:
        settings = settings or SamplingSettings()
        with self._lock:
            pipe = self.distribution(settings)
            token, u, how = choose(pipe, settings, self.seed, len(self._ids))
            return self._commit(pipe, token, how, u, settings)

    def pick(self, token: int, settings: SamplingSettings | None = None) -> StepRecord:
        """Append a token the user chose (any id in the vocabulary, even a filtered one)."""
        settings = settings or SamplingSettings()
        (token,) = validate_ids([token], self.vocab_size, "token")
        with self._lock:
            return self._commit(self.distribution(settings), token, "picked", None, settings)

    def replay(self, token: int, settings: SamplingSettings | None = None) -> StepRecord:
        """Append `token` as a link's text brings it back: recorded as sampled (or greedy)
        where these settings and the seed give it at this position, as picked otherwise."""
        settings = settings or SamplingSettings()
        (token,) = validate_ids([token], self.vocab_size, "token")
        with self._lock:
            pipe = self.distribution(settings)
            chosen, u, how = choose(pipe, settings, self.seed, len(self._ids))
            if chosen != token:
                u, how = None, "picked"
            return self._commit(pipe, token, how, u, settings)

    def replay_many(self, tokens: list[int], settings: SamplingSettings | None = None) -> list[StepRecord]:
        """replay() for each of `tokens`, with the same records, cache and logits bit for bit,
        but the model run over them together (model/decode_rows.py) rather than once per
        token: a link's 1,000 tokens come back in a fraction of the time. If the settings
        refuse a step (ValueError), the tokens before it stay committed."""
        settings = settings or SamplingSettings()
        tokens = validate_ids(list(tokens), self.vocab_size, "token")
        with self._lock:
            records: list[StepRecord] = []
            group = exact_group(self.gpt)
            i = 0
            while i < len(tokens):
                room = min(self.block_size - self._cache.pos, REPLAY_CHUNK)
                if room <= 0 or group == 0:  # the context is full (a slide: a prefill), or no shortcut
                    records.append(self.replay(tokens[i], settings))
                    i += 1
                    continue
                part = tokens[i:i + room]
                after = decode_rows(self.gpt, part, self._cache, group)  # (len(part), V); the cache holds them
                try:
                    for j, token in enumerate(part):
                        pipe = self.distribution(settings)
                        chosen, u, how = choose(pipe, settings, self.seed, len(self._ids))
                        if chosen != token:
                            u, how = None, "picked"
                        records.append(self._commit(pipe, token, how, u, settings, after[j].clone()))
                finally:
                    self._cache.truncate(len(self._ids) - self._window)  # only what was committed
                i += len(part)
            return records

    def _commit(self, pipe: Pipeline, token: int, how: str, u, settings,
                logits_after: torch.Tensor | None = None) -> StepRecord:
        """Record the step and append `token`. logits_after: the model's logits after it when
        the cache already holds it (replay_many); None runs the model."""
        candidates = {}
        previous, listed = None, []
        for name, view in [("raw", pipe.raw_view)] + [(s.name, s.kept_view) for s in pipe.stages]:
            if view is not previous:  # a stage that changed nothing lists what the one before it did
                previous, listed = view, top_candidates(view, TOP_CANDIDATES)
            n = 2
            while name in candidates:  # a stage that runs twice: "top_k", then "top_k#2"
                name, n = f"{name.split('#')[0]}#{n}", n + 1
            candidates[name] = list(listed)
        record = StepRecord(
            position=len(self._ids), token=token, piece=self.piece(token), how=how, u=u,
            prob=float(pipe.probs[token]), raw_prob=float(pipe.raw_view.probs()[token]),
            settings=settings.to_dict(), candidates=candidates, mu=pipe.mu,
            entropy=entropy_bits(pipe.final.kept_probs()), raw_entropy=entropy_bits(pipe.raw_view.probs()),
            draws={"xtc": draw_stage_u(self.seed, len(self._ids), "xtc")}, logits=self.logits)
        if self._measured_settings[0] != settings:
            self._measured_settings = (settings, _plain_bytes(record.settings))
        self._mu = pipe.mu_after(token, settings)
        node = self.tree.add(self.node, record, self._window, self._mu,
                             _record_bytes(record, self._measured_settings[1]))
        self.history.append(record)
        self._step_windows.append(self._window)
        self._nodes.append(node.id)
        self._drop_old_logits(record)
        if logits_after is None:
            self._append(token)
        else:
            self._ids.append(token)
            self.logits = logits_after
        return record

    def _drop_old_logits(self, newest: StepRecord) -> None:
        """Keep the logits of the newest steps that fit the allowance; drop the older ones.
        The steps that keep theirs are always the newest few (undo removes from the end), so
        two counts say which: no walk over the history at every step."""
        self._kept_logits_steps += 1
        self._kept_logits_bytes += newest.logits.untyped_storage().nbytes()
        while self._kept_logits_steps and (self._kept_logits_steps > KEEP_LOGITS_STEPS
                                           or self._kept_logits_bytes > self.keep_logits_bytes):
            oldest = self.history[len(self.history) - self._kept_logits_steps]
            self._kept_logits_bytes -= oldest.logits.untyped_storage().nbytes()
            self._kept_logits_steps -= 1
            oldest.logits = None

    def undo(self) -> StepRecord | None:
        """Remove the last step; None if there is nothing to undo (the prompt stays)."""
        with self._lock:
            if not self.history:
                return None
            record = self.history[-1]
            self._back_to(len(self.history) - 1)
            return record

    def _back_to(self, steps: int) -> None:
        """Leave history[steps:] (their nodes stay in the tree, without their logits) and
        restore the state from just before that step."""
        record, window = self.history[steps], self._step_windows[steps]
        logits = record.logits
        self._save_branch(steps)
        for gone in self.history[steps:]:
            if gone.logits is not None:
                self._kept_logits_steps -= 1
                self._kept_logits_bytes -= gone.logits.untyped_storage().nbytes()
                gone.logits = None  # a branch off the path keeps its tensors in self.branches only
        del self.history[steps:], self._step_windows[steps:], self._nodes[steps:]
        del self._ids[record.position:]
        self._mu = record.mu  # mirostat's state from just before that step
        kept = record.position - window  # positions the cache must hold
        if logits is not None and window == self._window and 1 <= kept <= self._cache.pos:
            self._cache.truncate(kept)  # the cache already holds ids[window:]: no recompute
            self.logits = logits
        else:
            self._prefill(window)  # the window slid since (or the logits were dropped)

    def _save_branch(self, steps: int) -> None:
        """Copy the keys and values of history[steps:] out of the cache before it is cut
        back, with their logits, where the cache holds them all in one window."""
        first = self.history[steps].position - self._window  # its position in the cache
        if (first < 1 or self._cache.pos != len(self._ids) - self._window
                or any(w != self._window for w in self._step_windows[steps:])):
            return
        self.branches.save(Branch(
            nodes=self._nodes[steps:], start=self.history[steps].position, window=self._window,
            k=self._cache.k[:, :, :, first:self._cache.pos].clone(),
            v=self._cache.v[:, :, :, first:self._cache.pos].clone(),
            logits=[r.logits for r in self.history[steps:]], logits_after=self.logits))

    def rewind(self, steps: int) -> None:
        """Go back to the first `steps` steps of the history (0 = back to the prompt); the
        steps after stay in the tree."""
        if isinstance(steps, bool) or not isinstance(steps, int) or not 0 <= steps <= len(self.history):
            raise ValueError(f"rewind needs a step count in [0, {len(self.history)}], but got {steps!r}")
        with self._lock:
            if steps < len(self.history):
                self._back_to(steps)  # one jump: at most one recompute, however far back

    def goto(self, node_id: int) -> int:
        """Stand at `node_id` of the tree: back to the steps its path shares with the current
        one (as rewind), then forward along its steps, the model run over them together (as
        replay_many) and their records restored as they were made. Returns how many steps
        were run forward."""
        with self._lock:
            target = self.tree.path(node_id)  # validates the id
            shared = 0
            while shared < min(len(target), len(self._nodes)) and target[shared] == self._nodes[shared]:
                shared += 1
            if shared < len(self.history):
                self._back_to(shared)
            rest = target[shared:]
            while rest:  # where the branch's keys and values were kept: a copy
                taken = self.branches.take(rest, len(self._ids), self._window)
                if taken is None:
                    break
                self._restore_copied(*taken)
                rest = rest[taken[1]:]
            self._follow(rest)  # the rest: the model runs over them
            return len(target) - shared

    @torch.inference_mode()
    def _restore_copied(self, branch: Branch, n: int) -> None:
        """Append the first n steps of a saved branch: its keys and values into the cache,
        its records as they were, each with the logits it was drawn from."""
        for layer in range(branch.k.size(0)):
            self._cache.append(layer, branch.k[layer, :, :, :n], branch.v[layer, :, :, :n])
        self._cache.advance(n)
        for j in range(n):
            node = self.tree.nodes[branch.nodes[j]]
            record = node.record
            if branch.logits[j] is None:
                self._forget_kept_logits()  # the steps keeping theirs stay the newest
            record.logits = branch.logits[j]
            self.history.append(record)
            self._step_windows.append(self._window)
            self._nodes.append(node.id)
            if record.logits is not None:
                self._drop_old_logits(record)
            self._mu = node.mu_after
            self._ids.append(record.token)
        after = branch.logits[n] if n < len(branch.nodes) else branch.logits_after
        if after is None:  # dropped: one decode step over the copied cache gives its bits
            self._cache.truncate(self._cache.pos - 1)
            idx = torch.tensor([[self._ids[-1]]], dtype=torch.long)
            after = self.gpt(idx, cache=self._cache)[0, -1].float()
        self.logits = after

    def _forget_kept_logits(self) -> None:
        """Drop every step's kept logits (a step without them is about to be the newest)."""
        for record in self.history[len(self.history) - self._kept_logits_steps:]:
            record.logits = None
        self._kept_logits_steps = self._kept_logits_bytes = 0

    @torch.inference_mode()
    def _follow(self, node_ids: list[int]) -> None:
        """Commit the steps of these nodes again, each after the one before (the first after
        the current node), in chunks of one context window each."""
        group = exact_group(self.gpt)
        i = 0
        while i < len(node_ids):
            node = self.tree.nodes[node_ids[i]]
            if node.window != self._window:  # the step saw another window: see it again
                self._prefill(node.window)
            room = min(self.block_size - self._cache.pos, REPLAY_CHUNK)
            if room <= 0 or group == 0:
                self._restore(node, None)  # one token; its _append slides the window if full
                i += 1
                continue
            part = [node]
            for j in node_ids[i + 1:i + room]:
                if self.tree.nodes[j].window != node.window:
                    break
                part.append(self.tree.nodes[j])
            after = decode_rows(self.gpt, [n.token for n in part], self._cache, group)  # (len(part), V)
            for j, n in enumerate(part):
                self._restore(n, after[j].clone())
            i += len(part)

    def _restore(self, node, logits_after: torch.Tensor | None) -> None:
        """Append a node's step as it was recorded, with the logits it was drawn from."""
        record = node.record
        record.logits = self.logits
        self.history.append(record)
        self._step_windows.append(self._window)
        self._nodes.append(node.id)
        self._drop_old_logits(record)
        self._mu = node.mu_after
        if logits_after is None:
            self._append(record.token)
        else:
            self._ids.append(record.token)
            self.logits = logits_after

    def cut(self, steps: int) -> None:
        """Rewind to `steps` and forget the steps after it that were the tree's newest nodes
        (a Generate's tokens the visitor never saw)."""
        with self._lock:
            if steps >= len(self.history):
                return
            leaf = self._nodes[-1]
            self.rewind(steps)
            if self.tree.remove_leaf_chain(leaf, set(self._nodes)):
                self.branches.forget_from(len(self.tree))  # their ids will be reused

    def record_bytes(self, record: StepRecord) -> int:
        """A record's Python objects (what the tree counts for it in memory_breakdown)."""
        return _record_bytes(record, _plain_bytes(record.settings))

    def adopt(self, prompt_ids: list[int], tree: Tree, node_id: int) -> None:
        """Start over from `prompt_ids` with `tree` (an imported one, checked by
        model/tree_io.py against this model) and stand at its node `node_id`."""
        prompt_ids = validate_ids(list(prompt_ids), self.vocab_size, "prompt token")
        with self._lock:
            self.reset("")
            self._ids = prompt_ids
            self.prompt_len = len(prompt_ids)
            self._prefill(shared=True)
            self.tree = tree
            self._follow(tree.path(node_id))

    def generate(self, n: int, settings: SamplingSettings | None = None) -> Iterator[StepRecord]:
        """Step n times, yielding each record as it is made (for streaming)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"the number of tokens to generate must be an integer >= 0, but is {n!r}")
        settings = settings or SamplingSettings()
        for _ in range(n):
            yield self.step(settings)

    def memory_breakdown(self) -> dict[str, int]:
        """Bytes this session holds, by part (the model's weights are shared, not counted):
        kv_cache (its buffers at their allocated capacity), logits (the next token's),
        kept_logits (the history's), exact from the tensors' storages; python (token ids),
        tree (every step's record on every branch), estimated with sys.getsizeof; branches
        (the keys, values and logits kept of the branches left, model/branch_cache.py)."""
        with self._lock:
            seen: set[int] = set()
            return {
                "kv_cache": _storage_bytes([self._cache.k, self._cache.v], seen),
                "logits": _storage_bytes([self.logits], seen),
                "kept_logits": _storage_bytes(
                    [r.logits for r in self.history if r.logits is not None], seen),
                "python": (sys.getsizeof(self._ids) + sys.getsizeof(self._step_windows)
                           + sys.getsizeof(self._nodes)
                           + _INT_BYTES * (len(self._ids) + len(self._step_windows) + len(self._nodes))
                           + sys.getsizeof(self.history)),
                "tree": self.tree.memory_bytes(),  # every step's record, on every branch
                "branches": _storage_bytes(self.branches.tensors(), seen),  # keys, values, logits of branches left
            }

    def memory_bytes(self) -> int:
        """Bytes this session holds: the sum of memory_breakdown(), for a server that keeps
        its sessions under a memory budget."""
        return sum(self.memory_breakdown().values())

    def export(self) -> dict:
        """The whole session as plain data (for a JSON download)."""
        return {"seed": self.seed, "prompt_ids": self._ids[:self.prompt_len],
                "prompt": self.tokenizer.decode(self._ids[:self.prompt_len]),
                "text": self.text, "steps": [r.to_dict() for r in self.history],
                "tree": tree_to_dict(self.tree, self.node)}

"""Who owns what on a shared server.

- `ModelRegistry`: the models, shared by every visitor (weights are read-only at inference),
  loaded lazily the first time someone selects one. One per app, made by build_demo.
- `UserState`: one browser tab's (or API client's) own decoding session and choices, kept in
  a gr.State, so two people stepping at once never see each other's tokens.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from model.chat import IM_END, apply_chat_template, has_chat_template
from model.prompt_cache import DEFAULT_BYTES as DEFAULT_PROMPT_CACHE_BYTES
from model.prompt_cache import PromptCache
from model.registry import NAMED_MODELS
from model.session import DecodingSession

from .tokens import vocab_labels


@dataclass
class LoadedModel:
    name: str  # the key users select: a path, or a name in model/registry.py
    gpt: object
    tokenizer: object
    card: dict  # what load_model says about it: name, source, licence, mode, ...
    labels_json: str  # every id's label, JSON-encoded once (the page caches it)
    chat: bool  # the tokenizer has a chat template
    metrics: list[dict] = field(default_factory=list)
    batcher: object = None  # shares one forward between sessions stepping at once
    prompt_cache: object = None  # prompts the room starts from, prefilled once (model/prompt_cache.py)


def display_name(name: str) -> str:
    named = NAMED_MODELS.get(name)
    if named is not None:
        # Only a model still to be fetched says so: the menu is narrow on a laptop.
        return named.title if named.is_cached() else f"{named.title} (fetched on first use)"
    path = Path(name)
    try:  # our checkpoints name themselves in config.json's card
        title = json.loads((path / "config.json").read_text()).get("card", {}).get("name")
    except (OSError, ValueError, AttributeError):
        title = None
    if title:
        return f"{title} ({path.name})"
    return f"{path.name} ({name})" if path.name and path.name != name else name


class ModelRegistry:
    """Loads each model once, on first use, and keeps it. Thread-safe: two visitors selecting
    the same model at once wait for one load. loader(name) -> (gpt, tokenizer, card)."""

    def __init__(self, names: list[str], loader=None, prompt_cache_bytes: int = DEFAULT_PROMPT_CACHE_BYTES):
        if not names:
            raise ValueError("the playground needs at least one model: pass --model PATH")
        self.names = list(dict.fromkeys(str(n) for n in names))  # keep order, drop repeats
        self._loader = loader
        self.prompt_cache_bytes = prompt_cache_bytes
        self._models: dict[str, LoadedModel] = {}
        self._locks = {n: threading.Lock() for n in self.names}

    @property
    def default(self) -> str:
        return self.names[0]

    def choices(self) -> list[tuple[str, str]]:
        return [(display_name(n), n) for n in self.names]

    def is_loaded(self, name: str) -> bool:
        return name in self._models

    def get(self, name: str) -> LoadedModel:
        """The loaded model; raises ValueError / OSError with a message fit for the page."""
        if name not in self._locks:
            raise ValueError(f"model {name!r:.200} is not served here; choose one of {self.names}")
        if name in self._models:
            return self._models[name]
        with self._locks[name]:
            if name not in self._models:
                self._models[name] = self._load(name)
        return self._models[name]

    def _load(self, name: str) -> LoadedModel:
        from model.checkpoint import read_metrics
        from model.loading import load_model

        gpt, tokenizer, *rest = (self._loader or load_model)(name)
        card = dict(rest[0]) if rest else {"name": name}
        metrics = read_metrics(name) if Path(name).is_dir() else []
        labels = vocab_labels(tokenizer, gpt.config.vocab_size)
        return LoadedModel(name=name, gpt=gpt, tokenizer=tokenizer, card=card,
                           labels_json=json.dumps(labels, ensure_ascii=False),
                           chat=has_chat_template(tokenizer), metrics=metrics,
                           batcher=_batcher(gpt),
                           prompt_cache=PromptCache(self.prompt_cache_bytes) if self.prompt_cache_bytes else None)


def _batcher(gpt):
    try:
        from model.batching import Batcher
    except ImportError:  # an engine without batching: every session runs its own forward
        return None
    return Batcher(gpt)


@dataclass
class UserState:
    """One browser tab or API client. `session` is None until a model has loaded (and again
    after the server dropped it to keep its memory budget: `evicted` says so)."""
    model: str = ""
    session: DecodingSession | None = None
    prompt: str = ""  # the text the user typed (before any chat template)
    chat: bool = False
    owner: str = ""  # Gradio's session hash: the server's table finds this state by it
    labels_sent: str = ""  # the model whose label table this page already holds
    generation: int = 0  # bumped to stop a running Generate: it checks before every token
    seq: int = 0  # numbers every payload sent to the page, so it can drop stale ones
    # Set once the page's running Generate has handed its last payload over; None when none ran.
    streaming: threading.Event | None = None
    last_used: float = field(default_factory=time.monotonic)
    evicted: bool = False
    # The last beam search (model, prompt ids, the generated tokens it continued, its
    # BeamResult), for opening one of its sequences.
    beams: tuple | None = None

    def new_session(self, loaded: LoadedModel, prompt: str, seed: int, chat: bool,
                    max_prompt_chars: int) -> str:
        """Start a fresh decoding session on `prompt`; returns the session's notice."""
        chat = chat and loaded.chat
        text = apply_chat_template(loaded.tokenizer, prompt) if chat else prompt
        # The prompt goes to the constructor: a session built empty and then reset would run
        # the model twice (a room's resets were a sixth of a loaded server's time). A prompt it
        # refuses leaves this user as it was.
        self.session = DecodingSession(loaded.gpt, loaded.tokenizer, seed=seed,
                                       max_prompt_chars=max_prompt_chars, prompt=text,
                                       prompt_cache=loaded.prompt_cache,
                                       **({"batcher": loaded.batcher} if loaded.batcher else {}))
        self.prompt, self.chat = prompt, chat
        if self.model != loaded.name:
            self.labels_sent = ""
        self.model, self.evicted = loaded.name, False
        return self.session.notice

    def reset(self, prompt: str, chat: bool, seed: int | None = None) -> str:
        self.prompt, self.chat = prompt, chat
        return self.session.reset(self.model_text(), seed=seed)

    def stop_tokens(self) -> set[int]:
        """Tokens that end a Generate: end-of-text, and in chat mode the end of the turn."""
        stops = {self.session.eot}
        if self.chat:
            stops.add(self.session.tokenizer.encode_single_token(IM_END))
        return stops

    def model_text(self) -> str:
        """What the model reads: the prompt, wrapped in the chat template when chat is on."""
        if self.chat:
            return apply_chat_template(self.session.tokenizer, self.prompt)
        return self.prompt

    def memory_bytes(self) -> int:
        s = self.session
        if s is None:
            return 0
        return s.memory_bytes() if hasattr(s, "memory_bytes") else 0

    def free(self, evicted: bool = False) -> None:
        """Drop the decoding session (its KV cache, history and logits); the choices stay."""
        self.generation += 1  # a Generate still running stops at its next token
        self.session, self.evicted = None, evicted

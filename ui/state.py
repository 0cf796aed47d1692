"""Who owns what on a shared server.

- `ModelRegistry`: the models, shared by every visitor (weights are read-only at inference),
  loaded lazily the first time someone selects one. One per app, made by build_demo.
- `UserState`: one browser session's own decoding session and choices, kept in a gr.State,
  so two people stepping at once never see each other's tokens.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

from model.chat import IM_END, apply_chat_template, has_chat_template
from model.session import DecodingSession

from .tokens import vocab_labels

SMOLLM2 = "smollm2"


@dataclass
class LoadedModel:
    name: str  # the key users select: a path, or a special name such as "smollm2"
    gpt: object
    tokenizer: object
    labels_json: str  # every id's label, JSON-encoded once (the page caches it)
    chat: bool  # the tokenizer has a chat template
    metrics: list[dict] = field(default_factory=list)


def display_name(name: str) -> str:
    if name == SMOLLM2:
        return "SmolLM2-135M (fetched on first use)"
    path = Path(name)
    return f"{path.name} ({name})" if path.name and path.name != name else name


class ModelRegistry:
    """Loads each model once, on first use, and keeps it. Thread-safe: two visitors selecting
    the same model at once wait for one load."""

    def __init__(self, names: list[str], loader=None):
        if not names:
            raise ValueError("the playground needs at least one model: pass --model PATH")
        self.names = list(dict.fromkeys(str(n) for n in names))  # keep order, drop repeats
        self._loader = loader
        self._models: dict[str, LoadedModel] = {}
        self._locks = {n: threading.Lock() for n in self.names}
        self._guard = threading.Lock()

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
            raise ValueError(f"model {name!r} is not served here; choose one of {self.names}")
        if name in self._models:
            return self._models[name]
        with self._locks[name]:
            if name not in self._models:
                self._models[name] = self._load(name)
        return self._models[name]

    def _load(self, name: str) -> LoadedModel:
        from model.checkpoint import read_metrics
        from model.loading import load_model

        gpt, tokenizer, *_ = (self._loader or load_model)(name)
        metrics = read_metrics(name) if Path(name).is_dir() else []
        labels = vocab_labels(tokenizer, gpt.config.vocab_size)
        return LoadedModel(name=name, gpt=gpt, tokenizer=tokenizer,
                           labels_json=json.dumps(labels, ensure_ascii=False),
                           chat=has_chat_template(tokenizer), metrics=metrics)


@dataclass
class UserState:
    """One browser session. `session` is None until a model has loaded."""
    model: str = ""
    session: DecodingSession | None = None
    prompt: str = ""  # the text the user typed (before any chat template)
    chat: bool = False
    labels_sent: str = ""  # the model whose label table this page already holds

    def new_session(self, loaded: LoadedModel, prompt: str, seed: int, chat: bool,
                    max_prompt_chars: int) -> str:
        """Start a fresh decoding session; returns the session's notice."""
        self.session = DecodingSession(loaded.gpt, loaded.tokenizer, seed=seed,
                                       max_prompt_chars=max_prompt_chars)
        if self.model != loaded.name:
            self.labels_sent = ""
        self.model = loaded.name
        return self.reset(prompt, chat and loaded.chat, seed)

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

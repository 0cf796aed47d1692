"""The model's configuration: one dataclass that describes every architecture we serve.

GPT-2 is the default. The same decoder becomes a Llama-style model (SmolLM2) by switching
three parts: the norm (LayerNorm -> RMSNorm), the positions (learned table -> rotary) and the
MLP (GELU -> SwiGLU), plus grouped-query attention (fewer key/value heads than query heads).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

_CHOICES = {
    "norm": ("layernorm", "rmsnorm"),
    "position": ("learned", "rope"),
    "mlp": ("gelu", "swiglu"),
}


@dataclass
class GPTConfig:
    vocab_size: int = 50304
    block_size: int = 1024  # the longest context the model attends over
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    n_kv_head: int | None = None  # None = n_head (plain multi-head attention); fewer = GQA
    mlp_hidden: int | None = None  # None = 4 * n_embd
    bias: bool = True  # biases in Linear and LayerNorm layers (GPT-2 has them, Llama has none)
    dropout: float = 0.0
    norm: str = "layernorm"
    norm_eps: float = 1e-5
    position: str = "learned"
    rope_theta: float = 10000.0
    mlp: str = "gelu"
    tie_embeddings: bool = True  # lm_head.weight is wte.weight
    eot_token: int | None = None  # end-of-text id; an empty prompt starts from it

    def __post_init__(self):
        for name, allowed in _CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"GPTConfig.{name} must be one of {allowed}, but is {value!r}")
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"GPTConfig.{name} must be a positive integer, but is {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(
                f"GPTConfig.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})"
            )
        if self.n_head % self.kv_heads:
            raise ValueError(
                f"GPTConfig.n_head ({self.n_head}) must be divisible by n_kv_head ({self.n_kv_head})"
            )
        eot = self.eot_token
        # Checked here, not at the first empty prompt, where it would be an index error deep
        # inside the embedding.
        if eot is not None and (isinstance(eot, bool) or not isinstance(eot, int)
                                or not 0 <= eot < self.vocab_size):
            raise ValueError(f"GPTConfig.eot_token must be a token id in [0, {self.vocab_size}) "
                             f"or None, but is {eot!r}")

    @property
    def kv_heads(self) -> int:
        return self.n_kv_head or self.n_head

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def hidden(self) -> int:
        return self.mlp_hidden or 4 * self.n_embd

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "GPTConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown GPTConfig fields {unknown}; known fields are {sorted(known)}")
        return cls(**values)

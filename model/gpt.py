"""A GPT decoder in one file: GPT-2 by default, Llama-style (SmolLM2) through config switches.

Shapes: B = batch, T = positions in this call, C = n_embd, nh = query heads,
nkv = key/value heads, hs = head size, V = vocabulary.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import GPTConfig
from .kv_cache import KVCache


def _norm(config: GPTConfig) -> nn.Module:
    if config.norm == "rmsnorm":
        return nn.RMSNorm(config.n_embd, eps=config.norm_eps)
    return nn.LayerNorm(config.n_embd, eps=config.norm_eps, bias=config.bias)


class Rotary(nn.Module):
    """Rotary position embedding, in the "rotate half" layout (Hugging Face's Llama):
    dimension i pairs with i + hs/2, and the pair turns by angle pos * theta^(-2i/hs)."""

    def __init__(self, head_dim: int, max_len: int, theta: float):
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        angles = torch.outer(torch.arange(max_len, dtype=torch.float32), inv_freq)  # (L, hs/2)
        angles = torch.cat([angles, angles], dim=-1)  # (L, hs)
        # Not saved in checkpoints: they are a function of the config.
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor, start: int) -> torch.Tensor:
        # x: (B, heads, T, hs), every row at positions start..start+T-1
        T = x.size(2)
        return self._turn(x, self.cos[start:start + T], self.sin[start:start + T])

    def at_positions(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        # x: (B, heads, 1, hs), row b at its own position positions[b]
        cos, sin = self.cos[positions][:, None, None, :], self.sin[positions][:, None, None, :]
        return self._turn(x, cos, sin)

    @staticmethod
    def _turn(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.size(-1) // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rotated * sin


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.n_head, self.n_kv, self.head_dim = config.n_head, config.kv_heads, config.head_dim
        # One matmul makes queries, keys and values: (C) -> (nh + 2 nkv) * hs.
        self.c_attn = nn.Linear(config.n_embd, (self.n_head + 2 * self.n_kv) * self.head_dim,
                                bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout

    def _heads(self, x: torch.Tensor):
        """(B, T, C) -> q (B, nh, T, hs), k and v (B, nkv, T, hs), from one matmul."""
        return self.split_heads(self.c_attn(x))

    def split_heads(self, qkv: torch.Tensor):
        """c_attn's output (B, T, (nh + 2 nkv) hs) -> q (B, nh, T, hs), k and v (B, nkv, T, hs)."""
        B, T, _ = qkv.size()
        q, k, v = qkv.split(
            [self.n_head * self.head_dim, self.n_kv * self.head_dim, self.n_kv * self.head_dim], dim=2)
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        k = k.view(B, T, self.n_kv, self.head_dim).transpose(1, 2)
        v = v.view(B, T, self.n_kv, self.head_dim).transpose(1, 2)
        return q, k, v

    def one_query(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Attention of one new position over every key: q (B, nh, 1, hs), k and v
        (B, nkv, L, hs) -> (B, nh, 1, hs). With grouped-query attention the g = nh / nkv
        queries that share a key/value head are stacked as that head's rows (B, nkv, g, hs):
        the same sums, without repeating keys and values for every query head (measured here
        for SmolLM2 at 600 positions: 53 us against 123 with enable_gqa)."""
        B, nh, _, hs = q.shape
        if self.n_kv == nh:
            return F.scaled_dot_product_attention(q, k, v)
        y = F.scaled_dot_product_attention(q.reshape(B, self.n_kv, nh // self.n_kv, hs), k, v)
        return y.reshape(B, nh, 1, hs)

    def forward(self, x: torch.Tensor, rotary: Rotary | None, cache: KVCache | None) -> torch.Tensor:
        B, T, C = x.size()
        start = cache.pos if cache is not None else 0
        q, k, v = self._heads(x)
        if rotary is not None:
            q, k = rotary(q, start), rotary(k, start)
        if cache is not None:
            k, v = cache.append(self.layer, k, v)  # (B, nkv, start + T, hs)

        if start > 0 and T == 1 and not self.training:  # one new query sees every cached position
            return self.c_proj(self.one_query(q, k, v).transpose(1, 2).reshape(B, T, C))
        if start == 0:
            mask, causal = None, True
        else:
            # Queries at start..start+T-1 see keys up to and including their own position.
            q_pos = torch.arange(start, start + T, device=x.device)[:, None]
            mask, causal = torch.arange(start + T, device=x.device)[None, :] <= q_pos, False
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal,
            dropout_p=self.dropout if self.training else 0.0,
            enable_gqa=self.n_kv != self.n_head)  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.c_proj(y)

    def decode(self, x: torch.Tensor, rotary: Rotary | None, caches: list[KVCache],
               positions: torch.Tensor) -> torch.Tensor:
        """One new position for each of B independent sequences: x (B, 1, C), row b the token
        at position positions[b] of the sequence that caches[b] holds. The projections run
        batched; each row writes and attends to its own cache, whose length is its own."""
        B, _, C = x.size()
        q, k, v = self._heads(x)  # (B, nh, 1, hs), (B, nkv, 1, hs) x 2
        if rotary is not None:
            q, k = rotary.at_positions(q, positions), rotary.at_positions(k, positions)
        rows = []
        for b, cache in enumerate(caches):
            keys, values = cache.append(self.layer, k[b:b + 1], v[b:b + 1])  # (1, nkv, pos + 1, hs)
            # One query may look at every cached position of its own row: no mask.
            rows.append(self.one_query(q[b:b + 1], keys, values))  # (1, nh, 1, hs)
        y = torch.cat(rows).transpose(1, 2).reshape(B, 1, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.swiglu = config.mlp == "swiglu"
        # SwiGLU's gate and up projections are fused: (C) -> 2 * hidden, gate first.
        width = 2 * config.hidden if self.swiglu else config.hidden
        self.c_fc = nn.Linear(config.n_embd, width, bias=config.bias)
        self.c_proj = nn.Linear(config.hidden, config.n_embd, bias=config.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c_fc(x)
        if self.swiglu:
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        else:
            h = F.gelu(h, approximate="tanh")  # GPT-2's "gelu_new"
        return self.c_proj(h)


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.ln_1 = _norm(config)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = _norm(config)
        self.mlp = MLP(config)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x, rotary=None, cache=None):
        # Pre-norm residual blocks: the residual stream itself is never normalised.
        x = x + self.drop(self.attn(self.ln_1(x), rotary, cache))
        x = x + self.drop(self.mlp(self.ln_2(x)))
        return x

    def decode(self, x, rotary, caches, positions):
        # The same block with per-row attention (see CausalSelfAttention.decode).
        x = x + self.drop(self.attn.decode(self.ln_1(x), rotary, caches, positions))
        x = x + self.drop(self.mlp(self.ln_2(x)))
        return x


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),  # weight (V, C)
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList(Block(config, i) for i in range(config.n_layer)),
            ln_f=_norm(config),
        ))
        if config.position == "learned":
            self.transformer["wpe"] = nn.Embedding(config.block_size, config.n_embd)
            self.rotary = None
        else:
            self.rotary = Rotary(config.head_dim, config.block_size, config.rope_theta)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            # Weight tying. nn.Linear(C, V) stores its weight as (out, in) = (V, C): exactly the
            # embedding table's shape, so one (V, C) tensor serves as both. Row t is token t's
            # input vector and also the vector whose dot product with the final hidden state
            # gives token t's logit.
            self.lm_head.weight = self.transformer.wte.weight
        self.apply(self._init_weights)
        # GPT-2's scaled init: each residual projection is divided by sqrt(2 * n_layer) so the
        # residual stream's variance does not grow with depth.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameters counted once (a tied weight counts once)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.transformer.wte.weight.numel()
            if "wpe" in self.transformer:
                n -= self.transformer.wpe.weight.numel()
        return n

    def use_decode_layout(self) -> "GPT":
        """Store every weight matrix column-major, in place: the same shapes, values and
        Parameter objects (a tied weight stays tied), and no extra memory. Returns self.

        nn.Linear holds its weight as (out, in) and computes x @ W.T. A decode step multiplies
        a single row by each matrix, streaming it from memory, and on this project's CPUs
        that is ~1.3x faster when W.T is contiguous (GPT-2's Conv1D layout), ~1.7x for the
        50257 x 768 head. Checkpoints are unaffected: export makes every tensor contiguous.
        """
        for module in self.modules():
            if isinstance(module, nn.Linear):
                module.weight.data = module.weight.data.t().contiguous().t()
        return self

    def new_cache(self, batch: int = 1, max_len: int | None = None) -> KVCache:
        p = self.lm_head.weight
        return KVCache(self.config.n_layer, batch, self.config.kv_heads,
                       max_len or self.config.block_size, self.config.head_dim, p.dtype, p.device)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                cache: KVCache | None = None, last_only: bool = False) -> torch.Tensor:
        """idx: (B, T) token ids.

        Without targets: logits (B, T, V) for every position, or (B, 1, V) with last_only.
        With a cache, idx holds the positions after those already cached, and the cache
        advances by T. With targets (B, T): the next-token cross-entropy averaged over every
        position of every row (targets of -1 are ignored): pretraining learns from all T
        predictions at once, while inference only reads the last one.
        """
        B, T = idx.size()
        start = cache.pos if cache is not None else 0
        if start + T > self.config.block_size:
            raise ValueError(f"sequence of {start + T} positions exceeds the model's context of "
                             f"{self.config.block_size}; crop the input to its last tokens")
        x = self.transformer.wte(idx)  # (B, T, C)
        if self.rotary is None:
            pos = torch.arange(start, start + T, device=idx.device)
            x = x + self.transformer.wpe(pos)
        x = self.transformer.drop(x)
        for block in self.transformer.h:
            x = block(x, self.rotary, cache)
        if cache is not None:
            cache.advance(T)
        x = self.transformer.ln_f(x)
        if targets is not None:
            logits = self.lm_head(x)  # (B, T, V)
            # reshape, not view: targets are often a slice (ids[:, 1:]) and not contiguous.
            return F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1),
                                   ignore_index=-1)
        if last_only:
            x = x[:, -1:, :]  # (B, 1, C): inference needs only the last position's vector
        return self.lm_head(x)

    def check_decode_step(self, tokens: list[int], caches: list[KVCache]) -> None:
        """Raise ValueError, naming the bad value, unless decode_step(tokens, caches) can run."""
        if len(tokens) != len(caches) or not tokens:
            raise ValueError(f"decode_step needs one token per cache and at least one of each, "
                             f"but got {len(tokens)} tokens and {len(caches)} caches")
        if len({id(c) for c in caches}) != len(caches):
            raise ValueError("decode_step got the same KV cache twice; each row needs its own")
        vocab = self.config.vocab_size
        for token, cache in zip(tokens, caches):
            if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token < vocab:
                raise ValueError(f"decode_step tokens must be integers in [0, {vocab}), "
                                 f"but contain {token!r}")
            if not isinstance(cache, KVCache) or cache.batch != 1:
                raise ValueError(f"decode_step needs single-sequence KV caches (gpt.new_cache(1)), "
                                 f"but got {cache!r}")
            if cache.pos + 1 > min(self.config.block_size, cache.max_len):
                raise ValueError(f"sequence of {cache.pos + 1} positions exceeds the model's "
                                 f"context of {self.config.block_size} (or its cache's "
                                 f"{cache.max_len}); crop the input to its last tokens")

    @torch.inference_mode()
    def decode_step(self, tokens: list[int], caches: list[KVCache]) -> torch.Tensor:
        """Advance B independent sequences by one token each: tokens[b] is appended to the
        sequence caches[b] holds, each cache at its own length. Returns logits (B, V) for
        every row's next token, the same as forward(tokens[b], cache=caches[b]) row by row.

        A one-token forward is bound by streaming the weights from memory, so the matmuls
        (projections, MLP, head) run on all rows at once, (B, 1, C): one pass over each weight
        serves the whole batch. Positions, cache writes and attention run per row, each on its
        own cache. Every cache advances by one.
        """
        self.check_decode_step(tokens, caches)
        device = self.transformer.wte.weight.device  # (a swapped head may have no .weight)
        idx = torch.tensor(tokens, dtype=torch.long, device=device)[:, None]  # (B, 1)
        positions = torch.tensor([c.pos for c in caches], dtype=torch.long, device=device)  # (B,)
        x = self.transformer.wte(idx)  # (B, 1, C)
        if self.rotary is None:
            x = x + self.transformer.wpe(positions)[:, None, :]
        x = self.transformer.drop(x)
        for block in self.transformer.h:
            x = block.decode(x, self.rotary, caches, positions)
        for cache in caches:
            cache.advance(1)
        return self.lm_head(self.transformer.ln_f(x))[:, 0, :]  # (B, V)

"""Probability blocks: the likely futures of the session's text, breadth-first, as a tree
whose every node knows how much of its parent's probability it holds.

    result = expand(session, settings, depth=3, top=4, threshold=0.01, max_nodes=200)
    result.nodes[0]                      # the text as it is: path probability 1
    [result.nodes[c] for c in result.nodes[0].children]   # the likely next tokens

Which probability. A block's probability is what Step would draw from under the chart's
settings: the final distribution after every stage (temperature, filters, penalties, ...),
not the raw model's. So a block's height is the chance that Step, Generate or a sampled
continuation with these settings writes that path; at temperature 0 only the greedy path has
any. Each node also carries the raw model's probability (T = 1, no filters) for comparison.

Stateful stages are carried along each path exactly as stepping would carry them: the
penalties, DRY and the n-gram ban see the text plus the path's own tokens; mirostat's μ
starts from the session's and moves after each of the path's tokens (Pipeline.mu_after);
XTC's draw is the one of (seed, position), as Step's. Stepping the session through a path's
tokens one at a time (Pick) gives the same probabilities (to the last bits of a batched
matmul: see model/futures.py).

The expansion. Level by level: every node of the frontier runs the pipeline on its logits;
its children are its `top` most likely tokens whose path probability (the product of the
step probabilities from the text to it) is at least `threshold`; across the level, the
candidates with the largest path probability take what is left of the `max_nodes` budget.
The new level then runs through the model as one batched forward (GPT.decode_step), one row
per node, so a depth of d costs d - 1 forwards; the last level is not expanded. A node that
ends the text (end of text, end of turn) is not expanded either.

Each expanded node's `other` is the path probability of every token it did not show, so
that its children's path probabilities and `other` add up to its own.

From a block. `prefix` (a block's path) starts the expansion after the text and those tokens:
node 0 is then that block, with its own probabilities, and the threshold is on a path's
probability from it (relative to its own), so that zooming into a block and expanding there
shows its futures at the same threshold. Path probabilities and depths still count from the
text. The prefix runs through the model one token at a time, a row of its own.

Memory. Rows do not copy the session's KV cache: each holds only its path's few positions
and reads the text's keys and values from the session's cache (SharedPrefixCache).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .kept import top_candidates
from .kv_cache import KVCache
from .sampling import run_pipeline

DEFAULTS = {"depth": 3, "top": 4, "threshold": 0.01, "nodes": 200}


@dataclass
class BlockNode:
    id: int
    parent: int  # -1 for the root (the text as it is, or the block expanded from)
    token: int  # -1 for a root that is the text
    p: float  # the token's probability in its parent's final distribution (the text: 1)
    raw_p: float  # ... and in the raw model's (T = 1, no filters)
    path_p: float  # the product of p from the root to here
    depth: int  # tokens after the text
    children: list[int] = field(default_factory=list)  # most probable first
    other: float | None = None  # path probability not shown among children (None: not expanded)
    ends: bool = False  # a stop token: the text ends here


@dataclass
class Blocks:
    nodes: list[BlockNode]
    prefix: list[int]  # the path of node 0 (empty: node 0 is the text)
    depth: int
    top: int
    threshold: float
    max_nodes: int
    budget_hit: bool  # the node budget left out children that passed the threshold
    forwards: int  # forwards run: a batched one per level, and one per token of the prefix

    def path(self, node: int) -> list[int]:
        """The tokens from the text to `node`."""
        tokens = []
        while node > 0:
            tokens.append(self.nodes[node].token)
            node = self.nodes[node].parent
        return self.prefix + tokens[::-1]


class SharedPrefixCache(KVCache):
    """One row's KV cache that reads the first `prefix.pos` positions from a shared cache it
    never writes, and keeps its own positions after them: a row of the expansion holds a few
    positions instead of a copy of the whole text's. Attention sees the prefix and the row's
    own positions joined, the same values in the same order as one cache holding both."""

    def __init__(self, prefix: KVCache, room: int, own: "SharedPrefixCache | None" = None):
        self.prefix, self.start = prefix, prefix.pos
        self.max_len = prefix.max_len
        n_layer, _, n_kv, _, hs = prefix.k.shape
        shape = (n_layer, 1, n_kv, max(1, room), hs)
        self.k, self.v = prefix.k.new_zeros(shape), prefix.v.new_zeros(shape)
        self.pos = self.start
        if own is not None:  # a child: its parent's positions, then its own
            n = own.pos - own.start
            self.k[:, :, :, :n] = own.k[:, :, :, :n]
            self.v[:, :, :, :n] = own.v[:, :, :, :n]
            self.pos += n

    @property
    def capacity(self) -> int:
        return self.start + self.k.size(3)

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        T = k.size(2)
        at, end = self.pos - self.start, self.pos - self.start + T
        if end > self.k.size(3):
            raise ValueError(f"this row has room for {self.k.size(3)} positions after the text, not {end}")
        self.k[layer, :, :, at:end] = k
        self.v[layer, :, :, at:end] = v
        keys = torch.cat([self.prefix.k[layer, :, :, :self.start], self.k[layer, :, :, :end]], dim=2)
        values = torch.cat([self.prefix.v[layer, :, :, :self.start], self.v[layer, :, :, :end]], dim=2)
        return keys, values  # (1, n_kv, pos + T, hs)

    def copy(self, room: int = 0) -> "SharedPrefixCache":
        """A child's cache: the same shared text, this row's own positions copied, and as much
        room after the text as this one (`room` is KVCache.copy's, unused here)."""
        return SharedPrefixCache(self.prefix, self.k.size(3), own=self)


@dataclass
class _Row:
    """A node waiting to be expanded: its logits (V,), context, μ and cache."""
    node: int
    logits: torch.Tensor
    context: list[int]
    mu: float | None
    cache: KVCache


@torch.inference_mode()
def expand(session, settings, depth: int, top: int, threshold: float, max_nodes: int,
           stop_tokens: set[int] | None = None, prefix: list[int] = ()) -> Blocks:
    """The blocks of the session's current state, or of the block `prefix` leads to (nothing
    in the session changes). Call with the session's lock held; the context must have room
    for len(prefix) + depth - 1 more positions."""
    gpt, seed, vocab = session.gpt, session.seed, session.tokenizer
    stops, prefix, room = set(stop_tokens or ()), list(prefix), len(prefix) + depth
    row = _Row(0, session.logits, list(session.ids), session.mirostat_mu, session.cache)
    root, forwards = BlockNode(0, -1, -1, 1.0, 1.0, 1.0, 0), 0
    for i, token in enumerate(prefix):  # to the block the expansion starts at
        pipe = run_pipeline(row.logits, settings, row.context, seed=seed, vocab=vocab, mu=row.mu)
        p = float(pipe.probs[token])
        if p <= 0 or token in stops:
            why = "ends the text" if p > 0 else "has probability 0 under these settings"
            raise ValueError(f"token {token} at place {i + 1} of the block's path {why}: there is "
                             "nothing to expand after it; expand from the text instead")
        root = BlockNode(0, -1, token, p, float(pipe.raw_view.probs()[token]), root.path_p * p, i + 1)
        cache = _fork(row.cache, session.cache, room)
        logits = gpt.decode_step([token], [cache])[0].float()  # (V,)
        forwards += 1
        row = _Row(0, logits, row.context + [token], pipe.mu_after(token, settings), cache)
    nodes, frontier = [root], [row]
    floor = threshold * root.path_p  # the threshold on a path from the root, as a path from the text
    budget_hit = False
    for level in range(1, depth + 1):
        # Every frontier node's most likely tokens that pass the threshold ...
        offers = []  # (path_p, parent row, token, p, raw_p, μ after)
        for row in frontier:
            pipe = run_pipeline(row.logits, settings, row.context, seed=seed, vocab=vocab, mu=row.mu)
            parent = nodes[row.node]
            raw = pipe.raw_view.probs()
            for token, p in top_candidates(pipe.final, top):
                if parent.path_p * p >= floor:
                    offers.append((parent.path_p * p, row, token, p, float(raw[token]), pipe.mu_after(token, settings)))
        # ... and the most probable of them across the level take what the budget leaves.
        offers.sort(key=lambda o: -o[0])  # stable: a parent's children stay in their order
        left = max_nodes - (len(nodes) - 1)
        budget_hit = budget_hit or len(offers) > left
        new_rows = []
        for path_p, row, token, p, raw_p, mu in offers[:left]:
            parent = nodes[row.node]
            child = BlockNode(len(nodes), parent.id, token, p, raw_p, path_p, root.depth + level,
                              ends=token in stops)
            nodes.append(child)
            parent.children.append(child.id)
            if level < depth and not child.ends:
                new_rows.append((child, row, mu))
        for row in frontier:  # what its children did not take (they came most probable first)
            parent = nodes[row.node]
            parent.other = max(0.0, parent.path_p - sum(nodes[c].path_p for c in parent.children))
        if not new_rows:
            break
        # The new level through the model: one batched forward, a row per node.
        caches = [_fork(row.cache, session.cache, room) for _, row, _ in new_rows]
        out = gpt.decode_step([child.token for child, _, _ in new_rows], caches)  # (B, V)
        forwards += 1
        frontier = [_Row(child.id, out[b].float(), row.context + [child.token], mu, caches[b])
                     for b, (child, row, mu) in enumerate(new_rows)]
    return Blocks(nodes, prefix, depth, top, threshold, max_nodes, budget_hit, forwards)


def _fork(parent: KVCache, text: KVCache, room: int) -> SharedPrefixCache:
    """A child's cache: the text's positions shared, its parent's own path copied; room for
    `room` positions after the text."""
    if isinstance(parent, SharedPrefixCache):
        return parent.copy()
    return SharedPrefixCache(text, room)


def room(session) -> int:
    """How many positions the context has left after the text (a depth of d from a path of
    n tokens needs n + d - 1)."""
    return session.block_size - session.cache.pos

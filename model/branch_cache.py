"""The keys and values of the branches a session has left, so that going back is a copy.

When the session leaves steps of its path (Undo, Rewind, a jump to another node), their
positions are still in the KV cache, with the bits the decode steps wrote. Copying them out
before the cache is cut back lets a later jump to that branch copy them in again instead of
running the model over its tokens (for SmolLM2, ~25 ms a token even batched, 46 KB of keys
and values a token to copy). Each saved branch also keeps the logits its steps were drawn
from (the records' kept logits) and the logits after its last step, so the session stands
there with the same distribution, bit for bit, as the steps made it.

A branch is valid where the session stands at its fork with the same window of context: the
keys of position p depend only on ids[window:p + 1]. The saved branches share one allowance
of bytes (counted in the session's memory budget); the oldest go first.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

BRANCH_BYTES = 32 * 2**20  # per session; SmolLM2 keeps ~130 tokens of branches in it


@dataclass
class Branch:
    nodes: list[int]  # the tree's nodes, in path order (the first is a child of the fork)
    start: int  # the first node's position in the token list
    window: int  # where the context started when they were made
    k: torch.Tensor  # (n_layer, 1, n_kv_head, len(nodes), head_dim) their keys
    v: torch.Tensor  # ... and values
    logits: list  # per node, (V,) the logits its step was drawn from, or None where dropped
    logits_after: torch.Tensor  # (V,) the logits after the last node

    def tensors(self) -> list[torch.Tensor]:
        return [self.k, self.v, self.logits_after] + [t for t in self.logits if t is not None]

    def nbytes(self) -> int:
        return sum(t.untyped_storage().nbytes() for t in self.tensors())


class BranchCache:
    def __init__(self, budget_bytes: int = BRANCH_BYTES):
        self.budget_bytes = budget_bytes
        self._branches: OrderedDict[int, Branch] = OrderedDict()  # by first node, oldest first
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._branches)

    @property
    def nbytes(self) -> int:
        """What the allowance counts (a tensor the session also holds is counted here too)."""
        return self._bytes

    def tensors(self) -> list[torch.Tensor]:
        return [t for b in self._branches.values() for t in b.tensors()]

    def save(self, branch: Branch) -> None:
        """Keep `branch` (it replaces one from the same node), then drop the oldest until the
        allowance holds. A branch larger than the allowance alone is not kept."""
        self._drop(branch.nodes[0])
        size = branch.nbytes()
        if size > self.budget_bytes:
            return
        self._branches[branch.nodes[0]] = branch
        self._bytes += size
        while self._bytes > self.budget_bytes:
            self._drop(next(iter(self._branches)))

    def take(self, nodes: list[int], start: int, window: int) -> tuple[Branch, int] | None:
        """A saved branch that continues at `start` with nodes[0], and how many of `nodes` it
        holds in order. The part handed out leaves the cache (those steps go back on the
        path); the rest stays, keyed by its own first node."""
        branch = self._branches.get(nodes[0]) if nodes else None
        if branch is None or branch.start != start or branch.window != window:
            return None
        n = 0
        while n < min(len(nodes), len(branch.nodes)) and nodes[n] == branch.nodes[n]:
            n += 1
        self._drop(nodes[0])
        if n < len(branch.nodes):
            rest = Branch(branch.nodes[n:], branch.start + n, branch.window,
                          branch.k[:, :, :, n:].clone(), branch.v[:, :, :, n:].clone(),
                          branch.logits[n:], branch.logits_after)
            self._branches[rest.nodes[0]] = rest
            self._bytes += rest.nbytes()
        return branch, n

    def forget_from(self, first_gone: int) -> None:
        """Drop the branches holding a node id >= first_gone (the tree removed those ids,
        which new nodes will reuse)."""
        for key in [k for k, b in self._branches.items() if max(b.nodes) >= first_gone]:
            self._drop(key)

    def _drop(self, key: int) -> None:
        branch = self._branches.pop(key, None)
        if branch is not None:
            self._bytes -= branch.nbytes()

"""What a stage of the pipeline leaves: the surviving token ids and their logits.

A filter such as top-k leaves 40 of SmolLM2's 49,152 tokens, and every stage after it needs
only those 40. `Kept` carries them through the walk compactly; `full()` expands them back to
the (V,) float64 vector with -inf where removed (what the chart, the tests and the page read),
once, when asked.

Exactness: the numbers must be the bits the whole-vector computation gives (the page's
pipeline and llama.cpp are checked against them). An operation on one element at a time (a
division, a comparison, an absolute value) gives the same bits on the survivors alone. A
reduction does not: torch sums a vector in SIMD lanes, so the sum of the same survivors
depends on where they sit in the (V,) vector, and a softmax over the 40 alone differs in the
last bit from one over the vocabulary in about half of all cases. So every softmax, log-softmax
and sum whose result matters runs on a (V,) vector laid out exactly as the whole-vector
computation lays it out (`full()`, `at_start`, `at_end`); sorting, selecting and comparing,
the expensive part, run on the survivors.
"""

from __future__ import annotations

import torch

NEG_INF = float("-inf")
SMALL = 256  # survivors that top_candidates ranks in Python


class Kept:
    """values (n,) float64, every one finite; ids (n,) int64 ascending, or None when every id
    0..size-1 survives (then values is the whole (V,) vector). The survivors' order is id order,
    so a stable sort breaks ties by lower id, as one over the whole vector does."""

    __slots__ = ("values", "ids", "size", "finite", "_full", "_probs")

    def __init__(self, values: torch.Tensor, ids: torch.Tensor | None, size: int, finite: bool = True):
        self.values, self.ids, self.size = values, ids, size
        # Known to hold finite logits only. False after arithmetic that overflowed (or on a
        # vector given with NaN or +inf): the pipeline then names the stage that did it.
        self.finite = finite
        self._full: torch.Tensor | None = values if ids is None else None
        self._probs: torch.Tensor | None = None

    @classmethod
    def of(cls, logits: torch.Tensor) -> "Kept":
        """From a (V,) float64 vector, -inf where removed."""
        if bool(torch.isfinite(logits).all()):
            return cls(logits, None, logits.numel())
        removed = logits == NEG_INF
        if not bool(removed.any()):
            return cls(logits, None, logits.numel(), finite=False)
        ids = (~removed).nonzero().flatten()
        values = logits[ids]
        return cls(values, ids, logits.numel(), finite=bool(torch.isfinite(values).all()))

    @property
    def n(self) -> int:
        return self.values.numel()

    def id_list(self) -> torch.Tensor:
        """(n,) the survivors' ids."""
        return torch.arange(self.size) if self.ids is None else self.ids

    def full(self) -> torch.Tensor:
        """(V,) the logits, -inf where removed (made once)."""
        if self._full is None:
            self._full = torch.full((self.size,), NEG_INF, dtype=self.values.dtype).index_put_(
                (self.ids,), self.values)
        return self._full

    def probs(self) -> torch.Tensor:
        """(V,) the softmax of full(): zeros where removed (made once)."""
        if self._probs is None:
            self._probs = self.full().softmax(dim=-1)
        return self._probs

    def kept_probs(self) -> torch.Tensor:
        """(n,) the survivors' probabilities, as probs() has them."""
        return self.probs() if self.ids is None else self.probs()[self.ids]

    # ---- new views ----

    def where(self, keep: torch.Tensor) -> "Kept":
        """The survivors where keep (n,) bool is true; self when it keeps them all (so a stage
        that removed nothing is seen to have changed nothing)."""
        if bool(keep.all()):
            return self
        at = keep.nonzero().flatten()
        return Kept(self.values[at], at if self.ids is None else self.ids[at], self.size, self.finite)

    def keep_positions(self, at: torch.Tensor) -> "Kept":
        """The survivors at positions `at` (any order) of this view."""
        at = at.sort().values
        return Kept(self.values[at], at if self.ids is None else self.ids[at], self.size, self.finite)

    def with_values(self, values: torch.Tensor) -> "Kept":
        """The same survivors with new logits (n,). One that became -inf (a penalty, a tiny
        temperature) is removed, as it is in the whole vector; +inf and NaN stay, for the
        pipeline's check to name the stage that made them."""
        if bool(torch.isfinite(values).all()):
            return Kept(values, self.ids, self.size)
        out = Kept(values, self.ids, self.size, finite=False)
        gone = values == NEG_INF
        return out.where(~gone) if bool(gone.any()) else out

    def positions(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For token ids (m,): (their positions in this view, the ones that survive (m,) bool).
        Positions of removed tokens are meaningless; mask them with the second."""
        if self.ids is None:
            return tokens, torch.ones_like(tokens, dtype=torch.bool)
        at = torch.searchsorted(self.ids, tokens).clamp_(max=max(self.n - 1, 0))
        return at, self.ids[at] == tokens if self.n else torch.zeros_like(tokens, dtype=torch.bool)

    def top(self) -> float:
        """The largest logit (-inf when nothing survives; NaN if one is NaN)."""
        return float(self.values.max()) if self.n else NEG_INF


def at_start(values: torch.Tensor, size: int) -> torch.Tensor:
    """(size,) holding `values` (n,) first and -inf after: the layout a stable ascending sort
    of the whole vector gives when the removed tokens sort last (typical-p's gaps)."""
    if values.numel() == size:
        return values
    return torch.cat([values, torch.full((size - values.numel(),), NEG_INF, dtype=values.dtype)])


def at_end(values: torch.Tensor, size: int) -> torch.Tensor:
    """(size,) holding -inf first and `values` (n,) last: the layout a stable ascending sort of
    the whole vector gives when the removed tokens sort first (top-p's logits)."""
    if values.numel() == size:
        return values
    return torch.cat([torch.full((size - values.numel(),), NEG_INF, dtype=values.dtype), values])


def top_candidates(kept: Kept, n: int) -> list[tuple[int, float]]:
    """The n most likely survivors as [(id, probability)]: probability descending, ties by
    lower id (the order sampling picks in); tokens of probability 0 are left out."""
    p = kept.kept_probs()
    if kept.n <= SMALL:  # a few survivors: Python sorts them faster than torch starts a sort
        ranked = sorted(zip((-p).tolist(), kept.id_list().tolist()))
        return [(i, -q) for q, i in ranked[:n] if q < 0]
    # The top n + 1: where the n-th is strictly above the next, they are the top n, and only
    # their order needs the tie rule; else every token tied with the n-th is a candidate.
    top = torch.topk(p, n + 1)
    values, at = top.values.tolist(), top.indices
    if values[n - 1] > values[n]:
        ids = (at if kept.ids is None else kept.ids[at]).tolist()
        ranked = sorted(zip((-top.values).tolist()[:n], ids[:n]))
        return [(i, -q) for q, i in ranked if q < 0]
    head = ((p >= values[n - 1]) & (p > 0)).nonzero().flatten()  # positions ascending = ids ascending
    order = head[torch.sort(p[head], descending=True, stable=True).indices][:n]
    ids = order if kept.ids is None else kept.ids[order]
    return list(zip(ids.tolist(), p[order].tolist()))

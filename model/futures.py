"""Many futures from one step: N draws of the next token, and N whole continuations.

    draws = draw_many(pipe, settings, seed, position, 10_000)   # (N,) token ids; no model run
    counts, tv, kl = histogram(draws, pipe.probs)
    rows = continue_many(session, settings, n=8, m=30)          # one batched forward per position

The draws. Draw i of N at `position` of run `seed` takes the i-th number of the stream
`numpy.random.default_rng([seed, position])` and picks the token it lands on, exactly as Step
picks with its u (sampling.pick_token: the first token, in sampling order, whose cumulative
probability reaches u). That stream's first number is Step's own u (sampling.draw_u), so draw
0 is the token Step will choose, and the first 100 of 10,000 draws are the 100 draws: a larger
N extends the same sample. At temperature 0 every draw is the argmax, as Step's is.

The continuations. Continuation j runs with the seed `(seed + j) mod (SEED_MAX + 1)`: it is
exactly what M Steps (a Generate of M) would write from this point after setting that seed.
Continuation 0 is what Generate itself would write. Every row keeps its own token list (for
penalties and DRY), its own mirostat μ and its own KV cache (a copy of the session's); the
model runs once per position over all rows still going (GPT.decode_step). A row that draws a
stop token (end of text, end of turn) ends there, as Generate does.

Bits. A batched matmul over B > 1 rows sums in another order than a one-row one, so a row's
logits can differ from Step's in the last bits (one row alone is the same bits: see the
tests). The tokens are the same unless a draw lands within ~1e-7 of a boundary between two
tokens; opening a continuation replays it through the session (Step's own arithmetic), so
what is opened is always recorded exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .sampling import SEED_MAX, Pipeline, choose, run_pipeline, sampling_order


def draw_numbers(seed: int, position: int, n: int) -> np.ndarray:
    """The n uniform numbers of the draws at `position` of run `seed` (float64 in [0, 1));
    the first is sampling.draw_u(seed, position)."""
    return np.random.default_rng([int(seed), int(position)]).random(int(n))


def draw_many(pipe: Pipeline, settings, seed: int, position: int, n: int) -> torch.Tensor:
    """(n,) int64 token ids drawn from the pipeline's final distribution (see the module's
    docstring for which draws)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of draws must be a whole number >= 1, but is {n!r}")
    if settings.greedy:
        token, _, _ = choose(pipe, settings, seed, position)
        return torch.full((n,), token, dtype=torch.long)
    probs = pipe.probs  # (V,) float64, zeros outside the kept set
    n_kept = int((probs > 0).sum())
    order = sampling_order(probs)[:n_kept]  # probability descending, ties by lower id
    cumulative = probs[order].cumsum(0)  # the same sums, in the same order, as Step's pick
    u = torch.from_numpy(draw_numbers(seed, position, n))
    at = torch.searchsorted(cumulative, u)  # first position whose cumulative reaches u
    return order[at.clamp_(max=n_kept - 1)]  # rounding can leave the total a hair below u


def histogram(draws: torch.Tensor, probs: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """counts (V,) int64 of the draws, and two distances between what was drawn (f = count / N)
    and the distribution p it was drawn from:
      tv = ½ Σ |f − p| over the whole vocabulary, in [0, 1];
      kl = KL(f ‖ p) = Σ f ln(f / p) in nats, over the drawn tokens only: a token never drawn
           has f = 0 and adds 0 (0 · ln 0 = 0), and every drawn token has p > 0, so it is finite.
    Both shrink towards 0 as N grows (KL(f ‖ p) ≈ (k − 1) / 2N for k tokens of real mass)."""
    counts = torch.bincount(draws, minlength=probs.numel())
    f = counts.double() / draws.numel()
    tv = 0.5 * float((f - probs).abs().sum())
    drawn = counts > 0
    kl = float((f[drawn] * (f[drawn] / probs[drawn]).log()).sum())
    return counts, tv, max(kl, 0.0)


def continuation_seed(seed: int, j: int) -> int:
    """The seed continuation j runs with."""
    return (int(seed) + int(j)) % (SEED_MAX + 1)


@dataclass
class Continuation:
    seed: int
    tokens: list[int]  # the new tokens, at most m
    probs: list[float]  # each token's probability under the final distribution it was drawn from
    raw_probs: list[float]  # ... and under the model's own (T = 1, no filters)
    stopped: bool  # ended on a stop token before m

    @property
    def logprob(self) -> float:
        """ln of the continuation's probability under the settings: Σ ln p (−inf if a token had p 0)."""
        return sum(math.log(p) if p > 0 else -math.inf for p in self.probs)

    @property
    def raw_logprob(self) -> float:
        return sum(math.log(p) if p > 0 else -math.inf for p in self.raw_probs)


def cache_bytes_per_position(gpt) -> int:
    """Bytes one position of one row's KV cache holds (keys and values, every layer)."""
    c = gpt.config
    element = gpt.lm_head.weight.element_size() if hasattr(gpt.lm_head, "weight") else 4
    return 2 * c.n_layer * c.kv_heads * c.head_dim * max(element, 4)


@torch.inference_mode()
def continue_many(session, settings, n: int, m: int, stop_tokens: set[int] | None = None) -> list[Continuation]:
    """n continuations of up to m tokens from the session's current state (nothing in the
    session changes). Call with the session's lock held. The context must have room for m
    more tokens (no window slide: the caller checks `room`)."""
    gpt, seed = session.gpt, session.seed
    stops = set(stop_tokens or ())
    base_ids, start_pos = list(session.ids), len(session.ids)
    rows = [Continuation(continuation_seed(seed, j), [], [], [], False) for j in range(n)]
    contexts = [list(base_ids) for _ in range(n)]
    mus = [session.mirostat_mu] * n
    caches = [session.cache.copy(room=m) for _ in range(n)]
    logits = [session.logits] * n  # (V,) each: the first position's are the session's own
    live = list(range(n))
    for step in range(m):
        position = start_pos + step
        chosen = []
        for j in live:
            pipe = run_pipeline(logits[j], settings, contexts[j], seed=rows[j].seed,
                                vocab=session.tokenizer, mu=mus[j])
            token, _, _ = choose(pipe, settings, rows[j].seed, position)
            rows[j].tokens.append(token)
            rows[j].probs.append(float(pipe.probs[token]))
            rows[j].raw_probs.append(float(pipe.raw_view.probs()[token]))
            contexts[j].append(token)
            mus[j] = pipe.mu_after(token, settings)
            if token in stops:
                rows[j].stopped = True
            else:
                chosen.append(j)
        live = chosen
        if not live or step == m - 1:
            break
        out = gpt.decode_step([rows[j].tokens[-1] for j in live], [caches[j] for j in live])  # (B, V)
        for b, j in enumerate(live):
            logits[j] = out[b].float()
    return rows


def room(session) -> int:
    """How many more tokens fit in the session's context before it would slide."""
    return session.block_size - session.cache.pos

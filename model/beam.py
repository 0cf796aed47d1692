"""Beam search with Hugging Face's definitions, every step's candidates kept for the page.

    result = beam_search(gpt, prompt_ids, max_new_tokens=30, num_beams=4, length_penalty=1.0,
                         early_stopping=False, eos_token_id=tokenizer.eot_token)
    result.best.tokens, result.best.score          # what transformers' generate returns
    result.steps[i].candidates                      # what step i considered, kept, finished

It follows transformers 5.24's `_beam_search` (generation/utils.py) step for step, in float32,
so that tokens and `sequences_scores` come out the same:

- The beams' scores are sums of log-probabilities, log_softmax of the raw logits (taken before
  any logits processor; beam search here runs none).
- Each step takes the 2 x num_beams best (beam, token) pairs over all beams; at the first step
  only beam 0 is live (the others start at -1e9), so the beams do not all pick the same token.
- A candidate finishes when its token is end-of-text or the length reaches max_new_tokens. It
  counts only if it ranks among the first num_beams candidates of its step; its score is its
  sum of log-probabilities / (new tokens, end-of-text included) ** length_penalty, and the
  num_beams best finished hypotheses are kept. The best num_beams unfinished candidates run on.
- Stopping (`early_stopping`): True stops once num_beams hypotheses have finished. False and
  "never" stop once no running beam could beat the worst finished one: False assumes the best
  beam's score divided by the current length is the best it can reach (a heuristic), "never"
  with a positive length_penalty divides by max_new_tokens instead (exact for penalties >= 0).

The beams run as one batch through the model with one KV cache of num_beams rows; when the
beams are reselected, the cache's rows are reordered to follow their parents.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .gpt import GPT
from .kv_cache import KVCache

MAX_BEAMS = 16  # the default for callers outside the app, which states its own limit
EARLY_STOPPING = (True, False, "never")
_NEG = -1.0e9  # transformers' "impossible" score: added, not assigned, exactly as it does


@dataclass
class Candidate:
    """One (beam, token) pair among a step's 2 x num_beams best.

    parent: the beam (row of the previous step's beams) it extends; logprob: the token's own
    log-probability; score: the beam's sum of log-probabilities with it; penalised: score /
    length ** length_penalty (what ranks it if it finishes); status: "kept" (a beam of the
    next step, at index `beam`), "finished" (entered the finished hypotheses), "dropped"."""
    token: int
    parent: int
    logprob: float
    score: float
    penalised: float
    status: str = "dropped"
    beam: int | None = None
    ends: bool = False  # end-of-text, or the last allowed token

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class BeamStep:
    candidates: list[Candidate]
    beams: list[list[int]]  # the running beams after this step: their new tokens

    def to_dict(self) -> dict:
        return {"candidates": [c.to_dict() for c in self.candidates], "beams": self.beams}


@dataclass
class Hypothesis:
    """A finished sequence: its new tokens (end-of-text included), its sum of
    log-probabilities, and its length-penalised score (transformers' sequences_scores)."""
    tokens: list[int]
    logprob: float
    score: float
    step: int  # the step it finished at (0-based)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class BeamResult:
    prompt: list[int]  # what the model saw of the prompt
    ranking: list[Hypothesis]  # best first; at most num_beams
    steps: list[BeamStep] = field(default_factory=list)
    stopped: str = ""  # why the search ended: "max_new_tokens", "early_stopping", "no_improvement"

    @property
    def best(self) -> Hypothesis:
        return self.ranking[0]

    def to_dict(self) -> dict:
        return {"prompt": self.prompt, "ranking": [h.to_dict() for h in self.ranking],
                "steps": [s.to_dict() for s in self.steps], "stopped": self.stopped}


def check_beam_args(num_beams, max_new_tokens, length_penalty, early_stopping,
                    max_beams: int = MAX_BEAMS) -> None:
    """Raise ValueError naming the bad value and its range."""
    if isinstance(num_beams, bool) or not isinstance(num_beams, int) or not 1 <= num_beams <= max_beams:
        raise ValueError(f"num_beams must be a whole number from 1 to {max_beams}, but is {num_beams!r:.80}")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a whole number >= 1, but is {max_new_tokens!r:.80}")
    if (isinstance(length_penalty, bool) or not isinstance(length_penalty, (int, float))
            or not math.isfinite(length_penalty)):
        raise ValueError(f"length_penalty must be a finite number, but is {length_penalty!r:.80}")
    if not any(early_stopping is e for e in EARLY_STOPPING):
        raise ValueError(f"early_stopping must be True, False or \"never\", but is {early_stopping!r:.80}")


def _reorder(cache: KVCache, rows: torch.Tensor) -> None:
    """Make row i of the cache a copy of row rows[i]: the beams follow their parents. The
    batch may change size (the prompt's single row becomes num_beams rows)."""
    cache.k = cache.k.index_select(1, rows)  # (n_layer, B, nkv, capacity, hs)
    cache.v = cache.v.index_select(1, rows)


@torch.inference_mode()
def beam_search(gpt: GPT, prompt: list[int], max_new_tokens: int, num_beams: int = 4,
                length_penalty: float = 1.0, early_stopping: bool | str = False,
                eos_token_id: int | None = None, record: bool = True,
                max_beams: int = MAX_BEAMS) -> BeamResult:
    """Beam search from `prompt` (token ids, at least one) for at most max_new_tokens. The model
    sees the prompt's last block_size - max_new_tokens tokens (the whole search must fit its
    context). record=False skips the per-step candidates (a little faster)."""
    check_beam_args(num_beams, max_new_tokens, length_penalty, early_stopping, max_beams)
    block, vocab = gpt.config.block_size, gpt.config.vocab_size
    if max_new_tokens >= block:
        raise ValueError(f"max_new_tokens must be below the model's context of {block}, "
                         f"but is {max_new_tokens}")
    if not prompt or any(isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < vocab for t in prompt):
        raise ValueError(f"the prompt must be at least one token id in [0, {vocab})")
    prompt = list(prompt[-(block - max_new_tokens):])
    device = gpt.lm_head.weight.device
    K = 2 * num_beams  # max(2, 1 + number of EOS ids) x num_beams, with at most one EOS id
    in_top = torch.arange(K) < num_beams  # only these may finish
    lp = float(length_penalty)

    cache = gpt.new_cache(1, max_len=len(prompt) + max_new_tokens)
    logits = gpt(torch.tensor([prompt], device=device), cache=cache, last_only=True)[:, -1, :]  # (1, V)
    # State as transformers keeps it (batch of one): scores float32, "impossible" = -1e9.
    running = torch.zeros(num_beams)
    running[1:] = _NEG
    seqs: list[list[int]] = [[] for _ in range(num_beams)]
    done_scores = torch.full((num_beams,), _NEG)
    done: list[Hypothesis | None] = [None] * num_beams
    improvable = True
    steps: list[BeamStep] = []
    stopped = "max_new_tokens"

    for n in range(max_new_tokens):  # n new tokens so far
        logp = F.log_softmax(logits.float(), dim=-1).cpu()  # (B, V): B = 1 at the first step
        logp = logp.expand(num_beams, vocab)
        total = (logp + running[:, None]).reshape(-1)  # (num_beams * V)
        top, idx = torch.topk(total, K)  # (K,), best first
        parent, token = idx // vocab, idx % vocab
        last = n + 1 >= max_new_tokens
        ends = (token == eos_token_id) if eos_token_id is not None else torch.zeros(K, dtype=torch.bool)
        ends = ends | last

        if num_beams == 1:  # transformers' generate searches greedily: the argmax until it ends
            first = Candidate(int(token[0]), 0, float(logp[0, int(token[0])]), float(top[0]),
                              float(top[0]) / ((n + 1) ** lp), ends=bool(ends[0]))
            second = Candidate(int(token[1]), 0, float(logp[0, int(token[1])]), float(top[1]),
                               float(top[1]) / ((n + 1) ** lp), ends=bool(ends[1]))
            seqs = [seqs[0] + [first.token]]
            if first.ends:
                first.status = "finished"
                done = [Hypothesis(seqs[0], first.score, first.penalised, n)]
                stopped = "max_new_tokens" if last else "end_of_text"
            else:
                first.status, first.beam = "kept", 0
            if record:
                steps.append(BeamStep([first, second], [] if first.ends else [list(seqs[0])]))
            if first.ends:
                break
            running = top[:1]
            logits = gpt(torch.tensor([[first.token]], device=device), cache=cache)[:, -1, :]
            continue

        # The best num_beams candidates that did not end run on.
        run_scores = top + ends.float() * _NEG
        keep = torch.topk(run_scores, num_beams).indices  # (num_beams,)
        new_running = run_scores[keep]

        # Finished candidates among the first num_beams compete with the finished so far.
        finishing = ends & in_top
        penalised = top / ((n + 1) ** lp)
        offer = penalised.clone()
        full = all(h is not None for h in done) and early_stopping is True
        offer += float(full) * _NEG
        offer += float(not improvable) * _NEG
        offer += (~finishing).float() * _NEG
        merged = torch.cat([done_scores, offer])
        chosen = torch.topk(merged, num_beams).indices.tolist()
        offered = [None] * K
        for i in range(K):
            if finishing[i]:
                offered[i] = Hypothesis(seqs[int(parent[i])] + [int(token[i])],
                                        float(top[i]), float(penalised[i]), n)
        pool = done + offered
        done_scores = merged[chosen]
        done = [pool[i] for i in chosen]
        for h, score in zip(done, done_scores.tolist()):
            if h is not None:
                h.score = score  # transformers' sequences_scores, offsets and all
        # (A non-finishing offer scores -1e9 + x, which float32 rounds to -1e9: it may fill an
        # empty slot, as in transformers, but it is no hypothesis.)
        entered = {i - num_beams for i in chosen if i >= num_beams and offered[i - num_beams] is not None}

        if record:
            cands = [Candidate(int(token[i]), int(parent[i]), float(logp[int(parent[i]), int(token[i])]),
                               float(top[i]), float(penalised[i]), ends=bool(ends[i])) for i in range(K)]
            for i in entered:
                cands[i].status = "finished"
            if not last:
                for b, i in enumerate(keep.tolist()):
                    cands[i].status, cands[i].beam = "kept", b
        seqs = [seqs[int(parent[i])] + [int(token[i])] for i in keep.tolist()]
        running = new_running
        if record:
            steps.append(BeamStep(cands, [list(s) for s in seqs] if not last else []))

        # Can the search stop? (transformers' _check_early_stop_heuristic and
        # _beam_search_has_unfinished_sequences)
        length = max_new_tokens if (early_stopping == "never" and lp > 0.0) else n + 1
        best_possible = running[0] / (length ** lp)
        finished = torch.tensor([h is not None for h in done])
        worst = torch.where(finished, done_scores.min(), torch.tensor(_NEG))  # (num_beams,)
        improvable = improvable and bool((best_possible > worst).any())
        all_done = bool(finished.all())
        if last or bool(ends.all()):
            break
        if not improvable:
            stopped = "no_improvement"
            break
        if all_done and early_stopping is True:
            stopped = "early_stopping"
            break
        _reorder(cache, parent[keep].to(device))
        tokens = torch.tensor([[s[-1]] for s in seqs], device=device)  # (num_beams, 1)
        logits = gpt(tokens, cache=cache)[:, -1, :]  # (num_beams, V)

    ranking = [h for h in done if h is not None]
    return BeamResult(prompt, ranking, steps, stopped)

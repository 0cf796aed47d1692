"""Watching a model learn: the same context read by each training snapshot of one run.

    views = snapshot_views([(0, gpt0), (316, gpt316), (1000, gpt)], ids)
    views[1]["next_logits"]   # (V,) what the model after step 316 predicts after ids
    views[1]["surprisal"]     # [-ln p] of ids[1:], each from the tokens before it
    views[1]["loss"]          # their mean: this text's loss at step 316

At step 0 the weights are the initialisation: the logits are small and the distribution is
close to uniform, so the loss is close to ln V. As training goes on the bars move towards the
final model's. model/snapshots.py loads the weights; this module only reads them.
"""

from __future__ import annotations

import torch

from .compare import all_logits


def snapshot_views(models: list[tuple[int, object]], ids: list[int]) -> list[dict]:
    """One dict per (step, gpt), in the order given: step, next_logits ((V,) float32, after the
    last id), surprisal (nats, one per id after the first), loss (their mean, None for a
    single id). ids: at most the models' block_size tokens (the caller's window)."""
    if not ids:
        raise ValueError("there are no tokens to read: give a prompt of at least one token")
    target = torch.tensor(ids[1:])[:, None]  # (T - 1, 1)
    out = []
    for step, gpt in models:
        logits = all_logits(gpt, ids)  # (T, V)
        logp = torch.log_softmax(logits[:-1].double(), dim=-1)  # (T - 1, V)
        surprisal = (-logp.gather(1, target)[:, 0]).tolist() if len(ids) > 1 else []
        out.append({"step": step, "next_logits": logits[-1],
                    "surprisal": surprisal,
                    "loss": sum(surprisal) / len(surprisal) if surprisal else None})
    return out

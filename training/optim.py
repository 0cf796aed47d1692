"""The optimizer and its learning-rate schedule."""

from __future__ import annotations

import inspect
import math

import torch


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float, betas: tuple[float, float],
                    device_type: str) -> torch.optim.AdamW:
    """AdamW with two groups: matrices (linear weights, embeddings) decay; biases and norm
    gains do not, since shrinking them towards zero only fights the normalisation."""
    # named_parameters() yields a tied weight once, so the shared (V, C) matrix is stepped once.
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    # The fused kernel does the whole update in one launch per group on CUDA; on CPU the
    # default (foreach) path is the fast one.
    fused = device_type == "cuda" and "fused" in inspect.signature(torch.optim.AdamW).parameters
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused or None)


def lr_at(step: int, max_lr: float, warmup: int, total: int, min_lr: float) -> float:
    """Linear warmup over `warmup` steps, then a cosine from max_lr down to min_lr at `total`.
    step counts from 0 (the first optimizer step)."""
    if step < warmup:
        return max_lr * (step + 1) / warmup
    if step >= total:
        return min_lr
    progress = (step - warmup) / max(1, total - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (max_lr - min_lr)

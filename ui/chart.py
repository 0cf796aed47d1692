"""What the chart is drawn from.

After every step the server sends the step's data once: the last position's raw logits (all
of them, exact float32 bytes), the context ids (for penalties), and the seeded uniform u.
The page then recomputes the whole pipeline itself on every slider move (static/pipeline.js
walks model/sampling.py's table, operation by operation), so dragging a slider never waits for
the server or the model.

`distribution_summary` is the server's own view of the same numbers, for the API.
"""

from __future__ import annotations

import base64
import json

import numpy as np
import torch

from model.sampling import (
    SETTINGS,
    STAGES,
    Pipeline,
    SamplingSettings,
    breaker_heads,
    choose,
    draw_stage_u,
    entropy_bits,
)

from .tokens import token_label

TITLES = {st.name: st.title for st in STAGES}

LABELS_ALWAYS = 64  # the top raw tokens whose labels ride along with every payload
FULL_LABELS_UP_TO = 1024  # smaller vocabularies send every label every time


def encode_logits(logits: torch.Tensor) -> str:
    """(V,) -> base64 of little-endian float32: exact, and 4 bytes a token (JSON text would be
    ~4x larger). The page widens them to float64, as sampling.py does."""
    return base64.b64encode(logits.detach().to("cpu", torch.float32).numpy().astype("<f4").tobytes()).decode()


def decode_logits(data: str) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(base64.b64decode(data), dtype="<f4").copy())


def step_payload(user, loaded, *, max_steps: int, mode: str = "live", inspect: int | None = None,
                 notice: str = "") -> dict:
    """Everything the page needs to draw the next-token chart for `user`'s session.

    mode "live": the distribution for the next token. mode "inspect": the distribution step
    `inspect` was drawn from, with the settings it was drawn with."""
    s = user.session
    if mode == "inspect":
        record = s.history[inspect]
        logits, context = record.logits, s.ids[:record.position]
        u, settings, chosen, mu, draws = record.u, record.settings, record.token, record.mu, record.draws
    else:
        logits, context, u, settings, chosen, mu = s.logits, s.ids, s.next_u(), None, None, s.mirostat_mu
        draws = {"xtc": draw_stage_u(s.seed, len(context), "xtc")}
    breakers = (settings or {}).get("dry_sequence_breakers", SETTINGS["dry_sequence_breakers"].default)
    vocab = int(logits.numel())
    # Every label, once per page and model (the page caches it); small vocabularies always.
    send_all = vocab <= FULL_LABELS_UP_TO or user.labels_sent != user.model
    user.labels_sent = user.model
    labels = {}
    if not send_all:
        # The bars show the top raw tokens and tokens whose logit a penalty moved (the
        # context): their labels always come along, whatever the page has cached.
        top = torch.topk(logits, min(LABELS_ALWAYS, vocab)).indices.tolist()
        for t in set(top) | set(context):
            labels[t] = token_label(s.tokenizer, t)
    return {
        "version": 1,
        "model": user.model,
        "mode": mode,
        "inspect": inspect,
        "vocab": vocab,
        "logits": encode_logits(logits),
        "context": list(context),
        "u": u,
        # What the page's pipeline needs besides the logits: the random stages' own draws,
        # mirostat's μ, and DRY's sequence breakers as token sequences ({head: [tail, ...]}).
        "draws": draws,
        "mu": mu,
        "dry_heads": {str(k): [list(t) for t in v]
                      for k, v in breaker_heads(s.tokenizer, tuple(breakers), vocab).items()},
        "seed": s.seed,
        "position": len(context),
        "step": len(s.history) if mode == "live" else inspect,
        "steps": len(s.history),
        "max_steps": max_steps,
        "eot": s.eot,
        "chosen": chosen,
        "chosen_settings": settings,
        "prompt": user.prompt,
        "chat": user.chat,
        "labels": {str(k): v for k, v in labels.items()},
        "notice": notice,
        "_labels_json": loaded.labels_json if send_all else None,
    }


def payload_json(payload: dict) -> str:
    """The payload as the chart component's value. The label table is already JSON: it is
    spliced in as "labels_all" rather than encoded again."""
    payload = dict(payload)
    full = payload.pop("_labels_json", None)
    text = json.dumps(payload, ensure_ascii=False, allow_nan=False)
    return text[:-1] + ', "labels_all": ' + (full or "null") + "}"


def removed_by(pipe: Pipeline) -> torch.Tensor:
    """(V,) long: the index into pipe.stages of the stage that removed each token, -1 if kept.
    Over the whole vocabulary: the reference the page's pipeline is checked against
    (tests/test_pipeline_js.py); the API's summary asks removed_at about its few tokens."""
    out = torch.full_like(pipe.raw, -1, dtype=torch.long)
    alive = torch.ones_like(pipe.raw, dtype=torch.bool)
    for i, stage in enumerate(pipe.stages):
        gone = alive & ~stage.kept
        out[gone] = i
        alive &= stage.kept
    return out


def removed_at(pipe: Pipeline, ids: torch.Tensor) -> torch.Tensor:
    """removed_by(pipe)[ids], read from each stage's survivors (model/kept.py) rather than
    made for the whole vocabulary: a stage leaving 40 of 49,152 tokens is asked about a few."""
    out = torch.full_like(ids, -1)
    for i, stage in enumerate(pipe.stages):
        view = stage.kept_view
        if view.ids is None:
            survives = torch.isfinite(view.values[ids])
        elif view.n == 0:
            survives = torch.zeros_like(ids, dtype=torch.bool)
        else:  # the survivors' ids ascend
            at = torch.searchsorted(view.ids, ids).clamp_(max=view.n - 1)
            survives = (view.ids[at] == ids) & torch.isfinite(view.values[at])
        out[(out < 0) & ~survives] = i
    return out


def rank_of(probs: torch.Tensor, token: int) -> int:
    """The token's 1-based place in sampling_order(probs) (probability descending, ties by id),
    without sorting the vocabulary."""
    p = probs[token]
    return int((probs > p).sum()) + int((probs[:token] == p).sum()) + 1


def distribution_summary(pipe: Pipeline, tokenizer, settings: SamplingSettings, seed: int,
                         position: int, top_n: int = 20) -> dict:
    """The chart's numbers, computed on the server: the top tokens (by raw probability) with
    what happened to each, the kept set, entropy and where u lands."""
    raw = pipe.raw.softmax(-1)
    final = pipe.probs
    kept = final > 0
    top_ids = torch.topk(raw, min(top_n, raw.numel())).indices
    stage_of = removed_at(pipe, top_ids).tolist()
    tokens = []
    for t, stage in zip(top_ids.tolist(), stage_of):
        tokens.append({"id": t, "label": token_label(tokenizer, t), "raw_prob": float(raw[t]),
                       "prob": float(final[t]),
                       "removed_by": None if stage < 0 else TITLES[pipe.stages[stage].name]})
    h = entropy_bits(final)
    landed, u, how = choose(pipe, settings, seed, position)
    return {
        "settings": settings.to_dict(),
        "tokens": tokens,
        "kept": int(kept.sum()),
        "kept_raw_mass": float(raw[kept].sum()),
        "entropy_bits": h,
        "effective_vocab": 2 ** h,
        "raw_entropy_bits": entropy_bits(raw),
        "u": u,
        "next_token": {"id": landed, "label": token_label(tokenizer, landed), "how": how,
                       "prob": float(final[landed]), "rank": rank_of(final, landed)},
        "stages": [{"name": TITLES[s.name], "active": s.active,
                    "kept": s.kept_view.n if s.kept_view.finite else int(s.kept.sum())}
                   for s in pipe.stages],
    }

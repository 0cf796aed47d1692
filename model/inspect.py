"""Looking inside a model's predictions: what it predicted at every position of a text, what
each layer would predict if the model stopped there, and how one matrix serves as both the
embedding and the output head.

    score_text(gpt, tokenizer, "To be, or not to be")   # every token's probability, rank, surprisal
    logit_lens(gpt, ids)                                 # the next token as seen after each layer
    tying_facts(gpt, token_id)                           # wte and lm_head: one (V, C) tensor or two

Pretraining scores every position at once: position t's vector predicts token t + 1, and the
loss is the mean over all of them (GPT.forward with targets). Inference reads only the last
position's vector. score_text does the first in one forward; its `next_logits` is the second.

Everything here returns ids, probabilities and plain token text; how a token is displayed
(escaped spaces, newlines) is left to the user interface.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

CHUNK = 256  # positions per output-head matmul: bounds the (positions, V) logits in memory
NO_PREDICTION = ("The first token the model sees has no prediction: nothing before it is in view "
                 "to predict it from, so its prob, rank, surprisal and top are None.")
MEMORY_FILE = "memory.json"  # written by training/memory.py next to a run's metrics.jsonl


# ---- shared pieces ----

def token_text(tokenizer, token: int) -> str | None:
    """A token's own bytes as text (U+FFFD where it holds part of a UTF-8 character), or None
    for an id the tokenizer has no token for (a vocabulary padded to a round size)."""
    try:
        return tokenizer.decode_single_token_bytes(token).decode("utf-8", errors="replace")
    except KeyError:
        return None


def residual_stream(gpt, idx: torch.Tensor, every_layer: bool = True) -> list[torch.Tensor]:
    """The residual stream, (B, T, C), after the embedding and after each block: n_layer + 1
    tensors (only the last one with every_layer=False). Computed exactly as GPT.forward does
    without a cache, so ln_f and lm_head applied to the last one give the model's logits."""
    B, T = idx.size()
    if T > gpt.config.block_size:
        raise ValueError(f"{T} positions exceed the model's context of {gpt.config.block_size}; "
                         "pass at most its last block_size tokens")
    x = gpt.transformer.wte(idx)  # (B, T, C)
    if gpt.rotary is None:  # GPT-2: a learned vector per position; Llama rotates q, k instead
        x = x + gpt.transformer.wpe(torch.arange(0, T, device=idx.device))
    x = gpt.transformer.drop(x)
    streams = [x]
    for block in gpt.transformer.h:
        x = block(x, gpt.rotary, None)
        if every_layer:
            streams.append(x)
        else:
            streams[-1] = x
    return streams


def _check_eval(gpt, what: str) -> None:
    if gpt.training:
        raise ValueError(f"{what} needs the model in eval mode (call gpt.eval()): in training "
                         "mode dropout would make every number random")


def _check_top_n(top_n, vocab_size: int) -> int:
    if isinstance(top_n, bool) or not isinstance(top_n, int) or not 0 <= top_n <= vocab_size:
        raise ValueError(f"top_n must be an integer in [0, {vocab_size}], but is {top_n!r}")
    return top_n


def _window(n_tokens: int, block_size: int) -> dict:
    """The last block_size tokens: what the model sees of a longer text (and the session)."""
    start = max(0, n_tokens - block_size)
    return {"start": start, "count": n_tokens - start, "cut": start > 0, "block_size": block_size}


# ---- score a text ----

@torch.inference_mode()
def score_text(gpt, tokenizer, text: str, top_n: int = 5) -> dict:
    """How surprised the model is by each token of `text`, from one forward over all positions.

    The text is encoded with special tokens allowed (as the decoding session does). A text
    longer than the model's context is scored over its last block_size tokens, the window the
    model can see (`window`: first token index, count, whether it was cut).

    Returns a dict:
      tokens: one entry per token of the window, in order: index (in the whole text's ids),
        id, text (token_text), and for every token but the window's first: prob (the model's
        probability of this token given the ones before it), rank (1 = the model's top
        choice; 1 + the number of tokens it scored strictly higher), surprisal_nats
        (-ln prob), surprisal_bits (-log2 prob), entropy_bits (the prediction's) and top (the
        top_n predictions for this position, [id, text, prob], most likely first). The window's first token has no
        prediction: its prob, rank, surprisals and top are None (see `note`).
      predicted: how many tokens have a prediction (count - 1).
      mean_loss_nats: mean of -ln prob over the predicted tokens, the cross-entropy that
        GPT.forward(ids[:-1], targets=ids[1:]) returns; perplexity = exp(mean_loss_nats).
      total_nats; predicted_text: tokenizer.decode of the predicted tokens (the window without
        its first token); predicted_chars: its characters (Unicode code points; a token that
        holds part of a UTF-8 character decodes to U+FFFD); nats_per_char = total_nats /
        predicted_chars; predicted_bytes: the UTF-8 bytes those tokens spell (exact);
        bits_per_byte = total_nats / ln 2 / predicted_bytes.
        With fewer than two tokens nothing is predicted and these are None.
      next_logits: (V,) float tensor, the raw logits after the last token: the distribution
        the playground charts with this text as the prompt (DecodingSession.reset(text) then
        .logits). next_top: its top_n as [id, text, prob].
    """
    _check_eval(gpt, "score_text")
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, but is {type(text).__name__}")
    if not text:
        raise ValueError("text is empty: give at least one token of text to score (two or more "
                         "for any prediction to be scored)")
    top_n = _check_top_n(top_n, gpt.config.vocab_size)
    ids = tokenizer.encode(text, allowed_special="all")
    window = _window(len(ids), gpt.config.block_size)
    seen = ids[window["start"]:]
    device = gpt.lm_head.weight.device
    idx = torch.tensor([seen], dtype=torch.long, device=device)  # (1, T)
    hidden = gpt.transformer.ln_f(residual_stream(gpt, idx, every_layer=False)[-1])[0]  # (T, C)

    texts: dict[int, str | None] = {}

    def text_of(t: int):
        if t not in texts:
            texts[t] = token_text(tokenizer, t)
        return texts[t]

    tokens = [{"index": window["start"], "id": seen[0], "text": text_of(seen[0]), "prob": None,
               "rank": None, "surprisal_nats": None, "surprisal_bits": None, "entropy_bits": None,
               "top": None}]
    targets = idx[0, 1:]  # (T - 1,): position t's vector predicts token t + 1
    total = 0.0
    for first in range(0, len(seen) - 1, CHUNK):
        tgt = targets[first:first + CHUNK]  # (n,)
        logp = torch.log_softmax(gpt.lm_head(hidden[first:first + len(tgt)]).float(), dim=-1)  # (n, V)
        true = logp.gather(1, tgt[:, None])  # (n, 1)
        # int32: summing the (n, V) booleans into int64 took twice as long on this CPU
        ranks = (logp > true).sum(dim=1, dtype=torch.int32) + 1  # (n,)
        top = logp.topk(top_n, dim=-1)
        # The entropy of each position's prediction, in bits: what the surprisal is measured against.
        entropy = -(logp.exp() * logp).nan_to_num().sum(dim=1) / math.log(2)  # (n,)
        total -= float(true.double().sum())  # nats: -ln p summed
        for j, (t, lp, rank, top_lp, top_ids, h) in enumerate(zip(
                tgt.tolist(), true[:, 0].tolist(), ranks.tolist(),
                top.values.exp().tolist(), top.indices.tolist(), entropy.tolist())):
            tokens.append({"index": window["start"] + first + j + 1, "id": t, "text": text_of(t),
                           "prob": math.exp(lp), "rank": rank, "surprisal_nats": -lp,
                           "surprisal_bits": -lp / math.log(2), "entropy_bits": h,
                           "top": [[i, text_of(i), p] for i, p in zip(top_ids, top_lp)]})

    next_logits = gpt.lm_head(hidden[-1:]).float()[0]  # (V,)
    next_top = next_logits.softmax(-1).topk(top_n)
    predicted = len(seen) - 1
    predicted_text = tokenizer.decode(seen[1:])
    predicted_bytes = sum(len(tokenizer.decode_single_token_bytes(t)) for t in seen[1:])
    mean = total / predicted if predicted else None
    return {
        "note": NO_PREDICTION + (f" The text has {len(ids)} tokens, more than the model's context "
                                 f"of {window['block_size']}: only its last {window['count']} "
                                 "are scored." if window["cut"] else ""),
        "n_tokens": len(ids),
        "window": window,
        "tokens": tokens,
        "predicted": predicted,
        "mean_loss_nats": mean,
        "perplexity": math.exp(mean) if predicted else None,
        "total_nats": total if predicted else None,
        "predicted_text": predicted_text,
        "predicted_chars": len(predicted_text),
        "nats_per_char": total / len(predicted_text) if predicted_text else None,
        "predicted_bytes": predicted_bytes,
        "bits_per_byte": total / math.log(2) / predicted_bytes if predicted_bytes else None,
        "next_logits": next_logits,
        "next_top": [[i, text_of(i), p] for i, p in zip(next_top.indices.tolist(),
                                                        next_top.values.tolist())],
    }


# ---- logit lens ----

def layer_names(n_layer: int) -> list[str]:
    return ["embedding"] + [f"block {i}" for i in range(1, n_layer + 1)]


@torch.inference_mode()
def lens_logits(gpt, idx: torch.Tensor) -> torch.Tensor:
    """(n_layer + 1, V): the last position's residual stream after the embedding and after
    each block, each put through the final norm and the output head, as if the model ended
    there. The last row is the model's own output, computed by the same operations as
    GPT.forward(idx, last_only=True)."""
    rows = []
    for h in residual_stream(gpt, idx):  # each (1, T, C)
        # ln_f over every position then the last one kept: forward's own order of operations
        rows.append(gpt.lm_head(gpt.transformer.ln_f(h)[:, -1:, :])[0, 0].float())  # (V,)
    return torch.stack(rows)


@torch.inference_mode()
def logit_lens(gpt, ids, top_n: int = 5) -> dict:
    """What the model would predict after the last of `ids` if it stopped after each layer.

    ids: token ids (a list or a 1-D/(1, T) tensor); longer than the context, the last
    block_size are used (`window`). Returns a dict:
      final_token: the model's own top choice (argmax of its output logits);
      layers: one entry per layer, "embedding" then "block 1" .. "block n": layer, top
        ([id, prob] x top_n, most likely first), final_rank (1 = top) and final_prob: where
        that layer puts the token the model finally predicts.
    The last entry is the model's real output distribution.
    """
    _check_eval(gpt, "logit_lens")
    ids = ids.reshape(-1).tolist() if isinstance(ids, torch.Tensor) else list(ids)
    if not ids:
        raise ValueError("ids is empty: the logit lens needs at least one token")
    from .tokenizer import validate_ids
    ids = validate_ids(ids, gpt.config.vocab_size, "ids")
    top_n = _check_top_n(top_n, gpt.config.vocab_size)
    window = _window(len(ids), gpt.config.block_size)
    idx = torch.tensor([ids[window["start"]:]], dtype=torch.long, device=gpt.lm_head.weight.device)
    logits = lens_logits(gpt, idx)  # (L + 1, V)
    final = int(logits[-1].argmax())
    probs = logits.softmax(-1)
    final_ranks = (logits > logits[:, final:final + 1]).sum(dim=1, dtype=torch.int32) + 1  # (L + 1,)
    top = probs.topk(top_n, dim=-1)
    layers = [{"layer": name, "top": [[i, p] for i, p in zip(ti, tp)],
               "final_rank": rank, "final_prob": fp}
              for name, ti, tp, rank, fp in zip(layer_names(gpt.config.n_layer), top.indices.tolist(),
                                                 top.values.tolist(), final_ranks.tolist(),
                                                 probs[:, final].tolist())]
    return {"position": len(ids) - 1, "window": window, "final_token": final, "layers": layers}


# ---- weight tying ----

def tying_facts(gpt, token_id: int, first: int = 8) -> dict:
    """Whether the output head and the embedding are one tensor, shown on one token's row.

    nn.Linear(C, V) stores its weight as (out, in) = (V, C), the embedding table's own shape,
    so a tied model uses one (V, C) matrix for both: row t is token t's input vector, and the
    output logit of token t is the final hidden state's dot product with that same row.
    """
    from .tokenizer import validate_ids
    V, C = gpt.config.vocab_size, gpt.config.n_embd
    (token_id,) = validate_ids([token_id], V, "token_id")
    wte, head = gpt.transformer.wte.weight, gpt.lm_head.weight
    same_object = head is wte
    same_storage = wte.untyped_storage().data_ptr() == head.untyped_storage().data_ptr()
    emb_row, head_row = wte[token_id].detach(), head[token_id].detach()  # (C,) each
    if same_object:
        statement = (f"Tied: lm_head.weight is transformer.wte.weight, one ({V}, {C}) tensor in one "
                     f"storage. Row {token_id} is both this token's embedding and the vector that "
                     f"scores it as the next token. Tying saves {V * C:,} parameters.")
    else:
        statement = (f"Not tied: lm_head.weight and transformer.wte.weight are two separate ({V}, {C}) "
                     f"tensors, in {'one' if same_storage else 'two'} storage"
                     f"{'' if same_storage else 's'}. Row {token_id} of the embedding and row "
                     f"{token_id} of the head are learned independently; the model has {V * C:,} "
                     "more parameters than a tied one.")
    return {
        "tied": same_object,
        "same_storage": same_storage,
        "storages": 1 if same_storage else 2,
        "wte_shape": list(wte.shape),
        "lm_head_shape": list(head.shape),
        "params_saved": V * C if same_object else 0,
        "num_params": gpt.num_params(),
        "token_id": token_id,
        "embedding_row": emb_row[:first].tolist(),
        "head_row": head_row[:first].tolist(),
        "rows_equal": bool(torch.equal(emb_row, head_row)),
        "statement": statement,
    }


# ---- what the checkpoint's own training run held in memory ----

def read_run_memory(directory: str | Path) -> dict | None:
    """A checkpoint directory's memory.json (written by training/memory.py after a run's first
    optimizer step: per process, the bytes of parameters, gradients and optimizer state it
    held, and its peak memory), or None when the directory has none or it is unreadable."""
    path = Path(directory) / MEMORY_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # a display extra: a bad file shows nothing rather than failing the page
    if not isinstance(data, dict) or not isinstance(data.get("ranks"), list):
        return None
    return data

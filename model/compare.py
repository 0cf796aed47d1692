"""Two models on the same text, position by position: how far apart their next-token
distributions are, where they agree on the top token, and where they disagree most.

    compare_models(gpt_a, tok_a, gpt_b, tok_b, "To be, or not to be")   # mode "auto"

Token mode (the two tokenizers are the same vocabulary: SmolLM2 exact vs fast, a training
snapshot vs the final model): both models read the same ids, and at every position t the
distributions p (model A) and q (model B) over the next token are compared in float64:

    KL(p‖q) = Σ_v p_v (ln p_v − ln q_v)     nats; what using q costs where p is the truth
    KL(q‖p)                                  the other way round: KL is not symmetric
    top-1 agreement                          argmax p == argmax q

Character mode (different vocabularies): token-level KL is not defined, because the two models
split the text into different pieces and their distributions range over different sets. What
both still define is the probability of the same characters: each model's total surprisal
over the text divided by the characters it predicted (nats per character).

The distributions compared are the models' own (temperature 1, no filters): sampling
settings reshape both in the same way, and a filter that removes a token would make KL
infinite. The page draws both charts with the visitor's settings and the same u.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from .inspect import CHUNK, _check_eval, residual_stream, score_text, token_text

MODES = ("auto", "tokens", "chars")
DISAGREE_N = 10  # positions listed where the two disagree most
KL_CHUNK = 32  # rows of (positions, V) float64 at a time


def same_vocabulary(tok_a, tok_b, vocab_a: int, vocab_b: int) -> bool:
    """Whether two tokenizers map the same ids to the same bytes (and the models' output
    heads are the same size), so that two next-token distributions range over one set."""
    if vocab_a != vocab_b:
        return False
    if tok_a is tok_b:
        return True
    ranks = (getattr(tok_a, "_mergeable_ranks", None), getattr(tok_b, "_mergeable_ranks", None))
    if None not in ranks:
        return ranks[0] == ranks[1] and tok_a._special_tokens == tok_b._special_tokens
    return all(token_text(tok_a, i) == token_text(tok_b, i) for i in range(vocab_a))


def all_logits(gpt, ids: list[int]) -> torch.Tensor:
    """(T,) ids -> (T, V) float32 logits: row t is the distribution over token t + 1, from
    one forward without a cache (as score_text computes them)."""
    _check_eval(gpt, "comparing models")
    idx = torch.tensor([ids], dtype=torch.long, device=gpt.lm_head.weight.device)  # (1, T)
    with torch.no_grad():
        hidden = gpt.transformer.ln_f(residual_stream(gpt, idx, every_layer=False)[-1])[0]  # (T, C)
        return torch.cat([gpt.lm_head(hidden[i:i + CHUNK]).float() for i in range(0, len(ids), CHUNK)])


def kl_rows(logits_p: torch.Tensor, logits_q: torch.Tensor, targets: torch.Tensor | None = None) -> dict:
    """(T, V) logits of two models -> per row, in float64: kl_pq, kl_qp (nats), agree (bool),
    top_p, top_q (each model's top token) and, given targets (T,), logp_target and logq_target
    (each model's log-probability of the true next token). A token one model rules out (logit
    −inf) that the other allows gives inf. Rows go CHUNK at a time: a (T, V) float64 tensor
    of SmolLM2's is 78 MB for 200 positions."""
    if logits_p.shape != logits_q.shape:
        raise ValueError(f"the two models' logits differ in shape: {tuple(logits_p.shape)} and "
                         f"{tuple(logits_q.shape)}; token mode needs one vocabulary")
    parts: dict[str, list[torch.Tensor]] = {}
    for i in range(0, logits_p.shape[0], KL_CHUNK):
        lp = torch.log_softmax(logits_p[i:i + KL_CHUNK].double(), dim=-1)  # (n, V)
        lq = torch.log_softmax(logits_q[i:i + KL_CHUNK].double(), dim=-1)
        diff = lp - lq  # (n, V)
        p, q = lp.exp(), lq.exp()
        if torch.isfinite(diff).all():
            kl_pq, kl_qp = (p * diff).sum(-1), -(q * diff).sum(-1)  # (n,)
        else:  # 0 · ln 0 = 0: a token with no probability under the outer distribution adds nothing
            kl_pq = torch.where(p > 0, p * diff, 0.0).sum(-1)
            kl_qp = torch.where(q > 0, -q * diff, 0.0).sum(-1)
        row = {"kl_pq": kl_pq, "kl_qp": kl_qp, "top_p": lp.argmax(-1), "top_q": lq.argmax(-1)}
        if targets is not None:
            t = targets[i:i + KL_CHUNK, None]  # (n, 1)
            row |= {"logp_target": lp.gather(1, t)[:, 0], "logq_target": lq.gather(1, t)[:, 0]}
        for k, v in row.items():
            parts.setdefault(k, []).append(v)
    out = {k: torch.cat(v) for k, v in parts.items()}
    out["agree"] = out["top_p"] == out["top_q"]
    return out


def _check_mode(mode) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, but is {mode!r:.80}")
    return mode


def compare_models(gpt_a, tok_a, gpt_b, tok_b, text: str, mode: str = "auto",
                   names: tuple[str, str] = ("A", "B"), top_n: int = DISAGREE_N,
                   ids: list[int] | None = None) -> dict:
    """Compare model A (p) with model B (q) on `text`.

    mode "tokens": both read tok_a's ids (the last window both contexts hold); refused with a
    message naming both vocabularies when they differ. "chars": per-character loss of each
    on its own tokens. "auto": tokens where the vocabularies are the same, else chars.

    Returns {"mode", "names", "note", ...}. Token mode adds: ids, start (the window's first
    index in the text's ids), positions: one dict per predicted token (index, id, text, kl_pq,
    kl_qp, agree, top_a, top_b, and each model's probability of the true token prob_a, prob_b),
    mean_kl_pq, mean_kl_qp, agreement (fraction), loss_a, loss_b (mean nats per token),
    disagree: the top_n positions by KL(p‖q) + KL(q‖p), largest first. ids: the token ids to
    read in token mode instead of encoding `text` (a decoding session's own). Character mode adds
    per model: tokens, predicted, chars, nats_per_char, bits_per_byte, mean_loss."""
    mode = _check_mode(mode)
    if not isinstance(text, str) or not text:
        raise ValueError("text is empty: give at least two tokens of text to compare on")
    same = same_vocabulary(tok_a, tok_b, gpt_a.config.vocab_size, gpt_b.config.vocab_size)
    if mode == "tokens" and not same:
        raise ValueError(
            f"{names[0]} ({gpt_a.config.vocab_size:,} tokens) and {names[1]} "
            f"({gpt_b.config.vocab_size:,} tokens) have different vocabularies, so their next-token "
            "distributions range over different sets and token-level KL is not defined; compare "
            "them with mode 'chars' (loss per character of the same text)")
    if mode == "chars" or not same:
        return _compare_chars(gpt_a, tok_a, gpt_b, tok_b, text, names)
    if ids is None:
        ids = tok_a.encode(text, allowed_special="all")
    return _compare_tokens(gpt_a, gpt_b, tok_a, ids, names, top_n)


def _compare_tokens(gpt_a, gpt_b, tok, ids, names, top_n) -> dict:
    block = min(gpt_a.config.block_size, gpt_b.config.block_size)
    start = max(0, len(ids) - block)
    seen = ids[start:]
    if len(seen) < 2:
        raise ValueError(f"the text is {len(seen)} token long: give at least two tokens, so that "
                         "one of them is predicted")
    return _token_result(gpt_a, gpt_b, tok, seen, start, names, top_n)


def _token_result(gpt_a, gpt_b, tok, seen, start, names, top_n) -> dict:
    la, lb = all_logits(gpt_a, seen)[:-1], all_logits(gpt_b, seen)[:-1]  # (T - 1, V)
    rows = kl_rows(la, lb, torch.tensor(seen[1:]))
    prob_a, prob_b = rows["logp_target"].exp(), rows["logq_target"].exp()
    cols = {k: v.tolist() for k, v in rows.items()}
    pa, pb = prob_a.tolist(), prob_b.tolist()
    positions = []
    for j, t in enumerate(seen[1:]):
        positions.append({"index": start + j + 1, "id": t, "text": token_text(tok, t),
                          "kl_pq": cols["kl_pq"][j], "kl_qp": cols["kl_qp"][j], "agree": cols["agree"][j],
                          "top_a": cols["top_p"][j], "top_b": cols["top_q"][j],
                          "prob_a": pa[j], "prob_b": pb[j]})
    n = len(positions)
    worst = sorted(positions, key=lambda r: -(r["kl_pq"] + r["kl_qp"]))[:top_n]
    return {
        "mode": "tokens", "names": list(names), "ids": list(seen), "start": start,
        "positions": positions,
        "mean_kl_pq": float(rows["kl_pq"].mean()), "mean_kl_qp": float(rows["kl_qp"].mean()),
        "agreement": sum(cols["agree"]) / n,
        "loss_a": float(-rows["logp_target"].mean()), "loss_b": float(-rows["logq_target"].mean()),
        "disagree": [r["index"] for r in worst],
        "note": (f"Both models read the same {len(seen)} tokens; at each of the {n} positions p is "
                 f"{names[0]}'s distribution over the next token and q is {names[1]}'s, both at "
                 "temperature 1 without filters. KL(p‖q) = Σ p ln(p/q) in nats (0 = identical); "
                 "KL is not symmetric, so both directions are given. agree: the two top tokens are "
                 "the same."),
    }


def _compare_chars(gpt_a, tok_a, gpt_b, tok_b, text, names) -> dict:
    out = {}
    for key, gpt, tok in (("a", gpt_a, tok_a), ("b", gpt_b, tok_b)):
        r = score_text(gpt, tok, text, top_n=0)
        if not r["predicted"]:
            raise ValueError(f"the text is one token long for {names[0 if key == 'a' else 1]}: give "
                             "more text, so that something is predicted")
        out[key] = {"tokens": r["n_tokens"], "predicted": r["predicted"], "chars": r["predicted_chars"],
                    "nats_per_char": r["nats_per_char"], "bits_per_byte": r["bits_per_byte"],
                    "mean_loss": r["mean_loss_nats"], "window_cut": r["window"]["cut"]}
    return {
        "mode": "chars", "names": list(names), "a": out["a"], "b": out["b"],
        "note": (f"{names[0]} and {names[1]} have different vocabularies: they cut the text into "
                 "different tokens and predict over different sets, so token-level KL is not defined. "
                 "Both do assign a probability to the same characters: each model's total surprisal "
                 "divided by the characters it predicted (all but its first token) is comparable."),
    }


# ---- the command line ----

def main(argv=None) -> int:
    """python -m model.compare --a checkpoints/shakespeare@316 --b checkpoints/shakespeare --text ..."""
    from .loading import load_model

    ap = argparse.ArgumentParser(prog="python -m model.compare", description=(
        "Compare two models on one text: KL(p‖q), KL(q‖p) and top-1 agreement at every position "
        "(same vocabulary), or loss per character (different vocabularies)."))
    ap.add_argument("--a", required=True, metavar="MODEL", help="model A (p): a path or a name, "
                    "PATH@STEP for a training snapshot, NAME:fast for fast mode")
    ap.add_argument("--b", required=True, metavar="MODEL", help="model B (q), as --a")
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--text", help="the text to compare on")
    group.add_argument("--text-file", help="a UTF-8 file holding the text")
    ap.add_argument("--mode", choices=MODES, default="auto",
                    help="tokens: KL per position (one vocabulary); chars: loss per character; "
                         "auto: tokens where possible (default)")
    ap.add_argument("--top", type=int, default=DISAGREE_N, help="positions of most disagreement to list")
    ap.add_argument("--json", action="store_true", help="print the whole result as JSON")
    args = ap.parse_args(argv)
    try:
        text = args.text if args.text is not None else open(args.text_file, encoding="utf-8").read()
        specs = [parse_spec(spec) for spec in (args.a, args.b)]
        models = [load_model(s["path"], mode=s["mode"] or "exact", step=s["step"]) for s in specs]
        r = compare_models(models[0][0], models[0][1], models[1][0], models[1][1], text,
                           mode=args.mode, names=(args.a, args.b), top_n=args.top)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(r, ensure_ascii=False, indent=1))
        return 0
    print(r["note"])
    if r["mode"] == "chars":
        for key, name in zip("ab", r["names"]):
            x = r[key]
            print(f"{name}: {x['nats_per_char']:.4f} nats/char over {x['chars']} chars "
                  f"({x['predicted']} tokens, {x['mean_loss']:.3f} nats/token)")
        return 0
    print(f"mean KL(p‖q) {r['mean_kl_pq']:.4f} nats, KL(q‖p) {r['mean_kl_qp']:.4f} nats, "
          f"top-1 agreement {r['agreement']:.1%}, loss A {r['loss_a']:.3f}, B {r['loss_b']:.3f} nats/token")
    print("most disagreement:")
    by_index = {p["index"]: p for p in r["positions"]}
    tok = models[0][1]
    for i in r["disagree"]:
        p = by_index[i]
        print(f"  #{i:<5} {p['text']!r:<14} KL(p‖q) {p['kl_pq']:.3f}  KL(q‖p) {p['kl_qp']:.3f}  "
              f"A's top {token_text(tok, p['top_a'])!r}  B's top {token_text(tok, p['top_b'])!r}")
    return 0


def parse_spec(spec: str) -> dict:
    """A model as the command line and the API name it -> load_model's keywords: PATH or NAME,
    PATH@STEP (a training snapshot), NAME:fast or NAME:exact (the arithmetic; None = not said),
    or both."""
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"a model must be named by a non-empty string, but is {spec!r:.80}")
    path, mode, step = spec, None, None
    head, _, tail = path.rpartition(":")
    if head and tail in ("exact", "fast"):
        path, mode = head, tail
    head, _, tail = path.rpartition("@")
    if head:
        if not tail.isdigit() or len(tail) > 9:
            raise ValueError(f"the step after @ in {spec!r:.80} must be a whole number of training "
                             f"steps, but is {tail!r:.40}")
        path, step = head, int(tail)
    return {"path": path, "mode": mode, "step": step}


if __name__ == "__main__":
    sys.exit(main())

"""The model panel: what is inside the model, and how its training went."""

from __future__ import annotations

import html
import math


def _n(x: int) -> str:
    if x >= 1e9:
        return f"{x / 1e9:.2f}B"
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e3:
        return f"{x / 1e3:.1f}k"
    return str(x)


def model_facts(gpt, tokenizer) -> list[tuple[str, str]]:
    c = gpt.config
    tied = gpt.lm_head.weight is gpt.transformer.wte.weight
    arch = ("GPT-2 style (LayerNorm, learned positions, GELU MLP)"
            if (c.norm, c.position, c.mlp) == ("layernorm", "learned", "gelu")
            else f"Llama style ({c.norm}, {c.position} positions, {c.mlp} MLP)")
    attention = f"{c.n_head} heads" + (f", {c.kv_heads} key/value heads (grouped-query)"
                                       if c.kv_heads != c.n_head else "")
    facts = [
        ("Parameters", f"{_n(gpt.num_params())} ({gpt.num_params():,}; a tied weight counts once)"),
        ("Architecture", arch),
        ("Layers", str(c.n_layer)),
        ("Width d", str(c.n_embd)),
        ("Attention", attention),
        ("Vocabulary", f"{c.vocab_size:,} token ids ({tokenizer.n_vocab:,} in the tokenizer)"),
        ("Context", f"{c.block_size:,} tokens"),
    ]
    shape = f"({c.vocab_size:,}, {c.n_embd})"
    if tied:
        facts.append(("Weight tying", (
            f"the input embedding <code>wte</code> and the output layer <code>lm_head</code> share one "
            f"{shape} matrix. <code>nn.Linear(d, V)</code> stores its weight as (out, in) = (V, d): "
            f"exactly the embedding table's shape, so row t is token t's input vector and also the "
            f"vector whose dot product with the last hidden state gives token t's logit. Tying saves "
            f"{_n(c.vocab_size * c.n_embd)} parameters.")))
    else:
        facts.append(("Weight tying", (
            f"not tied: <code>wte</code> and <code>lm_head</code> are two separate {shape} matrices "
            f"(<code>nn.Linear</code> stores (out, in) = (V, d), the embedding's shape, so they "
            f"<i>could</i> be shared).")))
    return facts


def loss_curve_svg(rows: list[dict], width: int = 520, height: int = 220) -> str:
    """An inline SVG of every numeric *loss* series in metrics.jsonl against its step."""
    series: dict[str, list[tuple[float, float]]] = {}
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            continue
        x = row.get("step", row.get("iter", i))
        if not isinstance(x, (int, float)):
            continue
        for key, y in row.items():
            if "loss" in key and isinstance(y, (int, float)) and math.isfinite(y):
                series.setdefault(key, []).append((float(x), float(y)))
    if not series:
        return ""
    xs = [x for pts in series.values() for x, _ in pts]
    ys = [y for pts in series.values() for _, y in pts]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1
    left, right, top, bottom = 48, 12, 14, 30
    def sx(x): return left + (x - x0) / (x1 - x0) * (width - left - right)
    def sy(y): return top + (y1 - y) / (y1 - y0) * (height - top - bottom)
    colours = ["#2563eb", "#ea580c", "#16a34a", "#9333ea"]
    parts = [f'<svg class="dp-loss" viewBox="0 0 {width} {height}" width="100%" role="img" '
             f'aria-label="training loss curve">',
             f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" class="dp-axis"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" class="dp-axis"/>']
    for y in (y0, (y0 + y1) / 2, y1):
        parts.append(f'<text x="{left - 6}" y="{sy(y) + 4:.1f}" text-anchor="end">{y:.2f}</text>')
    for x in (x0, x1):
        parts.append(f'<text x="{sx(x):.1f}" y="{height - 10}" text-anchor="middle">{x:,.0f}</text>')
    parts.append(f'<text x="{(left + width) / 2}" y="{height - 2}" text-anchor="middle">step</text>')
    for n, (key, pts) in enumerate(sorted(series.items())):
        colour = colours[n % len(colours)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in sorted(pts))
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.8"/>')
        # The legend: a colour key beside each series' name and last value.
        y = top + 12 + 14 * n
        parts.append(f'<line x1="{width - right - 150}" y1="{y - 4}" x2="{width - right - 134}" '
                     f'y2="{y - 4}" stroke="{colour}" stroke-width="3"/>')
        parts.append(f'<text x="{width - right - 130}" y="{y}" text-anchor="start" '
                     f'fill="{colour}">{html.escape(key)}: {sorted(pts)[-1][1]:.3f}</text>')
    parts.append("</svg>")
    return "".join(parts)


CARD_FIELDS = (("name", "Name"), ("organization", "Made by"), ("license", "Licence"),
               ("source", "Source"), ("original", "Original"), ("quantization", "File's weights"),
               ("arithmetic", "Arithmetic"))


def card_facts(card: dict) -> list[tuple[str, str]]:
    """What the model's card says: where it came from and under which licence."""
    facts = [(label, html.escape(str(card[key]))) for key, label in CARD_FIELDS if card.get(key)]
    mode = card.get("mode", "exact")
    facts.append(("Mode", "exact: float32, the same numbers as Hugging Face transformers" if mode == "exact"
                  else f"fast: {html.escape(str(card.get('arithmetic', 'quantized weights')))}; "
                       "a little off the exact numbers (see BENCHMARKS.md)"))
    return facts


def model_panel_html(loaded) -> str:
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>"
                   for k, v in card_facts(loaded.card) + model_facts(loaded.gpt, loaded.tokenizer))
    curve = loss_curve_svg(loaded.metrics)
    curve_html = (f'<div class="dp-curve"><div class="dp-muted">Training loss (metrics.jsonl; '
                  f'cross-entropy in nats per token)</div>{curve}</div>' if curve else
                  '<div class="dp-muted">No training curve: this model has no metrics.jsonl.</div>')
    return (f'<div class="dp-model-panel"><div class="dp-model-name">{html.escape(loaded.name)}</div>'
            f'<table class="dp-facts">{rows}</table>{curve_html}</div>')

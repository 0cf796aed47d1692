"""The model panel: what is inside the model, and how its training went: its facts, weight
tying shown on the tensors themselves, the memory each process of its training run held
(DDP vs FSDP, from the run's own memory.json), and its loss curve."""

from __future__ import annotations

import html
import math
import traceback
from pathlib import Path

from model.inspect import read_run_memory, tying_facts

from .tokens import token_label


def _n(x: int) -> str:
    if x >= 1e9:
        return f"{x / 1e9:.2f}B"
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e3:
        return f"{x / 1e3:.1f}k"
    return str(x)


def model_facts(gpt, tokenizer, card: dict | None = None) -> list[tuple[str, str]]:
    c = gpt.config
    # A fast model's weights are packed codes, not parameters: the card keeps the real count.
    n_params = (card or {}).get("parameters") or gpt.num_params()
    tied = gpt.lm_head.weight is gpt.transformer.wte.weight
    arch = ("GPT-2 style (LayerNorm, learned positions, GELU MLP)"
            if (c.norm, c.position, c.mlp) == ("layernorm", "learned", "gelu")
            else f"Llama style ({c.norm}, {c.position} positions, {c.mlp} MLP)")
    attention = f"{c.n_head} heads" + (f", {c.kv_heads} key/value heads (grouped-query)"
                                       if c.kv_heads != c.n_head else "")
    facts = [
        ("Parameters", f"{_n(n_params)} ({n_params:,}; a tied weight counts once)"),
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


# ---- weight tying, on the tensors themselves ----

def example_token(tokenizer, vocab_size: int) -> int:
    """A token everyone recognises for the tying rows: " the" where it is one token."""
    for text in (" the", "the", " a", "e"):
        try:
            ids = tokenizer.encode(text)
        except Exception:
            continue
        if len(ids) == 1 and ids[0] < vocab_size:
            return ids[0]
    return 0


def _row(values: list[float]) -> str:
    return " ".join(f"{v:+.4f}" for v in values)


def _shape(s: list[int]) -> str:
    return f"({s[0]:,}, {s[1]:,})"


def tying_html(gpt, tokenizer) -> str:
    """The two weights side by side: shapes, data pointers, one token's row in each."""
    c = gpt.config
    t = example_token(tokenizer, c.vocab_size)
    f = tying_facts(gpt, t)
    wte, head = gpt.transformer.wte.weight, gpt.lm_head.weight
    label = html.escape(token_label(tokenizer, t))
    n = len(f["embedding_row"])
    same = "the same address" if f["same_storage"] else "a different address"

    def card(name: str, role: str, shape_of: list, ptr: int, values: list[float]) -> str:
        return (f'<div class="dp-tie-card"><div><code>{name}</code> <span class="dp-muted">{role}</span></div>'
                f'<div>shape (V, d) = {_shape(shape_of)}</div><div>data_ptr() = <code>{ptr:#x}</code></div>'
                f'<div class="dp-muted">row {t:,} <code>{label}</code>, first {n} of {c.n_embd}:</div>'
                f'<code class="dp-tie-row">{_row(values)}</code></div>')
    link = ('<div class="dp-tie-link" aria-hidden="true">=<br><span>one tensor</span></div>' if f["tied"] else
            '<div class="dp-tie-link dp-tie-two" aria-hidden="true">≠<br><span>two tensors</span></div>')
    cards = (card("transformer.wte.weight", "the input embedding", f["wte_shape"], wte.data_ptr(), f["embedding_row"])
             + link + card("lm_head.weight", "the output layer", f["lm_head_shape"], head.data_ptr(), f["head_row"]))
    if f["tied"]:
        share = f["params_saved"] / (f["num_params"] + f["params_saved"])
        words = (f"<b>One tensor, not two.</b> <code>lm_head.weight is transformer.wte.weight</code>: "
                 f"one {_shape(f['wte_shape'])} matrix in one storage, so both names point at "
                 f"{same}. Row {t:,} is <code>{label}</code>'s input vector when the model reads it, "
                 f"and the vector whose dot product with the last hidden state is <code>{label}</code>'s "
                 f"logit when the model predicts it: the same {c.n_embd} numbers. Tying saves "
                 f"{f['params_saved']:,} parameters (V &times; d), {share:.0%} of what an untied model "
                 f"would have, {_bytes(f['params_saved'] * wte.element_size())} at "
                 f"{str(wte.dtype).removeprefix('torch.')}.")
    else:
        words = (f"<b>Not tied.</b> <code>wte</code> and <code>lm_head</code> are two tensors in "
                 f"{f['storages']} storage{'s' if f['storages'] > 1 else ''}, learned independently: "
                 f"row {t:,} <code>{label}</code> is {'the same' if f['rows_equal'] else 'different'} in "
                 f"each. The model has {f['lm_head_shape'][0] * f['lm_head_shape'][1]:,} more "
                 "parameters than a tied one would.")
    return (f'<section class="dp-panel-part dp-tying"><h4>Weight tying, in memory</h4>'
            f'<p>{words}</p><div class="dp-tie-cards">{cards}</div></section>')


# ---- DDP vs FSDP: what each process of the training run held ----

def _bytes(n) -> str:
    """MB = 10^6 bytes, as training/README.md writes them."""
    if not isinstance(n, (int, float)):
        return "–"
    return f"{n / 1e6:,.1f} MB" if n >= 1e5 else f"{n / 1e3:,.1f} kB"


PARTS = (("param_bytes", "parameters", "dp-mem-p"), ("grad_bytes", "gradients", "dp-mem-g"),
         ("optimizer_state_bytes", "optimizer state", "dp-mem-o"))
MEMORY_ROWS = PARTS + (("rss_bytes", "resident after the step", ""),
                          ("peak_rss_bytes", "peak resident", ""),
                          ("peak_cuda_allocated_bytes", "peak CUDA allocated", ""))


def _runs(data: dict) -> list[dict]:
    """The file's runs, each with its ranks: a training run's own file is one run; a file
    holding several (each rank entry names its `parallel`) is grouped by it."""
    info = {r.get("parallel"): r for r in data.get("runs", []) if isinstance(r, dict)}
    groups: dict[str, list[dict]] = {}
    for entry in data["ranks"]:
        if isinstance(entry, dict):
            groups.setdefault(str(entry.get("parallel", data.get("parallel", "?"))), []).append(entry)
    out = []
    for parallel, ranks in groups.items():
        run = {"parallel": parallel, "ranks": sorted(ranks, key=lambda e: e.get("rank", 0))}
        for key in ("world", "model_param_bytes", "model_params", "command", "param_dtype"):
            run[key] = info.get(parallel, {}).get(key, data.get(key))
        out.append(run)
    return out


def _total(entry: dict) -> int:
    return sum(entry.get(k) or 0 for k, _, _ in PARTS)


def _holds(run: dict) -> str:
    """What one process of the run held, in words, from its own numbers."""
    name = {"ddp": "DDP", "fsdp": "FSDP", "none": "one process"}.get(run["parallel"], run["parallel"])
    e, model = run["ranks"][0], run["model_param_bytes"]
    if not model or not e.get("param_bytes"):
        return f"{html.escape(name)}: {_bytes(_total(e))} of parameters, gradients and optimizer state per process."
    share = e["param_bytes"] / model
    what = ("the whole model, its whole gradient and the whole optimizer state" if share > 0.99
            else f"its shard of each, {share:.0%} of the model")
    return (f"Each <b>{html.escape(name)}</b> process ({run['world'] or len(run['ranks'])} in all) held "
            f"{what}: {_bytes(_total(e))} (parameters {_bytes(e['param_bytes'])}, gradients "
            f"{_bytes(e.get('grad_bytes'))}, optimizer state {_bytes(e.get('optimizer_state_bytes'))}), "
            f"measured by the process after its first optimizer step.")


def memory_html(directory) -> str:
    """DDP vs FSDP from the processes' own numbers, or "" when the run left no record."""
    data = read_run_memory(directory) if directory is not None else None
    if data is None:
        return ""
    runs = _runs(data)
    if not runs:
        return ""
    scale = max(_total(e) for run in runs for e in run["ranks"]) or 1
    blocks = []
    for run in runs:
        name = {"ddp": "DDP", "fsdp": "FSDP", "none": "one process"}.get(run["parallel"], run["parallel"])
        model_bytes = run["model_param_bytes"]
        r0 = run["ranks"][0]
        share = (f"each rank holds {r0['param_bytes'] / model_bytes:.0%} of the model's "
                 f"{_bytes(model_bytes)} of parameters" if model_bytes and r0.get("param_bytes") else "")
        bars = []
        for e in run["ranks"]:
            segs = "".join(f'<i class="{cls}" style="width:{100 * (e.get(k) or 0) / scale:.2f}%" '
                           f'title="{label}: {_bytes(e.get(k))}"></i>' for k, label, cls in PARTS)
            bars.append(f'<div class="dp-mem-rank"><span>rank {e.get("rank", "?")}</span>'
                        f'<span class="dp-mem-bar">{segs}</span><b>{_bytes(_total(e))}</b></div>')
        head = "".join(f"<th>rank {e.get('rank', '?')}</th>" for e in run["ranks"])
        body = "".join(
            f"<tr><th>{label}</th>" + "".join(f"<td>{_bytes(e.get(k))}</td>" for e in run["ranks"]) + "</tr>"
            for k, label, _ in MEMORY_ROWS if any(e.get(k) is not None for e in run["ranks"]))
        blocks.append(
            f'<div class="dp-mem-run" data-parallel="{html.escape(run["parallel"])}">'
            f'<div class="dp-mem-title"><b>{html.escape(name)}</b> · {run["world"] or len(run["ranks"])} '
            f'processes{" · " + share if share else ""}</div>{"".join(bars)}'
            f'<table class="dp-mem-table"><tr><th></th>{head}</tr>{body}</table></div>')
    summary = "".join(f"<p>{_holds(run)}</p>" for run in runs)
    peaks = [run["ranks"][0].get("peak_rss_bytes") for run in runs]
    states = [_total(run["ranks"][0]) for run in runs]
    rss = [run["ranks"][0].get("rss_bytes") for run in runs]
    if all(isinstance(x, (int, float)) for x in rss + peaks) and max(states) < 0.25 * min(rss):
        summary += (f"<p>Resident memory counts everything a process holds (Python, torch, gloo, the "
                    f"data): {' against '.join(_bytes(x) for x in rss)} after the step, peaks of "
                    f"{' and '.join(_bytes(x) for x in peaks)}. At this model size the process itself "
                    f"outweighs the model and its state; with a larger model the difference grows with "
                    f"it (training/README.md, section 5).</p>")
    commands = "".join(f'<div><span class="dp-muted">{html.escape(run["parallel"])}:</span> '
                       f'<code>{html.escape(run["command"])}</code></div>'
                       for run in runs if run.get("command"))
    where = html.escape(str(data.get("rerun") or ""))
    key = "".join(f'<span><i class="{cls}"></i>{label}</span>' for _, label, cls in PARTS)
    return (f'<section class="dp-panel-part dp-memory"><h4>DDP vs FSDP: memory per training process, '
            f'measured</h4>{summary}<div class="dp-mem-key">{key}</div>'
            f'<div class="dp-mem-runs">{"".join(blocks)}</div>'
            f'{"<p class=dp-muted>" + where + "</p>" if where else ""}'
            f'<div class="dp-mem-commands">{commands}</div>'
            f'<details class="dp-mem-how"><summary>How each process counted</summary>'
            f'<p class="dp-muted">{html.escape(str(data.get("note", "")))}</p></details></section>')


def _part(what: str, build) -> str:
    """One section of the panel; a failure shows as a line and never costs the whole panel
    (it is sent with every model load)."""
    try:
        return build()
    except Exception as e:
        traceback.print_exception(e)
        return f'<p class="dp-muted">{html.escape(what)} could not be shown ({html.escape(type(e).__name__)}).</p>'


def model_panel_html(loaded) -> str:
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>"
                   for k, v in card_facts(loaded.card) + model_facts(loaded.gpt, loaded.tokenizer, loaded.card))
    curve = loss_curve_svg(loaded.metrics)
    curve_html = (f'<div class="dp-curve"><div class="dp-muted">Training loss (metrics.jsonl; '
                  f'cross-entropy in nats per token)</div>{curve}</div>' if curve else
                  '<div class="dp-muted">No training curve: this model has no metrics.jsonl.</div>')
    directory = Path(loaded.name) if Path(loaded.name).is_dir() else None
    tying = _part("Weight tying", lambda: tying_html(loaded.gpt, loaded.tokenizer))
    memory = _part("The training run's memory", lambda: memory_html(directory))
    return (f'<div class="dp-model-panel"><div class="dp-model-name">{html.escape(loaded.name)}</div>'
            f'<table class="dp-facts">{rows}</table>{tying}{memory}{curve_html}</div>')

"""The "Training and comparison" section's fixed pieces: its HTML skeleton, the script that
mounts it (static/learn.js, static/compare.js) and their tags. It is a component of its own
below the playground, like the scorer; it reads the tab's session and changes nothing."""

from __future__ import annotations

from .page import static_url

SCRIPTS = ("line_chart.js", "compare.js", "learn.js")


def head_html() -> str:
    return (f'<link rel="stylesheet" href="{static_url("learn.css")}">'
            + "".join(f'<script src="{static_url(name)}"></script>' for name in SCRIPTS))


TEMPLATE = """
<div class="dl-app">
  <section class="dl-learn" aria-label="Watch it learn">
    <p class="dl-intro">The same prompt, read by the model as it was at each step of its training
    run: the bars move from near-uniform at step 0 (the loss is close to ln V) to the final
    model's. Same context, same settings, same u: only the weights differ.</p>
    <div class="dl-none dp-muted" hidden></div>
    <div class="dl-status dp-muted" aria-live="polite"></div>
    <div class="dl-body" hidden>
      <label class="dl-slider-box"><span>Training step</span>
        <input type="range" class="dl-step" min="0" max="0" step="1" value="0" aria-label="training step">
        <output class="dl-step-out"></output></label>
      <span class="dl-memory dp-muted"></span>
      <div class="dl-stats"></div>
      <div class="dl-cols">
        <div class="dl-chart-col"><div class="dp-plot dl-plot"></div></div>
        <div class="dl-side"><div class="dl-curve-title">Training curve, this snapshot marked, and
          this text's own loss at each snapshot</div><div class="dl-curve"></div></div>
      </div>
      <div class="dl-tokens-title">This text at this snapshot: each token coloured by the probability
        the snapshot gave it (which kinds of token are learned first?)</div>
      <div class="dl-tokens"></div>
      <div class="dl-gen-row">
        <button type="button" class="dp-btn dl-generate">Generate from every snapshot</button>
        <span class="dl-gen-status dp-muted">the prompt continued by each, with this tab's seed and
          settings</span></div>
      <ol class="dl-gens"></ol>
    </div>
  </section>
  <section class="dc-compare" aria-label="Compare two models">
    <h3 class="dc-head">Compare two models on this text</h3>
    <div class="dc-pick">
      <label>A (p) <select class="dc-a" aria-label="model A"></select></label>
      <label>B (q) <select class="dc-b" aria-label="model B"></select></label>
      <button type="button" class="dp-btn dp-primary dc-go">Compare</button>
    </div>
    <div class="dc-status dp-muted" aria-live="polite"></div>
    <div class="dc-result" hidden>
      <div class="dc-summary"></div>
      <div class="dc-strip" role="group"
        aria-label="KL per position, one column per token: hover, tap or focus one to chart it (arrow keys move)"></div>
      <div class="dc-at"></div>
      <div class="dc-plots">
        <div class="dc-col"><div class="dc-title dc-a-title"></div><div class="dp-plot dc-plot-a"></div></div>
        <div class="dc-col"><div class="dc-title dc-b-title"></div><div class="dp-plot dc-plot-b"></div></div>
      </div>
      <div class="dc-disagree"></div>
      <p class="dc-note dp-muted"></p>
    </div>
  </section>
</div>
"""

MOUNT_JS = """
(function mount() {
  const ready = window.DPLearn && window.DPLearn.mount && window.DPCompare && window.DPChart;
  if (!(ready && window.DPText && window.DPLineChart)) return setTimeout(mount, 25);
  // Events it sends: 'learn' 'learn_generate' 'compare' 'compare_at'
  DPLearn.mount(element, trigger, props, watch);
})();
"""
EVENTS = ("learn", "learn_generate", "compare", "compare_at")
assert all(f"'{e}'" in MOUNT_JS for e in EVENTS), "gr.HTML finds custom events by their quoted names"

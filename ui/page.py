"""The page's fixed pieces: the HTML skeleton of the playground, the script that mounts it,
and the static files (our JS and CSS: no CDN).

The skeleton is filled in by the page code (static/app.js and friends) from the props that
build_demo hands it: the sampling table of model/sampling.py, the limits, the presets and
the model menu. Nothing here names a setting, a default or a range.
"""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).parent / "static"
SCRIPTS = ("pipeline.js", "llama_stages.js", "controls.js", "stage_view.js", "chain.js", "bar_canvas.js",
           "chart_hits.js", "chart.js", "text.js", "strip.js", "futures.js", "lens.js", "score.js", "queue.js",
           "link.js", "keys.js", "fit.js", "reconnect.js", "beam.js", "blocks.js", "tree.js",
           "app.js")


def static_url(name: str, path: Path | None = None) -> str:
    path = path or STATIC / name
    # Relative, so the page also works behind a proxy's root path; ?v= refreshes browser caches.
    return f"gradio_api/file={path.resolve()}?v={int(path.stat().st_mtime)}"


def head_html() -> str:
    """The <head> tags the playground component loads before its js_on_load runs."""
    return (f'<link rel="stylesheet" href="{static_url("playground.css")}">'
            + "".join(f'<script src="{static_url(name)}"></script>' for name in SCRIPTS))


def static_paths() -> list[str]:
    """What gr.set_static_paths must allow: our folder, nothing else."""
    return [str(STATIC)]


# The order of the parts is the keyboard's order (prompt, then the actions, the chart, the
# text and the sampler chain, then the controls) and the phone's. On wider screens
# playground.css lays them out so that the chart, the newest text, the actions and the chain
# share one screen: the prompt and the settings on the left, the chain beside the chart.
TEMPLATE = """
<div class="dp-app" data-loading="1">
  <header class="dp-top">
    <div class="dp-title">
      <h1>The Decoding Playground</h1>
      <p>A language model scores every possible next token; decoding turns the scores into one
      choice. Move a setting and watch the choice change: the model does not run again.</p>
    </div>
    <label class="dp-model-pick"><span>Model</span><select class="dp-model"></select></label>
  </header>

  <section class="dp-prompt-area" aria-label="Prompt">
    <label class="dp-label" for="dp-prompt">Prompt <span class="dp-muted dp-prompt-limit"></span></label>
    <textarea id="dp-prompt" class="dp-prompt" rows="3" spellcheck="false"
      placeholder="Type or paste a prompt. Empty = the start of a new document."></textarea>
    <label class="dp-chat" hidden><input type="checkbox" class="dp-chat-on"> Chat template
      <span class="dp-muted">wrap the prompt as one user turn, as the model was tuned</span></label>
    <div class="dp-status" aria-live="polite"></div>
    <details class="dp-chips-box"><summary class="dp-chips-summary">The prompt's tokens</summary>
      <div class="dp-chips-host"></div></details>
  </section>

  <section class="dp-work" aria-label="Next token">
    <div class="dp-bar">
      <div class="dp-actions">
        <button type="button" class="dp-btn dp-primary dp-step" aria-keyshortcuts="S ArrowRight">Step</button>
        <button type="button" class="dp-btn dp-generate" aria-keyshortcuts="G">Generate</button>
        <label class="dp-n-box"><input type="text" class="dp-num dp-n" inputmode="numeric"
          aria-label="tokens per Generate"> tokens</label>
        <button type="button" class="dp-btn dp-stop" aria-keyshortcuts="Escape" disabled>Stop</button>
        <button type="button" class="dp-btn dp-undo" aria-keyshortcuts="U ArrowLeft">Undo</button>
        <button type="button" class="dp-btn dp-reset">Reset</button>
      </div>
      <div class="dp-banner" hidden></div>
    </div>
    <div class="dp-chart">
      <div class="dp-heading">Loading the model ...</div>
      <div class="dp-stats"></div>
      <details class="dp-key-box" hidden><summary>Key to the chart</summary><div class="dp-key"></div></details>
      <div class="dp-plots">
        <div class="dp-plot-col">
          <div class="dp-compare-title dp-a-title" hidden></div>
          <div class="dp-plot-box"><div class="dp-plot dp-main"></div><div class="dp-hits" role="group"
            aria-label="bars: Enter picks a token"></div></div>
        </div>
        <div class="dp-compare" hidden>
          <div class="dp-compare-title dp-b-title"></div>
          <div class="dp-plot dp-compare-plot"></div>
          <div class="dp-compare-stats"></div>
        </div>
      </div>
    </div>
    <div class="dp-output">
      <div class="dp-text" aria-label="the text so far; Tab to a token, Enter shows its distribution"></div>
      <div class="dp-strip" hidden></div>
      <div class="dp-legend"><span>Chosen token's probability:</span><span>unlikely</span>
        <span class="dp-grad"></span><span>likely</span>
        <span>(greedy steps: the model's own, at T = 1) · dashed underline = picked by you · hover, focus or tap
        a token for its alternatives</span></div>
    </div>
    <section class="dp-chain-box" aria-label="Sampler chain">
      <h2 class="dp-chain-head">Sampler chain <span class="dp-muted">runs top to bottom</span></h2>
      <div class="dp-chain"></div>
    </section>
    <div class="dp-more-tools">
      <div class="dp-tools">
        <label><input type="checkbox" class="dp-log"> log scale</label>
        <label><input type="checkbox" class="dp-compare-on"> compare with</label>
        <select class="dp-compare-with" aria-label="settings to compare with"></select>
        <button type="button" class="dp-btn dp-pin">Pin current settings</button>
        <span class="dp-muted">same logits, same u: only the settings differ</span>
        <button type="button" class="dp-btn dp-lens-btn" aria-expanded="false"
          aria-controls="dp-lens">Logit lens</button>
      </div>
      <section class="dp-lens" id="dp-lens" hidden aria-label="Logit lens" aria-live="polite"></section>
      <section class="dp-futures" aria-label="Many futures">
        <div class="dp-sample-row" role="group" aria-label="sample the next token N times">
          <span>Sample the next token</span>
          <button type="button" class="dp-btn dp-sample" data-n="100">100×</button>
          <button type="button" class="dp-btn dp-sample" data-n="1000">1,000×</button>
          <button type="button" class="dp-btn dp-sample" data-n="10000">10,000×</button>
          <button type="button" class="dp-btn dp-sample-clear" hidden>Hide draws</button>
          <span class="dp-sample-stats dp-muted" aria-live="polite">drawn with the chart's settings; nothing is
            committed. The counts are drawn over the bars.</span>
        </div>
        <div class="dp-cont-row" role="group" aria-label="continuations">
          <button type="button" class="dp-btn dp-cont-go">Continuations</button>
          <label><input type="text" class="dp-num dp-cont-n" inputmode="numeric"
            aria-label="how many continuations"></label>
          <span>×</span>
          <label><input type="text" class="dp-num dp-cont-m" inputmode="numeric"
            aria-label="tokens per continuation"> tokens</label>
          <span class="dp-muted">each with its own seed (seed + j): continuation 0 is what Generate writes</span>
        </div>
        <ol class="dp-cont-list" aria-label="continuations: Open makes one the text" hidden></ol>
      </section>
      <details class="dp-beam-box">
        <summary>Beam search <span class="dp-muted">many futures at once: which survive, which finish</span></summary>
        <section class="dp-beam" aria-label="Beam search"></section>
      </details>
      <details class="dp-blocks-box">
        <summary>Probability blocks <span class="dp-muted">the likely futures, each as tall as its
          chance</span></summary>
        <section class="dp-blocks" aria-label="Probability blocks"></section>
      </details>
      <section class="dp-tree-box" aria-label="Tree of generations">
        <h2 class="dp-tree-head">Tree of generations <span class="dp-muted dp-tree-count"></span></h2>
        <p class="dp-muted dp-tree-help">Every step you made, on every branch: Undo, Rewind and a new
          token keep the old path. Click or tap a token to go there; in the tree, ← parent,
          → child, ↑ ↓ sibling.</p>
        <div class="dp-tree" aria-label="the tree: each token with the probability it was chosen with"></div>
      </section>
    </div>
    <div class="dp-links">
      <button type="button" class="dp-btn dp-export">Export history (JSON)</button>
      <button type="button" class="dp-btn dp-copy-link">Copy link to this view</button>
      <label class="dp-btn dp-open-tree">Open a saved tree (JSON)<input type="file" class="dp-tree-file"
        accept=".json,application/json"></label>
      <span class="dp-keys dp-muted"><b>Keys:</b> S or → Step · U or ← Undo · G Generate ·
        Esc Stop · 1–9 pick the n-th bar · Tab to bars and tokens, Enter picks or inspects ·
        looking back: R Rewind, B back</span>
    </div>
  </section>

  <section class="dp-controls-area" aria-label="Decoding settings">
    <div class="dp-presets" role="group" aria-label="presets"></div>
    <div class="dp-controls"></div>
    <details class="dp-more"><summary>More samplers: llama.cpp's, penalties, bias</summary>
      <div class="dp-controls-more"></div></details>
    <div class="dp-seed-row"></div>
    <p class="dp-muted dp-limits"></p>
  </section>

  <div class="dp-toasts" role="status" aria-live="polite"></div>
</div>
"""

# The page code may still be loading when the component mounts: wait for it.
MOUNT_JS = """
(function mount() {
  if (!(window.DP && window.DP.mount)) return setTimeout(mount, 25);
  // Events it sends: 'start' 'prompt' 'reset' 'model' 'step' 'pick' 'undo' 'rewind'
  // 'inspect' 'generate' 'stop' 'seed' 'export' 'lens'
  // Many futures: 'sample' 'continuations' 'open'; beam search: 'beam' 'beam_open';
  // the tree of generations: 'goto' 'load_tree'; probability blocks: 'blocks'
  DP.mount(element, trigger, props, watch);
})();
"""
EVENTS = ("start", "prompt", "reset", "model", "step", "pick", "undo", "rewind", "inspect",
          "generate", "stop", "seed", "export", "lens")
EVENTS += ("sample", "continuations", "open")  # many futures (static/futures.js)
EVENTS += ("beam", "beam_open")  # beam search (static/beam.js)
EVENTS += ("goto", "load_tree")  # the tree of generations (static/tree.js)
EVENTS += ("blocks",)  # probability blocks (static/blocks.js); a block opens with 'open'
assert all(f"'{e}'" in MOUNT_JS for e in EVENTS), "gr.HTML finds custom events by their quoted names"


# ---- the scorer: its own component below the playground (static/score.js) ----
# Phone order: the text, Score, the numbers, the coloured tokens, the loss plot, the next
# token, the explanation; playground.css puts the next token beside the tokens when wide.
SCORE_TEMPLATE = """
<div class="ds-app">
  <p class="ds-intro">Pretraining shows the model a text and asks it to predict <b>every</b>
  token from the ones before it; the loss is the mean surprise. Paste any text to see that
  surprise token by token.</p>
  <label class="dp-label" for="ds-input">Text to score <span class="dp-muted ds-limit"></span></label>
  <textarea id="ds-input" class="ds-input" rows="4" spellcheck="false"
    placeholder="Type or paste any text, e.g. a line of Shakespeare."></textarea>
  <div class="ds-actions">
    <button type="button" class="dp-btn dp-primary ds-score">Score</button>
    <label class="ds-auto-box"><input type="checkbox" class="ds-auto" checked> score as I type</label>
    <span class="ds-status dp-muted" aria-live="polite"></span>
  </div>
  <label class="ds-step-box" hidden><span>Training step</span>
    <input type="range" class="ds-step" min="0" max="0" step="1" value="0"
      aria-label="training step: score with the model as it was then">
    <output class="ds-step-out"></output></label>
  <div class="ds-result" hidden>
    <div class="ds-summary"></div>
    <div class="ds-cols">
      <div class="ds-left">
        <div class="ds-tokens"
             aria-label="the text's tokens coloured by probability; Tab to a token for its numbers"></div>
        <div class="dp-strip ds-strip" hidden></div>
        <div class="dp-legend"><span>Probability the model gave each token:</span><span>unlikely</span>
          <span class="dp-grad"></span><span>likely</span><span class="ds-first-key">grey = the first
          token, nothing to predict it from</span><span>· hover, focus or tap a token</span></div>
        <div class="ds-plot-title"></div>
        <div class="ds-plot"></div>
      </div>
      <aside class="ds-next" aria-label="the next token after the text"></aside>
    </div>
    <div class="ds-explain"></div>
  </div>
</div>
"""

SCORE_MOUNT_JS = """
(function mount() {
  if (!(window.DPScore && window.DPScore.mount && window.DPText)) return setTimeout(mount, 25);
  // Events it sends: 'score'
  DPScore.mount(element, trigger, props, watch);
})();
"""
SCORE_EVENTS = ("score",)
assert all(f"'{e}'" in SCORE_MOUNT_JS for e in SCORE_EVENTS)

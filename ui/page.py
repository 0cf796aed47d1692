"""The page's fixed pieces: HTML templates, the small scripts that mount the page code, and
the static files (our JS/CSS and the plotly.js that the plotly wheel ships: no CDN)."""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).parent / "static"


def static_url(name: str, path: Path | None = None) -> str:
    path = path or STATIC / name
    # Relative, so the page also works behind a proxy's root path; ?v= refreshes browser caches.
    return f"gradio_api/file={path.resolve()}?v={int(path.stat().st_mtime)}"


def plotly_js_path() -> Path:
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall plotly (pip install plotly==7.1.0); "
                                "the chart is drawn with the plotly.js that its wheel ships")
    return path


CHART_TEMPLATE = """
<div class="dp-chart">
  <div class="dp-heading">Loading the model ...</div>
  <div class="dp-banner" hidden></div>
  <div class="dp-stats"></div>
  <div class="dp-key">
    <span><i class="dp-sw dp-sw-final"></i>final (your settings)</span>
    <span><i class="dp-sw dp-sw-landed"></i>the token u lands on</span>
    <span><i class="dp-sw dp-sw-raw"></i>raw (T = 1, no filters)</span>
    <span><i class="dp-sw dp-sw-removed"></i>removed (colour = which filter)</span>
    <span><i class="dp-ln dp-ln-cum"></i>cumulative</span>
    <span><i class="dp-ln dp-ln-topp"></i>cumulative entering top-p</span>
    <span><i class="dp-ln dp-ln-u"></i>u, the random draw</span>
  </div>
  <div class="dp-plots">
    <div class="dp-plot dp-main"></div>
    <div class="dp-compare" hidden>
      <div class="dp-compare-stats"></div>
      <div class="dp-plot dp-compare-plot"></div>
    </div>
  </div>
  <div class="dp-tools">
    <label><input type="checkbox" class="dp-log"> log scale</label>
    <label><input type="checkbox" class="dp-compare-on"> compare side by side with</label>
    <select class="dp-compare-with"><option value="pinned" disabled>pinned settings (pin first)</option></select>
    <button class="dp-btn dp-pin" type="button">Pin current settings</button>
    <span class="dp-muted">same logits, same u: only the settings differ</span>
  </div>
</div>
"""

# The page's script may still be loading when a component mounts: wait for it.
CHART_JS = """
(function mount() {
  if (!(window.DP && window.Plotly)) return setTimeout(mount, 25);
  DP.mountChart(element, trigger, props, watch);  // sends 'pick' and 'rewind'
})();
"""
OUTPUT_JS = """
(function mount() {
  if (!window.DP) return setTimeout(mount, 25);
  DP.mountOutput(element, trigger);  // sends 'inspect'
})();
"""
CONTROLS_JS = "(...values) => { if (window.DP) window.DP.fromControls(values); }"

HEADER = """
<div class="dp-header">
  <h1>The Decoding Playground</h1>
  <p>A language model gives every possible next token a score. Decoding turns those scores into
  one choice. Move the sliders and watch the choice change; nothing is re-computed by the model.</p>
</div>
"""

LEGEND = """
<div class="dp-legend"><span>Chosen token's probability:</span><span>unlikely</span>
<span class="dp-grad"></span><span>likely</span><span>· dashed underline = picked by you ·
hover a token for its alternatives, click it to see its distribution</span></div>
"""


def head_html() -> str:
    """The <head> tags the chart component loads before its js_on_load runs."""
    plotly_js = plotly_js_path()
    return (f'<link rel="stylesheet" href="{static_url("playground.css")}">'
            f'<script src="{static_url("plotly.min.js", plotly_js)}"></script>'
            f'<script src="{static_url("pipeline.js")}"></script>'
            f'<script src="{static_url("playground.js")}"></script>')


def static_paths() -> list[str]:
    """What gr.set_static_paths must allow: our folder and plotly.min.js, nothing else."""
    return [str(STATIC), str(plotly_js_path())]

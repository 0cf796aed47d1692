/* The next-token chart: one step's distribution as bars, redrawn on every settings change
   from the step's logits (pipeline.js), with Plotly.react on a div that stays.

   Grey bars behind are the raw distribution (T = 1, no filters); coloured bars are what the
   settings leave; outlined, pale ones were removed, in the colour of the stage that removed
   them. (Not hatched: Plotly's pattern fills cost a quarter of each redraw, measured by
   benchmarks/bench_slider.py.)
   The line is the cumulative probability in sampling order and u, the step's uniform draw,
   is marked on it: the bar where the line first reaches u is the token sampling picks.

   Over the plot lies one transparent button per bar, the whole height of its column: that is
   what a click, a tap or Enter hits (a 2-pixel tail bar is as easy to pick as a tall one),
   and what Tab walks through. */
(function (global) {
  "use strict";
  const PL = global.DPPipeline;
  const BLUE = "#2563eb", AMBER = "#f59e0b", GREY = "#cbd5e1", INK = "#334155", PALE = "#93c5fd";

  const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  const fmtP = (p) => (p >= 0.001 || p === 0 ? p.toFixed(3) : p.toExponential(1));
  const pct = (p) => (100 * p).toFixed(1) + "%";

  // The settings in words, in the table's order, naming only what differs from the default.
  function settingsText(s) {
    const parts = [];
    for (const [name, x] of Object.entries(PL.schema().settings)) {
      if (name === "temperature") parts.push(s.temperature === 0 ? "T = 0 (greedy)" : "T = " + s.temperature);
      else if (s[name] !== x.default) parts.push(x.kind === "bool" ? x.label : x.label + " " + s[name]);
    }
    return parts.join(", ");
  }

  function bars(div, compare) {
    const w = div.clientWidth || 800;
    return Math.max(8, Math.min(25, Math.floor(w / (compare ? 34 : 30))));
  }

  function figure(P, R, u, opts) {
    const raw = PL.rawProbs(P);
    const n = opts.bars;
    const ids = Array.from(R.display.subarray ? R.display.subarray(0, n) : R.display.slice(0, n));
    const seen = new Set();
    const labels = ids.map((id) => {
      let l = opts.labelOf(id);
      if (seen.has(l)) l += " ·" + id; // category labels must be unique
      seen.add(l);
      return l;
    });
    const shown = labels.map(esc);
    // A lone punctuation mark is a speck at tick size: bold, between brackets, it reads.
    const ticks = labels.map((l, i) => (/^[\p{P}\p{S}]{1,2}$/u.test(l) ? "<b>⟨" + shown[i] + "⟩</b>" : shown[i]));
    const rest = P.V - ids.length;
    const draw = R.nKept > 0 ? PL.pick(R, u) : null;
    // Looking back, highlight the token that was chosen (a picked one need not be where u lands).
    const landed = P.mode === "inspect" ? P.chosen : draw ? draw.token : -1;
    const rank = new Map();
    for (let i = 0; i < R.nKept; i++) rank.set(R.order[i], i + 1);
    const colourOf = {};
    for (const st of R.stages) colourOf[st.name] = st.colour;
    const titleOf = {};
    for (const st of R.stages) titleOf[st.name] = st.title;

    const yFinal = [], yRaw = [], cFinal = [], cRaw = [], lineC = [], hover = [];
    const cum = [], cumTopP = [];
    let c = 0, cp = 0, finalShown = 0, rawShown = 0;
    const tp = R.why.top_p;
    ids.forEach((id, i) => {
      const f = R.probs[id];
      yFinal.push(f); yRaw.push(raw[id]);
      finalShown += f; rawShown += raw[id];
      c += f; cum.push(Math.min(c, 1));
      if (tp) { cp += tp.probs[id]; cumTopP.push(Math.min(cp, 1)); }
      const head = "<b>" + esc(labels[i]) + "</b>  id " + id + "<br>";
      let h;
      if (R.removedBy[id] >= 0) {
        const stage = R.stages[R.removedBy[id]].name;
        cRaw.push(colourOf[stage] + "40"); lineC.push(colourOf[stage]);
        h = head + "raw p = " + fmtP(raw[id]) + "<br><b>removed by " + titleOf[stage] + "</b>: " +
          esc(PL.removalReason(R, id));
      } else {
        cRaw.push(GREY); lineC.push(GREY);
        h = head + "raw p = " + fmtP(raw[id]) + " → final p = " + fmtP(f) + "<br>rank " +
          rank.get(id) + ", cumulative " + fmtP(c);
      }
      cFinal.push(id === landed ? AMBER : BLUE);
      const mark = P.mode === "inspect" ? "chosen at this step" : draw && draw.greedy ? "greedy pick" : "u lands here";
      hover.push(h + (id === landed ? "<br><b>" + mark + "</b>" : "") +
        (P.mode === "live" ? "<br><i>click, tap or Enter to pick this token</i>" : ""));
    });
    const restLabel = "rest (" + rest.toLocaleString("en") + ")";
    const finalRest = Math.max(0, 1 - finalShown), rawRest = Math.max(0, 1 - rawShown);
    if (rest > 0) {
      shown.push(restLabel); yFinal.push(finalRest); yRaw.push(rawRest);
      cFinal.push(ids.length && landed >= 0 && !ids.includes(landed) ? AMBER : PALE);
      cRaw.push(GREY); lineC.push(GREY);
      hover.push("<b>the other " + rest.toLocaleString("en") + " tokens</b><br>raw mass " + pct(rawRest) +
        " → final mass " + pct(finalRest));
      cum.push(1);
      if (tp) cumTopP.push(1);
    }
    const where = landed < 0 ? null : ids.includes(landed) ? shown[ids.indexOf(landed)] : restLabel;
    const hasU = Boolean(where && draw && !draw.greedy && u !== null && u !== undefined);

    const data = [
      { type: "bar", name: "final", x: shown, y: yFinal, width: 0.5, zorder: 3,
        marker: { color: cFinal }, hovertext: hover, hovertemplate: "%{hovertext}<extra></extra>" },
      { type: "bar", name: "raw", x: shown, y: yRaw, width: 0.86, zorder: 1,
        marker: { color: cRaw, line: { color: lineC, width: 1.5 } }, hovertext: hover, hovertemplate: "%{hovertext}<extra></extra>" },
      { type: "scatter", name: "cumulative", x: shown, y: cum, yaxis: "y2", zorder: 4,
        mode: "lines+markers", line: { color: INK, width: 1.5 },
        // the point where the curve first reaches u is the drawn token: marked in amber
        marker: { size: shown.map((l) => (l === where ? 12 : 4)),
          color: shown.map((l) => (l === where ? AMBER : INK)),
          symbol: shown.map((l) => (l === where ? "diamond" : "circle")) },
        hoverinfo: "skip" },
    ];
    if (tp) {
      data.push({ type: "scatter", name: "cumulative entering top-p", x: shown, y: cumTopP,
        yaxis: "y2", zorder: 4, mode: "lines", line: { color: colourOf.top_p, width: 1.5, dash: "dot" },
        hoverinfo: "skip" });
    }
    // The lines' labels sit on a light backing: they often cross a bar.
    const shapes = [], annotations = [], LABEL_BG = "rgba(255, 255, 255, 0.85)";
    if (hasU) {
      shapes.push({ type: "line", xref: "paper", x0: 0, x1: 1, yref: "y2", y0: u, y1: u,
        line: { color: AMBER, width: 1.5, dash: "dash" } });
      annotations.push({ xref: "paper", x: 1, xanchor: "right", yref: "y2", y: u, yanchor: "bottom",
        text: "u = " + u.toFixed(3), showarrow: false, font: { color: "#b45309", size: 11 }, bgcolor: LABEL_BG });
    }
    if (tp) {
      shapes.push({ type: "line", xref: "paper", x0: 0, x1: 1, yref: "y2", y0: R.settings.top_p,
        y1: R.settings.top_p, line: { color: colourOf.top_p, width: 1, dash: "dot" } });
      annotations.push({ xref: "paper", x: 0, xanchor: "left", yref: "y2", y: R.settings.top_p,
        yanchor: "bottom", text: "p = " + R.settings.top_p, showarrow: false,
        font: { color: colourOf.top_p, size: 11 }, bgcolor: LABEL_BG });
    }
    const log = opts.logScale;
    let floor = 1;
    for (const v of yRaw.concat(yFinal)) if (v > 0 && v < floor) floor = v;
    const layout = {
      meta: {
        settings: R.settings, step: P.step, steps: P.steps, position: P.position, mode: P.mode,
        model: P.model, kept: R.nKept, entropy_bits: R.entropy, effective_vocab: Math.pow(2, R.entropy),
        raw_entropy_bits: PL.entropyOf(raw), u: draw && !draw.greedy ? u : null,
        next_token: draw ? { id: landed, label: opts.labelOf(landed), greedy: draw.greedy } : null,
        ids, labels, stages: R.stages.map((st) => st.name),
      },
      barmode: "overlay", bargap: 0.1, width: opts.width, height: opts.height,
      margin: { l: 52, r: 44, t: 10, b: 8 }, uirevision: "dp",
      hovermode: "closest", hoverlabel: { align: "left" }, showlegend: false,
      xaxis: { type: "category", tickangle: opts.compare ? -90 : -50, automargin: true, fixedrange: true,
        tickmode: "array", tickvals: shown, ticktext: ticks,
        tickfont: { family: "ui-monospace, SFMono-Regular, Menlo, monospace", size: opts.compare ? 10 : 12 } },
      yaxis: log
        ? { title: { text: "probability (log)" }, type: "log", dtick: 1, exponentformat: "power",
          range: [Math.max(-12, Math.floor(Math.log10(floor))), 0.05], fixedrange: true, gridcolor: "#eef2f7" }
        : { title: { text: "probability" }, type: "linear", fixedrange: true, rangemode: "tozero", gridcolor: "#eef2f7" },
      yaxis2: { title: { text: "cumulative" }, overlaying: "y", side: "right", range: [0, 1.02],
        tickvals: [0, 0.25, 0.5, 0.75, 1], showgrid: false, fixedrange: true, zeroline: false },
      shapes, annotations,
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
      font: { family: "Inter, ui-sans-serif, system-ui, sans-serif", size: 12, color: "#1f2937" },
    };
    return { data, layout, ids, draw, landed, where, rest, labels };
  }

  function keyHtml(R) {
    const items = [
      '<span><i class="dp-sw dp-sw-final"></i>final (your settings)</span>',
      '<span><i class="dp-sw dp-sw-landed"></i>the token u lands on</span>',
      '<span><i class="dp-sw dp-sw-raw"></i>raw (T = 1, no filters)</span>',
    ];
    for (const st of R.stages) {
      if (st.active && st.name !== "temperature") {
        items.push('<span><i class="dp-sw" style="background:' + st.colour + '40;border:1.5px solid ' + st.colour + '"></i>removed by ' + esc(st.title) + "</span>");
      }
    }
    items.push('<span><i class="dp-ln dp-ln-cum"></i>cumulative</span>');
    if (R.why.top_p) items.push('<span><i class="dp-ln dp-ln-topp"></i>cumulative entering top-p</span>');
    if (R.settings.temperature !== 0) items.push('<span><i class="dp-ln dp-ln-u"></i>u, the random draw</span>');
    return items.join("");
  }

  function statsHtml(P, R, fig, u, labelOf) {
    const raw = PL.rawProbs(P);
    if (!fig.draw) {
      return '<div class="dp-stat dp-warn">Every token was removed (the n-gram ban covers the whole ' +
        "vocabulary): lower the no-repeat n-gram size.</div>";
    }
    let keptMass = 0;
    for (let i = 0; i < R.nKept; i++) keptMass += raw[R.order[i]];
    const rawH = fig.layout.meta.raw_entropy_bits;
    const label = esc(labelOf(fig.landed));
    const out = [];
    out.push('<span class="dp-stat"><b>' + R.nKept.toLocaleString("en") + "</b> of " +
      P.V.toLocaleString("en") + " tokens kept, holding <b>" + pct(keptMass) + "</b> of the raw probability</span>");
    out.push('<span class="dp-stat">entropy <b>' + R.entropy.toFixed(2) + "</b> bits → 2<sup>H</sup> ≈ <b>" +
      Math.pow(2, R.entropy).toFixed(1) + '</b> effective choices <span class="dp-muted">(raw: ' +
      rawH.toFixed(2) + " bits ≈ " + Math.pow(2, rawH).toFixed(1) + ")</span></span>");
    if (P.mode === "inspect") {
      out.push('<span class="dp-stat dp-draw">chosen at this step: <code>' + label + "</code> (p " +
        fmtP(R.probs[fig.landed]) + (u === null || u === undefined ? "" : ", u = " + u.toFixed(3)) + ")</span>");
    } else if (fig.draw.greedy) {
      out.push('<span class="dp-stat dp-draw">T = 0: greedy picks <code>' + label + "</code>, no random draw</span>");
    } else if (u !== null && u !== undefined) {
      out.push('<span class="dp-stat dp-draw">u = <b>' + u.toFixed(3) + "</b> lands on <code>" + label +
        "</code> (p " + fmtP(R.probs[fig.landed]) + ", rank " + (R.order.indexOf(fig.landed) + 1) + ")</span>");
    }
    const removed = {};
    for (let i = 0; i < R.removedBy.length; i++) {
      const si = R.removedBy[i];
      if (si >= 0) removed[si] = (removed[si] || 0) + 1;
    }
    const chips = Object.keys(removed).map((si) => '<span class="dp-removed"><i style="background:' +
      R.stages[si].colour + '"></i>' + esc(R.stages[si].title) + " removed " + removed[si].toLocaleString("en") + "</span>");
    if (chips.length) out.push('<span class="dp-stat">' + chips.join(" ") + "</span>");
    return out.join("");
  }

  /* Draw payload P with settings s into div; returns what was drawn. */
  function draw(div, P, s, opts) {
    const R = PL.transform(P, s);
    // The width is given, not left to Plotly: it sizes a plot only when first drawn and on a
    // window resize, so a chart that shares its row with the compare chart would keep its
    // full width and lie under the other one.
    const width = div.clientWidth || undefined;
    const fig = figure(P, R, P.u, Object.assign({ bars: bars(div, opts.compare), width,
      height: width < 520 ? 300 : 380 }, opts));
    const promise = global.Plotly.react(div, fig.data, fig.layout, { displayModeBar: false, responsive: true });
    return { R, fig, promise };
  }

  /* The hit layer: one button per bar, the whole height of its column. The buttons are kept
     from one drawing to the next (only moved and relabelled) and listened to through the layer,
     so a redraw on every slider move costs next to nothing here. */
  function placeHits(layer, div, fig, P, labelOf, onPick, onRest) {
    const full = div._fullLayout;
    if (!full || !full.xaxis || !fig.draw) { layer.textContent = ""; return; }
    if (!layer._dp) listen(layer, div);
    layer._dp = { fig, onPick, onRest };
    const xa = full.xaxis, ya = full.yaxis;
    const n = fig.data[0].x.length;
    const band = n > 1 ? Math.abs(xa.l2p(1) - xa.l2p(0)) : xa._length;
    const height = (fig.layout.height || full.height) - ya._offset; // no layout read
    const live = P.mode === "live";
    while (layer.children.length > n) layer.lastChild.remove();
    while (layer.children.length < n) {
      const b = document.createElement("button");
      b.type = "button";
      layer.appendChild(b);
    }
    for (let i = 0; i < n; i++) {
      const b = layer.children[i], isRest = i >= fig.ids.length, p = fig.data[0].y[i];
      b.className = "dp-hit" + (isRest ? " dp-hit-rest" : "");
      b.dataset.index = i;
      b.style.cssText = "left:" + (xa._offset + xa.l2p(i) - band / 2) + "px;width:" + band + "px;top:" +
        ya._offset + "px;height:" + height + "px";
      b.setAttribute("aria-label", isRest
        ? "the other " + fig.rest.toLocaleString("en") + " tokens, final mass " + pct(p)
        : (i + 1) + ": " + fig.labels[i] + ", final probability " + fmtP(p) + (live ? ", Enter picks it" : ""));
    }
    // ---- hook: overlays over the bars (futures.js's draws) get each column's place ----
    if (global.DPChart.overlay) {
      global.DPChart.overlay(layer, P, { ids: fig.ids, rest: n > fig.ids.length, band,
        left: (i) => xa._offset + xa.l2p(i) - band / 2, y: (p) => ya._offset + ya.c2p(p) });
    }
  }

  function listen(layer, div) {
    const index = (ev) => { const b = ev.target.closest(".dp-hit"); return b ? Number(b.dataset.index) : -1; };
    layer.addEventListener("mouseover", (ev) => { const i = index(ev); if (i >= 0) hover(div, i); });
    layer.addEventListener("focusin", (ev) => { const i = index(ev); if (i >= 0) hover(div, i); });
    layer.addEventListener("mouseleave", () => global.Plotly.Fx.unhover(div));
    layer.addEventListener("focusout", () => global.Plotly.Fx.unhover(div));
    layer.addEventListener("click", (ev) => {
      const i = index(ev), d = layer._dp;
      if (i < 0 || !d) return;
      if (i >= d.fig.ids.length) d.onRest(d.fig.rest);
      else d.onPick(d.fig.ids[i]);
    });
    layer.addEventListener("keydown", (ev) => {
      const i = index(ev);
      if (i < 0 || (ev.key !== "ArrowRight" && ev.key !== "ArrowLeft")) return;
      const next = layer.children[i + (ev.key === "ArrowRight" ? 1 : -1)];
      if (next) next.focus();
      ev.preventDefault();
      ev.stopPropagation();
    });
  }

  function hover(div, i) {
    try { global.Plotly.Fx.hover(div, [{ curveNumber: 0, pointNumber: i }]); } catch (e) { /* not drawn yet */ }
  }

  global.DPChart = { draw, placeHits, statsHtml, keyHtml, settingsText, esc, fmtP, pct };
})(window);

/* The next-token chart: one step's distribution as bars, redrawn on every settings change
   from the step's logits (pipeline.js), painted on a canvas (bar_canvas.js).

   Grey bars behind are the raw distribution (T = 1, no filters); coloured bars are what the
   settings leave; outlined, pale ones were removed, in the colour of the stage that removed
   them.
   The line is the cumulative probability in sampling order and u, the step's uniform draw,
   is marked on it: the bar where the line first reaches u is the token sampling picks.

   Over the plot lies one transparent button per bar, the whole height of its column: that is
   what a click, a tap or Enter hits, and what shows the bar's hover label (chart_hits.js).

   Public for other views: draw (one chart, with an optional overlay of one more value per
   token), drawPair (two charts side by side, drawn alike), resize, statsHtml, keyHtml. */
(function (global) {
  "use strict";
  const PL = global.DPPipeline, H = global.DPChartHits;
  const BLUE = "#2563eb", AMBER = "#f59e0b", GREY = "#cbd5e1", INK = "#334155", PALE = "#93c5fd";
  const OVERLAY = "#111827"; // an overlay's default colour: no stage's, darker than the lines

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

  // An overlay's value for each shown id, and for the rest bar the sum over every other id
  // (or its own `rest`, where the caller knows it).
  function overlayValues(overlay, ids) {
    const values = overlay.values instanceof Map ? overlay.values : new Map(Object.entries(overlay.values).map(([k, v]) => [Number(k), v]));
    const shown = new Set(ids);
    let rest = 0;
    for (const [id, v] of values) if (!shown.has(id)) rest += v;
    return { of: (id) => values.get(id) || 0, rest: overlay.rest !== undefined ? overlay.rest : rest };
  }

  /* What to draw for step P under settings R (pipeline.js's result): the canvas' spec, the
     hover text of each bar, and the numbers (meta) that tests and the API's readers check. */
  function figure(P, R, u, opts) {
    const raw = PL.rawProbs(P);
    const n = opts.bars;
    const ids = Array.from(R.display.subarray ? R.display.subarray(0, n) : R.display.slice(0, n));
    const seen = new Set();
    const labels = ids.map((id) => {
      let l = opts.labelOf(id);
      if (seen.has(l)) l += " ·" + id; // two tokens may print alike: the id tells them apart
      seen.add(l);
      return l;
    });
    const rest = P.V - ids.length;
    const draw = R.nKept > 0 ? PL.pick(R, u) : null;
    // Looking back, highlight the token that was chosen (a picked one need not be where u lands).
    const landed = P.mode === "inspect" ? P.chosen : draw ? draw.token : -1;
    const rank = new Map();
    for (let i = 0; i < R.nKept; i++) rank.set(R.order[i], i + 1);
    const colourOf = {}, titleOf = {};
    for (const st of R.stages) { colourOf[st.name] = st.colour; titleOf[st.name] = st.title; }
    const over = opts.overlay ? overlayValues(opts.overlay, ids) : null;

    const specBars = [], hover = [], cum = [], cumTopP = [];
    let c = 0, cp = 0, finalShown = 0, rawShown = 0;
    const tp = R.why.top_p;
    const mark = P.mode === "inspect" ? "chosen at this step" : draw && draw.greedy ? "greedy pick" : "u lands here";
    ids.forEach((id, i) => {
      const f = R.probs[id];
      finalShown += f; rawShown += raw[id];
      c += f; cum.push(Math.min(c, 1));
      if (tp) { cp += tp.probs[id]; cumTopP.push(Math.min(cp, 1)); }
      const head = "<b>" + esc(labels[i]) + "</b>  id " + id + "<br>";
      const bar = { id, label: labels[i], tick: labels[i], back: raw[id], front: f,
        frontFill: id === landed ? AMBER : BLUE, backFill: GREY, backLine: GREY,
        // A lone punctuation mark is a speck at tick size: bold, between brackets, it reads.
        bold: /^[\p{P}\p{S}]{1,2}$/u.test(labels[i]) };
      if (bar.bold) bar.tick = "⟨" + labels[i] + "⟩";
      let h;
      if (R.removedBy[id] >= 0) {
        const stage = R.stages[R.removedBy[id]].name;
        bar.backFill = colourOf[stage] + "40"; bar.backLine = colourOf[stage];
        h = head + "raw p = " + fmtP(raw[id]) + "<br><b>removed by " + titleOf[stage] + "</b>: " +
          esc(PL.removalReason(R, id));
      } else {
        h = head + "raw p = " + fmtP(raw[id]) + " → final p = " + fmtP(f) + "<br>rank " +
          rank.get(id) + ", cumulative " + fmtP(c);
      }
      if (over) {
        bar.overlay = over.of(id);
        h += "<br>" + esc(opts.overlay.label) + ": " + fmtP(bar.overlay);
      }
      specBars.push(bar);
      hover.push(h + (id === landed ? "<br><b>" + mark + "</b>" : "") +
        (P.mode === "live" && opts.pickable !== false ? "<br><i>click, tap or Enter to pick this token</i>" : ""));
    });
    if (rest > 0) {
      const finalRest = Math.max(0, 1 - finalShown), rawRest = Math.max(0, 1 - rawShown);
      const label = "rest (" + rest.toLocaleString("en") + ")";
      const bar = { id: null, label, tick: label, bold: false, back: rawRest, front: finalRest,
        backFill: GREY, backLine: GREY, frontFill: ids.length && landed >= 0 && !ids.includes(landed) ? AMBER : PALE };
      let h = "<b>the other " + rest.toLocaleString("en") + " tokens</b><br>raw mass " + pct(rawRest) +
        " → final mass " + pct(finalRest);
      if (over) { bar.overlay = over.rest; h += "<br>" + esc(opts.overlay.label) + ": " + pct(over.rest); }
      specBars.push(bar);
      hover.push(h);
      cum.push(1);
      if (tp) cumTopP.push(1);
    }
    const where = landed < 0 ? -1 : ids.includes(landed) ? ids.indexOf(landed) : rest > 0 ? ids.length : -1;
    const hasU = Boolean(where >= 0 && draw && !draw.greedy && u !== null && u !== undefined);
    // The point where the cumulative line first reaches u is the drawn token: a diamond.
    const lines = [{ name: "cumulative", values: cum, colour: INK, markers: true, marked: where, markedColour: AMBER }];
    if (tp) lines.push({ name: "cumulative entering top-p", values: cumTopP, colour: colourOf.top_p, dash: "dot" });
    const rules = [];
    if (hasU) rules.push({ name: "u", y: u, colour: AMBER, dash: "dash", width: 1.5, label: "u = " + u.toFixed(3), labelColour: "#b45309", side: "right" });
    if (tp) rules.push({ name: "top_p", y: R.settings.top_p, colour: colourOf.top_p, dash: "dot", label: "p = " + R.settings.top_p, side: "left" });
    const spec = {
      width: opts.width, height: opts.height, log: Boolean(opts.logScale), compare: Boolean(opts.compare),
      bars: specBars, lines, rules,
      overlay: over ? { colour: opts.overlay.colour || OVERLAY } : null,
      yTitle: opts.logScale ? "probability (log)" : "probability", y2Title: "cumulative",
    };
    const meta = {
      settings: R.settings, step: P.step, steps: P.steps, position: P.position, mode: P.mode,
      model: P.model, kept: R.nKept, entropy_bits: R.entropy, effective_vocab: Math.pow(2, R.entropy),
      raw_entropy_bits: PL.entropyOf(raw), u: draw && !draw.greedy ? u : null,
      next_token: draw ? { id: landed, label: opts.labelOf(landed), greedy: draw.greedy } : null,
      ids, labels, stages: R.stages.map((st) => st.name),
    };
    return { spec, meta, hover, ids, draw, landed, rest, labels };
  }

  /* The key to what is drawn; overlay: draw's overlay option, if one is drawn. */
  function keyHtml(R, overlay) {
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
    if (overlay) {
      items.push('<span><i class="dp-sw dp-sw-overlay" style="border-color:' + esc(overlay.colour || OVERLAY) + '"></i>' +
        esc(overlay.label) + "</span>");
    }
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
    const rawH = fig.meta.raw_entropy_bits;
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

  function canvasOf(div) {
    let canvas = div.querySelector(":scope > canvas.dp-canvas");
    if (!canvas) {
      canvas = document.createElement("canvas");
      canvas.className = "dp-canvas";
      canvas.setAttribute("aria-hidden", "true"); // the hit layer's buttons speak for the bars
      div.prepend(canvas);
      div.classList.add("dp-canvas-chart");
    }
    return canvas;
  }

  /* Paint a figure into div, and keep on the div what was drawn where (div.drawn): each bar's
     id, label, heights, colours and pixel column, the ticks, the axes, the lines and the
     numbers (meta). The hit layer is placed from it, and tests read it. */
  function paint(div, fig) {
    const at = global.DPBarCanvas.paint(canvasOf(div), fig.spec);
    div.drawn = {
      meta: fig.meta, width: at.width, height: at.height, dpr: at.dpr, plot: at.plot,
      yaxis: at.yaxis, y2axis: at.y2axis, ticks: at.ticks, rules: at.rules,
      overlay: fig.spec.overlay ? { label: fig.overlayLabel, colour: fig.spec.overlay.colour } : null,
      lines: Object.fromEntries(fig.spec.lines.map((l) => [l.name, l.values.slice()])),
      bars: fig.spec.bars.map((b, i) => ({
        id: b.id, label: b.label, tick: at.ticks[i].text, final: b.front, raw: b.back,
        finalColour: b.frontFill, rawColour: b.backFill, rawLine: b.backLine,
        overlay: b.overlay === undefined ? null : b.overlay,
        x0: at.bars[i].x0, x1: at.bars[i].x1, finalTop: at.bars[i].frontTop, rawTop: at.bars[i].backTop,
        overlayTop: at.bars[i].overlayTop,
      })),
      hover: fig.hover,
    };
    H.follow(div);
    const tip = div.querySelector(":scope > .dp-bar-tip");
    if (tip && !tip.hidden) H.showTip(div, Number(tip.dataset.index)); // the label follows the bar

    return div.drawn;
  }

  function build(div, P, s, opts) {
    const R = PL.transform(P, s);
    const width = div.clientWidth || 800;
    const fig = figure(P, R, P.u, Object.assign({ bars: bars(div, opts.compare), width,
      height: width < 520 ? 300 : 380 }, opts));
    if (opts.overlay) fig.overlayLabel = opts.overlay.label;
    return { R, fig };
  }

  /* Draw payload P with settings s into div; returns {R: the pipeline's result, fig}.
     opts: labelOf(id), logScale, compare (half-width: smaller, vertical ticks), height,
     pickable (false: the hover text does not offer a pick), and overlay: {label, values:
     Map or {id: value} on the probability scale, colour?, rest?}, one more value per token
     drawn as a hollow bar over its bar (e.g. how often each token was sampled), its label in
     the hover text and in keyHtml's key. */
  function draw(div, P, s, opts) {
    const out = build(div, P, s, opts);
    paint(div, out.fig);
    return out;
  }

  /* Two charts side by side, drawn alike: the same height, the same number of bars, half-width
     ticks, on one probability scale where opts.sameScale (two models, one question: the bars
     compare by height). items: [{div, P, s, opts?}, {div, P, s, opts?}], each item's opts
     over the shared opts. Returns the two draws' results, A's first. */
  function drawPair(items, opts) {
    const n = Math.min(...items.map((it) => bars(it.div, true)));
    const outs = items.map((it) => build(it.div, it.P, it.s, Object.assign({}, opts, it.opts || {}, { compare: true, bars: n })));
    if (opts.sameScale) {
      let hi = 0, lo = 1;
      for (const o of outs) {
        for (const b of o.fig.spec.bars) {
          for (const v of [b.back, b.front, b.overlay]) { if (v > hi) hi = v; if (v > 0 && v < lo) lo = v; }
        }
      }
      for (const o of outs) { o.fig.spec.yMax = hi; o.fig.spec.yMin = lo; }
    }
    outs.forEach((o, i) => paint(items[i].div, o.fig));
    return outs;
  }

  /* The same figure at another height (the numbers above the chart moved it). */
  function resize(div, out, height) {
    out.fig.spec.height = height;
    paint(div, out.fig);
  }

  global.DPChart = { draw, drawPair, resize, placeHits: H.place, statsHtml, keyHtml, settingsText, esc, fmtP, pct };
})(window);

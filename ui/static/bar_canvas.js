/* A bar chart painted on a <canvas>: about thirty category bars, each a wide bar behind and a
   narrow one in front (optionally a hollow outline over both), lines through the bars' centres
   on a second axis from 0 to 1 on the right, and horizontal rules with labels on that axis.

   It knows nothing of tokens or sampling: chart.js says what to draw (a "spec", below) and
   gets back where everything landed (the bars' pixel columns, the ticks, the plot area), which
   is what the hit layer places its buttons on and what tests read.

   Why not Plotly: a slider drag redraws the chart on every move, and Plotly.react took three
   quarters of each frame (50-55 ms of 68-90, benchmarks/bench_slider.py); painting the same
   bars here takes about a millisecond.

   spec = {
     width, height,                 CSS pixels
     log: bool,                     left axis: probability, linear from 0 or log by decades
     compare: bool,                 smaller tick font, vertical labels (half-width charts)
     bars: [{ tick, bold, back, backFill, backLine, front, frontFill, overlay }],
     overlay: { colour } | null,    a hollow bar at `overlay` over each bar that has one
     lines: [{ values, colour, dash, markers, marked, markedColour }],   on the right axis
     rules: [{ y, colour, dash, width, label, labelColour, side }],      on the right axis
     yTitle, y2Title,
     yMax, yMin,                    optional: the left axis reaches at least these (a shared scale)
   } */
(function (global) {
  "use strict";
  const MARGIN = { left: 52, right: 44, top: 10 };
  const TICK_FONT = "ui-monospace, SFMono-Regular, Menlo, monospace";
  const FONT = "Inter, ui-sans-serif, system-ui, sans-serif";
  const TEXT = "#1f2937", GRID = "#eef2f7", AXIS = "#475569", LABEL_BG = "rgba(255, 255, 255, 0.85)";
  const TICK_CHARS = 14; // a longer token's tick is cut with "…" (its hover label has it whole)
  const DASH = { dot: [2, 3], dash: [6, 4], solid: [] };
  const SUP = { "-": "⁻", 0: "⁰", 1: "¹", 2: "²", 3: "³", 4: "⁴", 5: "⁵", 6: "⁶", 7: "⁷", 8: "⁸", 9: "⁹" };

  // Tick values for a linear axis from 0 to top: at most seven steps of 1, 2, 2.5 or 5 × 10^k.
  function linearTicks(top) {
    const rough = top / 7, mag = Math.pow(10, Math.floor(Math.log10(rough)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= rough);
    const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9) + (step / mag === 2.5 ? 1 : 0));
    const out = [];
    for (let k = 0; k * step <= top * (1 + 1e-9); k++) out.push({ value: k * step, label: String(Number((k * step).toFixed(decimals))) });
    return out;
  }

  const power = (e) => (e === 0 ? "1" : "10" + String(e).split("").map((c) => SUP[c]).join(""));

  /* The left axis: where a probability goes, in pixels from the top. */
  function leftAxis(spec, top, bottom) {
    let hi = 0, lo = 1;
    for (const b of spec.bars) {
      for (const v of [b.back, b.front, b.overlay]) {
        if (v > hi) hi = v;
        if (v > 0 && v < lo) lo = v;
      }
    }
    if (spec.yMax !== undefined) hi = Math.max(hi, spec.yMax); // a scale shared with another chart
    if (spec.yMin !== undefined) lo = Math.min(lo, spec.yMin);
    if (spec.log) {
      const low = Math.max(-12, Math.floor(Math.log10(lo))), high = 0.05; // decades, as log10
      const y = (p) => bottom - (bottom - top) * (Math.log10(p) - low) / (high - low);
      const ticks = [];
      for (let e = low; e <= 0; e++) ticks.push({ value: Math.pow(10, e), label: power(e) });
      return { type: "log", range: [Math.pow(10, low), Math.pow(10, high)], ticks, y, base: bottom };
    }
    const max = hi > 0 ? hi * 1.05 : 1; // 5% headroom over the tallest bar, as Plotly's autorange
    const y = (p) => bottom - (bottom - top) * p / max;
    return { type: "linear", range: [0, max], ticks: linearTicks(max).filter((t) => t.value <= max), y, base: bottom };
  }

  const cut = (s) => (s.length > TICK_CHARS ? s.slice(0, TICK_CHARS - 1) + "…" : s);

  /* Paint spec onto canvas (sized here, sharp at the device's pixel ratio); returns where
     everything went, in CSS pixels from the canvas' top left. */
  function paint(canvas, spec) {
    const dpr = global.devicePixelRatio || 1, W = spec.width, H = spec.height;
    if (canvas.width !== Math.round(W * dpr) || canvas.height !== Math.round(H * dpr)) {
      canvas.width = Math.round(W * dpr);
      canvas.height = Math.round(H * dpr);
    }
    canvas.style.width = W + "px";
    canvas.style.height = H + "px";
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, H);

    // The tick labels decide the bottom margin: the longest one, slanted, must fit below.
    const n = spec.bars.length, tickSize = spec.compare ? 10 : 12;
    const angle = (spec.compare ? 90 : 50) * Math.PI / 180;
    const ticks = spec.bars.map((b) => cut(b.tick));
    let longest = 0;
    ticks.forEach((t, i) => {
      ctx.font = (spec.bars[i].bold ? "bold " : "") + tickSize + "px " + TICK_FONT;
      longest = Math.max(longest, ctx.measureText(t).width);
    });
    const below = Math.min(0.45 * H, longest * Math.sin(angle) + tickSize * Math.cos(angle) + 8);
    const plot = { left: MARGIN.left, right: W - MARGIN.right, top: MARGIN.top, bottom: Math.round(H - below) };
    const ya = leftAxis(spec, plot.top, plot.bottom);
    const y2 = (v) => plot.bottom - (plot.bottom - plot.top) * v / 1.02;
    const band = (plot.right - plot.left) / Math.max(1, n);
    const centre = (i) => plot.left + band * (i + 0.5);

    // grid and the left axis' ticks
    ctx.font = "12px " + FONT;
    ctx.fillStyle = TEXT;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    ctx.lineWidth = 1;
    for (const t of ya.ticks) {
      t.y = ya.y(t.value);
      ctx.strokeStyle = t.value === 0 ? AXIS : GRID;
      line(ctx, plot.left, t.y, plot.right, t.y);
      ctx.fillText(t.label, plot.left - 4, t.y);
    }
    const y2ticks = [0, 0.25, 0.5, 0.75, 1].map((v) => ({ value: v, label: String(v), y: y2(v) }));
    ctx.textAlign = "left";
    for (const t of y2ticks) ctx.fillText(t.label, plot.right + 4, t.y);
    ctx.save();
    ctx.textAlign = "center";
    ctx.translate(13, (plot.top + plot.bottom) / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.fillText(spec.yTitle || "", 0, 0);
    ctx.restore();
    ctx.save();
    ctx.textAlign = "center";
    ctx.translate(W - 10, (plot.top + plot.bottom) / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.fillText(spec.y2Title || "", 0, 0);
    ctx.restore();

    // the bars: the wide one behind, the narrow one in front, the hollow overlay over both
    // (a value under the log axis' floor, e.g. a rest of 1e-17 left by rounding, has no bar)
    const top = (v) => (v > 0 ? Math.min(plot.bottom, Math.max(plot.top, ya.y(v))) : plot.bottom);
    const bars = spec.bars.map((b, i) => {
      const c = centre(i), wBack = 0.86 * band, wFront = 0.5 * band;
      const out = { x0: plot.left + band * i, x1: plot.left + band * (i + 1), centre: c,
        backTop: top(b.back), frontTop: top(b.front), overlayTop: b.overlay === undefined ? null : top(b.overlay) };
      if (b.back > 0) {
        ctx.fillStyle = b.backFill;
        ctx.fillRect(c - wBack / 2, out.backTop, wBack, plot.bottom - out.backTop);
        if (b.backLine && b.backLine !== b.backFill) {
          ctx.strokeStyle = b.backLine;
          ctx.lineWidth = 1.5;
          ctx.strokeRect(c - wBack / 2 + 0.75, out.backTop + 0.75, wBack - 1.5, plot.bottom - out.backTop - 1.5);
        }
      }
      if (b.front > 0) {
        ctx.fillStyle = b.frontFill;
        ctx.fillRect(c - wFront / 2, out.frontTop, wFront, plot.bottom - out.frontTop);
      }
      return out;
    });
    if (spec.overlay) {
      ctx.strokeStyle = spec.overlay.colour;
      ctx.lineWidth = 2;
      spec.bars.forEach((b, i) => {
        if (!(b.overlay > 0)) return;
        const w = 0.7 * band, t = bars[i].overlayTop;
        ctx.strokeRect(bars[i].centre - w / 2, t, w, plot.bottom - t);
      });
    }

    // the lines on the right axis, then the rules and their labels
    for (const l of spec.lines) {
      ctx.strokeStyle = l.colour;
      ctx.lineWidth = 1.5;
      ctx.setLineDash(DASH[l.dash || "solid"]);
      ctx.beginPath();
      l.values.forEach((v, i) => (i ? ctx.lineTo(centre(i), y2(v)) : ctx.moveTo(centre(i), y2(v))));
      ctx.stroke();
      ctx.setLineDash([]);
      if (!l.markers) continue;
      ctx.fillStyle = l.colour;
      l.values.forEach((v, i) => {
        if (i === l.marked) return;
        ctx.beginPath();
        ctx.arc(centre(i), y2(v), 2, 0, 2 * Math.PI);
        ctx.fill();
      });
      if (l.marked >= 0 && l.marked < l.values.length) { // a diamond, 12 px across
        const x = centre(l.marked), y = y2(l.values[l.marked]);
        ctx.fillStyle = l.markedColour;
        ctx.beginPath();
        ctx.moveTo(x, y - 6); ctx.lineTo(x + 6, y); ctx.lineTo(x, y + 6); ctx.lineTo(x - 6, y);
        ctx.closePath();
        ctx.fill();
      }
    }
    const rules = spec.rules.map((r) => {
      const y = y2(r.y);
      ctx.strokeStyle = r.colour;
      ctx.lineWidth = r.width || 1;
      ctx.setLineDash(DASH[r.dash || "solid"]);
      line(ctx, plot.left, y, plot.right, y);
      ctx.setLineDash([]);
      ctx.font = "11px " + FONT;
      const w = ctx.measureText(r.label).width + 6;
      const x = r.side === "right" ? plot.right - w : plot.left;
      ctx.fillStyle = LABEL_BG;
      ctx.fillRect(x, y - 15, w, 14);
      ctx.fillStyle = r.labelColour || r.colour;
      ctx.textAlign = "left";
      ctx.textBaseline = "alphabetic";
      ctx.fillText(r.label, x + 3, y - 4);
      return { y: r.y, pixel: y, label: r.label };
    });

    // the tick labels, slanted, each ending under its bar's centre
    ctx.fillStyle = TEXT;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    const tickOut = ticks.map((t, i) => {
      ctx.font = (spec.bars[i].bold ? "bold " : "") + tickSize + "px " + TICK_FONT;
      const x = centre(i), y = plot.bottom + 5;
      ctx.save();
      ctx.translate(x, y);
      ctx.rotate(-angle);
      ctx.fillText(t, 0, 0);
      ctx.restore();
      const w = ctx.measureText(t).width;
      return { text: t, x, y, width: w, bottom: y + w * Math.sin(angle) + tickSize * Math.cos(angle) / 2 };
    });
    return { width: W, height: H, dpr, plot, band, bars, ticks: tickOut, rules,
      yaxis: { type: ya.type, range: ya.range, ticks: ya.ticks.map((t) => ({ value: t.value, label: t.label, y: t.y })) },
      y2axis: { range: [0, 1.02], ticks: y2ticks } };
  }

  function line(ctx, x0, y0, x1, y1) {
    ctx.beginPath();
    ctx.moveTo(x0, y0);
    ctx.lineTo(x1, y1);
    ctx.stroke();
  }

  global.DPBarCanvas = { paint, linearTicks };
})(window);

/* A small line chart in SVG: a few series of (x, y) points, a marked point, a vertical rule at
   it and a dotted horizontal reference line. Used for the training curve (learn.js), where
   the slider moves the mark; a redraw replaces one <svg> of a few hundred nodes.

     DPLineChart.draw(div, {
       series: [{ name, points: [[x, y], ...], colour, dash?: true, dots?: true }],
       mark: { x, y, colour, name } | null,     the point drawn as a diamond, with a rule at x
       reference: { y, label } | null,          a dotted line across (e.g. ln V)
       xTitle, yTitle, height })
   keeps what it drew on the div (div.drawn: the series' points, the mark, the ranges), for
   the page's tests as for the bar chart. */
(function (global) {
  "use strict";
  const MARGIN = { left: 46, right: 22, bottom: 38 };  // right: room for the last tick's label
  const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

  /* About five round steps over [lo, hi]. */
  function ticks(lo, hi) {
    const span = hi - lo || 1, raw = span / 5, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => span / s <= 6);
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9 * span; v += step) out.push(+v.toPrecision(12));
    return out;
  }

  function draw(div, spec) {
    const W = div.clientWidth || 480, H = spec.height || 300;
    const points = spec.series.flatMap((s) => s.points).concat(spec.mark ? [[spec.mark.x, spec.mark.y]] : [])
      .filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    const ys = points.map((p) => p[1]).concat(spec.reference ? [spec.reference.y] : []);
    const x0 = Math.min(...points.map((p) => p[0]), 0), x1 = Math.max(...points.map((p) => p[0]), 1);
    const pad = 0.05 * ((Math.max(...ys) - Math.min(...ys)) || 1);
    const y0 = Math.min(...ys) - pad, y1 = Math.max(...ys) + pad;
    const m = spec.mark;
    const key = [];
    let kx = MARGIN.left, ky = 10;
    for (const s of spec.series.concat(m ? [{ name: m.name, colour: m.colour }] : [])) {
      const width = 22 + 6.2 * s.name.length;
      if (kx > MARGIN.left && kx + width > W - MARGIN.right) { kx = MARGIN.left; ky += 15; }
      key.push({ x: kx, y: ky, name: s.name, colour: s.colour });
      kx += width + 8;
    }
    const plot = { l: MARGIN.left, r: W - MARGIN.right, t: ky + 16, b: H - MARGIN.bottom };
    const X = (x) => plot.l + (plot.r - plot.l) * (x - x0) / (x1 - x0 || 1);
    const Y = (y) => plot.b - (plot.b - plot.t) * (y - y0) / (y1 - y0 || 1);
    const f = (v) => v.toFixed(1);
    const out = [`<svg class="dp-line-chart" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" ` +
      `aria-label="${esc(spec.yTitle || "")} by ${esc(spec.xTitle || "")}">`];

    for (const v of ticks(y0, y1)) {
      out.push(`<line x1="${plot.l}" x2="${plot.r}" y1="${f(Y(v))}" y2="${f(Y(v))}" stroke="#e5e7eb"/>` +
        `<text x="${plot.l - 4}" y="${f(Y(v))}" text-anchor="end" dominant-baseline="middle">${v}</text>`);
    }
    for (const v of ticks(x0, x1)) {
      out.push(`<text x="${f(X(v))}" y="${plot.b + 14}" text-anchor="middle">${v.toLocaleString("en")}</text>`);
    }
    out.push(`<line x1="${plot.l}" x2="${plot.r}" y1="${plot.b}" y2="${plot.b}" stroke="#6b7280"/>`,
      `<text x="${(plot.l + plot.r) / 2}" y="${H - 4}" text-anchor="middle">${esc(spec.xTitle || "")}</text>`,
      `<text transform="translate(12 ${(plot.t + plot.b) / 2}) rotate(-90)" text-anchor="middle">${esc(spec.yTitle || "")}</text>`);
    if (spec.reference) {
      const y = f(Y(spec.reference.y));
      out.push(`<line x1="${plot.l}" x2="${plot.r}" y1="${y}" y2="${y}" stroke="#94a3b8" stroke-dasharray="2 3"/>` +
        `<text x="${plot.r}" y="${y - 3}" text-anchor="end" fill="#64748b">${esc(spec.reference.label)}</text>`);
    }
    spec.series.forEach((s) => {
      const pts = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
      out.push(`<polyline fill="none" stroke="${s.colour}" stroke-width="1.8"${s.dash ? ' stroke-dasharray="4 3"' : ""} ` +
        `points="${pts.map(([x, y]) => f(X(x)) + "," + f(Y(y))).join(" ")}"/>`);
      if (s.dots) for (const [x, y] of pts) out.push(`<circle cx="${f(X(x))}" cy="${f(Y(y))}" r="2.6" fill="${s.colour}"/>`);
    });
    if (m && Number.isFinite(m.x)) {
      out.push(`<line x1="${f(X(m.x))}" x2="${f(X(m.x))}" y1="${plot.t}" y2="${plot.b}" stroke="${m.colour}" stroke-dasharray="4 3"/>`);
      if (Number.isFinite(m.y)) {
        const cx = X(m.x), cy = Y(m.y);
        out.push(`<path d="M${f(cx)} ${f(cy - 7)}L${f(cx + 7)} ${f(cy)}L${f(cx)} ${f(cy + 7)}L${f(cx - 7)} ${f(cy)}Z" fill="${m.colour}"/>`);
      }
    }
    // the key, above the plot, in as many lines as the width needs
    for (const k of key) {
      out.push(`<rect x="${k.x}" y="${k.y - 2}" width="12" height="4" fill="${k.colour}"/>` +
        `<text x="${k.x + 16}" y="${k.y}" dominant-baseline="middle">${esc(k.name)}</text>`);
    }
    out.push("</svg>");
    div.innerHTML = out.join("");
    div.drawn = { width: W, height: H, x: [x0, x1], y: [y0, y1], mark: m ? { x: m.x, y: m.y } : null,
      series: spec.series.map((s) => ({ name: s.name, points: s.points.map((p) => p.slice()) })) };
    return div.drawn;
  }

  global.DPLineChart = { draw };
})(window);

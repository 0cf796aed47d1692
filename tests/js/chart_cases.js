// Runs ui/static/chart.js (with pipeline.js, bar_canvas.js, chart_hits.js) under Node on the
// cases in argv[2] (JSON), on a stand-in canvas that records every rectangle it is asked to
// fill or outline, and prints what chart.js says it drew (div.drawn) beside what the canvas
// was really asked to paint, for tests/test_chart_js.py.
"use strict";
const fs = require("fs");
const path = require("path");

globalThis.window = globalThis;
globalThis.devicePixelRatio = 2;

// A 2D context that records fills and outlines, in CSS pixels (the transform's scale undone).
function recordingContext(log) {
  let scale = 1;
  const ctx = {
    fillStyle: "", strokeStyle: "", lineWidth: 1, font: "", textAlign: "", textBaseline: "",
    setTransform(a) { scale = a; },
    clearRect() { log.length = 0; },
    fillRect(x, y, w, h) { log.push({ op: "fill", x, y, w, h, colour: ctx.fillStyle }); },
    strokeRect(x, y, w, h) { log.push({ op: "stroke", x, y, w, h, colour: ctx.strokeStyle }); },
    measureText(t) { return { width: 7 * String(t).length }; },
    fillText(t) { log.push({ op: "text", text: t }); },
    save() {}, restore() {}, translate() {}, rotate() {}, setLineDash() {},
    beginPath() {}, moveTo() {}, lineTo() {}, closePath() {}, stroke() {}, fill() {}, arc() {},
  };
  ctx.scale = () => scale;
  return ctx;
}

function element(tag) {
  const children = [];
  const el = {
    tag, children, style: {}, dataset: {}, className: "", hidden: false, width: 0, height: 0,
    classList: { add(c) { el.className += " " + c; } },
    setAttribute() {}, addEventListener() {},
    prepend(c) { children.unshift(c); }, appendChild(c) { children.push(c); },
    querySelector(sel) {
      const cls = sel.split(".").pop();
      return children.find((c) => c.className.split(" ").includes(cls)) || null;
    },
  };
  if (tag === "canvas") {
    el.log = [];
    const ctx = recordingContext(el.log);
    el.getContext = () => ctx;
  }
  return el;
}
globalThis.document = { createElement: element };
globalThis.atob = (b64) => Buffer.from(b64, "base64").toString("binary");
for (const f of ["pipeline.js", "llama_stages.js", "bar_canvas.js", "chart_hits.js", "chart.js"]) {
  require(path.join(__dirname, "..", "..", "ui", "static", f));
}
const PL = globalThis.DPPipeline, CH = globalThis.DPChart;

const input = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
PL.useSchema(input.schema);
const payload = (c) => PL.prepare({ raw: Float64Array.from(c.logits), context: c.context, draws: c.draws,
  mu: null, dryHeads: {}, u: c.u, mode: "live", step: 0, steps: 0, position: c.context.length, model: "m" });
const labelOf = (id) => (id === 3 ? "," : "tok" + id);
const chartDiv = (width) => Object.assign(element("div"), { clientWidth: width });
const canvasOf = (div) => div.children.find((c) => c.tag === "canvas");
const seen = (div) => {
  const d = div.drawn, canvas = canvasOf(div);
  return { drawn: { meta: d.meta, bars: d.bars, plot: d.plot, yaxis: d.yaxis, ticks: d.ticks, width: d.width,
    height: d.height, overlay: d.overlay, lines: d.lines, rules: d.rules },
  painted: canvas.log, backing: [canvas.width, canvas.height] };
};

const out = [];
for (const c of input.cases) {
  const P = payload(c);
  const opts = { labelOf, logScale: c.log, height: 320 };
  if (c.overlay) opts.overlay = { label: c.overlay.label, values: c.overlay.values };
  if (c.pair) {
    const a = chartDiv(c.width), b = chartDiv(c.width);
    const outs = CH.drawPair([{ div: a, P, s: c.settings }, { div: b, P: payload(c.pair), s: c.pair.settings }],
      Object.assign(opts, { sameScale: c.sameScale }));
    out.push({ pair: [seen(a), seen(b)], kept: outs.map((o) => o.R.nKept) });
  } else {
    const div = chartDiv(c.width);
    const r = CH.draw(div, P, c.settings, opts);
    out.push(Object.assign(seen(div), { key: CH.keyHtml(r.R, opts.overlay) }));
  }
}
process.stdout.write(JSON.stringify(out));

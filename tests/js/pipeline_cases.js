// Runs ui/static/pipeline.js under Node on the cases in argv[2] (JSON) and prints the results
// (JSON) for tests/test_pipeline_js.py to compare with model/sampling.py.
"use strict";
const fs = require("fs");
const path = require("path");

globalThis.atob = (b64) => Buffer.from(b64, "base64").toString("binary");
require(path.join(__dirname, "..", "..", "ui", "static", "pipeline.js"));
require(path.join(__dirname, "..", "..", "ui", "static", "llama_stages.js"));
const PL = globalThis.DPPipeline;

const input = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
PL.useSchema(input.schema);
const out = { defaults: PL.defaults(), orders: {}, cases: [], clamps: [] };
for (const flag of [false, true]) {
  out.orders[flag] = PL.stageOrder(PL.normalise({ temperature_last: flag })).map((st) => st.name);
}
for (const c of input.cases) {
  const P = PL.prepare({ raw: Float64Array.from(c.logits), context: c.context, draws: c.draws, mu: c.mu,
    dryHeads: c.dry_heads });
  const R = PL.transform(P, c.settings);
  const d = PL.pick(R, c.u);
  out.cases.push({
    probs: Array.from(R.probs), removedBy: Array.from(R.removedBy),
    stages: R.stages.map((st) => [st.name, st.active]), pick: d.token, entropy: R.entropy,
    traces: R.stages.map((st) => st.trace && [st.trace.nIn, st.trace.nOut, st.trace.top, st.trace.pIn, st.trace.pOut]),
  });
}
for (const [name, raw] of input.clamps) {
  out.clamps.push(PL.clampToControl(name, raw));
}
process.stdout.write(JSON.stringify(out));

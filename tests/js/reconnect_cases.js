/* Drives ui/static/reconnect.js under Node with a stand-in for what it touches: app.js's
   action queue (one action at a time, the next after the last one's ack, as app.js does),
   Gradio's trigger (recorded), GET gradio_api/app_id (a server that is up, down, or new),
   timers run by hand, sessionStorage across a reload. Prints one JSON object: what each
   scenario observed; tests/test_reconnect_js.py checks it. */
"use strict";
const path = require("path");

let timers = [], now = 0;
const listeners = {};
globalThis.window = globalThis;
globalThis.setTimeout = (fn, ms) => { timers.push({ at: now + (ms || 0), fn }); return timers.length; };
globalThis.clearTimeout = (id) => { if (id && timers[id - 1]) timers[id - 1].fn = null; };
globalThis.addEventListener = (name, fn) => { (listeners[name] = listeners[name] || []).push(fn); };
globalThis.document = { hidden: false, addEventListener: () => {} };
const storage = {};
globalThis.sessionStorage = {
  getItem: (k) => (k in storage ? storage[k] : null),
  setItem: (k, v) => { storage[k] = String(v); },
  removeItem: (k) => { delete storage[k]; },
};
let server = { up: true, id: 1 };
globalThis.fetch = async () => {
  if (!server.up) throw new TypeError("Failed to fetch");
  return { ok: true, json: async () => ({ app_id: server.id }) };
};
require(path.join(__dirname, "..", "..", "ui", "static", "reconnect.js"));

async function settle() { for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r)); }
// Runs every timer due by `ms` from now, in order, letting fetches resolve in between.
async function advance(ms) {
  const end = now + ms;
  for (;;) {
    await settle();
    let next = null;
    for (const t of timers) if (t.fn && t.at <= end && (!next || t.at < next.at)) next = t;
    if (!next) break;
    now = next.at;
    const fn = next.fn;
    next.fn = null;
    fn();
  }
  now = end;
  await settle();
}

/* A page: app.js's queue around reconnect.js, and what reached the server. */
function page(appId) {
  globalThis.gradio_config = { app_id: appId };
  const st = { seq: 0, live: null, pending: null, queue: [], nextId: 1, generating: false, stopping: false,
    typing: false };
  const sent = [], said = [];
  let shown = 0, stops = 0, text = [];
  const p = { st, sent, said, get shown() { return shown; }, get stops() { return stops; } };
  function act(name, data) {
    const msg = Object.assign({}, data || {}, { id: st.nextId++ });
    if (st.pending) { st.queue.push([name, msg]); return; }
    send(name, msg);
  }
  function send(name, msg) {
    st.pending = { id: msg.id };
    if (name === "generate") st.generating = true;
    rc.send(name, msg);
  }
  const rc = globalThis.DPReconnect.watch(st, {
    trigger: (name, msg) => sent.push([name, msg]), act,
    start: () => act("start", { ids: text.slice() }), shown: () => shown,
    stopGenerating: () => { stops++; }, status: (t) => said.push(t),
  });
  // The server's answer to the action `msg`: a snapshot (seq numbered by the server).
  p.answer = (msg, extra) => {
    const D = Object.assign({ seq: ++p.serverSeq, ack: msg.id, text: { mode: "full" } }, extra || {});
    if (rc.payload(D)) return;
    if (D.text) st.live = {};
    if (D.generating === false) st.generating = false;
    if (st.pending && st.pending.id === D.ack) {
      st.pending = null;
      const next = st.queue.shift();
      if (next) send(next[0], next[1]);
    }
  };
  p.serverSeq = 0;
  p.act = act;
  p.setText = (ids) => { text = ids; shown = ids.length; };
  p.last = () => sent[sent.length - 1];
  p.names = () => sent.map(([name]) => name);
  p.hide = () => (listeners.pagehide || []).forEach((fn) => fn());
  return p;
}

async function idleTabOfARestartedServer() {
  server = { up: true, id: 1 };
  const p = page(1);
  p.act("start", {});
  p.answer(p.last()[1]);
  p.setText([7, 8, 9]);
  p.act("step", { settings: { temperature: 0.5 } });
  p.answer(p.last()[1]);
  p.setText([7, 8, 9, 10]);
  server = { up: false, id: 1 };
  await advance(5000); // the regular look finds nothing
  const downSaid = p.said.slice();
  p.act("step", { settings: { temperature: 0.7 } }); // clicked while it is down: held
  p.act("undo", {}); // queued behind it, as app.js queues
  const sentWhileDown = p.sent.length;
  server = { up: true, id: 2 };
  await advance(1000);
  const start = p.last();
  p.answer(start[1]);
  await advance(0);
  const replay = p.last();
  p.answer(replay[1]);
  const after = p.last();
  return { downSaid, sentWhileDown, names: p.names(), start, replay, after, said: p.said, seq: p.st.seq };
}

async function lostAnswerRebuildsAndResends() {
  server = { up: true, id: 1 };
  const p = page(1);
  p.act("start", {});
  p.answer(p.last()[1]);
  p.setText([4, 5]);
  p.act("pick", { token: 11, settings: {}, keep: 2 });
  const pick = p.last()[1];
  p.answer(pick, { lost: true, text: undefined, notice: { kind: "error", text: "No model is loaded" } });
  const start = p.last();
  p.answer(start[1]);
  await advance(0);
  const again = p.last();
  p.answer(again[1]);
  server = { up: true, id: 2 }; // the restarted server the lost answer came from
  await advance(15000); // looking at it later is no reason to rebuild again
  return { names: p.names(), start, again, said: p.said };
}

async function lostBeforeAnySessionIsAnError() {
  server = { up: true, id: 1 };
  const p = page(1);
  p.act("step", {});
  const before = p.sent.length;
  p.answer(p.last()[1], { lost: true, text: undefined });
  return { sent: p.sent.length - before, said: p.said, pending: p.st.pending };
}

async function generateCutByAReload() {
  server = { up: true, id: 1 };
  const p = page(1);
  p.act("start", {});
  p.answer(p.last()[1]);
  p.setText([1, 2, 3]);
  p.act("generate", { n: 200, settings: {} });
  p.answer(p.last()[1], { generating: true, text: { mode: "append" } });
  p.setText([1, 2, 3, 21, 22, 23, 24, 25]);
  p.act("step", {}); // pressed right as the server died: Gradio never answers it
  p.hide(); // Gradio reloads the page once the server answers again
  const note = JSON.parse(storage["dp-reconnect"]);
  server = { up: true, id: 2 };
  const q = page(2); // the reloaded page, built by the new server
  q.act("start", {});
  const start = q.last();
  q.answer(start[1]);
  await advance(0);
  const replay = q.last();
  return { note, names: q.names(), replay, said: q.said, left: "dp-reconnect" in storage };
}

async function aRunningGenerateIsReportedStoppedInPlace() {
  server = { up: true, id: 1 };
  const p = page(1);
  p.act("start", {});
  p.answer(p.last()[1]);
  p.setText([1]);
  p.act("generate", { n: 50, settings: {} });
  p.answer(p.last()[1], { generating: true, text: { mode: "append" } });
  p.setText([1, 2, 3, 4]);
  server = { up: true, id: 2 };
  await advance(5000);
  const start = p.last();
  p.answer(start[1]);
  await advance(0);
  return { names: p.names(), stops: p.stops, generating: p.st.generating, said: p.said };
}

async function aBlipKeepsTheSession() {
  server = { up: true, id: 1 };
  const p = page(1);
  p.act("start", {});
  p.answer(p.last()[1]);
  server = { up: false, id: 1 };
  await advance(5000);
  p.act("step", {});
  server = { up: true, id: 1 }; // the same server: only the way to it broke
  await advance(1000);
  return { names: p.names(), said: p.said };
}

async function otherTabsSeeNothing() {
  server = { up: true, id: 1 };
  const p = page(1);
  p.act("start", {});
  p.answer(p.last()[1]);
  await advance(60000);
  return { names: p.names(), said: p.said };
}

(async () => {
  const out = {};
  for (const f of [idleTabOfARestartedServer, lostAnswerRebuildsAndResends, lostBeforeAnySessionIsAnError,
    generateCutByAReload, aRunningGenerateIsReportedStoppedInPlace, aBlipKeepsTheSession, otherTabsSeeNothing]) {
    timers = []; now = 0;
    for (const k of Object.keys(listeners)) delete listeners[k];
    out[f.name] = await f();
  }
  process.stdout.write(JSON.stringify(out));
})();

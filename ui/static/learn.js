/* "Watch it learn": the tab's context read by every training snapshot of its model. Mounted
   from ui/learn_page.py's template, a component of its own below the playground; compare.js
   shares the component (payloads of kind "compare" go there).

   The server (ui/learn.py, event 'learn') answers once per context with every snapshot's
   next-token logits, this text's loss and per-token surprisal at each, and the run's curve.
   Moving the "training step" slider then only redraws: the chart through chart.js's public
   draw (the tab's settings, the tab's u: only the weights differ), the marker on the training
   curve, and the text coloured by what that snapshot predicted. 'learn_generate' continues
   the prompt from every snapshot with the same seed.

   The section asks again when the tab's chart moves on (a step, a new prompt, another model)
   and when the settings change it redraws; it looks only while it is open. */
(function (global) {
  "use strict";
  const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  const num = (x, d) => (x === null || x === undefined ? "–" : Number(x).toFixed(d));
  const WATCH_MS = 400, ACK_TIMEOUT_MS = 30000;
  const BLUE = "#2563eb", GREY = "#94a3b8", RED = "#dc2626", AMBER = "#f59e0b";

  function mount(element, trigger, props, watch) {
    const $ = (sel) => element.querySelector(sel);
    const PL = global.DPPipeline, CH = global.DPChart;
    const st = { data: null, prepared: [], index: 0, pending: null, nextId: 1, liveId: null,
      model: null, labels: {}, key: "", drawn: [], seq: 0 };
    global.DPLearn.state = st;
    const slider = $(".dl-step"), plot = $(".dl-plot"), curve = $(".dl-curve");
    const compare = global.DPCompare.mount(element, trigger, { labels: st.labels, request,
      variants: JSON.parse(props.variants || "[]") });

    const settings = () => (global.DP && global.DP.settings ? global.DP.settings() : PL.defaults());
    const open = () => element.offsetParent !== null;
    const labelOf = (id) => {
      const all = st.labels[st.model];
      if (all && id < all.length) return all[id];
      const P = st.prepared[st.index];
      return (P && P.labels && P.labels[id]) || "#" + id;
    };

    /* ---- asking: one request at a time ----
       Every answer is this component's value; two answers set close together can reach the
       page as one change, the first lost. So a request waits for the one before it, and of
       those waiting only the newest of each kind is kept (a hover sweep asks for one chart). */
    st.queue = [];
    function request(kind, data) {
      st.queue = st.queue.filter((q) => q.kind !== kind);
      st.queue.push({ kind, data });
      pump();
    }
    function pump() {
      if (busy() || !st.queue.length) return;
      const { kind, data } = st.queue.shift();
      const id = st.nextId++;
      st.pending = { id, at: performance.now(), kind };
      trigger(kind, Object.assign({ id, have: Object.keys(st.labels) }, data));
    }
    function busy() { return st.pending && performance.now() - st.pending.at < ACK_TIMEOUT_MS; }
    // The tab's chart moved on (or the section was opened): read the new context.
    function poll() {
      if (!open()) return;
      const live = global.DP && global.DP.state && global.DP.state.live;
      if (live && live._id !== st.liveId && !st.queue.some((q) => q.kind === "learn")) {
        st.liveId = live._id;
        $(".dl-status").textContent = "Reading this text with every snapshot …";
        request("learn", {});
      }
      const key = JSON.stringify(settings());
      if (key !== st.key) { st.key = key; draw(); compare.redraw(); }
    }
    setInterval(poll, WATCH_MS);

    /* ---- drawing ---- */
    function prepared(i) {
      if (!st.prepared[i]) {
        const P = Object.assign({}, st.data.chart, { logits: st.data.logits[i] });
        st.prepared[i] = PL.prepare(P);
      }
      return st.prepared[i];
    }
    function draw() {
      const D = st.data;
      if (!D || !D.snapshots.length || !open()) return;
      const i = st.index, snap = D.snapshots[i];
      CH.draw(plot, prepared(i), settings(), { labelOf, height: 300 });
      const loss = D.loss[i];
      $(".dl-step-out").textContent = "step " + snap.step.toLocaleString("en") + " of " +
        D.snapshots[D.snapshots.length - 1].step.toLocaleString("en");
      $(".dl-stats").innerHTML = "After <b>" + snap.step.toLocaleString("en") + "</b> training steps (" +
        (snap.tokens_seen || 0).toLocaleString("en") + " tokens seen): " + (loss === null ? "this text is one token, " +
        "so nothing in it is predicted yet" : "this text's loss <b>" + num(loss, 3) + " nats/token</b>") + (snap.val_loss !== null && snap.val_loss !== undefined ? "; held-out loss " + num(snap.val_loss, 3) : "") +
        "; ln V = " + num(D.ln_v, 3) + " (a uniform guess over " + D.vocab.toLocaleString("en") + " tokens).";
      drawCurve(i);
      drawTokens(i);
      st.drawn.push({ index: i, at: performance.now() });
      if (st.drawn.length > 1000) st.drawn.splice(0, 500);
      element.dataset.drawnStep = String(snap.step);
    }
    function drawCurve(i) {
      const D = st.data, steps = D.snapshots.map((s) => s.step);
      global.DPLineChart.draw(curve, {
        series: [
          { name: "train loss (run)", points: D.curve.train, colour: GREY },
          { name: "validation loss (run)", points: D.curve.val, colour: BLUE, dots: true },
          { name: "this text's loss", points: steps.map((x, k) => [x, D.loss[k]]), colour: AMBER, dash: true, dots: true },
        ],
        mark: { x: steps[i], y: D.loss[i], colour: RED, name: "this snapshot" },
        reference: { y: D.ln_v, label: "ln V" },
        xTitle: "training step", yTitle: "nats/token", height: 320,
      });
    }
    function drawTokens(i) {
      const D = st.data, s = D.surprisal[i];
      const colour = global.DPText.colour;
      $(".dl-tokens").innerHTML = D.tokens.map((t, j) => {
        if (j === 0) return '<span class="dl-tok dl-first" title="the first token: nothing to predict it from">' + esc(t.text) + "</span>";
        const x = s[j - 1], p = Math.exp(-x);
        return '<span class="dl-tok" tabindex="0" style="background:' + colour(p) + '" title="' + esc(t.label) +
          ": p = " + num(p, 3) + ", " + num(x, 2) + ' nats">' + esc(t.text) + "</span>";
      }).join("");
    }
    function setIndex(i) {
      st.index = Math.max(0, Math.min(st.data.snapshots.length - 1, i));
      slider.value = String(st.index);
      draw();
    }

    /* ---- payloads ---- */
    function onPayload(json) {
      if (!json) return;
      let D;
      try { D = JSON.parse(json); } catch (e) { console.error("bad learn payload", e); return; }
      if (st.pending && D.ack === st.pending.id) { st.pending = null; setTimeout(pump, 0); }
      if (D.seq <= st.seq) return;
      st.seq = D.seq;
      if (D.labels_all) st.labels[D.label_model || D.model] = D.labels_all;
      if (D.kind !== "learn" && D.kind !== "generate") { compare.payload(D); return; }
      if (D.error) { $(".dl-status").textContent = D.error; return; }
      if (D.kind === "generate") { showGenerated(D); return; }
      $(".dl-status").textContent = "";
      const none = !D.snapshots.length;
      $(".dl-none").hidden = !none;
      $(".dl-body").hidden = none;
      if (none) { $(".dl-none").textContent = D.why; st.data = null; return; }
      const same = st.data && st.data.model === D.model && st.data.snapshots.length === D.snapshots.length;
      st.data = D; st.model = D.model; st.prepared = [];
      slider.max = String(D.snapshots.length - 1);
      $(".dl-memory").textContent = D.memory_mb ? "(" + D.snapshots.length + " snapshots loaded, " + D.memory_mb + " MB, shared by every visitor)" : "";
      setIndex(same ? st.index : 0);
    }
    function showGenerated(D) {
      $(".dl-gen-status").textContent = "Seed " + D.seed + ", " + D.n + " tokens each, your settings:";
      $(".dl-gens").innerHTML = D.rows.map((r) => '<li><b>step ' + r.step.toLocaleString("en") +
        "</b> <span class=\"dl-gen-text\">" + esc(r.text) + "</span></li>").join("");
    }

    slider.addEventListener("input", () => setIndex(Number(slider.value)));
    $(".dl-generate").addEventListener("click", () => {
      $(".dl-gen-status").textContent = "Generating from every snapshot …";
      request("learn_generate", { n: 40, settings: settings() });
    });
    watch("value", () => onPayload(props.value));
    onPayload(props.value);
    global.DPLearn.setIndex = setIndex;
  }

  global.DPLearn = Object.assign(global.DPLearn || {}, { mount });
})(window);

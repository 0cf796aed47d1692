/* The Decoding Playground's page: one component, mounted from ui/page.py's template.

   Data flow. The page holds the settings (controls.js) and draws the chart itself from the
   step's logits (chart.js, pipeline.js), so settings never wait for the server. Everything
   that changes the session is an action sent to the server through the component's
   `trigger(name, data)`; settings travel with it as one JSON object. The server answers by
   setting the component's value to one payload (ui/views.py):

     {seq, ack, chart, text: {mode: "full" | "append", ...}, chips, notice, generating, ...}

   seq numbers every payload of this tab: an older one arriving late is dropped. Actions go
   one at a time (the next waits for the `ack` of the last), so they reach the session in the
   order they were made. While Generate runs, Step, Undo, Reset, a new prompt, another model
   and Stop interrupt it, and say how many generated tokens the page shows (`keep`): the
   server cuts the session back to exactly those, so what you saw is what you have. */
(function (global) {
  "use strict";
  const PL = global.DPPipeline, C = global.DPControls, CH = global.DPChart, TX = global.DPText;
  const INTERRUPTS = new Set(["prompt", "reset", "model", "step", "pick", "undo", "rewind", "stop"]);
  const ACK_TIMEOUT_MS = 20000;

  function mount(element, trigger, props, watch) {
    const schema = JSON.parse(props.schema);
    PL.useSchema(schema);
    const limits = JSON.parse(props.limits);
    const presets = JSON.parse(props.presets);
    const $ = (sel) => element.querySelector(sel);
    const app = $(".dp-app");
    const st = {
      seq: 0, live: null, shown: null, labels: {}, model: null, chat: false, generating: false,
      stopping: false, pending: null, queue: [], nextId: 1, pinned: null, compareWith: "Greedy",
      compareOn: false, logScale: false, lastKey: "", urlTimer: null, rendered: [], started: false,
      chatAvailable: false, loading: false,
    };
    global.DP.state = st;

    /* ---- toasts and the status line: never push the page around ---- */
    function toast(text, kind) {
      const box = $(".dp-toasts");
      const t = document.createElement("div");
      t.className = "dp-toast dp-" + (kind || "note");
      t.textContent = text;
      box.appendChild(t);
      setTimeout(() => t.remove(), kind === "error" ? 9000 : 4500);
      while (box.children.length > 3) box.firstChild.remove();
    }
    function status(text, kind) {
      const s = $(".dp-status");
      s.textContent = text || "";
      s.className = "dp-status" + (text ? " dp-" + (kind || "note") : "");
    }

    /* ---- settings ---- */
    let chain = null;
    const controls = C.build(schema, presets, $(".dp-controls"), $(".dp-controls-more"), $(".dp-presets"),
      (settings, why) => { if (chain) chain.update(settings); render(false); scheduleUrl(); });
    // The chain editor (chain.js) writes `samplers` through the controls, as a slider does.
    chain = global.DPChain.mount($(".dp-chain"), () => controls.get(),
      (list) => controls.accept("samplers", list, true));
    chain.update(controls.get());
    const seedMsg = document.createElement("div");
    seedMsg.className = "dp-ctl-msg";
    const seedInput = C.el("input", { type: "number", cls: "dp-num dp-seed", id: "dp-seed", inputmode: "numeric" });
    $(".dp-seed-row").append(C.el("label", { for: "dp-seed", text: "Seed " }), seedInput,
      C.el("span", { cls: "dp-muted", text: " fixes u for each position: the same seed, settings and prompt give the same text." }), seedMsg);
    const seed = C.integerBox(seedInput, seedMsg, schema.seed.min, schema.seed.max, 0, "the seed", (v) => {
      if (st.started) act("seed", { seed: v });
      scheduleUrl();
    });
    const nTokens = C.integerBox($(".dp-n"), null, 1, limits.generate_tokens, 20, "tokens per Generate",
      (v, message) => { if (message) toast(message, "note"); });
    $(".dp-prompt-limit").textContent = "(the model reads the last " + limits.prompt_chars.toLocaleString("en") + " characters)";
    $(".dp-limits").textContent = "Limits: " + limits.generate_tokens + " tokens per Generate, " +
      limits.session_tokens.toLocaleString("en") + " new tokens per session (then Reset). The address bar holds the " +
      "prompt, settings, seed and text: share it to share this view.";

    /* ---- the model menu ---- */
    const modelSelect = $(".dp-model");
    function setModels(list) {
      const value = modelSelect.value;
      modelSelect.textContent = "";
      for (const [label, name] of list) modelSelect.appendChild(C.el("option", { value: name, text: label }));
      if (value) modelSelect.value = value;
    }
    setModels(JSON.parse(props.models));
    modelSelect.addEventListener("change", () => act("model", { name: modelSelect.value, prompt: promptBox.value,
      chat: chatBox.checked, seed: seed.get() }));

    /* ---- the prompt: every change of the box (typing, paste, cut, delete, drop, autofill,
       an input method) fires `input`; a pause of 150 ms sends it ---- */
    const promptBox = $(".dp-prompt"), chatBox = $(".dp-chat-on");
    let promptTimer = null, composing = false;
    function promptChanged() {
      clearTimeout(promptTimer);
      st.typing = true;
      if (composing) return;
      promptTimer = setTimeout(sendPrompt, 150);
    }
    function sendPrompt() {
      clearTimeout(promptTimer);
      st.typing = false;
      act("prompt", { text: promptBox.value, chat: chatBox.checked });
    }
    promptBox.addEventListener("input", promptChanged);
    promptBox.addEventListener("compositionstart", () => { composing = true; });
    promptBox.addEventListener("compositionend", () => { composing = false; promptChanged(); });
    chatBox.addEventListener("change", () => act("prompt", { text: promptBox.value, chat: chatBox.checked }));
    // The scorer (score.js) puts a text into the prompt box: then it goes the way typing goes.
    global.DP.setPrompt = (value) => {
      promptBox.value = String(value);
      promptBox.scrollIntoView({ block: "center" });
      promptChanged();
    };

    /* ---- the actions ---- */
    function act(name, data) {
      if (st.loading && name !== "model") { toast("The model is still loading: wait for it.", "note"); return; }
      // A prompt still being typed goes first: the action is meant for the prompt on screen.
      if (st.typing && name !== "prompt" && !composing) sendPrompt();
      const msg = Object.assign({}, data || {}, { id: st.nextId++ });
      if (st.generating && INTERRUPTS.has(name)) {
        text.dropQueued();
        msg.keep = text.count(); // the server keeps exactly what this page shows
        st.stopping = true;
        st.generating = false;
        setGenerating(false);
        trigger(name, msg);
        st.pending = { id: msg.id, at: performance.now() };
        return;
      }
      if (st.pending && performance.now() - st.pending.at < ACK_TIMEOUT_MS) {
        if (st.queue.length < 8) st.queue.push([name, msg]);
        return;
      }
      send(name, msg);
    }
    function send(name, msg) {
      st.pending = { id: msg.id, at: performance.now() };
      if (name === "generate") { st.generating = true; st.stopping = false; setGenerating(true); }
      trigger(name, msg);
    }
    function acked(id) {
      if (!st.pending || id !== st.pending.id) return;
      st.pending = null;
      const next = st.queue.shift();
      if (next) send(next[0], next[1]);
    }
    function setGenerating(on) {
      $(".dp-stop").disabled = !on;
      $(".dp-generate").disabled = on;
      app.classList.toggle("dp-generating", on);
      lens.sync(st.live, on);
      if (on) $(".dp-heading").innerHTML = "Generating … <span class=\"dp-muted\">the chart shows the next token " +
        "again when it stops (Esc or Stop)</span>";
      else if (st.shown) heading(st.shown);
    }
    const settingsNow = () => controls.get();
    function step() { act("step", { settings: settingsNow() }); }
    function undo() { act("undo", {}); }
    function generate() { if (!st.generating) act("generate", { n: nTokens.get(), settings: settingsNow() }); }
    function stop() { if (st.generating) act("stop", {}); }
    function pickToken(id) {
      if (!st.shown || st.shown !== st.live) { toast("Looking back: press “Back to the next token” to pick.", "note"); return; }
      act("pick", { token: id, settings: settingsNow() });
    }
    $(".dp-step").addEventListener("click", step);
    $(".dp-undo").addEventListener("click", undo);
    $(".dp-generate").addEventListener("click", generate);
    $(".dp-stop").addEventListener("click", stop);
    $(".dp-reset").addEventListener("click", () => act("reset", { prompt: promptBox.value, seed: seed.get(), chat: chatBox.checked }));
    $(".dp-export").addEventListener("click", () => act("export", {}));
    $(".dp-copy-link").addEventListener("click", copyLink);

    /* ---- the text ---- */
    const text = TX.mount($(".dp-text"), {
      inspect: (stepNo) => act("inspect", { step: stepNo }),
      rewind: (stepNo) => act("rewind", { step: stepNo }),
    });

    /* ---- the logit lens below the chart (lens.js): the live step's layers, on request ---- */
    const lens = global.DPLens.mount($(".dp-lens"), $(".dp-lens-btn"), { request: () => act("lens", { top_n: 5 }) });

    /* ---- the chart ---- */
    const labelOf = (id) => {
      const P = st.shown || {};
      const all = st.labels[P.model];
      if (all && id < all.length) return all[id];
      return (P.labels && P.labels[id]) || "#" + id;
    };
    const compareSelect = $(".dp-compare-with");
    compareSelect.appendChild(C.el("option", { value: "pinned", text: "pinned settings (pin first)", disabled: true }));
    for (const name of Object.keys(presets)) compareSelect.appendChild(C.el("option", { value: name, text: name }));
    compareSelect.value = st.compareWith;

    function render(force) {
      const P = st.shown;
      if (!P || !global.Plotly) return;
      const inspecting = P.mode === "inspect";
      const s = inspecting ? PL.normalise(P.chosen_settings) : settingsNow();
      const key = P._id + "|" + JSON.stringify(s) + "|" + st.logScale + "|" + $(".dp-main").clientWidth;
      if (!force && key === st.lastKey) return;
      st.lastKey = key;
      const div = $(".dp-main");
      const out = CH.draw(div, P, s, { labelOf, logScale: st.logScale, compare: st.compareOn });
      $(".dp-stats").innerHTML = CH.statsHtml(P, out.R, out.fig, P.u, labelOf);
      $(".dp-key").innerHTML = CH.keyHtml(out.R);
      heading(P);
      if (st.compareOn) renderCompare();
      out.promise.then(() => {
        CH.placeHits($(".dp-hits"), div, out.fig, P, labelOf, pickToken, (rest) =>
          toast("This bar gathers the other " + rest.toLocaleString("en") + " tokens. Pick one of the named " +
            "bars, or Step to let u choose (it can land in here).", "note"));
        st.rendered.push(performance.now());
        if (st.rendered.length > 1000) st.rendered.splice(0, 500);
      });
    }
    function renderCompare() {
      const P = st.shown, div = $(".dp-compare-plot");
      const s = st.compareWith === "pinned" && st.pinned ? st.pinned
        : PL.normalise(Object.assign(PL.defaults(), (presets[st.compareWith] || { settings: { temperature: 0 } }).settings));
      const out = CH.draw(div, P, s, { labelOf, logScale: st.logScale, compare: true });
      $(".dp-compare-stats").innerHTML = '<div class="dp-compare-title">B: ' + CH.esc(CH.settingsText(s)) +
        "</div>" + CH.statsHtml(P, out.R, out.fig, P.u, labelOf);
    }
    function setCompare(on) {
      st.compareOn = on;
      $(".dp-compare-on").checked = on;
      $(".dp-plots").classList.toggle("dp-comparing", on);
      $(".dp-compare").hidden = !on;
      render(true);
    }
    function heading(P) {
      const banner = $(".dp-banner");
      if (P.mode !== "inspect") {
        banner.hidden = true;
        $(".dp-heading").innerHTML = "Next token after <b>" + P.position + "</b> token" + (P.position === 1 ? "" : "s") +
          (P.steps ? " · step " + P.steps + " of at most " + P.max_steps : "") +
          ' <span class="dp-muted">(hover a bar for details; click, tap or Enter picks it)</span>';
        return;
      }
      banner.hidden = false;
      banner.innerHTML = "Step " + (P.inspect + 1) + ": <code>" + CH.esc(labelOf(P.chosen)) + "</code> was drawn from this " +
        "distribution, with the settings it was drawn with (" + CH.esc(CH.settingsText(PL.normalise(P.chosen_settings))) +
        '). <button type="button" class="dp-btn dp-rewind">Rewind to here</button> <button type="button" class="dp-btn dp-back">' +
        "Back to the next token</button>";
      $(".dp-heading").textContent = "Looking back at step " + (P.inspect + 1);
    }
    element.addEventListener("click", (ev) => {
      const t = ev.target;
      if (t.closest(".dp-rewind") && st.shown && st.shown.mode === "inspect") act("rewind", { step: st.shown.inspect });
      else if (t.closest(".dp-back") && st.live) { st.shown = st.live; render(true); }
      else if (t.closest(".dp-pin")) {
        st.pinned = settingsNow();
        const o = compareSelect.querySelector("option[value=pinned]");
        o.disabled = false; o.textContent = "pinned: " + CH.settingsText(st.pinned);
        compareSelect.value = "pinned"; st.compareWith = "pinned";
        setCompare(true);
      }
    });
    element.addEventListener("change", (ev) => {
      const t = ev.target;
      if (t.classList.contains("dp-log")) { st.logScale = t.checked; render(true); }
      if (t.classList.contains("dp-compare-on")) setCompare(t.checked);
      if (t.classList.contains("dp-compare-with")) { st.compareWith = t.value; if (st.compareOn) renderCompare(); }
    });
    let resizeTimer = null;
    window.addEventListener("resize", () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(() => render(true), 150); });

    /* ---- payloads from the server ---- */
    let chartId = 1;
    function onPayload(json) {
      if (!json) return;
      let D;
      try { D = JSON.parse(json); } catch (e) { console.error("bad payload", e); return; }
      if (rc.payload(D)) return; // the server had lost this tab's session: reconnect.js rebuilds it
      if (D.seq <= st.seq) {
        // Older than what is shown (it was overtaken on the way, e.g. by a Generate's stream):
        // its state is superseded, but what it delivers once still counts.
        if (D.notice) toast(D.notice.text, D.notice.kind);
        if (D.export) download(D.export);
        if (D.lens) lens.show(D.lens, st.live, st.generating);
        if (D.ack) acked(D.ack);
        return;
      }
      st.seq = D.seq;
      if (D.models) setModels(D.models);
      if (D.loading !== undefined) setLoading(D.loading);
      if (D.model) {
        if (st.model !== D.model.name) document.dispatchEvent(new CustomEvent("dp-model", { detail: D.model.name }));
        st.model = D.model.name; modelSelect.value = D.model.name;
        st.chatAvailable = D.model.chat;
        $(".dp-chat").hidden = !D.model.chat;
        chatBox.checked = Boolean(D.model.chat_on);
      }
      if (D.prompt !== undefined && promptBox.value !== D.prompt && document.activeElement !== promptBox) promptBox.value = D.prompt;
      if (D.seed !== undefined) seed.set(D.seed);
      if (D.text) {
        if (D.text.mode === "full") { text.reset(D.text); st.stopping = false; }
        else if (!st.stopping && !text.append(D.text.from, D.text.tokens)) st.stopping = true; // wait for a snapshot
      }
      if (D.chart) {
        // The chart in tasks of its own, after this payload's text: preparing the logits and
        // drawing each take tens of ms, and one long task would delay a click on Stop.
        const id = chartId++, chart = D.chart;
        st.drawing = id;
        setTimeout(() => {
          if (st.drawing !== id) return; // a newer chart is on its way
          let P;
          try { P = PL.prepare(chart); } catch (e) { console.error("bad chart payload", e); st.drawing = 0; return; }
          P._id = id;
          if (P.labels_all) { st.labels[P.model] = P.labels_all; delete P.labels_all; }
          requestAnimationFrame(() => {
            if (st.drawing !== id) return;
            if (P.mode === "live") st.live = P;
            st.shown = P;
            render(true);
            lens.sync(st.live, st.generating); // the table may belong to the step just left
            st.drawing = 0;
            app.dataset.loading = st.live ? "" : "1";
          });
        }, 0);
      }
      if (D.chips !== undefined) {
        $(".dp-chips-host").innerHTML = D.chips;
        $(".dp-chips-summary").textContent = "The prompt's " + (D.prompt_tokens || 0) + " token" +
          (D.prompt_tokens === 1 ? "" : "s") + " (what the model reads)";
      }
      if (D.status !== undefined) status(D.status, "note");
      if (D.notice) toast(D.notice.text, D.notice.kind);
      if (D.generating !== undefined && !D.generating) { st.generating = false; setGenerating(false); }
      if (D.lens) lens.show(D.lens, st.live, st.generating);
      else lens.sync(st.live, st.generating);
      if (D.evicted) showEvicted();
      if (D.export) download(D.export);
      if (D.ack) acked(D.ack);
      if (D.text || D.chart) scheduleUrl();
      app.dataset.loading = st.live ? "" : "1";
    }
    function setLoading(what) {
      st.loading = Boolean(what);
      app.classList.toggle("dp-busy", st.loading);
      for (const b of element.querySelectorAll(".dp-actions button, .dp-hits button")) b.disabled = st.loading;
      if (!st.loading) $(".dp-stop").disabled = !st.generating;
      status(what || "", "loading");
    }
    function showEvicted() {
      const s = $(".dp-status");
      s.className = "dp-status dp-error";
      s.textContent = "This tab's session was closed to keep the server's memory for everyone. ";
      const b = C.el("button", { type: "button", cls: "dp-btn dp-primary", text: "Start again" });
      b.addEventListener("click", () => start(text.ids()));
      s.appendChild(b);
    }
    function download(data) {
      const blob = new Blob([JSON.stringify(data, null, 1)], { type: "application/json" });
      const a = document.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = "decoding-history.json";
      document.body.appendChild(a);
      a.click();
      setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
      toast("Saved decoding-history.json (" + data.steps.length + " steps).", "note");
    }

    /* ---- the URL holds the view: prompt, model, seed, settings and the text's token ids ---- */
    function linkQuery() {
      const q = new URLSearchParams();
      if (promptBox.value) q.set("prompt", promptBox.value);
      if (st.model) q.set("model", st.model);
      q.set("seed", String(seed.get()));
      if (chatBox.checked) q.set("chat", "1");
      const s = settingsNow(), d = PL.defaults();
      for (const name of Object.keys(schema.settings)) {
        // The list settings (the chain, DRY's breakers, logit biases) travel as JSON.
        const list = typeof s[name] === "object" && s[name] !== null;
        if (list ? JSON.stringify(s[name]) === JSON.stringify(d[name]) : s[name] === d[name]) continue;
        q.set(name, typeof s[name] === "boolean" ? "1" : list ? JSON.stringify(s[name]) : String(s[name]));
      }
      const ids = text.ids();
      if (ids.length) q.set("t", encodeIds(ids));
      return q;
    }
    function scheduleUrl() {
      clearTimeout(st.urlTimer);
      // Browsers throttle history.replaceState; one update after things rest is enough.
      st.urlTimer = setTimeout(() => {
        // Not before the session's first view: the link would lose its text meanwhile.
        if (!st.started || !st.live) return;
        try { history.replaceState(null, "", "?" + linkQuery().toString()); } catch (e) { /* sandboxed page */ }
      }, 300);
    }
    function copyLink() {
      const url = location.origin + location.pathname + "?" + linkQuery().toString();
      const done = () => toast("Link copied: it opens this prompt, these settings and this text.", "note");
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(url).then(done, () => window.prompt("Copy this link:", url));
      } else {
        window.prompt("Copy this link:", url);
      }
    }

    /* ---- keys: S/→ step, U/← undo, G generate, Esc stop, 1-9 pick the n-th bar ---- */
    document.addEventListener("keydown", (ev) => {
      if (ev.ctrlKey || ev.metaKey || ev.altKey || !element.isConnected) return;
      const t = ev.target;
      const typing = t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName));
      if (ev.key === "Escape") { if (st.generating) { stop(); ev.preventDefault(); } else text.hideTip(); return; }
      if (typing) return;
      const k = ev.key.toLowerCase();
      if (k === "s" || ev.key === "ArrowRight") { step(); ev.preventDefault(); }
      else if (k === "u" || ev.key === "ArrowLeft") { undo(); ev.preventDefault(); }
      else if (k === "g") { generate(); ev.preventDefault(); }
      else if (/^[1-9]$/.test(ev.key)) {
        const hit = $(".dp-hits").children[Number(ev.key) - 1];
        if (hit && !hit.classList.contains("dp-hit-rest")) { hit.click(); ev.preventDefault(); }
      }
    });

    /* ---- starting: the link's view, or a fresh one ---- */
    function start(ids) {
      const q = new URLSearchParams(location.search);
      const msgs = [];
      const values = {};
      for (const name of Object.keys(schema.settings)) {
        if (!q.has(name)) continue;
        const raw = q.get(name);
        values[name] = schema.settings[name].kind === "bool" ? ["1", "true", "yes", "on"].includes(raw.toLowerCase()) : raw;
      }
      if (!st.started) {
        msgs.push(...controls.setAll(values, "link"));
        if (q.has("prompt")) promptBox.value = q.get("prompt");
        if (q.has("chat")) chatBox.checked = ["1", "true", "yes", "on"].includes(q.get("chat").toLowerCase());
        if (q.has("seed")) {
          const before = seed.get();
          seedInput.value = q.get("seed");
          seedInput.dispatchEvent(new Event("change"));
          if (seedMsg.textContent) msgs.push("seed: " + seedMsg.textContent);
          else if (seed.get() === before && q.get("seed") !== String(before)) msgs.push("seed: ignored");
        }
      }
      if (msgs.length) toast("In the link: " + msgs.join(" "), "note");
      st.started = true;
      const decoded = ids || (q.has("t") ? decodeIds(q.get("t")) : []);
      act("start", { model: q.get("model") || "", prompt: promptBox.value, seed: seed.get(),
        chat: chatBox.checked, ids: decoded, settings: settingsNow() });
    }

    /* ---- a server that lost this tab's session gets it back from the page (reconnect.js) ---- */
    const rc = global.DPReconnect.watch(st, { trigger, act, start: () => start(text.ids()),
      shown: () => text.count(), stopGenerating: () => setGenerating(false), status });
    trigger = rc.send; // every action goes through it

    watch("value", () => onPayload(props.value));
    onPayload(props.value);
    start(null);
  }

  /* Token ids in a link: LEB128 varints, base64url. ~2.7 characters a token for vocabularies
     under 16,384, ~4 for SmolLM2's 49,152. */
  function encodeIds(ids) {
    const bytes = [];
    for (let v of ids) {
      do { let b = v & 0x7f; v >>>= 7; if (v) b |= 0x80; bytes.push(b); } while (v);
    }
    let bin = "";
    for (const b of bytes) bin += String.fromCharCode(b);
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function decodeIds(s) {
    try {
      const bin = atob(s.replace(/-/g, "+").replace(/_/g, "/"));
      const out = [];
      let v = 0, shift = 0;
      for (let i = 0; i < bin.length; i++) {
        const b = bin.charCodeAt(i);
        v |= (b & 0x7f) << shift;
        if (b & 0x80) { shift += 7; if (shift > 28) return []; } else { out.push(v >>> 0); v = 0; shift = 0; }
      }
      return out;
    } catch (e) {
      return [];
    }
  }

  global.DP = Object.assign(global.DP || {}, { mount, encodeIds, decodeIds });
})(window);

/* The Decoding Playground's page: one component, mounted from ui/page.py's template. This
   file wires the parts together and draws what the server sends.

   Data flow. The page holds the settings (controls.js) and draws the chart itself from the
   step's logits (chart.js, pipeline.js), so settings never wait for the server. Everything
   that changes the session is an action (queue.js) sent to the server through the
   component's `trigger(name, data)`; settings travel with it as one JSON object. The server
   answers by setting the component's value to one payload (ui/views.py):

     {seq, ack, chart, text: {mode: "full" | "append", ...}, chips, notice, generating, ...}

   seq numbers every payload of this tab: an older one arriving late is dropped. The address
   bar holds the view (link.js); keys are in keys.js. */
(function (global) {
  "use strict";
  const PL = global.DPPipeline, C = global.DPControls, CH = global.DPChart, TX = global.DPText;
  const L = global.DPLink;

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
      compareOn: false, logScale: false, lastKey: "", rendered: [], started: false,
      chatAvailable: false, loading: false,
    };
    global.DP.state = st;

    /* ---- toasts and the status line: never push the page around ---- */
    function toast(text, kind) {
      const box = $(".dp-toasts");
      const t = document.createElement("div");
      t.className = "dp-toast dp-" + (kind || "note");
      t.textContent = text;
      t.title = "tap to close";
      t.addEventListener("click", () => t.remove());
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
    st.controls = controls; st.chain = chain; // for the benchmarks that time the parts alone
    const seedMsg = document.createElement("div");
    seedMsg.className = "dp-ctl-msg";
    const seedInput = C.el("input", { type: "text", cls: "dp-num dp-seed", id: "dp-seed", inputmode: "numeric" });
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

    /* ---- the actions (queue.js) ---- */
    // Through `trigger` as it is at the time (reconnect.js wraps it, below).
    const queue = global.DPQueue.create(st, (name, msg) => trigger(name, msg), {
      ready(name) {
        if (st.loading && name !== "model") { toast("The model is still loading: wait for it.", "note"); return false; }
        // A prompt still being typed goes first: the action is meant for the prompt on screen.
        if (st.typing && name !== "prompt" && !composing) sendPrompt();
        return true;
      },
      kept() { text.dropQueued(); return text.count(); },
      setGenerating,
    });
    const act = queue.act, acked = queue.acked;
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
    global.DP.settings = settingsNow; // read by the sections below the playground (learn.js)
    function step() { act("step", { settings: settingsNow() }); }
    function undo() { act("undo", {}); }
    function generate() {
      if (st.generating) return;
      act("generate", { n: nTokens.get(), settings: settingsNow() });
      // One column (a phone): the text is below the chart, so bring it into view and keep it
      // there as it grows, until the reader scrolls the page themselves.
      st.followText = fit.narrow();
      if (st.followText) $(".dp-output").scrollIntoView({ block: "end" });
    }
    for (const gesture of ["wheel", "touchmove"]) {
      window.addEventListener(gesture, () => { st.followText = false; }, { passive: true });
    }
    function followText() {
      if (!st.followText || !st.generating) return;
      requestAnimationFrame(() => { // after text.js has drawn the new tokens
        const r = $(".dp-output").getBoundingClientRect();
        if (r.bottom > window.innerHeight) $(".dp-output").scrollIntoView({ block: "end" });
      });
    }
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
    $(".dp-copy-link").addEventListener("click", () => link.copy());

    /* ---- the text ---- */
    const text = TX.mount($(".dp-text"), {
      inspect: (stepNo) => act("inspect", { step: stepNo }),
      rewind: (stepNo) => act("rewind", { step: stepNo }),
    });

    // The text box's room is what the window leaves after the legend and the entropy strip.
    const textFoot = { get offsetHeight() { return $(".dp-output .dp-legend").offsetHeight + $(".dp-strip").offsetHeight; } };
    const fit = global.DPFit.create($(".dp-main"), $(".dp-text"), textFoot);

    /* ---- the logit lens below the chart (lens.js): the live step's layers, on request ---- */
    const lens = global.DPLens.mount($(".dp-lens"), $(".dp-lens-btn"), { request: () => act("lens", { top_n: 5 }) });

    /* ---- beam search, in its panel below the tools (beam.js) ---- */
    // Like Step, a search or an opened beam cuts a running Generate back to what is shown.
    for (const name of ["beam", "beam_open"]) global.DPQueue.INTERRUPTS.add(name);
    const beam = global.DPBeam.mount($(".dp-beam"), limits, {
      search: (n, options) => act("beam", { n, options }),
      open: (rank) => act("beam_open", { rank, settings: settingsNow() }),
    });

    /* ---- probability blocks, in their panel below the tools (blocks.js) ---- */
    global.DPQueue.INTERRUPTS.add("blocks");
    const blocks = global.DPBlocks.mount($(".dp-blocks"), limits, {
      expand: (options) => act("blocks", { options, settings: settingsNow() }),
      open: (ids) => act("open", { ids, settings: settingsNow() }),
    });

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
      if (!P) return;
      const inspecting = P.mode === "inspect";
      const s = inspecting ? PL.normalise(P.chosen_settings) : settingsNow();
      const key = P._id + "|" + JSON.stringify(s) + "|" + st.logScale + "|" + $(".dp-main").clientWidth;
      if (!force && key === st.lastKey) return;
      st.lastKey = key;
      const div = $(".dp-main");
      const height = fit.chartHeight();
      const opts = { labelOf, logScale: st.logScale, height, overlay: inspecting ? null : futures.overlayFor(P, s) };
      // Compare mode: A (yours) and B drawn alike, side by side (DPChart.drawPair).
      const sB = st.compareOn ? compareSettings() : null;
      const [out, outB] = sB
        ? CH.drawPair([{ div, P, s }, { div: $(".dp-compare-plot"), P, s: sB, opts: { pickable: false } }], opts)
        : [CH.draw(div, P, s, opts), null];
      chain.show(inspecting ? null : out.R, { labelOf, mu: text.mus() });
      markRepeat(inspecting ? null : P, out.R);
      $(".dp-stats").innerHTML = CH.statsHtml(P, out.R, out.fig, P.u, labelOf);
      const keyHtml = CH.keyHtml(out.R, opts.overlay);
      if (keyHtml !== st.keyHtml) { $(".dp-key").innerHTML = keyHtml; st.keyHtml = keyHtml; } // unchanged: no relayout
      $(".dp-key-box").hidden = false;
      heading(P);
      if (outB) compareText(P, sB, outB);
      // The numbers above the chart are new: where they moved the chart, its height follows.
      const fitted = fit.chartHeight();
      if (fitted !== height) {
        CH.resize(div, out, fitted);
        if (outB) CH.resize($(".dp-compare-plot"), outB, fitted);
      }
      CH.placeHits($(".dp-hits"), div, out.fig, P, labelOf, pickToken, (rest) =>
        toast("This bar gathers the other " + rest.toLocaleString("en") + " tokens. Pick one of the named " +
          "bars, or Step to let u choose (it can land in here).", "note"));
      fit.fitText();
      st.rendered.push(performance.now());
      if (st.rendered.length > 1000) st.rendered.splice(0, 500);
    }
    // DRY's strongest hit, in the text: the run that would repeat (where it ran before and at
    // the end of the text now) and the token that followed it there, the one penalised.
    function markRepeat(P, R) {
      const run = [], next = [];
      const dry = P && R.stages.find((x) => x.name === "dry" && x.trace && (x.trace.info.hits || []).length);
      if (dry) {
        const { hits, start, end } = dry.trace.info, hit = hits[0];
        const promptLen = P.context.length - text.count(); // steps count from the prompt's end
        for (let k = 0; k < hit.length; k++) run.push(start + hit.at - k - promptLen, end - 1 - k - promptLen);
        next.push(start + hit.at + 1 - promptLen);
      }
      text.mark("dp-dry-run", run.filter((i) => i >= 0));
      text.mark("dp-dry-next", next.filter((i) => i >= 0));
    }
    function compareSettings() {
      return st.compareWith === "pinned" && st.pinned ? st.pinned
        : PL.normalise(Object.assign(PL.defaults(), (presets[st.compareWith] || { settings: { temperature: 0 } }).settings));
    }
    // A and B are drawn alike: a one-line title, the same height; B's numbers go below it
    // (A's are above both).
    function compareText(P, sB, outB) {
      $(".dp-a-title").textContent = "A: your settings (" + CH.settingsText(settingsNow()) + ")";
      $(".dp-b-title").textContent = "B: " + CH.settingsText(sB);
      $(".dp-compare-stats").innerHTML = CH.statsHtml(P, outB.R, outB.fig, P.u, labelOf);
    }
    function setCompare(on) {
      st.compareOn = on;
      $(".dp-compare-on").checked = on;
      $(".dp-plots").classList.toggle("dp-comparing", on);
      $(".dp-compare").hidden = !on;
      $(".dp-a-title").hidden = !on;
      render(true);
    }
    function heading(P) {
      const banner = $(".dp-banner");
      if (P.mode !== "inspect") {
        banner.hidden = true;
        const html = "Next token after <b>" + P.position + "</b> token" + (P.position === 1 ? "" : "s") +
          (P.steps ? " · step " + P.steps + " of at most " + P.max_steps : "") +
          ' <span class="dp-muted">· hover a bar; click or tap picks it</span>';
        if ($(".dp-heading").innerHTML !== html) $(".dp-heading").innerHTML = html; // a slider move: unchanged
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
      if (t.classList.contains("dp-compare-with")) { st.compareWith = t.value; if (st.compareOn) render(true); }
    });
    let resizeTimer = null;
    window.addEventListener("resize", () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => { fit.resized(); render(true); blocks.redraw(); }, 150);
    });

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
        futuresPayload(D);
        if (D.beam) beam.show(D.beam);
        if (D.blocks) blocks.show(D.blocks);
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
        stripText(D.text);
        blocks.sync(text.ids());
        followText();
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
          if (P.labels_all) {
            st.labels[P.model] = P.labels_all; delete P.labels_all;
            if (st.tree) treeView.show(st.tree); // its tokens get their labels
          }
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
      if (D.beam) beam.show(D.beam);
      else if (D.ack) beam.idle();
      if (D.blocks) blocks.show(D.blocks);
      else if (D.ack) blocks.idle();
      if (D.node_settings) controls.setAll(D.node_settings, "node"); // the settings follow the node
      if (D.tree) { st.tree = D.tree; treeView.show(D.tree); }
      if (D.evicted) showEvicted();
      if (D.export) download(D.export);
      futuresPayload(D);
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
      // The old model's chart is not this one's: hide it until the new model's arrives.
      if (st.loading) { $(".dp-heading").textContent = what; chain.show(null); }
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
      toast("Saved decoding-history.json (" + data.steps.length + " steps" +
        (data.tree ? ", a tree of " + data.tree.nodes.length + " nodes" : "") + ").", "note");
    }

    /* ---- many futures (futures.js) and the entropy strip under the text (strip.js) ---- */
    const futures = global.DPFutures.mount($(".dp-futures"), { act, settings: settingsNow, limits, toast,
      redraw: () => render(true), chart: $(".dp-main") });
    const strip = global.DPStrip.create($(".dp-strip"), { what: "in the final distribution it was drawn from",
      onSelect: (i) => text.mark("dp-linked", i === null ? [] : [i]) });
    function stripText(T) {
      if (T.mode === "full") {
        const promptKey = JSON.stringify(T.prompt);
        if (st.futuresPrompt !== undefined && st.futuresPrompt !== promptKey) { futures.clearContinuations(); blocks.clear(); }
        st.futuresPrompt = promptKey;
        strip.reset(global.DPStrip.fromTokens(T.tokens));
      } else {
        strip.append(T.from, global.DPStrip.fromTokens(T.tokens)); // ignored unless it follows on
      }
    }
    for (const gesture of ["mouseover", "focusin", "pointerdown"]) {
      $(".dp-text").addEventListener(gesture, (ev) => {
        const span = ev.target.closest(".dp-tok");
        if (span) strip.highlight(Number(span.dataset.step));
      });
    }
    function futuresPayload(D) {
      if (D.sample) futures.showSample(D.sample);
      if (D.continuations) futures.showContinuations(D.continuations);
    }
    /* ---- the tree of generations (tree.js), and opening a saved one ---- */
    const treeView = global.DPTree.mount($(".dp-tree"), {
      goto: (node) => act("goto", { node }),
      labelOf: (token) => { const all = st.labels[st.model]; return all && token < all.length ? all[token] : "#" + token; },
    });
    $(".dp-tree-file").addEventListener("change", (ev) => {
      const file = ev.target.files && ev.target.files[0];
      ev.target.value = "";
      if (!file) return;
      file.text().then((body) => {
        let data;
        try { data = JSON.parse(body); } catch (e) { toast(file.name + " is not JSON (" + e.message + "): choose a file Export saved.", "error"); return; }
        act("load_tree", { data });
      });
    });

    /* ---- the address bar (link.js) ---- */
    const linkQuery = () => L.query(schema, { prompt: promptBox.value, model: st.model, seed: seed.get(),
      chat: chatBox.checked, settings: settingsNow(), defaults: PL.defaults(), ids: text.ids() });
    // Not before the session's first view: the link would lose its text meanwhile.
    const link = L.create(linkQuery, toast, () => st.started && Boolean(st.live));
    const scheduleUrl = () => link.schedule();

    /* ---- keys (keys.js) ---- */
    const looking = () => Boolean(st.shown && st.shown.mode === "inspect");
    global.DPKeys.listen(element, {
      step, undo, generate,
      escape() { if (st.generating) { stop(); return true; } text.hideTip(); return false; },
      pickNth(n) {
        const hit = $(".dp-hits").children[n - 1];
        if (!hit || hit.classList.contains("dp-hit-rest")) return false;
        hit.click();
        return true;
      },
      rewind() { if (!looking()) return false; act("rewind", { step: st.shown.inspect }); return true; },
      back() { if (!looking() || !st.live) return false; st.shown = st.live; render(true); return true; },
    });

    /* ---- starting: the link's view, or a fresh one ---- */
    function start(ids) {
      const asked = L.read(schema, location.search);
      const msgs = [];
      if (!st.started) {
        msgs.push(...controls.setAll(asked.settings, "link"));
        if (asked.prompt !== null) promptBox.value = asked.prompt;
        if (asked.chat !== null) chatBox.checked = asked.chat;
        if (asked.seed !== null) {
          const before = seed.get();
          seedInput.value = asked.seed;
          seedInput.dispatchEvent(new Event("change"));
          if (seedMsg.textContent) msgs.push("seed: " + seedMsg.textContent);
          else if (seed.get() === before && asked.seed !== String(before)) msgs.push("seed: ignored");
        }
      }
      if (msgs.length) toast("In the link: " + msgs.join(" "), "note");
      st.started = true;
      act("start", { model: asked.model, prompt: promptBox.value, seed: seed.get(),
        chat: chatBox.checked, ids: ids || asked.ids, settings: settingsNow() });
    }

    /* ---- a server that lost this tab's session gets it back from the page (reconnect.js) ---- */
    const rc = global.DPReconnect.watch(st, { trigger, act, start: () => start(text.ids()),
      shown: () => text.count(), stopGenerating: () => setGenerating(false), status });
    trigger = rc.send; // every action goes through it

    watch("value", () => onPayload(props.value));
    onPayload(props.value);
    start(null);
  }

  global.DP = Object.assign(global.DP || {}, { mount, encodeIds: L.encodeIds, decodeIds: L.decodeIds });
})(window);

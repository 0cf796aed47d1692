/* The Decoding Playground's page: the chart, the coloured text, and the glue to Gradio.

   Data flow: after each step the server sets the chart component's value to one JSON payload
   (ui/chart.py). This file keeps it, and on every slider 'input' event recomputes the pipeline
   (pipeline.js) and redraws the existing Plotly div with Plotly.react: no server round trip,
   no model run. Clicks go back to the server through the gr.HTML `trigger` function:
   'pick' (a bar), 'inspect' (a past token), 'rewind' (the inspect banner's button). */
(function (global) {
  "use strict";
  const PL = global.DPPipeline;

  const TITLES = { penalties: "penalties", temperature: "temperature", top_k: "top-k",
    top_p: "top-p", min_p: "min-p", typical_p: "typical-p" };
  const COLOURS = { penalties: "#9333ea", temperature: "#475569", top_k: "#ea580c",
    top_p: "#dc2626", min_p: "#0d9488", typical_p: "#a16207" };
  const BLUE = "#2563eb", AMBER = "#f59e0b", GREY = "#cbd5e1", INK = "#334155";
  // Setting name -> the element id of its control (ui/settings.py uses the same ids).
  const CONTROLS = { temperature: "temperature", top_k: "top-k", top_p: "top-p", min_p: "min-p",
    typical_p: "typical-p", repetition_penalty: "repetition-penalty",
    presence_penalty: "presence-penalty", frequency_penalty: "frequency-penalty",
    no_repeat_ngram_size: "no-repeat-ngram", temperature_last: "temperature-last" };
  const NAMES = Object.keys(CONTROLS); // the order of ui/settings.py SETTING_NAMES
  const BARS = 25;

  const labelCache = {}; // model -> every id's label (sent once per page and model)
  const st = {
    host: null, trigger: null, live: null, shown: null, lastKey: "", logScale: false,
    compareOn: false, compareWith: "Greedy", pinned: null, presets: {}, lastRender: null,
    urlTimer: null, rendered: [], // timestamps of finished renders (the benchmark reads them)
  };

  /* ---- small helpers ---- */

  const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  const fmtP = (p) => (p >= 0.001 || p === 0 ? p.toFixed(3) : p.toExponential(1));
  const pct = (p) => (100 * p).toFixed(1) + "%";

  function labelOf(P, id) {
    const all = labelCache[P.model];
    if (all && id < all.length) return all[id];
    return (P.labels && P.labels[id]) || "#" + id;
  }

  function settingsText(s) {
    const parts = [s.temperature === 0 ? "T = 0 (greedy)" : "T = " + s.temperature];
    if (s.top_k > 0) parts.push("top-k " + s.top_k);
    if (s.top_p < 1) parts.push("top-p " + s.top_p);
    if (s.min_p > 0) parts.push("min-p " + s.min_p);
    if (s.typical_p < 1) parts.push("typical-p " + s.typical_p);
    if (s.repetition_penalty !== 1) parts.push("repetition " + s.repetition_penalty);
    if (s.presence_penalty) parts.push("presence " + s.presence_penalty);
    if (s.frequency_penalty) parts.push("frequency " + s.frequency_penalty);
    if (s.no_repeat_ngram_size) parts.push("no-repeat " + s.no_repeat_ngram_size + "-gram");
    if (s.temperature_last) parts.push("temperature last");
    return parts.join(", ");
  }

  /* ---- settings from the page's controls ---- */

  function controlValue(name, root) {
    if (name === "temperature_last") {
      const box = root.querySelector("input[type=checkbox]");
      return box ? box.checked : false;
    }
    const input = root.querySelector("input[type=range]") || root.querySelector("input[type=number]");
    return input ? Number(input.value) : PL.DEFAULTS[name];
  }

  function readSettings(override) {
    const s = {};
    for (const name of NAMES) {
      const root = document.getElementById(CONTROLS[name]);
      s[name] = root ? controlValue(name, root) : PL.DEFAULTS[name];
    }
    return PL.normalise(Object.assign(s, override || {}));
  }

  function controlOf(target) {
    for (const name of NAMES) {
      const root = document.getElementById(CONTROLS[name]);
      if (root && root.contains(target)) return name;
    }
    return null;
  }

  /* ---- the figure ---- */

  function removalReason(P, R, id) {
    const si = R.removedBy[id];
    const name = R.stages[si].name, s = R.settings, w = R.why[name] || {};
    switch (name) {
      case "penalties":
        return "would repeat a " + s.no_repeat_ngram_size + "-gram already in the text";
      case "temperature":
        return "T = 0 keeps only the most likely token (argmax)";
      case "top_k":
        return "rank " + w.rank.get(id) + " > k = " + w.k;
      case "top_p":
        return "the tokens above it already hold " + pct(w.above.get(id)) + " ≥ p = " + s.top_p;
      case "min_p":
        return "p = " + fmtP(w.probs[id]) + " < min-p × top = " + fmtP(w.threshold);
      case "typical_p": {
        const bits = (v) => (v / Math.LN2).toFixed(2);
        return "surprise " + bits(-w.lp.get(id)) + " bits is too far from the entropy " +
          bits(w.entropy) + " bits";
      }
    }
    return "";
  }

  function figure(P, R, u, opts) {
    const raw = PL.rawProbs(P);
    const ids = Array.from(R.display.subarray ? R.display.subarray(0, BARS) : R.display.slice(0, BARS));
    const seen = new Set();
    const labels = ids.map((id) => {
      let l = labelOf(P, id);
      if (seen.has(l)) l += " ·" + id; // category labels must be unique
      seen.add(l);
      return l;
    });
    const shown = labels.map(esc);
    const rest = P.V - ids.length;
    const draw = R.nKept > 0 ? PL.pick(R, u) : null;
    // Looking back, highlight the token that was chosen (a picked one need not be where u lands).
    const landed = P.mode === "inspect" ? P.chosen : draw ? draw.token : -1;
    const rank = new Map();
    for (let i = 0; i < R.nKept; i++) rank.set(R.order[i], i + 1);

    const yFinal = [], yRaw = [], cFinal = [], cRaw = [], pattern = [], lineC = [], hoverF = [], hoverR = [];
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
      if (R.removedBy[id] >= 0) {
        const stage = R.stages[R.removedBy[id]].name;
        cRaw.push(COLOURS[stage] + "66"); pattern.push("/"); lineC.push(COLOURS[stage]);
        hoverR.push(head + "raw p = " + fmtP(raw[id]) + "<br><b>removed by " + TITLES[stage] +
          "</b>: " + esc(removalReason(P, R, id)));
      } else {
        cRaw.push(GREY); pattern.push(""); lineC.push(GREY);
        hoverR.push(head + "raw p = " + fmtP(raw[id]) + " → final p = " + fmtP(f) +
          "<br>rank " + rank.get(id) + ", cumulative " + fmtP(c));
      }
      cFinal.push(id === landed ? AMBER : BLUE);
      const mark = P.mode === "inspect" ? "chosen at this step" : draw && draw.greedy ? "greedy pick" : "u lands here";
      hoverF.push(hoverR[i] + (id === landed ? "<br><b>" + mark + "</b>" : "") +
        (P.mode === "live" ? "<br><i>click to pick this token</i>" : ""));
    });
    const restLabel = "rest (" + rest.toLocaleString() + " tokens)";
    const finalRest = Math.max(0, 1 - finalShown), rawRest = Math.max(0, 1 - rawShown);
    if (rest > 0) {
      shown.push(restLabel); yFinal.push(finalRest); yRaw.push(rawRest);
      cFinal.push(ids.length && landed >= 0 && !ids.includes(landed) ? AMBER : "#93c5fd");
      cRaw.push(GREY); pattern.push(""); lineC.push(GREY);
      const h = "<b>the other " + rest.toLocaleString() + " tokens</b><br>raw mass " + pct(rawRest) +
        " → final mass " + pct(finalRest);
      hoverR.push(h); hoverF.push(h); cum.push(1);
      if (tp) cumTopP.push(1);
    }
    const where = landed < 0 ? null : ids.includes(landed) ? shown[ids.indexOf(landed)] : restLabel;
    const hasU = Boolean(where && draw && !draw.greedy && u !== null && u !== undefined);

    const data = [
      { type: "bar", name: "final (your settings)", x: shown, y: yFinal, width: 0.5, zorder: 3,
        marker: { color: cFinal }, hovertext: hoverF, hovertemplate: "%{hovertext}<extra></extra>" },
      { type: "bar", name: "raw (T = 1, no filters)", x: shown, y: yRaw, width: 0.86, zorder: 1,
        marker: { color: cRaw, pattern: { shape: pattern, fgcolor: lineC, size: 6, solidity: 0.35 },
          line: { color: lineC, width: 1 } },
        hovertext: hoverR, hovertemplate: "%{hovertext}<extra></extra>" },
      { type: "scatter", name: "cumulative (final)", x: shown, y: cum, yaxis: "y2", zorder: 4,
        mode: "lines+markers", line: { color: INK, width: 1.5, shape: "linear" },
        // the point where the curve first reaches u is the drawn token: marked in amber
        marker: { size: shown.map((l) => (l === where ? 12 : 4)),
          color: shown.map((l) => (l === where ? AMBER : INK)),
          symbol: shown.map((l) => (l === where ? "diamond" : "circle")) },
        hovertemplate: "cumulative %{y:.3f}<extra></extra>" },
    ];
    if (tp) {
      // Plotly draws fewer traces faster: this one only exists while top-p is on.
      data.push({ type: "scatter", name: "cumulative entering top-p", x: shown, y: cumTopP,
        yaxis: "y2", zorder: 4, mode: "lines", line: { color: COLOURS.top_p, width: 1.5, dash: "dot" },
        hovertemplate: "cumulative before top-p %{y:.3f}<extra></extra>" });
    }
    const shapes = [], annotations = [];
    if (hasU) {
      shapes.push({ type: "line", xref: "paper", x0: 0, x1: 1, yref: "y2", y0: u, y1: u,
        line: { color: AMBER, width: 1.5, dash: "dash" } });
      annotations.push({ xref: "paper", x: 1, xanchor: "right", yref: "y2", y: u, yanchor: "bottom",
        text: "u = " + u.toFixed(3), showarrow: false, font: { color: "#b45309", size: 11 } });
    }
    if (tp) {
      shapes.push({ type: "line", xref: "paper", x0: 0, x1: 1, yref: "y2", y0: R.settings.top_p,
        y1: R.settings.top_p, line: { color: COLOURS.top_p, width: 1, dash: "dot" } });
      annotations.push({ xref: "paper", x: 0, xanchor: "left", yref: "y2", y: R.settings.top_p,
        yanchor: "bottom", text: "p = " + R.settings.top_p, showarrow: false,
        font: { color: COLOURS.top_p, size: 11 } });
    }
    const rawH = PL.entropyOf(raw);
    const layout = {
      meta: {
        settings: R.settings, step: P.step, steps: P.steps, position: P.position, mode: P.mode,
        model: P.model, kept: R.nKept, entropy_bits: R.entropy, effective_vocab: Math.pow(2, R.entropy),
        raw_entropy_bits: rawH, u: draw && !draw.greedy ? u : null,
        next_token: draw ? { id: landed, label: labelOf(P, landed), greedy: draw.greedy } : null,
        ids: ids, labels: labels,
      },
      barmode: "overlay", bargap: 0.1, height: opts.height || 430,
      margin: { l: 56, r: 56, t: 12, b: 8 }, uirevision: "dp",
      hovermode: "closest", hoverlabel: { align: "left" },
      showlegend: false, // the legend is plain HTML above the plot: nothing to redraw per move
      xaxis: { type: "category", tickangle: -50, automargin: true, fixedrange: true,
        tickfont: { family: "ui-monospace, SFMono-Regular, Menlo, monospace", size: 12 } },
      yaxis: { title: { text: "probability" }, type: st.logScale ? "log" : "linear", fixedrange: true,
        rangemode: "tozero", gridcolor: "#eef2f7" },
      yaxis2: { title: { text: "cumulative" }, overlaying: "y", side: "right", range: [0, 1.02],
        tickvals: [0, 0.25, 0.5, 0.75, 1], showgrid: false, fixedrange: true, zeroline: false },
      shapes, annotations,
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
      font: { family: "Inter, ui-sans-serif, system-ui, sans-serif", size: 12, color: "#1f2937" },
    };
    return { data, layout, ids, draw, landed, where };
  }

  function statsHtml(P, R, fig, u) {
    const raw = PL.rawProbs(P);
    let keptMass = 0;
    for (let i = 0; i < R.nKept; i++) keptMass += raw[R.order[i]];
    const rawH = fig.layout.meta.raw_entropy_bits;
    const out = [];
    if (!fig.draw) {
      return '<div class="dp-stat dp-warn">Every token was removed (the n-gram ban covers the whole ' +
        "vocabulary): lower the no-repeat n-gram size.</div>";
    }
    const label = esc(labelOf(P, fig.landed));
    const rankOf = R.order.indexOf(fig.landed) + 1;
    out.push('<span class="dp-stat"><b>' + R.nKept.toLocaleString() + "</b> of " +
      P.V.toLocaleString() + " tokens kept, holding <b>" + pct(keptMass) + "</b> of the raw probability</span>");
    out.push('<span class="dp-stat">entropy <b>' + R.entropy.toFixed(2) + "</b> bits → 2<sup>H</sup> ≈ <b>" +
      Math.pow(2, R.entropy).toFixed(1) + "</b> effective choices <span class=\"dp-muted\">(raw: " +
      rawH.toFixed(2) + " bits ≈ " + Math.pow(2, rawH).toFixed(1) + ")</span></span>");
    if (P.mode === "inspect") {
      out.push('<span class="dp-stat dp-draw">chosen at this step: <code>' + label + "</code> (p " +
        fmtP(R.probs[fig.landed]) + (u === null || u === undefined ? "" : ", u = " + u.toFixed(3)) + ")</span>");
    } else if (fig.draw.greedy) {
      out.push('<span class="dp-stat dp-draw">T = 0: greedy picks <code>' + label +
        "</code>, no random draw</span>");
    } else if (u !== null && u !== undefined) {
      out.push('<span class="dp-stat dp-draw">u = <b>' + u.toFixed(3) + "</b> lands on <code>" + label +
        "</code> (p " + fmtP(R.probs[fig.landed]) + ", rank " + rankOf + ")</span>");
    }
    const removed = {};
    for (let i = 0; i < R.removedBy.length; i++) {
      const si = R.removedBy[i];
      if (si >= 0) removed[R.stages[si].name] = (removed[R.stages[si].name] || 0) + 1;
    }
    const chips = Object.keys(removed).map((n) => '<span class="dp-removed"><i style="background:' +
      COLOURS[n] + '"></i>' + TITLES[n] + " removed " + removed[n].toLocaleString() + "</span>");
    if (chips.length) out.push('<span class="dp-stat">' + chips.join(" ") + "</span>");
    return out.join("");
  }

  /* ---- drawing ---- */

  function plotDiv(cls) {
    return st.host && st.host.querySelector(cls);
  }

  function renderInto(div, P, settings, u, opts) {
    const R = PL.transform(P, settings);
    const fig = figure(P, R, u, opts);
    const promise = global.Plotly.react(div, fig.data, fig.layout,
      { displayModeBar: false, responsive: true });
    if (!div._dpClick) {
      div._dpClick = true;
      div.on("plotly_click", (ev) => {
        const pt = ev.points && ev.points[0];
        const current = div._dpIds || [];
        if (!pt || st.shown !== st.live || div !== plotDiv(".dp-main")) return;
        const id = current[pt.pointIndex];
        if (id !== undefined && st.trigger) st.trigger("pick", { token: id });
      });
    }
    div._dpIds = fig.ids;
    return { R, fig, promise };
  }

  // Redraw the shown payload: an inspected step with its own settings, else the sliders'.
  function render(force, settings) {
    const P = st.shown;
    if (!P || !global.Plotly || !st.host) return;
    const inspecting = P.mode === "inspect";
    const s = inspecting ? PL.normalise(P.chosen_settings) : settings || readSettings();
    const key = P._id + "|" + JSON.stringify(s) + "|" + st.logScale;
    if (!force && key === st.lastKey) return; // the DOM event and Gradio's .change both report a move
    st.lastKey = key;
    const out = renderInto(plotDiv(".dp-main"), P, s, P.u, {});
    st.lastRender = out;
    plotDiv(".dp-stats").innerHTML = statsHtml(P, out.R, out.fig, P.u);
    banner(P);
    if (st.compareOn) renderCompare();
    out.promise.then(() => {
      st.rendered.push(performance.now());
      if (st.rendered.length > 1000) st.rendered.splice(0, 500);
    });
    if (!inspecting) scheduleUrl(s);
  }

  function compareSettings() {
    if (st.compareWith === "pinned" && st.pinned) return st.pinned;
    return PL.normalise(st.presets[st.compareWith] || { temperature: 0 });
  }

  function renderCompare() {
    const P = st.shown, div = plotDiv(".dp-compare-plot");
    if (!P || !div) return;
    const s = compareSettings();
    const out = renderInto(div, P, s, P.u, { legend: false, height: 430 });
    plotDiv(".dp-compare-stats").innerHTML = '<div class="dp-compare-title">B: ' + esc(settingsText(s)) +
      "</div>" + statsHtml(P, out.R, out.fig, P.u);
  }

  function banner(P) {
    const el = plotDiv(".dp-banner");
    if (P.mode !== "inspect") {
      el.hidden = true;
      plotDiv(".dp-heading").innerHTML = "Next token after <b>" + P.position + "</b> tokens" +
        (P.steps ? " · step " + P.steps + " of at most " + P.max_steps : "") +
        ' <span class="dp-muted">(hover a bar for details; click one to pick it)</span>';
      return;
    }
    const chosen = esc(labelOf(P, P.chosen));
    el.hidden = false;
    el.innerHTML = "Step " + (P.inspect + 1) + ": <code>" + chosen + "</code> was drawn from this " +
      "distribution, with the settings it was drawn with (" + esc(settingsText(PL.normalise(P.chosen_settings))) +
      '). <button class="dp-btn dp-rewind">Rewind to here</button> <button class="dp-btn dp-back">' +
      "Back to the next token</button>";
    plotDiv(".dp-heading").innerHTML = "Looking back at step " + (P.inspect + 1);
  }

  /* ---- the URL carries the prompt and settings, so a link reproduces the view ---- */

  function scheduleUrl(settings) {
    clearTimeout(st.urlTimer);
    // Browsers throttle history.replaceState; one update after the slider rests is enough.
    st.urlTimer = setTimeout(() => {
      const P = st.live;
      if (!P) return;
      const q = new URLSearchParams();
      if (P.prompt) q.set("prompt", P.prompt);
      q.set("model", P.model);
      q.set("seed", String(P.seed));
      if (P.chat) q.set("chat", "1");
      for (const name of NAMES) {
        if (settings[name] !== PL.DEFAULTS[name]) q.set(name, name === "temperature_last" ? "1" : String(settings[name]));
      }
      try { history.replaceState(null, "", "?" + q.toString()); } catch (e) { /* sandboxed page */ }
    }, 400);
  }

  /* ---- payloads from the server ---- */

  let nextId = 1;
  function load(json) {
    if (!json) return;
    let P;
    try { P = PL.prepare(JSON.parse(json)); } catch (e) { console.error("bad chart payload", e); return; }
    P._id = nextId++;
    if (P.labels_all) { labelCache[P.model] = P.labels_all; delete P.labels_all; }
    if (P.mode === "live") st.live = P;
    st.shown = P;
    render(true);
  }

  function onControl(ev) {
    const name = controlOf(ev.target);
    if (!name || !st.shown) return;
    if (st.shown !== st.live && st.live) st.shown = st.live; // a slider returns to the live view
    // The moved control's own input is the freshest value (its twin may update a tick later).
    const override = {};
    if (name === "temperature_last") override[name] = ev.target.checked;
    else if (ev.target.value !== "" && !isNaN(Number(ev.target.value))) override[name] = Number(ev.target.value);
    render(false, readSettings(override));
  }

  /* ---- mounting (called from the gr.HTML components' js_on_load) ---- */

  function mountChart(element, trigger, props, watch) {
    st.host = element;
    st.trigger = trigger;
    try { st.presets = JSON.parse(props.presets || "{}"); } catch (e) { st.presets = {}; }
    const select = element.querySelector(".dp-compare-with");
    for (const name of Object.keys(st.presets)) {
      const o = document.createElement("option");
      o.value = name; o.textContent = name; select.appendChild(o);
    }
    select.value = st.compareWith;
    element.addEventListener("click", (ev) => {
      const t = ev.target;
      if (t.closest(".dp-rewind") && st.shown && st.shown.mode === "inspect") {
        trigger("rewind", { step: st.shown.inspect });
      } else if (t.closest(".dp-back") && st.live) {
        st.shown = st.live; render(true);
      } else if (t.closest(".dp-pin")) {
        st.pinned = readSettings();
        const o = select.querySelector("option[value=pinned]");
        o.disabled = false; o.textContent = "pinned: " + settingsText(st.pinned);
        select.value = "pinned"; st.compareWith = "pinned";
        setCompare(true);
      }
    });
    element.addEventListener("change", (ev) => {
      const t = ev.target;
      if (t.classList.contains("dp-log")) { st.logScale = t.checked; render(true); }
      if (t.classList.contains("dp-compare-on")) setCompare(t.checked);
      if (t.classList.contains("dp-compare-with")) { st.compareWith = t.value; if (st.compareOn) renderCompare(); }
    });
    watch("value", () => load(props.value));
    load(props.value);
  }

  function setCompare(on) {
    st.compareOn = on;
    const box = plotDiv(".dp-compare-on");
    if (box) box.checked = on;
    plotDiv(".dp-plots").classList.toggle("dp-comparing", on);
    plotDiv(".dp-compare").hidden = !on;
    const main = plotDiv(".dp-main");
    if (on) renderCompare();
    if (main && main.data) global.Plotly.Plots.resize(main);
  }

  /* ---- the generated text: tooltips and clicks ---- */

  let tip = null;
  function showTip(span, ev) {
    let info;
    try { info = JSON.parse(span.dataset.info); } catch (e) { return; }
    if (!tip) { tip = document.createElement("div"); tip.className = "dp-tip"; document.body.appendChild(tip); }
    const how = info.how === "picked" ? "picked by you" : info.how === "greedy" ? "greedy (T = 0)" :
      "sampled, u = " + info.u;
    const rows = info.alt.map(([label, raw, fin]) => "<tr" + (label === info.label ? ' class="dp-tip-chosen"' : "") +
      "><td><code>" + esc(label) + "</code></td><td>" + fmtP(raw) + "</td><td>" +
      (fin === null ? "–" : fmtP(fin)) + "</td></tr>").join("");
    tip.innerHTML = "<div><b>step " + (info.step + 1) + "</b>: <code>" + esc(info.label) + "</code>, p = " +
      fmtP(info.p) + " (raw " + fmtP(info.raw) + "), " + how + "</div><table><tr class=\"dp-muted\"><td>" +
      "model's top tokens</td><td>raw</td><td>final</td></tr>" + rows +
      '</table><div class="dp-muted">top alternatives · click to see the whole distribution</div>';
    tip.style.display = "block";
    const r = span.getBoundingClientRect();
    tip.style.left = Math.min(window.scrollX + r.left, window.scrollX + window.innerWidth - 320) + "px";
    tip.style.top = window.scrollY + r.bottom + 6 + "px";
  }

  function mountOutput(element, trigger) {
    element.addEventListener("mouseover", (ev) => {
      const span = ev.target.closest(".dp-tok");
      if (span) showTip(span, ev);
    });
    element.addEventListener("mouseout", (ev) => {
      if (tip && ev.target.closest(".dp-tok")) tip.style.display = "none";
    });
    element.addEventListener("click", (ev) => {
      const span = ev.target.closest(".dp-tok");
      if (span) { if (tip) tip.style.display = "none"; trigger("inspect", { step: Number(span.dataset.step) }); }
    });
  }

  /* ---- wiring that does not depend on one component ---- */

  // Capture phase: sliders re-render the chart before Gradio's own handlers run.
  document.addEventListener("input", onControl, true);
  document.addEventListener("change", onControl, true);

  // Called by Gradio's .change events when the server sets a control (a preset, a shared
  // link): those updates do not fire DOM input events.
  function fromControls(values) {
    const s = {};
    NAMES.forEach((n, i) => { s[n] = values[i]; });
    if (!st.shown) return;
    if (st.shown !== st.live && st.live) st.shown = st.live;
    render(false, PL.normalise(s));
  }

  // For tests: the browser's pipeline on the current step's logits, for many settings at once.
  function transformMany(list) {
    const P = st.live;
    return list.map((s) => {
      const R = PL.transform(P, s);
      const d = R.nKept ? PL.pick(R, P.u) : null;
      return { probs: Array.from(R.probs), removedBy: Array.from(R.removedBy),
        pick: d ? d.token : null, entropy: R.entropy };
    });
  }

  function current() {
    const P = st.live;
    return P && { logits: Array.from(P.raw), context: P.context, u: P.u, seed: P.seed,
      step: P.step, model: P.model, vocab: P.V };
  }

  global.DP = { mountChart, mountOutput, fromControls, transformMany, current, readSettings,
    render, state: st, settingsText };
})(window);

/* "Score a text": what pretraining sees. Mounted from ui/page.py's SCORE_TEMPLATE, a
   component of its own below the playground.

   The text goes to the server (the 'score' event; ui/inside.py), which runs the model once
   over every position, as training does, and answers with every token's probability, rank,
   surprisal and top alternatives, the mean loss, and the prediction after the last token.
   The page draws:
     - the text, each token coloured by the probability the model gave it (the first token
       has nothing to be predicted from: grey); hover, focus or tap a token for its numbers;
     - the surprisal (-ln p) at every position, with its mean: the text's pretraining loss;
     - beside them, the next token after the text: the one prediction inference uses, the
       same distribution the playground's chart shows with this text as its prompt, and a
       button that puts the text into the prompt box (DP.setPrompt, app.js).

   Requests go one at a time; text typed meanwhile waits and only the newest is sent. */
(function (global) {
  "use strict";
  const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  const fmtP = (p) => (p >= 0.001 || p === 0 ? p.toFixed(3) : p.toExponential(1));
  const num = (x, d) => (x === null || x === undefined ? "–" : x.toLocaleString("en", { maximumFractionDigits: d, minimumFractionDigits: d }));
  const PAUSE_MS = 600, ACK_TIMEOUT_MS = 30000;
  const SVG = "http://www.w3.org/2000/svg";
  const textHtml = (text) => global.DPText.textHtml(text); // text.js draws text for both

  function mount(element, trigger, props, watch) {
    const limits = JSON.parse(props.limits || "{}");
    const $ = (sel) => element.querySelector(sel);
    const input = $(".ds-input"), status = $(".ds-status");
    const st = { step: null, steps: [], seq: 0, nextId: 1, pending: null, waiting: null, sent: null, R: null, tip: null, pinned: null, timer: null };
    global.DPScore.state = st;
    const maxChars = limits.score_chars || 4000;
    $(".ds-limit").textContent = "(up to " + maxChars.toLocaleString("en") + " characters; the model sees only its context)";

    function say(text, kind) {
      status.textContent = text || "";
      status.className = "ds-status " + (kind === "error" ? "ds-error" : "dp-muted");
    }

    /* ---- sending ---- */
    function request(force) {
      clearTimeout(st.timer);
      const text = input.value;
      if (!text) { say("Type or paste a text to score.", "note"); return; }
      if (text.length > maxChars) {
        say("The text has " + text.length.toLocaleString("en") + " characters; at most " +
          maxChars.toLocaleString("en") + " are scored at once: shorten it.", "error");
        return;
      }
      if (!force && text === st.sent && st.step === st.sentStep && st.R) return; // already on screen
      if (st.pending && performance.now() - st.pending.at < ACK_TIMEOUT_MS) { st.waiting = text; return; }
      send(text);
    }
    function send(text) {
      const id = st.nextId++;
      st.pending = { id, at: performance.now() };
      st.sent = text;
      st.sentStep = st.step;
      st.waiting = null;
      say("Scoring …", "note");
      element.classList.add("ds-busy");
      trigger("score", { id, text, step: st.step });
    }
    function acked(id) {
      if (!st.pending || st.pending.id !== id) return;
      st.pending = null;
      element.classList.remove("ds-busy");
      if (st.waiting !== null && (st.waiting !== st.sent || st.step !== st.sentStep)) send(st.waiting);
      else st.waiting = null;
    }
    $(".ds-score").addEventListener("click", () => request(true));
    input.addEventListener("input", () => {
      clearTimeout(st.timer);
      if ($(".ds-auto").checked) st.timer = setTimeout(() => request(false), PAUSE_MS);
    });
    input.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); request(true); }
    });
    // Another model in the playground: the same text, scored again by it.
    document.addEventListener("dp-model", () => { st.step = null; if (st.R && element.isConnected) request(true); });

    // The model's training snapshots (when it has some): the same text scored as it learned.
    // The slider's last position is the model itself (step null).
    const stepBox = $(".ds-step-box"), stepSlider = $(".ds-step");
    function showSteps(D) {
      st.steps = D.snapshots || [];
      stepBox.hidden = !st.steps.length;
      if (!st.steps.length) { st.step = null; return; }
      stepSlider.max = String(st.steps.length);
      const at = D.step === null || D.step === undefined ? st.steps.length : st.steps.indexOf(D.step);
      if (document.activeElement !== stepSlider) stepSlider.value = String(at);
      $(".ds-step-out").textContent = D.step === null || D.step === undefined ? "the trained model"
        : "step " + D.step.toLocaleString("en") + " of its run";
    }
    stepSlider.addEventListener("input", () => {
      const i = Number(stepSlider.value);
      st.step = i >= st.steps.length ? null : st.steps[i];
      request(true);
    });

    /* ---- answers ---- */
    function onPayload(json) {
      if (!json) return;
      let D;
      try { D = JSON.parse(json); } catch (e) { console.error("bad score payload", e); return; }
      if (D.seq <= st.seq) return;
      st.seq = D.seq;
      if (D.error) say(D.error, "error");
      else { render(D); showSteps(D); say("", "note"); }
      if (D.ack) acked(D.ack);
    }

    /* ---- drawing ---- */
    const colour = global.DPText.colour;

    function summaryHtml(R) {
      if (!R.predicted) {
        return '<div class="ds-cards"><div class="ds-card"><b>' + R.n_tokens + '</b> token: nothing is ' +
          "predicted yet. Add a word: the loss needs a token after the first.</div></div>";
      }
      const card = (value, label, title) => '<div class="ds-card" title="' + esc(title) + '"><b>' + value +
        "</b><span>" + label + "</span></div>";
      return '<div class="ds-cards">' +
        card(num(R.mean, 3), "nats per token: the loss", "mean of -ln p over the " + R.predicted + " predicted tokens") +
        card(num(R.nats_per_char, 3), "nats per character", R.total.toFixed(2) + " nats over " + R.chars + " characters") +
        card(num(R.perplexity, 1), "perplexity", "e to the mean loss") +
        card(R.predicted.toLocaleString("en"), "tokens predicted", "of " + R.window.count + " in the window") +
        "</div>" +
        (R.window.cut ? '<div class="dp-note ds-window">The text has ' + R.n_tokens.toLocaleString("en") +
          " tokens; the model's context is " + R.block_size.toLocaleString("en") + ": the window of its last " +
          R.window.count.toLocaleString("en") + " tokens is scored.</div>" : "") +
        '<div class="dp-muted ds-model">scored by ' + esc(R.model_title) + "</div>";
    }

    function tokensHtml(R) {
      let out = R.window.cut ? '<span class="ds-cut">⟨' + R.window.start.toLocaleString("en") +
        " earlier tokens, beyond the context: not scored⟩</span> " : "";
      R.tokens.forEach((t, k) => {
        const first = t.p === null;
        const label = first ? "position " + t.i + ": " + t.label + ", the first token, no prediction"
          : "position " + t.i + ": " + t.label + ", p " + fmtP(t.p) + ", rank " + t.rank + ", " + t.s.toFixed(2) + " nats";
        const body = textHtml(t.text);
        out += '<span class="ds-tok' + (first ? " ds-first" : "") + '" tabindex="0" role="button" data-k="' + k +
          '" aria-label="' + esc(label) + '"' + (first ? "" : ' style="background:' + colour(t.p) + '"') + ">" +
          (t.text ? body : '<span class="dp-partial">·</span>') + "</span>";
      });
      return out;
    }

    function nextHtml(R) {
      const rows = R.next.map(([id, label, p]) => '<li><code>' + esc(label) + '</code><span class="ds-bar"><i style="width:' +
        (100 * p).toFixed(1) + '%"></i></span><span>' + (100 * p).toFixed(1) + "%</span></li>").join("");
      const last = R.tokens[R.tokens.length - 1];
      return "<h4>The next token after the text</h4>" +
        '<p class="dp-muted">What inference reads: only the last position\'s vector, after <code>' + esc(last.label) +
        "</code>.</p><ol class=\"ds-next-list\">" + rows + "</ol>" +
        "<p>This is exactly the distribution the playground's chart shows with this text as the prompt " +
        "(its grey bars: temperature 1, no filters" + (R.chat ? ", chat template off" : "") + ").</p>" +
        '<button type="button" class="dp-btn ds-use">Put this text into the prompt box</button>';
    }

    // The surprisal at every scored position, its mean dashed: an SVG the width of its box.
    function plot(R) {
      const box = $(".ds-plot");
      box.textContent = "";
      const pts = R.tokens.map((t, k) => [k, t.s]).filter((x) => x[1] !== null);
      $(".ds-plot-title").innerHTML = pts.length ? "Surprisal −ln p at each position (nats); dashed: the mean, " +
        num(R.mean, 3) + " = the loss" : "";
      if (!pts.length) return;
      const W = Math.max(260, box.clientWidth || 600), H = 150, L = 34, Rr = 8, T = 8, B = 20;
      const n = R.tokens.length;
      const ymax = Math.max(1, ...pts.map((x) => x[1])) * 1.05;
      const sx = (k) => L + ((k + 0.5) / n) * (W - L - Rr), sy = (y) => T + (1 - y / ymax) * (H - T - B);
      const svg = document.createElementNS(SVG, "svg");
      svg.setAttribute("viewBox", "0 0 " + W + " " + H);
      svg.setAttribute("width", "100%");
      svg.setAttribute("class", "ds-svg" + (n > 150 ? " ds-dense" : ""));
      svg.setAttribute("role", "img");
      svg.setAttribute("aria-label", "surprisal at each position; mean " + num(R.mean, 3) + " nats");
      const bw = Math.max(0.6, (W - L - Rr) / n - (n < 80 ? 1.5 : 0));
      let bars = "";
      for (const [k, y] of pts) {
        bars += '<rect class="ds-bar-s" data-k="' + k + '" x="' + (sx(k) - bw / 2).toFixed(2) + '" y="' + sy(y).toFixed(2) +
          '" width="' + bw.toFixed(2) + '" height="' + (sy(0) - sy(y)).toFixed(2) + '" fill="' + colour(R.tokens[k].p) + '"/>';
      }
      const ticks = [0, ymax / 2, ymax / 1.05].map((y) => '<text x="' + (L - 4) + '" y="' + (sy(y) + 4).toFixed(1) +
        '" text-anchor="end">' + y.toFixed(1) + "</text>").join("");
      svg.innerHTML = '<line class="ds-axis" x1="' + L + '" y1="' + sy(0) + '" x2="' + (W - Rr) + '" y2="' + sy(0) + '"/>' +
        '<line class="ds-axis" x1="' + L + '" y1="' + T + '" x2="' + L + '" y2="' + sy(0) + '"/>' + ticks + bars +
        '<line class="ds-mean" x1="' + L + '" y1="' + sy(R.mean).toFixed(2) + '" x2="' + (W - Rr) + '" y2="' + sy(R.mean).toFixed(2) + '"/>' +
        '<text class="ds-mean-label" x="' + (W - Rr - 2) + '" y="' + (sy(R.mean) - 4).toFixed(1) + '" text-anchor="end">mean ' +
        num(R.mean, 2) + "</text>" +
        '<text x="' + L + '" y="' + (H - 4) + '">position ' + R.window.start + '</text><text x="' + (W - Rr) + '" y="' + (H - 4) +
        '" text-anchor="end">' + (R.window.start + n - 1) + "</text>" +
        '<rect class="ds-hover" x="' + L + '" y="' + T + '" width="' + (W - L - Rr) + '" height="' + (H - T - B) + '"/>';
      box.appendChild(svg);
      // A pointer over the plot (mouse or finger) shows the nearest position's token.
      const at = (ev) => {
        const r = svg.getBoundingClientRect();
        const x = (ev.clientX - r.left) * (W / r.width);
        return Math.max(1, Math.min(n - 1, Math.floor(((x - L) / (W - L - Rr)) * n)));
      };
      svg.addEventListener("pointermove", (ev) => { if (ev.pointerType === "mouse") showFromPlot(at(ev), ev, false); });
      svg.addEventListener("pointerleave", (ev) => { if (ev.pointerType === "mouse") hideTip(false); });
      svg.addEventListener("pointerdown", (ev) => { if (ev.pointerType !== "mouse") showFromPlot(at(ev), ev, true); });
    }

    function render(R) {
      st.R = R;
      hideTip(true);
      $(".ds-result").hidden = false;
      $(".ds-summary").innerHTML = summaryHtml(R);
      $(".ds-tokens").innerHTML = tokensHtml(R);
      $(".ds-next").innerHTML = nextHtml(R);
      $(".ds-explain").innerHTML = R.explain;
      plot(R);
      strip.reset(R.tokens.map((t) => ({ h: t.h, s: t.s === null ? null : t.s / Math.LN2, p: t.p, label: t.label,
        first: t.p === null })));
    }

    /* ---- a token's numbers: hover, focus, tap ---- */
    function tipHtml(t) {
      if (t.p === null) {
        return "<div><b>position " + t.i + "</b>: <code>" + esc(t.label) + "</code>, id " + t.id + "</div>" +
          "<div>The first token has no prediction: nothing before it is in view to predict it from. " +
          "It is not part of the loss.</div>";
      }
      const rows = t.top.map(([id, label, p]) => "<tr" + (id === t.id ? ' class="dp-tip-chosen"' : "") + "><td><code>" +
        esc(label) + "</code></td><td>" + fmtP(p) + "</td></tr>").join("");
      return "<div><b>position " + t.i + "</b>: <code>" + esc(t.label) + "</code>, id " + t.id + "</div>" +
        "<div>p = " + fmtP(t.p) + " · rank " + t.rank.toLocaleString("en") + " of " + st.R.vocab.toLocaleString("en") +
        " · surprisal " + t.s.toFixed(3) + " nats (" + (t.s / Math.LN2).toFixed(2) + " bits)</div>" +
        '<table><tr class="dp-muted"><td>the model\'s top ' + t.top.length + " here</td><td>p</td></tr>" + rows + "</table>" +
        (t.top.some(([id]) => id === t.id) ? "" : '<div class="dp-muted">the real token is not among them</div>');
    }
    function place(rect) {
      const width = Math.min(320, window.innerWidth - 16);
      st.tip.style.maxWidth = width + "px";
      st.tip.style.left = Math.max(8, Math.min(window.scrollX + rect.left, window.scrollX + window.innerWidth - width - 8)) + "px";
      st.tip.style.top = window.scrollY + rect.bottom + 6 + "px";
    }
    function showTip(k, rect, pinned) {
      const t = st.R && st.R.tokens[k];
      if (!t) return;
      if (!st.tip) {
        st.tip = document.createElement("div");
        st.tip.className = "dp-tip ds-tip";
        st.tip.setAttribute("role", "tooltip");
        document.body.appendChild(st.tip);
        st.tip.addEventListener("click", (ev) => { if (ev.target.closest(".dp-tip-close")) hideTip(true); });
      }
      st.tip.innerHTML = tipHtml(t) + (pinned ? '<div class="dp-tip-actions"><button type="button" ' +
        'class="dp-btn dp-tip-close" aria-label="close">×</button></div>' : "");
      st.tip.dataset.k = k;
      st.tip.classList.toggle("dp-tip-pinned", Boolean(pinned));
      st.tip.style.display = "block";
      st.pinned = pinned ? k : null;
      place(rect);
      for (const s of element.querySelectorAll(".ds-hl")) s.classList.remove("ds-hl");
      const span = element.querySelector('.ds-tok[data-k="' + k + '"]');
      if (span) span.classList.add("ds-hl");
      const bar = element.querySelector('.ds-bar-s[data-k="' + k + '"]');
      if (bar) bar.classList.add("ds-hl");
    }
    function hideTip(force) {
      if (!st.tip || (!force && st.pinned !== null)) return;
      st.tip.style.display = "none";
      st.pinned = null;
      for (const s of element.querySelectorAll(".ds-hl")) s.classList.remove("ds-hl");
    }
    function showFromPlot(k, ev, pinned) {
      showTip(k, { left: ev.clientX - 20, bottom: ev.clientY + 8 }, pinned);
    }

    const tokens = $(".ds-tokens");
    let touch = false; // the last pointer was a finger: no hover, a tap pins the numbers
    tokens.addEventListener("pointerdown", (ev) => { touch = ev.pointerType === "touch" || ev.pointerType === "pen"; });
    tokens.addEventListener("mouseover", (ev) => {
      const span = ev.target.closest(".ds-tok");
      if (span && !touch && st.pinned === null) showTip(Number(span.dataset.k), span.getBoundingClientRect(), false);
    });
    tokens.addEventListener("mouseout", (ev) => { if (ev.target.closest(".ds-tok") && !touch) hideTip(false); });
    tokens.addEventListener("focusin", (ev) => {
      const span = ev.target.closest(".ds-tok");
      if (span && !touch) showTip(Number(span.dataset.k), span.getBoundingClientRect(), false);
    });
    tokens.addEventListener("focusout", () => hideTip(false));
    tokens.addEventListener("click", (ev) => {
      const span = ev.target.closest(".ds-tok");
      if (!span) return;
      const k = Number(span.dataset.k);
      if (st.pinned === k) hideTip(true);
      else showTip(k, span.getBoundingClientRect(), true);
    });
    document.addEventListener("pointerdown", (ev) => {
      if (st.pinned !== null && st.tip && !st.tip.contains(ev.target) && !tokens.contains(ev.target) &&
          !$(".ds-plot").contains(ev.target)) hideTip(true);
    });
    document.addEventListener("keydown", (ev) => { if (ev.key === "Escape") hideTip(true); });

    element.addEventListener("click", (ev) => {
      if (!ev.target.closest(".ds-use")) return;
      // the text whose numbers are on screen (the box may have changed since)
      if (global.DP && global.DP.setPrompt && st.sent !== null) global.DP.setPrompt(st.sent);
    });

    /* ---- the entropy strip under the tokens (strip.js), linked both ways ---- */
    let linked = null;
    const strip = global.DPStrip.create($(".ds-strip"), { what: "in the model's own prediction of it",
      onSelect(k) {
        if (linked) linked.classList.remove("dp-linked");
        linked = k === null ? null : tokens.querySelector('.ds-tok[data-k="' + k + '"]');
        if (linked) linked.classList.add("dp-linked");
      } });
    for (const gesture of ["mouseover", "focusin", "pointerdown"]) {
      tokens.addEventListener(gesture, (ev) => {
        const span = ev.target.closest(".ds-tok");
        if (span) strip.highlight(Number(span.dataset.k));
      });
    }

    watch("value", () => onPayload(props.value));
    onPayload(props.value);
  }

  global.DPScore = Object.assign(global.DPScore || {}, { mount });
})(window);

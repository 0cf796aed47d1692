/* The text so far: the prompt, then every chosen token coloured by its probability.

   Generate appends tokens one by one: each new token is one new span, never a re-render of
   the whole text, so the page's cost per token stays flat however long the text grows. The
   box follows the newest token unless the reader has scrolled up.

   A token is a button of sorts: hover or focus shows its alternatives, click or Enter shows
   the distribution it was drawn from. On a touch screen a tap shows the alternatives with
   two clear actions (see its distribution, rewind to here), since there is no hover. */
(function (global) {
  "use strict";
  const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  const fmtP = (p) => (p >= 0.001 || p === 0 ? p.toFixed(3) : p.toExponential(1));
  const VISIBLE = { "\r": "␍", "\x7f": "␡" }; // control characters with a symbol of their own

  // Red for unlikely picks, through amber, to green (the square root spreads small p apart).
  function colour(p) {
    const hue = 120 * Math.sqrt(Math.min(Math.max(p, 0), 1));
    return "hsl(" + hue.toFixed(0) + ", 85%, 82%)";
  }

  // A piece of text as the page draws it (the playground's tokens and the scorer's): a newline
  // is a small ↵ and a line break, other control characters are visible symbols.
  function textHtml(text) {
    let out = "";
    for (const ch of text) {
      const code = ch.codePointAt(0);
      if (ch === "\n") out += '<span class="dp-nl">↵</span>\n';
      else if (ch === "\t" || (code >= 0x20 && code !== 0x7f && !(code >= 0x80 && code < 0xa0))) out += esc(ch);
      else out += '<span class="dp-ctrl">' + (VISIBLE[ch] || (code < 0x20 ? String.fromCodePoint(0x2400 + code) : "\\u" + code.toString(16).padStart(4, "0"))) + "</span>";
    }
    return out;
  }

  function mount(box, handlers) {
    const st = { tokens: [], tip: null, pinned: null };
    let queued = [], frame = 0; // tokens waiting for the next frame

    function tokenSpan(t) {
      const span = document.createElement("span");
      span.className = "dp-tok dp-" + t.how;
      span.tabIndex = 0;
      span.dataset.step = t.step;
      // A greedy step gives its token p = 1 after the settings, which says nothing: such a
      // token is coloured by the model's own probability (T = 1), as the legend says.
      span.style.background = colour(t.how === "greedy" && t.raw !== undefined ? t.raw : t.p);
      span.setAttribute("role", "button");
      span.setAttribute("aria-label", "step " + (t.step + 1) + ": " + t.label + ", p " + fmtP(t.p) +
        (t.how === "greedy" ? " (the model's own " + fmtP(t.raw) + ")" : "") + ", " + t.how);
      span.innerHTML = t.eot ? '<span class="dp-eot">⟨end of text⟩</span>'
        : t.text ? textHtml(t.text) : '<span class="dp-partial">·</span>';
      return span;
    }

    function atBottom() {
      return box.scrollHeight - box.scrollTop - box.clientHeight < 24;
    }

    // The whole text from a snapshot: {prompt: {text, start_of_text}, tokens: [...]}.
    function reset(T) {
      hideTip(true);
      // The text on screen (or in the next frame) may already be the start of this one: then
      // only the tokens after it are new (the end of a Generate brings its last few).
      let k = 0;
      const n = Math.min(T.tokens.length, st.tokens.length);
      while (k < n && T.tokens[k].token === st.tokens[k].token && T.tokens[k].text === st.tokens[k].text &&
             T.tokens[k].how === st.tokens[k].how) k++;
      if (k === st.tokens.length && st.promptKey === JSON.stringify(T.prompt) && box.childNodes.length) {
        for (let i = 0; i < k; i++) st.tokens[i] = T.tokens[i]; // fresh data for the tooltips
        if (T.tokens.length > k) append(k, T.tokens.slice(k));
        return;
      }
      queued = [];
      st.tokens = T.tokens.slice();
      st.promptKey = JSON.stringify(T.prompt);
      const follow = atBottom(), scrolled = box.scrollTop;
      box.textContent = "";
      const prompt = document.createElement("span");
      prompt.className = "dp-prompt-text";
      prompt.innerHTML = T.prompt.start_of_text ? '<span class="dp-muted">⟨start of text⟩</span>' : textHtml(T.prompt.text);
      box.appendChild(prompt);
      const frag = document.createDocumentFragment();
      for (const t of st.tokens) frag.appendChild(tokenSpan(t));
      box.appendChild(frag);
      hint();
      box.scrollTop = follow ? box.scrollHeight : scrolled;
    }

    // New tokens at the end; false if they do not follow on from what is shown. They count
    // as shown at once; the DOM gets them once per frame, with one layout read and one write.
    function append(from, tokens) {
      if (from !== st.tokens.length) return false;
      for (const t of tokens) st.tokens.push(t);
      queued.push(...tokens);
      if (!frame) frame = requestAnimationFrame(flush);
      return true;
    }
    function flush() {
      frame = 0;
      if (!queued.length) return;
      const follow = atBottom();
      const h = box.querySelector(".dp-hint");
      if (h) h.remove();
      const frag = document.createDocumentFragment();
      for (const t of queued) frag.appendChild(tokenSpan(t));
      queued = [];
      box.appendChild(frag);
      if (follow) box.scrollTop = box.scrollHeight;
    }

    function hint() {
      if (st.tokens.length) return;
      const h = document.createElement("span");
      h.className = "dp-muted dp-hint";
      h.textContent = " ← Step, Generate or pick a bar to add a token";
      box.appendChild(h);
    }

    // Marks the tokens of the given steps with class cls (and unmarks the others): DRY's
    // repeated run and the token that followed it.
    const marked = {};
    function mark(cls, steps) {
      for (const span of marked[cls] || []) span.classList.remove(cls);
      marked[cls] = [];
      for (const step of steps) {
        const span = box.querySelector('.dp-tok[data-step="' + step + '"]');
        if (span) { span.classList.add(cls); marked[cls].push(span); }
      }
    }

    /* ---- the tooltip: alternatives, and on touch the two actions ---- */

    function showTip(span, pinned) {
      const t = st.tokens[Number(span.dataset.step)];
      if (!t) return;
      if (!st.tip) {
        st.tip = document.createElement("div");
        st.tip.className = "dp-tip";
        st.tip.setAttribute("role", "dialog");
        document.body.appendChild(st.tip);
        st.tip.addEventListener("click", (ev) => {
          const b = ev.target.closest("button");
          if (!b) return;
          const step = Number(st.tip.dataset.step);
          hideTip(true);
          if (b.classList.contains("dp-tip-inspect")) handlers.inspect(step);
          else if (b.classList.contains("dp-tip-rewind")) handlers.rewind(step);
        });
      }
      const how = t.how === "picked" ? "picked by you" : t.how === "greedy" ? "greedy (T = 0)" : "sampled, u = " + t.u;
      const rows = t.alt.map(([label, raw, fin]) => "<tr" + (label === t.label ? ' class="dp-tip-chosen"' : "") +
        "><td><code>" + esc(label) + "</code></td><td>" + fmtP(raw) + "</td><td>" +
        (fin === null ? "–" : fmtP(fin)) + "</td></tr>").join("");
      st.tip.dataset.step = t.step;
      st.tip.innerHTML = "<div><b>step " + (t.step + 1) + "</b>: <code>" + esc(t.label) + "</code>, p = " +
        fmtP(t.p) + " (raw " + fmtP(t.raw) + "), " + how + '</div><table><tr class="dp-muted"><td>' +
        "model's top tokens</td><td>raw</td><td>final</td></tr>" + rows + "</table>" +
        (pinned ? '<div class="dp-tip-actions"><button type="button" class="dp-btn dp-tip-inspect">See its distribution</button>' +
          '<button type="button" class="dp-btn dp-tip-rewind">Rewind to here</button>' +
          '<button type="button" class="dp-btn dp-tip-close" aria-label="close">×</button></div>'
          : '<div class="dp-muted">click or Enter: see the whole distribution</div>');
      st.tip.classList.toggle("dp-tip-pinned", Boolean(pinned));
      st.tip.style.display = "block";
      st.pinned = pinned ? span : null;
      const r = span.getBoundingClientRect();
      const width = Math.min(320, window.innerWidth - 16);
      st.tip.style.maxWidth = width + "px";
      st.tip.style.left = Math.max(8, Math.min(window.scrollX + r.left, window.scrollX + window.innerWidth - width - 8)) + "px";
      // Below the token, or above it where the window has no room below (the text box now
      // sits at the bottom of a laptop's window).
      const below = window.innerHeight - r.bottom - 6, above = r.top - 6;
      const h = st.tip.offsetHeight;
      const up = h > below && above > below;
      st.tip.style.top = window.scrollY + (up ? Math.max(4, r.top - 6 - h) : r.bottom + 6) + "px";
    }

    function hideTip(force) {
      if (st.tip && (force || !st.pinned)) { st.tip.style.display = "none"; st.pinned = null; }
    }

    let touch = false; // the last pointer was a finger
    box.addEventListener("pointerdown", (ev) => { touch = ev.pointerType === "touch" || ev.pointerType === "pen"; });
    box.addEventListener("mouseover", (ev) => {
      const span = ev.target.closest(".dp-tok");
      if (span && !touch && !st.pinned) showTip(span, false);
    });
    box.addEventListener("mouseout", (ev) => { if (ev.target.closest(".dp-tok") && !touch) hideTip(false); });
    box.addEventListener("focusin", (ev) => {
      const span = ev.target.closest(".dp-tok");
      if (span && !touch) showTip(span, false);
    });
    box.addEventListener("focusout", () => hideTip(false));
    box.addEventListener("click", (ev) => {
      const span = ev.target.closest(".dp-tok");
      if (!span) return;
      if (touch) { showTip(span, true); return; }
      hideTip(true);
      handlers.inspect(Number(span.dataset.step));
    });
    box.addEventListener("keydown", (ev) => {
      const span = ev.target.closest(".dp-tok");
      if (span && (ev.key === "Enter" || ev.key === " ")) {
        ev.preventDefault();
        hideTip(true);
        handlers.inspect(Number(span.dataset.step));
      }
    });
    document.addEventListener("pointerdown", (ev) => {
      if (st.pinned && st.tip && !st.tip.contains(ev.target) && !box.contains(ev.target)) hideTip(true);
    });

    // Forget tokens that arrived but are not drawn yet: an action is about to tell the server
    // how many the page shows, and that is what the reader has seen.
    function dropQueued() {
      if (frame) { cancelAnimationFrame(frame); frame = 0; }
      st.tokens.length -= queued.length;
      queued = [];
    }

    return { reset, append, dropQueued, mark, count: () => st.tokens.length, ids: () => st.tokens.map((t) => t.token),
      mus: () => st.tokens.map((t) => t.mu).filter((m) => m !== undefined && m !== null),
      hideTip: () => hideTip(true) };
  }

  global.DPText = { mount, colour, textHtml };
})(window);

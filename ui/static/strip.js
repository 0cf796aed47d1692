/* The entropy strip: one column per token under a text (the playground's and the scorer's).

   Each column holds two bars, in bits: grey, the entropy of the distribution the token was
   drawn from (how uncertain the model was there), and coloured by the token's probability, the
   token's own surprisal −log2 p (how surprising the choice was). Typical-p keeps the tokens
   whose surprisal is near the entropy; mirostat steers the surprisal towards τ. Where the
   coloured bar towers over the grey one, the text took an unlikely turn.

   A column and its token are linked both ways: hovering, tapping or arrowing to a column
   marks its token (onSelect), and the page calls highlight(i) when a token is hovered. */
(function (global) {
  "use strict";
  const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  const fmt = (x) => (x === null || x === undefined ? "–" : x.toFixed(2));
  const MIN_SCALE = 4; // bits: a strip of near-certain tokens still reads as low

  /* host: an empty div; opts.onSelect(i | null); opts.what: which distribution, in words. */
  function create(host, opts) {
    host.innerHTML = '<div class="dp-strip-head"><span class="dp-strip-key"><i class="dp-key-h"></i>entropy ' +
      '<i class="dp-key-s"></i>surprisal (bits)</span> <span class="dp-strip-read dp-muted" aria-live="polite"></span></div>' +
      '<div class="dp-strip-cols" tabindex="0" role="group"></div>';
    const cols = host.querySelector(".dp-strip-cols"), read = host.querySelector(".dp-strip-read");
    cols.setAttribute("aria-label", "entropy and surprisal of each token, " + opts.what + "; arrow keys move");
    const st = { values: [], scale: MIN_SCALE, at: -1 };

    function column(v) {
      const c = document.createElement("div");
      c.className = "dp-col";
      c.innerHTML = '<i class="dp-col-h"></i><i class="dp-col-s"></i>';
      size(c, v);
      c.lastChild.style.background = global.DPText.colour(v.p === null || v.p === undefined ? 0 : v.p);
      return c;
    }
    function size(c, v) {
      const pct = (x) => (x === null || x === undefined ? 0 : Math.min(100, (100 * x) / st.scale)).toFixed(1) + "%";
      c.firstChild.style.height = pct(v.h);
      // A token the settings had removed (picked by hand) has no surprisal there: a full bar.
      c.lastChild.style.height = v.s === null && v.p !== null && v.p !== undefined ? "100%" : pct(v.s);
    }
    function rescale() {
      let top = MIN_SCALE;
      for (const v of st.values) top = Math.max(top, v.h || 0, v.s || 0);
      const scale = Math.ceil(top);
      if (scale === st.scale) return false;
      st.scale = scale;
      return true;
    }

    /* values: [{h, s, p, label, first}], one per token (first: nothing to predict it from). */
    function reset(values) {
      st.values = values.slice();
      st.at = -1;
      rescale();
      cols.textContent = "";
      const frag = document.createDocumentFragment();
      for (const v of st.values) frag.appendChild(column(v));
      cols.appendChild(frag);
      host.hidden = !st.values.length;
      read.textContent = st.values.length ? "max " + st.scale + " bits · hover or tap a column" : "";
      cols.scrollLeft = cols.scrollWidth;
    }
    function append(from, values) {
      if (from !== st.values.length) return;
      st.values.push(...values);
      if (rescale()) { reset(st.values); return; }
      const follow = cols.scrollWidth - cols.scrollLeft - cols.clientWidth < 12;
      const frag = document.createDocumentFragment();
      for (const v of values) frag.appendChild(column(v));
      cols.appendChild(frag);
      host.hidden = false;
      if (follow) cols.scrollLeft = cols.scrollWidth;
    }
    function truncate(n) {
      if (n >= st.values.length) return;
      st.values.length = n;
      while (cols.children.length > n) cols.lastChild.remove();
      if (st.at >= n) st.at = -1;
      host.hidden = !n;
    }

    function highlight(i, fromStrip) {
      const old = cols.children[st.at];
      if (old) old.classList.remove("dp-col-on");
      st.at = i !== null && i >= 0 && i < st.values.length ? i : -1;
      const c = cols.children[st.at];
      if (!c) { if (fromStrip) opts.onSelect(null); return; }
      c.classList.add("dp-col-on");
      const v = st.values[st.at];
      read.innerHTML = "<code>" + esc(v.label) + "</code> " + (v.first ? "nothing to predict it from"
        : "entropy " + fmt(v.h) + " bits · surprisal " + (v.s === null ? "∞ (removed by the settings)" : fmt(v.s) + " bits"));
      const r = c.getBoundingClientRect(), box = cols.getBoundingClientRect();
      if (r.left < box.left || r.right > box.right) cols.scrollLeft += r.left - box.left - box.width / 2;
      if (fromStrip) opts.onSelect(st.at);
    }
    const indexOf = (ev) => {
      const c = ev.target.closest(".dp-col");
      return c ? Array.prototype.indexOf.call(cols.children, c) : -1;
    };
    cols.addEventListener("pointermove", (ev) => { if (ev.pointerType === "mouse") { const i = indexOf(ev); if (i >= 0) highlight(i, true); } });
    cols.addEventListener("pointerdown", (ev) => { const i = indexOf(ev); if (i >= 0) highlight(i, true); });
    cols.addEventListener("keydown", (ev) => {
      if (ev.key !== "ArrowRight" && ev.key !== "ArrowLeft") return;
      const step = ev.key === "ArrowRight" ? 1 : -1;
      highlight(Math.max(0, Math.min(st.values.length - 1, (st.at < 0 ? st.values.length : st.at) + step)), true);
      ev.preventDefault();
      ev.stopPropagation(); // the playground's own ← → are Undo and Step
    });
    return { reset, append, truncate, highlight: (i) => highlight(i, false), count: () => st.values.length };
  }

  /* The playground's tokens as strip values. */
  const fromTokens = (tokens) => tokens.map((t) => ({ h: t.h, s: t.sb, p: t.p, label: t.label }));

  global.DPStrip = { create, fromTokens };
})(window);

/* What a person touches on a chart: the hit layer's buttons and the hover labels.

   The hit layer is one transparent button per bar, the whole height of its column and down
   through the tick labels (a 2-pixel tail bar is as easy to click or tap as a tall one), in
   Tab order; Enter picks, ← and → walk the bars. The buttons are kept from one drawing to the
   next (only moved and relabelled) and listened to through the layer, so a redraw on every
   slider move costs next to nothing here.

   A bar's hover label (what it is, what removed it, where u lands) opens over the bar when the
   pointer is over its column or its button has the focus. A chart without a hit layer (the
   compare chart) gets the same labels from the pointer over its canvas.

   Both read what chart.js drew: div.drawn (the bars' pixel columns, the plot area, the hover
   text of each bar). */
(function (global) {
  "use strict";
  const fmtP = (p) => (p >= 0.001 || p === 0 ? p.toFixed(3) : p.toExponential(1));
  const pct = (p) => (100 * p).toFixed(1) + "%";

  /* layer: the hit layer over div's chart; fig: chart.js's figure; onPick(id), onRest(count). */
  function place(layer, div, fig, P, labelOf, onPick, onRest) {
    const drawn = div.drawn;
    if (!drawn || !fig.draw) { layer.textContent = ""; return; }
    if (!layer._dp) listen(layer, div);
    layer._dp = { fig, onPick, onRest };
    const n = drawn.bars.length, live = P.mode === "live";
    const top = drawn.plot.top, height = drawn.height - top;
    while (layer.children.length > n) layer.lastChild.remove();
    while (layer.children.length < n) {
      const b = document.createElement("button");
      b.type = "button";
      layer.appendChild(b);
    }
    for (let i = 0; i < n; i++) {
      const b = layer.children[i], bar = drawn.bars[i], isRest = bar.id === null, p = bar.final;
      b.className = "dp-hit" + (isRest ? " dp-hit-rest" : "");
      b.dataset.index = i;
      b.style.cssText = "left:" + bar.x0 + "px;width:" + (bar.x1 - bar.x0) + "px;top:" + top + "px;height:" + height + "px";
      b.setAttribute("aria-label", isRest
        ? "the other " + fig.rest.toLocaleString("en") + " tokens, final mass " + pct(p)
        : (i + 1) + ": " + bar.label + ", final probability " + fmtP(p) + (live ? ", Enter picks it" : ""));
    }
  }

  function listen(layer, div) {
    const index = (ev) => { const b = ev.target.closest(".dp-hit"); return b ? Number(b.dataset.index) : -1; };
    layer.addEventListener("mouseover", (ev) => { const i = index(ev); if (i >= 0) showTip(div, i); });
    layer.addEventListener("focusin", (ev) => { const i = index(ev); if (i >= 0) showTip(div, i); });
    layer.addEventListener("mouseleave", () => hideTip(div));
    layer.addEventListener("focusout", () => hideTip(div));
    layer.addEventListener("click", (ev) => {
      const i = index(ev), d = layer._dp;
      if (i < 0 || !d) return;
      if (i >= d.fig.ids.length) d.onRest(d.fig.rest);
      else d.onPick(d.fig.ids[i]);
    });
    layer.addEventListener("keydown", (ev) => {
      const i = index(ev);
      if (i < 0 || (ev.key !== "ArrowRight" && ev.key !== "ArrowLeft")) return;
      const next = layer.children[i + (ev.key === "ArrowRight" ? 1 : -1)];
      if (next) next.focus();
      ev.preventDefault();
      ev.stopPropagation();
    });
  }

  /* Hover labels from the pointer over div's own canvas (where no hit layer covers it). */
  function follow(div) {
    if (div._dpFollow) return;
    div._dpFollow = true;
    const canvas = div.querySelector("canvas.dp-canvas");
    const at = (ev) => {
      const d = div.drawn, r = canvas.getBoundingClientRect(), x = ev.clientX - r.left, y = ev.clientY - r.top;
      if (!d || y < d.plot.top) return -1;
      return d.bars.findIndex((b) => x >= b.x0 && x < b.x1);
    };
    const move = (ev) => { const i = at(ev); if (i >= 0) showTip(div, i); else hideTip(div); };
    canvas.addEventListener("pointermove", move);
    canvas.addEventListener("pointerdown", move); // a tap
    canvas.addEventListener("pointerleave", () => hideTip(div));
  }

  /* Bar i's label over its bar, inside the chart's width; below the bar's top if there is no
     room above it. */
  function showTip(div, i) {
    const d = div.drawn;
    if (!d || !d.bars[i]) { hideTip(div); return; } // a redraw with fewer bars
    let tip = div.querySelector(":scope > .dp-bar-tip");
    if (!tip) {
      tip = document.createElement("div");
      tip.className = "dp-bar-tip";
      tip.setAttribute("role", "tooltip");
      div.appendChild(tip);
    }
    tip.innerHTML = d.hover[i];
    tip.hidden = false;
    tip.dataset.index = i;
    const bar = d.bars[i], w = tip.offsetWidth, h = tip.offsetHeight;
    const left = Math.max(0, Math.min(d.width - w, (bar.x0 + bar.x1) / 2 - w / 2));
    const tipTop = Math.min(bar.finalTop, bar.rawTop);
    const top = tipTop - h - 6 >= 0 ? tipTop - h - 6 : Math.min(d.plot.bottom - h, tipTop + 6);
    tip.style.left = left + "px";
    tip.style.top = Math.max(0, top) + "px";
  }

  function hideTip(div) {
    const tip = div.querySelector(":scope > .dp-bar-tip");
    if (tip) tip.hidden = true;
  }

  global.DPChartHits = { place, follow, showTip, hideTip };
})(window);

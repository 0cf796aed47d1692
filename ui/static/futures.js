/* Many futures: N draws of the next token drawn over the bars, and N continuations to open.

   Sample N× asks the server for N draws from the step's final distribution with the chart's
   settings (model/futures.py: draw 1 is the token Step will choose; a larger N extends the same
   draws). The counts are drawn over the bars as hollow bars of height count / N, with
   the total-variation distance and KL(drawn ‖ p): as N grows the outlines settle onto the
   coloured bars. The draws belong to one step and one set of settings: when either changes
   they are hidden (the stats say so), and Sample draws again.

   The chart asks overlayFor(P, s) for them on each drawing (app.js), and draws them as its
   overlay (chart.js); that is this file's only contact with the chart.

   Continuations lists N continuations of M tokens, each coloured by its tokens' probabilities,
   with its seed and log-probability; Open makes it the text (the server's open_path). */
(function (global) {
  "use strict";
  const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  const num = (x, d) => (x === null || x === undefined ? "–" : Number(x).toFixed(d));

  /* root: the .dp-futures section. ctx: {act(name, data), settings(), limits, toast(text),
     redraw() (draw the chart again), chart (the chart's element)} */
  function mount(root, ctx) {
    const $ = (sel) => root.querySelector(sel);
    const st = { sample: null, rows: [] };
    const C = global.DPControls;
    const contN = C.integerBox($(".dp-cont-n"), null, 1, ctx.limits.continuations, 8, "continuations",
      (v, message) => { if (message) ctx.toast(message, "note"); });
    const contM = C.integerBox($(".dp-cont-m"), null, 1, ctx.limits.continuation_tokens, 30, "tokens per continuation",
      (v, message) => { if (message) ctx.toast(message, "note"); });

    root.addEventListener("click", (ev) => {
      const t = ev.target;
      const s = t.closest(".dp-sample");
      if (s) {
        st.asked = JSON.stringify(ctx.settings());
        ctx.act("sample", { n: Number(s.dataset.n), settings: ctx.settings() });
      } else if (t.closest(".dp-sample-clear")) {
        clear("", true);
      } else if (t.closest(".dp-cont-go")) {
        ctx.act("continuations", { n: contN.get(), m: contM.get(), settings: ctx.settings() });
      } else if (t.closest(".dp-cont-open")) {
        const row = st.rows && st.rows[Number(t.closest(".dp-cont-open").dataset.j)];
        if (row) ctx.act("open", { ids: row.ids, settings: ctx.settings() });
      }
    });

    /* ---- the draws ---- */
    function showSample(S) {
      st.sample = S;
      st.settings = st.asked || JSON.stringify(ctx.settings());
      st.counts = new Map(S.counts.map(([id, c]) => [id, c / S.n]));
      $(".dp-sample-clear").hidden = false;
      $(".dp-sample-stats").innerHTML = "<b>" + S.n.toLocaleString("en") + " draws</b>: " + S.counts.length.toLocaleString("en") +
        " different tokens · TV distance <b>" + num(S.tv, 4) + "</b> · KL(drawn ‖ p) <b>" + num(S.kl, 4) +
        "</b> nats <span class=\"dp-muted\">(tokens never drawn add 0 to KL)</span>";
      ctx.redraw();
      // The buttons are below the text, the chart above it: bring the bars with their draws
      // into view where they are not all in it (the sticky action bar covers the window's top).
      const r = ctx.chart.getBoundingClientRect();
      if (r.top < 0 || r.bottom > window.innerHeight) ctx.chart.scrollIntoView({ block: "center" });
    }
    function clear(why, redraw) {
      st.sample = null;
      $(".dp-sample-clear").hidden = true;
      $(".dp-sample-stats").textContent = why;
      if (redraw) ctx.redraw();
    }

    /* The chart's overlay option for payload P drawn with settings s (DPChart.draw): the share
       of the draws that landed on each token, or null. Draws made for another step or other
       settings are dropped, and the stats say so. */
    function overlayFor(P, s) {
      const S = st.sample;
      if (!S || !P || P.mode !== "live") return null;
      if (P.position !== S.position || P.steps !== S.steps || JSON.stringify(s) !== st.settings) {
        clear("The draws were for another step or other settings: sample again.", false);
        return null;
      }
      return { label: "share of " + S.n.toLocaleString("en") + " draws", values: st.counts };
    }

    /* ---- continuations ---- */
    function showContinuations(rows) {
      st.rows = rows;
      const list = $(".dp-cont-list");
      list.hidden = !rows.length;
      list.innerHTML = rows.map((r, j) => {
        const body = r.texts.map((text, k) => '<span class="dp-cont-tok" title="' + esc(r.labels[k]) + ", p " + num(r.p[k], 3) +
          '" style="background:' + global.DPText.colour(r.p[k]) + '">' + global.DPText.textHtml(text) + "</span>").join("");
        return '<li class="dp-cont"><div class="dp-cont-head"><b>seed ' + r.seed + "</b> · ln p = " + num(r.logprob, 2) +
          ' <span class="dp-muted">(model\'s own ' + num(r.raw_logprob, 2) + ")" + (r.stopped ? " · ended" : "") +
          '</span> <button type="button" class="dp-btn dp-cont-open" data-j="' + j + '">Open</button></div>' +
          '<div class="dp-cont-text">' + body + "</div></li>";
      }).join("");
    }

    return { showSample, showContinuations, overlayFor, clearContinuations: () => { st.rows = []; showContinuations([]); } };
  }

  global.DPFutures = { mount };
})(window);

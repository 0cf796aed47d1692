/* "Compare two models" on the tab's text (part of learn.js's component; ui/learn.py answers).

   'compare' runs both models over the text once: at every position p is A's next-token
   distribution and q is B's. The strip along the text has one column per token, its height
   KL(p‖q) (dark) over KL(q‖p) (light), outlined where the two top tokens differ; hovering,
   tapping or focusing a column (arrow keys walk them) asks 'compare_at' for both charts at
   that token, drawn side by side with chart.js on the tab's settings and the same u. The
   list names the tokens where the two disagree most. Models with different vocabularies are
   compared by loss per character, and the section says why. */
(function (global) {
  "use strict";
  const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  const num = (x, d) => (x === null || x === undefined ? "∞" : Number(x).toFixed(d));
  const HOVER_MS = 120;

  function mount(element, trigger, shared) {
    const $ = (sel) => element.querySelector(sel);
    const PL = global.DPPipeline, CH = global.DPChart;
    const st = { result: null, charts: null, at: null, want: null, timer: null, labels: shared.labels };
    global.DPCompare.state = st;
    const selA = $(".dc-a"), selB = $(".dc-b"), strip = $(".dc-strip");
    const say = (text, kind) => { const s = $(".dc-status"); s.textContent = text || ""; s.classList.toggle("ds-error", kind === "error"); };
    const settings = () => (global.DP && global.DP.settings ? global.DP.settings() : PL.defaults());

    // The menus: every served model, its snapshots, and a named model in either arithmetic.
    const choices = shared.variants || [];
    for (const sel of [selA, selB]) for (const [label, spec] of choices) sel.appendChild(new Option(label, spec));
    const snaps = choices.filter((c) => c[1].includes("@"));
    if (choices.length) { selB.value = choices[0][1]; selA.value = (snaps[Math.floor(snaps.length / 2)] || choices[0])[1]; }

    function labelFor(P) {
      const all = st.labels[st.result && st.result.label_model];
      return (id) => (all && id < all.length ? all[id] : (P.labels && P.labels[id]) || "#" + id);
    }

    function redraw() {
      if (!st.charts || element.offsetParent === null) return;
      const divs = [$(".dc-plot-a"), $(".dc-plot-b")];
      st.charts.forEach((P, k) => CH.draw(divs[k], P, settings(), { labelOf: labelFor(P), compare: true, height: 280 }));
      [...strip.children].forEach((c) => c.classList.toggle("dc-on", Number(c.dataset.index) === st.at));
      element.dataset.compareAt = String(st.at);
    }

    function ask(index) {
      if (!st.result || index === st.at) return;
      st.want = index;
      clearTimeout(st.timer);
      st.timer = setTimeout(() => shared.request("compare_at", { a: st.result.a.spec, b: st.result.b.spec, index }), HOVER_MS);
    }

    function showTokens(D) {
      const max = Math.max(1e-9, ...D.tokens.map((t) => (t.kl_pq || 0) + (t.kl_qp || 0)));
      strip.innerHTML = D.tokens.map((t, j) => {
        const h1 = t.kl_pq === null ? 1 : t.kl_pq / max, h2 = t.kl_qp === null ? 1 : t.kl_qp / max;
        return '<button type="button" class="dc-colbtn' + (t.agree ? "" : " dc-differ") + '" data-index="' + t.index +
          '" tabindex="' + (j ? -1 : 0) + '" aria-label="' + esc(t.label) + ": KL(p‖q) " + num(t.kl_pq, 3) + ", KL(q‖p) " + num(t.kl_qp, 3) +
          (t.agree ? ", same top token" : ", top tokens differ") + '" title="' + esc(t.label) + "  KL(p‖q) " + num(t.kl_pq, 3) +
          "  KL(q‖p) " + num(t.kl_qp, 3) + '"><i style="height:' + (100 * h1).toFixed(1) + '%"></i><i class="dc-qp" style="height:' +
          (100 * h2).toFixed(1) + '%"></i></button>';
      }).join("");
      $(".dc-summary").innerHTML = "Over <b>" + D.tokens.length + "</b> positions: mean KL(p‖q) <b>" + num(D.mean_kl_pq, 4) +
        "</b> nats, KL(q‖p) <b>" + num(D.mean_kl_qp, 4) + "</b> nats, top-1 agreement <b>" + (100 * D.agreement).toFixed(1) +
        "%</b>; loss A " + num(D.loss_a, 3) + ", B " + num(D.loss_b, 3) + " nats/token.";
      const byIndex = new Map(D.tokens.map((t) => [t.index, t]));
      $(".dc-disagree").innerHTML = "<b>Where they disagree most:</b> " + D.disagree.map((i) => {
        const t = byIndex.get(i);
        return '<button type="button" class="dp-btn dc-jump" data-index="' + i + '"><code>' + esc(t.label) + "</code> " +
          num(t.kl_pq + t.kl_qp, 2) + " (A: <code>" + esc(t.top_a) + "</code>, B: <code>" + esc(t.top_b) + "</code>)</button>";
      }).join(" ");
    }

    function showChars(D) {
      strip.innerHTML = ""; $(".dc-disagree").innerHTML = ""; $(".dc-plots").hidden = true;
      const row = (x) => esc(x.name) + ": <b>" + num(x.nats_per_char, 4) + " nats per character</b> (" +
        x.predicted + " tokens, " + num(x.mean_loss, 3) + " nats per token)";
      $(".dc-summary").innerHTML = row(D.a) + "<br>" + row(D.b);
    }

    function payload(D) {
      if (D.error) { say(D.error, "error"); return; }
      if (D.kind === "compare") {
        say("");
        st.result = D; st.at = null;
        $(".dc-result").hidden = false;
        $(".dc-note").textContent = D.note;
        $(".dc-a-title").textContent = "A (p): " + D.a.name;
        $(".dc-b-title").textContent = "B (q): " + D.b.name;
        if (D.mode === "chars") { st.charts = null; showChars(D); return; }
        $(".dc-plots").hidden = false;
        showTokens(D);
      }
      if (D.charts) {
        st.charts = D.charts.map((c) => PL.prepare(c));
        st.at = D.at;
        $(".dc-at").innerHTML = "Both charts predict token " + D.at + ", <code>" + esc(D.actual) + "</code>, from the same " +
          "context with your settings and the same u.";
        redraw();
      }
    }

    $(".dc-go").addEventListener("click", () => {
      say("Comparing …");
      shared.request("compare", { a: selA.value, b: selB.value });
    });
    strip.addEventListener("mouseover", (e) => { const c = e.target.closest(".dc-colbtn"); if (c) ask(Number(c.dataset.index)); });
    strip.addEventListener("click", (e) => { const c = e.target.closest(".dc-colbtn"); if (c) { c.focus(); ask(Number(c.dataset.index)); } });
    strip.addEventListener("focusin", (e) => { const c = e.target.closest(".dc-colbtn"); if (c) ask(Number(c.dataset.index)); });
    strip.addEventListener("keydown", (e) => {
      const c = e.target.closest(".dc-colbtn");
      if (!c || (e.key !== "ArrowLeft" && e.key !== "ArrowRight")) return;
      const next = e.key === "ArrowLeft" ? c.previousElementSibling : c.nextElementSibling;
      if (next) { c.tabIndex = -1; next.tabIndex = 0; next.focus(); }
      e.preventDefault();
    });
    $(".dc-disagree").addEventListener("click", (e) => {
      const b = e.target.closest(".dc-jump");
      if (b) ask(Number(b.dataset.index));
    });
    return { payload, redraw };
  }

  global.DPCompare = Object.assign(global.DPCompare || {}, { mount });
})(window);

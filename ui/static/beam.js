/* Beam search, in its panel below the chart: num_beams, length penalty, early stopping and
   tokens; Search asks the server (the 'beam' action; model/beam.py follows transformers'
   generate(num_beams=...) step for step) and the panel draws what every step considered.

   Each step keeps the 2 × num_beams best (beam, token) pairs over all beams, scored by their
   sum of log-probabilities. A candidate is kept (a beam of the next step: green), finished
   (it ended with end-of-text or at the last token, ranked among the first num_beams, and
   entered the finished list: blue) or dropped (grey). Each chip shows the beam it extends,
   its token and its length-penalised score, sum log p / length ^ length_penalty, the score
   a finished sequence is ranked by. The ranking at the end lists the finished sequences best
   first; "Open as text" makes one the session's text (Actions.open_path). */
(function (global) {
  "use strict";
  const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
  const num = (x, d) => (x <= -1e8 ? "−∞" : x.toFixed(d === undefined ? 2 : d).replace("-", "−"));
  const STOPPED = {
    max_new_tokens: "it reached the token limit",
    end_of_text: "the only beam ended with end-of-text",
    early_stopping: "num_beams sequences had finished (early stopping: true)",
    no_improvement: "no running beam could beat the finished ones any more",
  };

  // box: the panel's body; limits: the server's (ui/actions.py Limits); hooks.search(n,
  // options) and hooks.open(rank) send the actions.
  function mount(box, limits, hooks) {
    const st = { B: null };
    global.DPBeam.state = st; // for tests and benchmarks that read what the panel shows
    box.innerHTML =
      '<div class="dp-beam-form" role="group" aria-label="beam search settings">' +
      '<label>beams <input type="number" class="dp-num dp-beam-n" min="1" max="' + limits.beams +
      '" step="1" value="4"></label>' +
      '<label>length penalty <input type="number" class="dp-num dp-beam-lp" min="' + -limits.length_penalty +
      '" max="' + limits.length_penalty + '" step="0.1" value="1"></label>' +
      '<label>early stopping <select class="dp-beam-es"><option value="false">false</option>' +
      '<option value="true">true</option><option value="never">never</option></select></label>' +
      '<label>tokens <input type="number" class="dp-num dp-beam-tokens" min="1" max="' + limits.beam_tokens +
      '" step="1" value="20"></label>' +
      '<button type="button" class="dp-btn dp-primary dp-beam-go">Search</button></div>' +
      '<p class="dp-muted dp-beam-help">From the text as it is now, keep the ' +
      "<i>num_beams</i> best partial sequences at each step (2 × num_beams candidates; scores are sums of " +
      "log-probabilities of the raw model, before any sampling setting). Limits: " + limits.beams +
      " beams, " + limits.beam_tokens + " tokens, length penalty within ±" + limits.length_penalty + ".</p>" +
      '<div class="dp-beam-out" aria-live="polite"></div>';
    const $ = (sel) => box.querySelector(sel);

    function options() {
      const es = $(".dp-beam-es").value;
      return {
        num_beams: Number($(".dp-beam-n").value),
        length_penalty: Number($(".dp-beam-lp").value),
        early_stopping: es === "never" ? "never" : es === "true",
      };
    }
    function search() {
      box.classList.add("dp-beam-busy");
      $(".dp-beam-out").setAttribute("aria-busy", "true");
      hooks.search(Number($(".dp-beam-tokens").value), options());
    }
    $(".dp-beam-go").addEventListener("click", search);
    box.addEventListener("keydown", (ev) => {
      // Enter in a box searches, as a form would; the page's own keys stay out of the panel.
      if (ev.key === "Enter" && ev.target.matches("input")) { ev.preventDefault(); search(); }
      if (ev.target.matches("input, select")) ev.stopPropagation();
    });
    box.addEventListener("click", (ev) => {
      const b = ev.target.closest(".dp-beam-open");
      if (b) hooks.open(Number(b.dataset.rank));
    });

    function chip(c) {
      const title = (c.status === "dropped" ? "dropped" : c.status === "kept" ? "kept as beam " + (c.beam + 1) : "finished") +
        ": extends beam " + (c.parent + 1) + " with " + c.label + "; log p " + num(c.logprob, 3) + ", sum " +
        num(c.score, 3) + ", penalised " + num(c.penalised, 3) + (c.ends ? " (ends here)" : "");
      return '<span class="dp-beam-c dp-beam-' + c.status + (c.ends ? " dp-beam-ends" : "") + '" title="' + esc(title) +
        '"><span class="dp-beam-par">b' + (c.parent + 1) + "</span><code>" + esc(c.label) + "</code>" +
        '<span class="dp-beam-sc">' + num(c.penalised) + "</span></span>";
    }

    function show(B) {
      st.B = B;
      box.classList.remove("dp-beam-busy");
      const out = $(".dp-beam-out");
      out.removeAttribute("aria-busy");
      const s = B.settings;
      const rows = B.steps.map((step, i) => '<li class="dp-beam-step"><span class="dp-beam-no">' + (i + 1) + "</span>" +
        step.candidates.map(chip).join("") + "</li>").join("");
      const ranking = B.ranking.map((h, r) => '<li class="dp-beam-hyp"><div class="dp-beam-hyp-head"><b>#' + (r + 1) +
        "</b> score " + num(h.score, 3) + ' <span class="dp-muted">= ' + num(h.logprob, 2) + " / " + h.tokens.length +
        (s.length_penalty === 1 ? "" : "^" + s.length_penalty) + " · finished at step " + (h.step + 1) +
        '</span> <button type="button" class="dp-btn dp-beam-open" data-rank="' + r + '">Open as text</button></div>' +
        '<div class="dp-beam-text">' + h.labels.map((l) => "<code>" + esc(l) + "</code>").join("") + "</div></li>").join("");
      out.innerHTML =
        '<p class="dp-beam-summary">' + s.num_beams + " beam" + (s.num_beams === 1 ? " (greedy search)" : "s") +
        ", length penalty " + s.length_penalty + ", early stopping " + s.early_stopping + ": " + B.steps.length +
        " step" + (B.steps.length === 1 ? "" : "s") + "; it stopped because " + (STOPPED[B.stopped] || B.stopped) +
        (B.window ? " (the model saw the text's last part only)" : "") + ".</p>" +
        '<h3 class="dp-beam-h">Final ranking</h3><ol class="dp-beam-ranking">' + ranking + "</ol>" +
        '<h3 class="dp-beam-h">Each step\'s candidates <span class="dp-muted">' +
        '<span class="dp-beam-c dp-beam-kept">kept</span> <span class="dp-beam-c dp-beam-finished">finished</span> ' +
        '<span class="dp-beam-c dp-beam-dropped">dropped</span> · b = the beam it extends · number = sum log p / ' +
        "length^" + s.length_penalty + ' · <span class="dp-beam-c dp-beam-ends">thick right edge</span> = ends ' +
        "(end-of-text, or the last token)</span></h3>" +
        '<ol class="dp-beam-steps">' + rows + "</ol>";
    }
    // An answer came without a result (an error): the panel is not busy any more.
    function idle() {
      box.classList.remove("dp-beam-busy");
      $(".dp-beam-out").removeAttribute("aria-busy");
    }
    return { show, idle, state: st };
  }

  global.DPBeam = { mount };
})(window);

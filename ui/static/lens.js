/* The logit lens, below the chart: what the model would predict for the next token if it
   stopped after each layer. Each row is the last position's residual stream after that layer,
   put through the final norm (ln_f) and the output head (lm_head); the embedding row comes
   first, the last block last, and that last row is the model's own output: the chart's grey
   bars. The right column says where each layer ranks the token the model finally predicts.

   The server computes it on request (the 'lens' action; ui/inside.py). The table belongs to
   one step: when the chart moves to another step (or another model), it goes stale, faded,
   with a button to compute it again. */
(function (global) {
  "use strict";
  const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  const fmtP = (p) => (p >= 0.001 || p === 0 ? p.toFixed(3) : p.toExponential(1));

  function sameIds(a, b) {
    if (!a || !b || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }

  // box: the section below the chart; button: "Logit lens" in the tools row;
  // hooks.request(): ask the server for the current step's lens.
  function mount(box, button, hooks) {
    const st = { L: null, open: false, stale: false };

    function setOpen(on) {
      st.open = on;
      box.hidden = !on;
      button.setAttribute("aria-expanded", on ? "true" : "false");
      button.classList.toggle("dp-on", on);
      button.textContent = on ? "Hide logit lens" : "Logit lens";
    }
    button.addEventListener("click", () => {
      if (st.open && !st.stale) setOpen(false);
      else { box.classList.add("dp-lens-busy"); hooks.request(); }
    });
    box.addEventListener("click", (ev) => {
      if (ev.target.closest(".dp-lens-update")) { box.classList.add("dp-lens-busy"); hooks.request(); }
      else if (ev.target.closest(".dp-lens-close")) setOpen(false);
    });

    function chip(id, label, p, finalId) {
      const alpha = 0.1 + 0.75 * Math.sqrt(Math.max(0, Math.min(1, p)));
      return '<span class="dp-lens-tok' + (id === finalId ? " dp-lens-final" : "") +
        '" style="background: rgba(37, 99, 235, ' + alpha.toFixed(2) + ')' + (alpha > 0.55 ? "; color: #fff" : "") +
        '" title="id ' + id + '"><code>' + esc(label) + "</code> " + fmtP(p) + "</span>";
    }

    // With tied weights the embedding row scores the last token's own vector against every
    // row of the same matrix: its dot product with itself usually wins.
    function selfNote(L) {
      const top = L.layers[0].top[0];
      if (!L.tied || !top || top[0] !== L.last.id) return "";
      return " The embedding row's top guess is the last token itself, <code>" + esc(L.last.label) +
        "</code>: with weight tying the output head is the embedding matrix, and a token's vector " +
        "scores highest against itself.";
    }

    function render() {
      const L = st.L;
      const last = L.layers.length - 1;
      const rows = L.layers.map((layer, i) => {
        const name = layer.layer;
        const tops = layer.top.map(([id, label, p]) => chip(id, label, p, L.final.id)).join("");
        const rank = layer.rank === 1 ? '<b class="dp-lens-top1">1</b>' : layer.rank.toLocaleString("en");
        return '<tr' + (i === last ? ' class="dp-lens-out"' : "") + '><th scope="row">' + esc(name) +
          (i === last ? ' <span class="dp-muted">= output</span>' : "") + "</th><td>" + tops + "</td><td>" +
          rank + ' <span class="dp-muted">' + fmtP(layer.p) + "</span></td></tr>";
      }).join("");
      box.innerHTML =
        '<div class="dp-lens-head"><span><b>Logit lens</b>: the next token after <b>' + L.position + "</b> tokens" +
        (L.steps ? " (step " + L.steps + ")" : "") + ", read after each layer</span>" +
        '<button type="button" class="dp-btn dp-lens-close" aria-label="close the logit lens">×</button></div>' +
        '<div class="dp-lens-stale" hidden>This lens is for an earlier step. <button type="button" ' +
        'class="dp-btn dp-lens-update">Update for this step</button></div>' +
        '<div class="dp-scroll"><table class="dp-lens-table"><thead><tr><th scope="col">layer</th>' +
        '<th scope="col">top ' + L.layers[0].top.length + " if the model stopped here</th>" +
        '<th scope="col">rank of <code>' + esc(L.final.label) + "</code> · p</th></tr></thead><tbody>" + rows +
        "</tbody></table></div>" +
        '<p class="dp-muted dp-lens-note">Each row puts the last position\'s vector after that layer through ' +
        "the final norm and the output head, as if the model ended there. The embedding row knows only the " +
        "last token; each block adds what attention and the MLP found; the last row is the model's own " +
        "output, the chart's grey bars. The right column: where each layer ranks <code>" + esc(L.final.label) +
        "</code>, the model's final top token" + (L.window_start ? " (the model sees the last " +
        (L.position - L.window_start) + " tokens)" : "") + "." + selfNote(L) + "</p>";
    }

    function setStale(on) {
      st.stale = on;
      box.classList.toggle("dp-lens-is-stale", on);
      const s = box.querySelector(".dp-lens-stale");
      if (s) s.hidden = !on;
    }

    // A lens from the server; P = the live chart it should match.
    function show(L, P, generating) {
      st.L = L;
      box.classList.remove("dp-lens-busy");
      render();
      setOpen(true);
      sync(P, generating);
    }
    // The chart moved (or Generate started): is the table still this step's?
    function sync(P, generating) {
      box.classList.remove("dp-lens-busy"); // an answer came, with or without a lens
      if (!st.L) return;
      const fresh = Boolean(P) && !generating && P.model === st.L.model && sameIds(P.context, st.L.context);
      setStale(!fresh);
    }
    return { show, sync, state: st };
  }

  global.DPLens = { mount };
})(window);

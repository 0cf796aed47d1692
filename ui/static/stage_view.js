/* What one stage of the chain did at this step, drawn small for its card in the chain editor:

   - a mini-chart of the stage's input's top tokens (DPPipeline.TRACE_BARS of them): a grey bar
     for the probability entering the stage, the stage's colour for the probability leaving
     it (0 where the stage removed the token, drawn as an empty outline), and the stage's
     threshold as a dashed line where it has one on this scale (min-p, ε, η, XTC);
   - a caption with the live count before and after and, in words, what decided it: XTC's
     draw and whether it fired, mirostat's μ, dynamic temperature's T from the entropy, the
     token DRY penalised most and by how much.

   Plain SVG built as a string: six cards of 16 bars redraw in well under a millisecond, so
   they follow a slider as the main chart does. */
(function (global) {
  "use strict";
  const PL = global.DPPipeline;
  const W = 160, H = 26; // the viewBox; the card stretches it to its width
  const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
  const count = (n) => n.toLocaleString("en");
  const p3 = (p) => (p >= 0.001 || p === 0 ? p.toFixed(3) : p.toExponential(1));

  // The threshold a stage drew its line at, on the probability scale of its input.
  function threshold(name, info, s) {
    if (name === "min_p") return info.threshold;
    if (name === "epsilon") return s.epsilon_cutoff;
    if (name === "eta") return info.eta;
    if (name === "xtc" && info.fired) return s.xtc_threshold;
    return null;
  }

  function mini(name, trace, s, colour) {
    const n = PL.TRACE_BARS, bw = W / n;
    let top = 0;
    for (let i = 0; i < trace.top.length; i++) top = Math.max(top, trace.pIn[i], trace.pOut[i]);
    const cut = threshold(name, trace.info || {}, s);
    if (cut !== null && cut <= 1) top = Math.max(top, cut);
    const y = (p) => H - 1 - (H - 2) * (top > 0 ? p / top : 0);
    let out = '<svg class="dp-mini" viewBox="0 0 ' + W + " " + H + '" preserveAspectRatio="none" aria-hidden="true">';
    for (let i = 0; i < trace.top.length; i++) {
      const x = (i * bw + 0.6).toFixed(1), w = (bw - 1.2).toFixed(1);
      const yIn = y(trace.pIn[i]), yOut = y(trace.pOut[i]);
      out += '<rect class="dp-mini-in" x="' + x + '" y="' + yIn.toFixed(1) + '" width="' + w + '" height="' + (H - 1 - yIn).toFixed(1) + '"/>';
      if (trace.pOut[i] > 0) {
        out += '<rect x="' + x + '" y="' + yOut.toFixed(1) + '" width="' + (bw * 0.55).toFixed(1) + '" height="' +
          (H - 1 - yOut).toFixed(1) + '" fill="' + esc(colour) + '"/>';
      } else {
        out += '<rect class="dp-mini-gone" x="' + x + '" y="' + yIn.toFixed(1) + '" width="' + w + '" height="' +
          (H - 1 - yIn).toFixed(1) + '"/>';
      }
    }
    if (cut !== null && cut <= top) {
      out += '<line class="dp-mini-cut" x1="0" x2="' + W + '" y1="' + y(cut).toFixed(1) + '" y2="' + y(cut).toFixed(1) + '"/>';
    }
    return out + "</svg>";
  }

  // What decided the stage's effect, in a few words.
  function caption(name, trace, s, labelOf) {
    const info = trace.info || {};
    const flow = count(trace.nIn) + " → " + count(trace.nOut);
    switch (name) {
      case "xtc":
        if (!info.fired) return flow + " · draw " + info.u.toFixed(3) + " > " + s.xtc_probability + ": did not fire";
        return flow + " · draw " + info.u.toFixed(3) + " ≤ " + s.xtc_probability + ": fired, " +
          (info.removed ? "removed the top " + info.removed : "fewer than 2 tokens ≥ " + s.xtc_threshold);
      case "mirostat":
        return flow + " · μ = " + info.mu.toFixed(2) + " bits, τ = " + s.mirostat_tau + ": kept " + count(info.keep);
      case "temperature":
        if (info.T === undefined) return flow;
        if (info.dynamic) return "T = " + info.T.toFixed(3) + " from the entropy (" + (100 * info.entropyShare).toFixed(0) + "% of its max)";
        return info.T === 0 ? flow + " · T = 0: argmax" : "T = " + info.T + ": reshapes, removes none";
      case "dry": {
        const hit = info.hits && info.hits[0];
        if (!hit) return "no repeat of " + s.dry_allowed_length + "+ tokens to continue";
        return "“" + labelOf(hit.token) + "” −" + hit.penalty.toFixed(2) + " (would repeat " + hit.length + " tokens)" +
          (info.hits.length > 1 ? " +" + (info.hits.length - 1) + " more" : "");
      }
      case "min_p": return flow + " · p < " + p3(info.threshold);
      case "top_k": return flow + (info.k ? " · rank > " + info.k : "");
      case "top_n_sigma": return info.sigma !== undefined ? flow + " · σ = " + info.sigma.toFixed(2) : flow;
      default: return flow;
    }
  }

  global.DPStageView = { mini, caption };
})(window);

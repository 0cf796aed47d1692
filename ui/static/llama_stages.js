/* The newer stages of the page's pipeline (ui/static/pipeline.js): llama.cpp's logit bias, DRY,
   top-nσ, XTC and mirostat (model/llama_samplers.py) and Hugging Face's ε and η cutoffs
   (model/warpers.py), each repeating the Python operation for operation in float64. Loaded
   after pipeline.js; each adds its entry to DPPipeline.STAGE_FUNCTIONS (apply(w, s, P) changes
   the working set w; reason(why, id, s) says why the stage removed token id).

   What a stage needs besides the logits comes with the step's data P from the server:
   P.draws.xtc (XTC's own u), P.mu (mirostat's μ; null = 2τ), P.dryHeads (DRY's sequence
   breakers as token sequences for this tokenizer) and P.biasText (token ids of a text bias). */
(function (global) {
  "use strict";
  const PL = global.DPPipeline;
  const { softmaxLive, resort, liveProbs, fmtP } = PL.helpers;

  /* ---- llama.cpp's DRY (model/llama_samplers.py's dry_penalties, step for step) ---- */

  function repeatLengths(window, limit) {
    const rev = window.slice().reverse();
    const n = rev.length;
    const z = new Array(n).fill(0);
    let left = 0, right = 0;
    for (let k = 1; k < n; k++) {
      if (k < right) z[k] = Math.min(right - k, z[k - left]);
      while (k + z[k] < n && rev[z[k]] === rev[k + z[k]]) z[k]++;
      if (k + z[k] > right) { left = k; right = k + z[k]; }
    }
    const out = new Array(n).fill(0);
    for (let k = 1; k < n; k++) out[n - 1 - k] = Math.min(z[k], limit);
    return out;
  }

  function dryPenalties(window, s, heads, hits) {
    const n = window.length, allowed = s.dry_allowed_length;
    const out = new Map();
    if (s.dry_multiplier === 0 || s.dry_base < 1 || n <= allowed) return out;
    let limit = n;
    for (let i = 0; i < n; i++) {
      const tails = heads[window[n - 1 - i]];
      if (!tails) continue;
      let longest = -1;
      for (const tail of tails) {
        if (longest < tail.length && tail.length <= i && tail.every((t, j) => t === window[n - i + j])) longest = tail.length;
      }
      if (longest >= 0) { limit = i - longest; break; }
    }
    if (limit < allowed) return out;
    const lengths = repeatLengths(window, limit);
    const longestBefore = new Map(), where = new Map();
    for (let i = 0; i < n - 1; i++) {
      if (lengths[i] >= allowed) {
        const t = window[i + 1];
        if (lengths[i] > (longestBefore.get(t) || 0)) where.set(t, i);
        longestBefore.set(t, Math.max(longestBefore.get(t) || 0, lengths[i]));
      }
    }
    // llama.cpp caps the exponent so that base^exponent stays inside float32.
    const maxExp = s.dry_base > 1.000001
      ? Math.trunc(Math.fround(Math.fround(88.7228391) / Math.fround(Math.log(Math.fround(s.dry_base))))) : 0;
    for (const [t, len] of longestBefore) {
      if ((heads[t] || []).some((tail) => tail.length === 0)) continue;
      let e = len - allowed;
      if (maxExp > 0) e = Math.min(e, maxExp);
      out.set(t, s.dry_multiplier * Math.pow(s.dry_base, e));
      // For the page: the earlier run ends at window index `at` and t followed it there.
      if (hits) hits.push({ token: t, penalty: out.get(t), length: len, at: where.get(t) });
    }
    return out;
  }

  /* ---- mirostat's cut (model/llama_samplers.py) ---- */

  function mirostatK(p, mu, nVocab) {
    const n = Math.min(100 - 1, p.length - 1);
    let tb = 0, tt = 0;
    for (let i = 0; i < n; i++) {
      const t = Math.log((i + 2) / (i + 1));
      tb += t * Math.log(p[i] / p[i + 1]);
      tt += t * t;
    }
    const sHat = tb / tt, eps = sHat - 1;
    const k = Math.pow((eps * Math.pow(2, mu)) / (1 - Math.pow(nVocab, -eps)), 1 / sHat);
    if (!Number.isFinite(k)) return k === Infinity ? p.length : 1;
    return Math.max(1, Math.min(p.length, Math.trunc(k)));
  }

  // Token ids of a logit bias given as text: the server sends them (P.biasText).
  function textIds(P, text) {
    const ids = P.biasText && P.biasText[text];
    if (!ids) throw new Error("logit_bias names the text " + JSON.stringify(text) + ": the page needs its token ids from the server");
    return ids;
  }

  Object.assign(PL.STAGE_FUNCTIONS, {
    logit_bias: {
      apply(w, s, P) {
        for (const [key, bias] of s.logit_bias) {
          const ids = typeof key === "string" ? textIds(P, key) : [key];
          for (const id of ids) {
            if (id >= P.V) throw new Error("logit_bias names token id " + id + ", but the vocabulary has ids 0 to " + (P.V - 1));
            w.x[id] = w.x[id] + (bias === false ? -Infinity : bias);
          }
        }
        resort(w);
        w.drop((id) => w.x[id] !== -Infinity);
        return {};
      },
      reason: () => "logit_bias bans it",
    },
    dry: {
      apply(w, s, P) {
        const n = s.dry_penalty_last_n < 0 ? P.context.length : s.dry_penalty_last_n;
        const window = n ? P.context.slice(Math.max(0, P.context.length - n)) : [];
        let heads = {};
        if (s.dry_sequence_breakers.length) {
          if (!P.dryHeads) throw new Error("DRY's sequence breakers need the server's dry_heads for this tokenizer");
          heads = P.dryHeads;
        }
        const hits = [];
        const pen = dryPenalties(window, s, heads, hits);
        if (pen.size) {
          for (const [t, v] of pen) w.x[t] -= v;
          resort(w);
        }
        // Context indices: where the window starts, so the page can mark the repeats.
        hits.sort((a, b) => b.penalty - a.penalty || a.token - b.token);
        return { hits, start: P.context.length - window.length, end: P.context.length };
      },
      reason: () => "",
    },
    top_n_sigma: {
      // Keep logits >= max - n·σ, σ the population standard deviation of the live logits.
      apply(w, s) {
        const live = w.live, x = w.x;
        if (s.top_n_sigma <= 0 || live.length <= 1) return {};
        let sum = 0, max = -Infinity;
        for (const id of live) { sum += x[id]; if (x[id] > max) max = x[id]; }
        const mean = sum / live.length;
        let acc = 0;
        for (const id of live) acc += (x[id] - mean) ** 2;
        const sigma = Math.sqrt(acc / live.length);
        const cut = max - s.top_n_sigma * sigma;
        w.drop((id) => !(x[id] < cut));
        return { cut, sigma };
      },
      reason: (why, id, s) => "logit more than " + s.top_n_sigma + " σ (σ = " + why.sigma.toFixed(2) + ") below the top",
    },
    epsilon: {
      apply(w, s, P) {
        const p = softmaxLive(w.x, w.live, P.V);
        const top = w.x[w.live[0]];
        w.drop((id) => !(p[id] < s.epsilon_cutoff && w.x[id] < top));
        return { probs: p };
      },
      reason: (why, id, s) => "p = " + fmtP(why.probs[id]) + " < ε = " + s.epsilon_cutoff,
    },
    eta: {
      apply(w, s, P) {
        const x = w.x, live = w.live;
        const m = x[live[0]];
        let sum = 0;
        for (const id of live) sum += Math.exp(x[id] - m);
        const logZ = Math.log(sum);
        const p = softmaxLive(x, live, P.V);
        let entropy = 0;
        for (const id of live) entropy -= p[id] * (x[id] - m - logZ);
        const eta = Math.min(s.eta_cutoff, Math.sqrt(s.eta_cutoff) * Math.exp(-entropy));
        w.drop((id) => !(p[id] < eta && x[id] < m));
        return { probs: p, eta };
      },
      reason: (why, id) => "p = " + fmtP(why.probs[id]) + " < η = " + fmtP(why.eta),
    },
    xtc: {
      // With its own draw u <= probability: drop every token with p >= threshold but the last.
      apply(w, s, P) {
        const u = P.draws && P.draws.xtc;
        if (u === undefined || u === null) throw new Error("XTC needs the server's draws.xtc for this position");
        if (s.xtc_probability <= 0 || s.xtc_threshold > 0.5 || u > s.xtc_probability) return { u, fired: false, removed: 0 };
        const p = liveProbs(w, P);
        let above = 0;
        while (above < p.length && p[above] >= s.xtc_threshold) above++;
        if (above < 2) return { u, fired: true, removed: 0, above };
        const gone = new Set(w.live.slice(0, above - 1));
        w.drop((id) => !gone.has(id));
        return { u, fired: true, removed: above - 1, above };
      },
      reason: (why, id, s) => "XTC removed a top choice (p ≥ " + s.xtc_threshold + ")",
    },
    mirostat: {
      apply(w, s, P) {
        const mu = P.mu === undefined || P.mu === null ? 2 * s.mirostat_tau : P.mu;
        const p = liveProbs(w, P);
        let keep;
        if (s.mirostat === 1) keep = mirostatK(p, mu, P.V);
        else {
          keep = 0;
          while (keep < p.length && !(-Math.log2(p[keep]) > mu)) keep++;
          keep = Math.max(1, keep);
        }
        const kept = new Set(w.live.slice(0, keep));
        w.drop((id) => kept.has(id));
        return { mu, keep };
      },
      reason: (why) => "mirostat's cut for μ = " + why.mu.toFixed(2),
    },
  });
})(typeof window !== "undefined" ? window : globalThis);

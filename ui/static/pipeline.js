/* The sampling pipeline of model/sampling.py, recomputed in the browser.

   The server sends one step's raw logits once; every slider move recomputes from them here,
   so dragging never waits for the server or the model. Each function repeats the Python
   operation for operation, in float64 (JavaScript numbers are doubles, and sampling.py
   computes in float64 for exactly this reason):

     raw logits -> penalties -> temperature -> top-k -> top-p -> min-p -> typical-p -> pick

   Results match run_pipeline to rounding (the last bits of a sum depend on its order, and
   exp() may differ by one ulp); tests/test_browser.py checks that on many random settings.

   Working set: `live` holds the ids whose logit is still finite, sorted by logit descending
   with ties by lower id. Temperature keeps that order and the filters only remove, so the
   O(V log V) sort happens once per step (in prepare), not on every slider move. */
(function (global) {
  "use strict";

  const STAGES = ["penalties", "temperature", "top_k", "top_p", "min_p", "typical_p"];
  const DEFAULTS = {
    temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, typical_p: 1.0,
    repetition_penalty: 1.0, presence_penalty: 0.0, frequency_penalty: 0.0,
    no_repeat_ngram_size: 0, temperature_last: false,
  };

  function stageOrder(temperatureLast) {
    return temperatureLast
      ? ["penalties", "top_k", "top_p", "min_p", "typical_p", "temperature"]
      : STAGES.slice();
  }

  function hasPenalties(s) {
    return s.repetition_penalty !== 1.0 || s.presence_penalty !== 0.0 ||
      s.frequency_penalty !== 0.0 || s.no_repeat_ngram_size > 0;
  }

  function normalise(settings) {
    const s = Object.assign({}, DEFAULTS, settings || {});
    for (const k of Object.keys(DEFAULTS)) {
      s[k] = k === "temperature_last" ? Boolean(s[k]) : Number(s[k]);
    }
    s.top_k = Math.trunc(s.top_k);
    s.no_repeat_ngram_size = Math.trunc(s.no_repeat_ngram_size);
    return s;
  }

  /* ---- one step's data, prepared once ---- */

  function decodeLogits(b64) {
    const bin = atob(b64);
    const n = bin.length >>> 2;
    const view = new DataView(new ArrayBuffer(bin.length));
    for (let i = 0; i < bin.length; i++) view.setUint8(i, bin.charCodeAt(i));
    const out = new Float64Array(n);
    for (let i = 0; i < n; i++) out[i] = view.getFloat32(4 * i, true); // exact widening
    return out;
  }

  function byValueDesc(x) {
    return (a, b) => (x[a] > x[b] ? -1 : x[a] < x[b] ? 1 : a - b);
  }

  function prepare(P) {
    const raw = decodeLogits(P.logits);
    const V = raw.length;
    const order = new Uint32Array(V);
    for (let i = 0; i < V; i++) order[i] = i;
    order.sort(byValueDesc(raw));
    const counts = new Map();
    for (const t of P.context) counts.set(t, (counts.get(t) || 0) + 1);
    const ctxIds = Array.from(counts.keys()).sort((a, b) => a - b);
    return Object.assign(P, { raw, order, counts, ctxIds, V });
  }

  /* ---- numerics shared by the stages ---- */

  // softmax over the live ids (others are -inf, probability 0): p[id] for id in live.
  function softmaxLive(x, live, V) {
    const p = new Float64Array(V);
    if (!live.length) return p;
    let m = -Infinity;
    for (const id of live) if (x[id] > m) m = x[id];
    let sum = 0;
    for (const id of live) { const e = Math.exp(x[id] - m); p[id] = e; sum += e; }
    const inv = 1 / sum; // torch's softmax multiplies by the reciprocal of the sum
    for (const id of live) p[id] *= inv;
    return p;
  }

  // Within runs of equal values, ids ascending (the tie rule of sampling_order).
  function fixTies(list, x) {
    let i = 0;
    while (i < list.length) {
      let j = i + 1;
      while (j < list.length && x[list[j]] === x[list[i]]) j++;
      if (j - i > 1) {
        const run = Array.prototype.slice.call(list, i, j).sort((a, b) => a - b);
        for (let k = i; k < j; k++) list[k] = run[k - i];
      }
      i = j;
    }
    return list;
  }

  function bannedNgramTokens(context, n) {
    if (n <= 0 || context.length + 1 < n) return [];
    const prefix = context.slice(context.length - n + 1);
    const banned = new Set();
    for (let i = 0; i + n - 1 < context.length; i++) {
      let same = true;
      for (let j = 0; j < n - 1; j++) if (context[i + j] !== prefix[j]) { same = false; break; }
      if (same) banned.add(context[i + n - 1]);
    }
    return Array.from(banned).sort((a, b) => a - b);
  }

  /* ---- the pipeline ---- */

  function transform(P, settings) {
    const s = normalise(settings);
    const V = P.V;
    let x = P.raw;
    let live = Array.from(P.order);
    let display = P.order; // bar order: logits after penalties (before n-gram bans)
    const removedBy = new Int8Array(V).fill(-1);
    const names = stageOrder(s.temperature_last);
    const stages = [];
    const why = {}; // per stage, what its hover explanation needs
    let copied = false;
    const own = () => { if (!copied) { x = Float64Array.from(x); copied = true; } };
    const drop = (keep, si) => {
      const kept = [];
      for (const id of live) { if (keep(id)) kept.push(id); else { x[id] = -Infinity; removedBy[id] = si; } }
      live = kept;
    };

    for (let si = 0; si < names.length; si++) {
      const name = names[si];
      const active = {
        penalties: hasPenalties(s) && P.context.length > 0,
        temperature: s.temperature !== 1.0,
        top_k: s.top_k > 0,
        top_p: s.top_p < 1.0,
        min_p: s.min_p > 0.0,
        typical_p: s.typical_p < 1.0,
      }[name];
      stages.push({ name, active });
      if (!active) continue;
      own();

      if (name === "penalties") {
        // HF repetition penalty, then OpenAI's presence/frequency, then n-gram bans.
        const moved = new Set(P.ctxIds);
        for (const id of P.ctxIds) {
          if (s.repetition_penalty !== 1.0) {
            const v = x[id];
            x[id] = v < 0 ? v * s.repetition_penalty : v / s.repetition_penalty;
          }
          if (s.presence_penalty || s.frequency_penalty) {
            x[id] -= s.presence_penalty + s.frequency_penalty * P.counts.get(id);
          }
        }
        // New order: untouched ids keep theirs; the moved ones are merged back in.
        const movedSorted = P.ctxIds.slice().sort(byValueDesc(x));
        const merged = new Uint32Array(V);
        let a = 0, b = 0, k = 0;
        const cmp = byValueDesc(x);
        const rest = P.order;
        while (k < V) {
          while (a < rest.length && moved.has(rest[a])) a++;
          if (a < rest.length && (b >= movedSorted.length || cmp(rest[a], movedSorted[b]) < 0)) {
            merged[k++] = rest[a++];
          } else {
            merged[k++] = movedSorted[b++];
          }
        }
        display = merged;
        live = Array.from(merged);
        const banned = bannedNgramTokens(P.context, s.no_repeat_ngram_size);
        if (banned.length) {
          const bannedSet = new Set(banned);
          drop((id) => !bannedSet.has(id), si);
          why.penalties = { n: s.no_repeat_ngram_size };
        }
      } else if (name === "temperature") {
        if (s.temperature === 0) {
          // argmax: the first maximal id, which heads `live` (ties by lower id).
          const top = live[0];
          drop((id) => id === top, si);
        } else {
          for (const id of live) x[id] = x[id] / s.temperature;
          fixTies(live, x); // division can round two logits to one value
        }
      } else if (name === "top_k") {
        const k = Math.min(s.top_k, V);
        if (k <= live.length) {
          const kth = x[live[k - 1]];
          const rank = new Map(live.map((id, i) => [id, i + 1]));
          why.top_k = { k, rank };
          drop((id) => x[id] >= kth, si); // ties with the k-th logit stay
        }
      } else if (name === "top_p") {
        // HF: sort ascending, drop the low tail whose cumulative mass stays within 1 - p.
        const p = softmaxLive(x, live, V);
        // Reversing `live` gives ascending values with ties by higher id first; fixTies puts
        // each tie run back in id order, as torch's (stable) ascending sort does.
        const asc = fixTies(live.slice().reverse(), x);
        const remove = new Set();
        let cum = 0;
        for (let i = 0; i < asc.length; i++) {
          cum += p[asc[i]];
          if (cum <= 1 - s.top_p && i < asc.length - 1) remove.add(asc[i]);
        }
        const above = new Map();
        let down = 0;
        for (const id of live) { above.set(id, down); down += p[id]; }
        why.top_p = { p: s.top_p, above, probs: p };
        drop((id) => !remove.has(id), si);
      } else if (name === "min_p") {
        const p = softmaxLive(x, live, V);
        let top = live[0], pmax = -1;
        for (const id of live) if (p[id] > pmax) { pmax = p[id]; top = id; }
        const threshold = s.min_p * pmax;
        why.min_p = { threshold, probs: p };
        drop((id) => id === top || !(p[id] < threshold), si);
      } else if (name === "typical_p") {
        let m = -Infinity;
        for (const id of live) if (x[id] > m) m = x[id];
        let sum = 0;
        for (const id of live) sum += Math.exp(x[id] - m);
        const logZ = Math.log(sum);
        const lp = new Map();
        let entropy = 0;
        for (const id of live) {
          const l = x[id] - m - logZ;
          lp.set(id, l);
          entropy -= l * Math.exp(l);
        }
        const gap = new Map();
        for (const id of live) gap.set(id, Math.abs(-lp.get(id) - entropy));
        const byGap = live.slice().sort((a, b) => (gap.get(a) - gap.get(b)) || (a - b));
        const p = softmaxLive(x, live, V);
        let cum = 0, below = 0;
        for (const id of byGap) { cum += p[id]; if (cum < s.typical_p) below++; }
        // `below` counts the prefix with cumulative < mass; past every live id the cut is
        // +inf (sampling.py indexes into the -inf tail there) and nothing is removed.
        const cut = below < byGap.length ? gap.get(byGap[below]) : Infinity;
        const first = byGap[0];
        why.typical_p = { entropy, lp, gap, cut };
        drop((id) => id === first || !(gap.get(id) > cut), si);
      }
    }

    const probs = softmaxLive(x, live, V);
    // sampling_order: probability descending, ties by lower id.
    const order = fixTies(live.slice(), probs);
    let entropy = 0, nKept = 0;
    for (const id of order) {
      const q = probs[id];
      if (q > 0) { entropy -= q * Math.log2(q); nKept++; }
    }
    return { settings: s, probs, order, nKept, removedBy, stages, why, display, logits: x, entropy };
  }

  // pick_token: the first id in sampling order whose cumulative probability reaches u.
  function pick(result, u) {
    if (result.settings.temperature === 0 || u === null || u === undefined) {
      return { token: result.order[0], greedy: result.settings.temperature === 0 };
    }
    let cum = 0;
    for (let i = 0; i < result.nKept; i++) {
      cum += result.probs[result.order[i]];
      if (cum >= u) return { token: result.order[i], greedy: false };
    }
    return { token: result.order[result.nKept - 1], greedy: false }; // rounding left cum < u
  }

  function entropyOf(probs) {
    let h = 0;
    for (let i = 0; i < probs.length; i++) if (probs[i] > 0) h -= probs[i] * Math.log2(probs[i]);
    return h;
  }

  function rawProbs(P) {
    if (!P.rawProbs) P.rawProbs = softmaxLive(P.raw, P.order, P.V);
    return P.rawProbs;
  }

  global.DPPipeline = {
    STAGES, DEFAULTS, stageOrder, normalise, prepare, transform, pick, entropyOf, rawProbs,
    decodeLogits, bannedNgramTokens,
  };
})(window);

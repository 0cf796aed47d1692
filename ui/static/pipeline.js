/* The sampling pipeline of model/sampling.py, recomputed in the browser.

   The server sends one step's raw logits once; every slider move recomputes from them here,
   so dragging never waits for the server or the model. Which stages exist, their order, when
   each is active and every setting's default and range come from model/sampling.py's table
   (`schema()`, handed to the page as JSON and given to useSchema). This file holds only one
   function per stage, keyed by the stage's name (llama.cpp's stages and the ε/η cutoffs are in
   llama_stages.js, loaded after this file), each repeating the Python operation for
   operation in float64 (JavaScript numbers are doubles, and sampling.py computes in float64
   for exactly this reason). A stage in the table without a function here is an error.

   Results match run_pipeline to rounding (the last bits of a sum depend on its order, and
   exp() may differ by one ulp); tests/test_pipeline_js.py checks that under Node on
   hundreds of random settings, and tests/test_browser.py in Chromium.

   Working set: `live` holds the ids whose logit is still finite, sorted by logit descending
   with ties by lower id. Temperature keeps that order and the filters only remove, so the
   O(V log V) sort happens once per step (in prepare), not on every slider move. */
(function (global) {
  "use strict";

  let schema = null;

  function useSchema(s) {
    for (const st of s.stages) {
      if (!STAGE_FUNCTIONS[st.name]) throw new Error("pipeline.js has no function for stage " + st.name);
    }
    schema = s;
  }

  function requireSchema() {
    if (!schema) throw new Error("DPPipeline.useSchema(schema) must run first");
    return schema;
  }

  function defaults() {
    const out = {};
    for (const [name, x] of Object.entries(requireSchema().settings)) out[name] = x.default;
    return out;
  }

  // A settings object with every field, in its type (no clamping: see clampToControl). The
  // list settings take the engine's normal form: the chain as stage names, biases as pairs.
  function normalise(settings) {
    const s = Object.assign(defaults(), settings || {});
    for (const [name, x] of Object.entries(schema.settings)) {
      if (x.kind === "bool") s[name] = Boolean(s[name]);
      else if (x.kind === "float" || x.kind === "int") s[name] = Number(s[name]);
    }
    s.samplers = parseChain(s.samplers);
    s.logit_bias = biasPairs(s.logit_bias);
    return s;
  }

  // model/chain.py's parse_samplers: names, llama.cpp's letters, ";"-separated names, presets.
  function parseChain(value) {
    const c = requireSchema().chain;
    let names;
    if (typeof value === "string") {
      const text = value.trim().toLowerCase();
      if (c.presets[text]) return c.presets[text].slice();
      if (text.includes(";") || c.names[text]) names = text.split(";").map((n) => n.trim()).filter(Boolean);
      else if (text && Array.from(text).every((ch) => c.letters[ch])) return Array.from(text).map((ch) => c.letters[ch]);
      else throw new Error("samplers " + JSON.stringify(value) + " is neither a preset, a stage name nor llama.cpp's letters");
    } else {
      names = Array.from(value);
    }
    return names.map((n) => {
      const key = String(n).trim().toLowerCase();
      if (!c.names[key]) throw new Error("samplers names an unknown stage " + JSON.stringify(n));
      return c.names[key];
    });
  }

  // logit_bias as [[key, bias], ...]: an object's whole-number keys are token ids.
  function biasPairs(value) {
    if (Array.isArray(value)) return value.map((p) => [p[0], p[1]]);
    return Object.entries(value || {}).map(([k, b]) => [/^-?\d+$/.test(k.trim()) ? Number(k) : k, b]);
  }

  // A value typed or dragged into a control -> {value, message}: inside the control's range,
  // on its step, the setting's own type. message says what changed ("" when nothing did).
  function clampToControl(name, raw, previous) {
    const x = requireSchema().settings[name];
    if (!x) throw new Error("no setting " + name);
    if (x.kind === "bool") return { value: Boolean(raw), message: "" };
    if (x.kind !== "float" && x.kind !== "int") return clampList(name, x, raw, previous);
    const [lo, hi, step] = x.control;
    const text = String(raw).trim();
    const n = readNumber(text);
    const keep = previous === undefined ? x.default : previous;
    if (!Number.isFinite(n)) return { value: keep, message: notANumber(text, x.label, fmt(keep)) };
    let v = Math.min(Math.max(n, lo), hi);
    v = lo + Math.round((v - lo) / step) * step;
    const digits = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
    v = Number(v.toFixed(digits));
    if (x.kind === "int") v = Math.round(v);
    v = Math.min(Math.max(v, lo), hi);
    let message = "";
    if (n < lo) message = fmt(n) + " is below the minimum " + fmt(lo) + ": using " + fmt(v) + ".";
    else if (n > hi) message = fmt(n) + " is above the maximum " + fmt(hi) + ": using " + fmt(v) + ".";
    else if (v !== n) message = fmt(n) + " is between steps of " + fmt(step) + ": using " + fmt(v) + ".";
    return { value: v, message };
  }

  // A number as people type it: "1.5", " 1.5 ", and with a decimal comma "1,5" (one comma, no
  // point). Anything else that Number() cannot read, and an empty box, is NaN.
  function readNumber(raw) {
    let text = String(raw).trim();
    if (/^[+-]?\d*,\d+$/.test(text)) text = text.replace(",", ".");
    return text === "" ? NaN : Number(text);
  }
  // The one wording for a box that holds no number, for every number box on the page.
  function notANumber(text, label, kept) {
    const what = text === "" ? "No number typed" : "“" + text.slice(0, 20) + "” is not a number";
    return what + ": " + label + " stays " + kept + ".";
  }

  // A list or object setting from a link or a preset: JSON text, or for the chain its letters,
  // names or a preset. A value the page cannot read keeps the previous one and says so.
  function clampList(name, x, raw, previous) {
    const keep = previous === undefined ? x.default : previous;
    let value = raw;
    if (typeof value === "string") {
      try { value = JSON.parse(value); } catch (e) { /* letters, names or a preset */ }
    }
    try {
      if (name === "samplers") parseChain(value);
      else if (name === "logit_bias") {
        // Text needs the tokenizer, which the page does not have: ids only here.
        if (biasPairs(value).some(([k]) => typeof k !== "number")) throw new Error("the page takes token ids, not text");
      }
      else if (!Array.isArray(value) || !value.every((v) => typeof v === "string")) throw new Error("it is not a list of texts");
    } catch (e) {
      return { value: keep, message: x.label + ": kept as it was, since " + e.message + "." };
    }
    return { value, message: "" };
  }

  function fmt(v) {
    return typeof v === "number" ? String(Number(v.toPrecision(12))) : String(v);
  }

  const same = (a, b) => (typeof a === "object" && a !== null ? JSON.stringify(a) === JSON.stringify(b) : a === b);

  function changed(stage, s) {
    return stage.settings.some((n) => !same(s[n], schema.settings[n].default));
  }

  // sampling.chain_of: logit bias first when set; with mirostat, temperature then mirostat;
  // else the `samplers` order (duplicates included) with temperature moved last by
  // temperature_last. Off stages that are not `listed` are left out.
  function stageOrder(s) {
    return stagePlan(s).map((e) => e.stage);
  }
  // stageOrder with each stage's place among chainOrder's entries (`pos`, the chain editor's
  // card), or -1 for a stage the chain does not list (logit bias, mirostat's pair).
  function stagePlan(s) {
    const byName = {};
    for (const st of requireSchema().stages) byName[st.name] = st;
    const head = s.logit_bias.length ? [{ stage: byName.logit_bias, pos: -1 }] : [];
    if (s.mirostat) return head.concat([{ stage: byName.temperature, pos: -1 }, { stage: byName.mirostat, pos: -1 }]);
    const stages = chainOrder(s).map((e, pos) => ({ stage: byName[e.name], pos }))
      .filter((e) => e.stage.listed || changed(e.stage, s));
    return head.concat(stages);
  }

  // The `samplers` entries in the order they run, off ones included: [{index, name, moved}],
  // index into s.samplers; `moved` when a switch (temperature_last) sends the stage last.
  // stageOrder walks this; the chain editor (chain.js) draws its cards from it.
  function chainOrder(s) {
    const byName = {};
    for (const st of requireSchema().stages) byName[st.name] = st;
    const all = s.samplers.map((name, index) => {
      const st = byName[name];
      return { index, name, moved: Boolean(st.last_when && s[st.last_when]) };
    });
    return all.filter((e) => !e.moved).concat(all.filter((e) => e.moved));
  }

  function isActive(stage, s, context) {
    return changed(stage, s) && (context.length > 0 || !stage.needs_context);
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
    const raw = P.raw || decodeLogits(P.logits);
    const V = raw.length;
    const order = new Uint32Array(V);
    for (let i = 0; i < V; i++) order[i] = i;
    order.sort(byValueDesc(raw));
    return Object.assign(P, { raw, order, V, dryHeads: P.dryHeads || P.dry_heads });
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

  // p[id] for the ids in `ids`, under the softmax over `live` (0 for an id no longer live).
  const TRACE_BARS = 16;
  function probsOf(x, live, ids) {
    if (!live.length) return ids.map(() => 0);
    let m = -Infinity;
    for (const id of live) if (x[id] > m) m = x[id];
    let sum = 0;
    for (const id of live) sum += Math.exp(x[id] - m);
    return ids.map((id) => (x[id] === -Infinity ? 0 : Math.exp(x[id] - m) / sum));
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

  function ngramBan(w, s, P) {
    const banned = bannedNgramTokens(P.context, s.no_repeat_ngram_size);
    if (!banned.length) return {};
    const bannedSet = new Set(banned);
    w.drop((id) => !bannedSet.has(id));
    return { n: s.no_repeat_ngram_size };
  }

  // After a stage moved logits (not only removed some): the order again, all ids for the
  // chart's display, the live ones for the filters.
  function resort(w) {
    const liveSet = new Set(w.live);
    const all = Array.from(w.display).sort(byValueDesc(w.x));
    w.display = Uint32Array.from(all);
    w.live = all.filter((id) => liveSet.has(id));
  }

  // Probabilities of the live ids in `live` order (descending, ties by lower id).
  function liveProbs(w, P) {
    const p = softmaxLive(w.x, w.live, P.V);
    return w.live.map((id) => p[id]);
  }

  const pct = (p) => (100 * p).toFixed(1) + "%";
  const fmtP = (p) => (p >= 0.001 || p === 0 ? p.toFixed(3) : p.toExponential(1));

  /* ---- the stages: apply(w, s) changes the working set w; reason(why, id, s) says in words
     why the stage removed token id (for the chart's hover) ---- */

  const STAGE_FUNCTIONS = {
    penalties: {
      // HF repetition penalty, then OpenAI's presence/frequency, then n-gram bans.
      apply(w, s, P) {
        const x = w.x;
        // warpers.penalty_window: -1 = the whole context, n = the last n, 0 = none.
        const n = s.penalty_last_n;
        const window = n < 0 ? P.context : n === 0 ? [] : P.context.slice(Math.max(0, P.context.length - n));
        const counts = new Map();
        for (const t of window) counts.set(t, (counts.get(t) || 0) + 1);
        const ctxIds = Array.from(counts.keys()).sort((a, b) => a - b);
        const moved = new Set(ctxIds);
        for (const id of ctxIds) {
          if (s.repetition_penalty !== 1.0) {
            const v = x[id];
            x[id] = v < 0 ? v * s.repetition_penalty : v / s.repetition_penalty;
          }
          if (s.presence_penalty || s.frequency_penalty) {
            x[id] -= s.presence_penalty + s.frequency_penalty * counts.get(id);
          }
        }
        if (!w.untouched) { resort(w); return ngramBan(w, s, P); }
        // New order: untouched ids keep theirs; the moved ones are merged back in.
        const cmp = byValueDesc(x);
        const movedSorted = ctxIds.slice().sort(cmp);
        const merged = new Uint32Array(P.V);
        let a = 0, b = 0, k = 0;
        const rest = w.display;
        while (k < P.V) {
          while (a < rest.length && moved.has(rest[a])) a++;
          if (a < rest.length && (b >= movedSorted.length || cmp(rest[a], movedSorted[b]) < 0)) {
            merged[k++] = rest[a++];
          } else {
            merged[k++] = movedSorted[b++];
          }
        }
        w.display = merged;
        w.live = Array.from(merged);
        return ngramBan(w, s, P);
      },
      reason: (why, id, s) => "would repeat a " + s.no_repeat_ngram_size + "-gram already in the text",
    },
    temperature: {
      apply(w, s, P) {
        let T = s.temperature, entropyShare = null;
        if (s.dynatemp_range > 0 && !s.mirostat) {
          // llama.cpp's temp_ext: T within [T - range, T + range] by the normalised entropy.
          if (w.live.length <= 1) return {};
          const p = liveProbs(w, P);
          let h = 0;
          for (const q of p) if (q > 0) h -= q * Math.log(q);
          const low = Math.max(0, T - s.dynatemp_range), high = T + s.dynatemp_range;
          entropyShare = h / Math.log(w.live.length);
          T = low + (high - low) * Math.pow(entropyShare, s.dynatemp_exponent);
        }
        if (T === 0) {
          // argmax: the first maximal id, which heads `live` (ties by lower id).
          const top = w.live[0];
          w.drop((id) => id === top);
        } else {
          for (const id of w.live) w.x[id] = w.x[id] / T;
          fixTies(w.live, w.x); // division can round two logits to one value
        }
        return { T, dynamic: s.dynatemp_range > 0 && !s.mirostat, entropyShare };
      },
      reason: () => "T = 0 keeps only the most likely token (argmax)",
    },
    top_k: {
      apply(w, s, P) {
        const k = Math.min(s.top_k, P.V);
        if (k > w.live.length) return {};
        const kth = w.x[w.live[k - 1]];
        const rank = new Map(w.live.map((id, i) => [id, i + 1]));
        w.drop((id) => w.x[id] >= kth); // ties with the k-th logit stay
        return { k, rank };
      },
      reason: (why, id) => "rank " + why.rank.get(id) + " > k = " + why.k,
    },
    top_p: {
      // HF: sort ascending, drop the low tail whose cumulative mass stays within 1 - p.
      apply(w, s, P) {
        const p = softmaxLive(w.x, w.live, P.V);
        // Reversing `live` gives ascending values with ties by higher id first; fixTies puts
        // each tie run back in id order, as sampling.py's stable ascending sort has them (of
        // tokens tied at the cut, the higher ids are kept).
        const asc = fixTies(w.live.slice().reverse(), w.x);
        const remove = new Set();
        let cum = 0;
        for (let i = 0; i < asc.length; i++) {
          cum += p[asc[i]];
          if (cum <= 1 - s.top_p && i < asc.length - 1) remove.add(asc[i]);
        }
        const above = new Map();
        let down = 0;
        for (const id of w.live) { above.set(id, down); down += p[id]; }
        w.drop((id) => !remove.has(id));
        return { p: s.top_p, above, probs: p };
      },
      reason: (why, id, s) => "the tokens above it already hold " + pct(why.above.get(id)) + " ≥ p = " + s.top_p,
    },
    min_p: {
      apply(w, s, P) {
        const p = softmaxLive(w.x, w.live, P.V);
        let top = w.live[0], pmax = -1;
        for (const id of w.live) if (p[id] > pmax) { pmax = p[id]; top = id; }
        const threshold = s.min_p * pmax;
        w.drop((id) => id === top || !(p[id] < threshold));
        return { threshold, probs: p };
      },
      reason: (why, id) => "p = " + fmtP(why.probs[id]) + " < min-p × top = " + fmtP(why.threshold),
    },
    typical_p: {
      apply(w, s, P) {
        const x = w.x, live = w.live;
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
        const p = softmaxLive(x, live, P.V);
        let cum = 0, below = 0;
        for (const id of byGap) { cum += p[id]; if (cum < s.typical_p) below++; }
        // `below` counts the prefix with cumulative < mass; past every live id the cut is
        // +inf (sampling.py indexes into the -inf tail there) and nothing is removed.
        const cut = below < byGap.length ? gap.get(byGap[below]) : Infinity;
        const first = byGap[0];
        w.drop((id) => id === first || !(gap.get(id) > cut));
        return { entropy, lp, gap, cut };
      },
      reason(why, id) {
        const bits = (v) => (v / Math.LN2).toFixed(2);
        return "surprise " + bits(-why.lp.get(id)) + " bits is too far from the entropy " +
          bits(why.entropy) + " bits";
      },
    },
  };

  /* ---- the pipeline ---- */

  function transform(P, settings) {
    const s = normalise(settings);
    const V = P.V;
    const removedBy = new Int8Array(V).fill(-1);
    const plan = stagePlan(s);
    const stages = [];
    const why = {}; // per stage, what its hover explanation needs
    const w = { x: P.raw, live: Array.from(P.order), display: P.order, drop: null, untouched: true };
    let copied = false;
    for (let si = 0; si < plan.length; si++) {
      const stage = plan[si].stage;
      const active = isActive(stage, s, P.context);
      // trace: what the chain's cards draw (chain.js): the stage's input's top tokens, their
      // probability entering and leaving it, and the live count before and after.
      const entry = { name: stage.name, title: stage.title, colour: stage.colour, active, pos: plan[si].pos, trace: null };
      stages.push(entry);
      if (!active) continue;
      if (!copied) { w.x = Float64Array.from(w.x); copied = true; }
      w.drop = (keep) => {
        const kept = [];
        for (const id of w.live) { if (keep(id)) kept.push(id); else { w.x[id] = -Infinity; removedBy[id] = si; } }
        w.live = kept;
      };
      const top = w.live.slice(0, TRACE_BARS), nIn = w.live.length;
      const pIn = probsOf(w.x, w.live, top);
      const info = STAGE_FUNCTIONS[stage.name].apply(w, s, P);
      why[stage.name] = info;
      entry.trace = { top, pIn, pOut: probsOf(w.x, w.live, top), nIn, nOut: w.live.length, info };
      w.untouched = false;
    }
    const probs = softmaxLive(w.x, w.live, V);
    // sampling_order: probability descending, ties by lower id.
    const ranked = fixTies(w.live.slice(), probs);
    let entropy = 0, nKept = 0;
    for (const id of ranked) {
      const q = probs[id];
      if (q > 0) { entropy -= q * Math.log2(q); nKept++; }
    }
    return { settings: s, probs, order: ranked, nKept, removedBy, stages, why, display: w.display,
      logits: w.x, entropy };
  }

  // Why token id was removed, in words ("" if it was kept).
  function removalReason(R, id) {
    const si = R.removedBy[id];
    if (si < 0) return "";
    const name = R.stages[si].name;
    return STAGE_FUNCTIONS[name].reason(R.why[name] || {}, id, R.settings);
  }

  // pick_token: the first id in sampling order whose cumulative probability reaches u.
  // SamplingSettings.greedy: T = 0, unless dynamic temperature may lift T above 0.
  const isGreedy = (s) => s.temperature === 0 && (s.dynatemp_range === 0 || s.mirostat !== 0);

  function pick(result, u) {
    if (isGreedy(result.settings) || u === null || u === undefined) {
      return { token: result.order[0], greedy: isGreedy(result.settings) };
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
    TRACE_BARS, stagePlan,
    useSchema, schema: requireSchema, defaults, normalise, clampToControl, readNumber, notANumber, stageOrder, chainOrder, changed, prepare, transform, pick,
    removalReason, entropyOf, rawProbs, decodeLogits, bannedNgramTokens, STAGE_FUNCTIONS, fmt,
    parseChain, isGreedy,
    // for the stages in llama_stages.js
    helpers: { softmaxLive, resort, liveProbs, fmtP },
  };
})(typeof window !== "undefined" ? window : globalThis);

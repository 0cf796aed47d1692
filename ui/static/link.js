/* The address bar holds the view: the prompt, the model, the seed, the chat switch, every
   setting that differs from its default, and the text's token ids. Opening that link (or
   reloading the page, or coming back to a restarted server) rebuilds the same view.

   Token ids travel as LEB128 varints in base64url: about 2.7 characters a token for
   vocabularies under 16,384, about 4 for SmolLM2's 49,152. */
(function (global) {
  "use strict";
  const TRUE_WORDS = ["1", "true", "yes", "on"];
  const truthy = (raw) => TRUE_WORDS.includes(String(raw).toLowerCase());

  function encodeIds(ids) {
    const bytes = [];
    for (let v of ids) {
      do { let b = v & 0x7f; v >>>= 7; if (v) b |= 0x80; bytes.push(b); } while (v);
    }
    let bin = "";
    for (const b of bytes) bin += String.fromCharCode(b);
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function decodeIds(s) {
    try {
      const bin = atob(s.replace(/-/g, "+").replace(/_/g, "/"));
      const out = [];
      let v = 0, shift = 0;
      for (let i = 0; i < bin.length; i++) {
        const b = bin.charCodeAt(i);
        v |= (b & 0x7f) << shift;
        if (b & 0x80) { shift += 7; if (shift > 28) return []; } else { out.push(v >>> 0); v = 0; shift = 0; }
      }
      return out;
    } catch (e) {
      return [];
    }
  }

  /* view: {prompt, model, seed, chat, settings, defaults, ids}; schema: the sampling table. */
  function query(schema, view) {
    const q = new URLSearchParams();
    if (view.prompt) q.set("prompt", view.prompt);
    if (view.model) q.set("model", view.model);
    q.set("seed", String(view.seed));
    if (view.chat) q.set("chat", "1");
    const s = view.settings, d = view.defaults;
    for (const name of Object.keys(schema.settings)) {
      // The list settings (the chain, DRY's breakers, logit biases) travel as JSON.
      const list = typeof s[name] === "object" && s[name] !== null;
      if (list ? JSON.stringify(s[name]) === JSON.stringify(d[name]) : s[name] === d[name]) continue;
      q.set(name, typeof s[name] === "boolean" ? "1" : list ? JSON.stringify(s[name]) : String(s[name]));
    }
    if (view.ids.length) q.set("t", encodeIds(view.ids));
    return q;
  }

  /* What a link asks for, still raw: the controls check each value as if it were typed. */
  function read(schema, search) {
    const q = new URLSearchParams(search);
    const settings = {};
    for (const name of Object.keys(schema.settings)) {
      if (!q.has(name)) continue;
      const raw = q.get(name);
      settings[name] = schema.settings[name].kind === "bool" ? truthy(raw) : raw;
    }
    return {
      settings,
      prompt: q.has("prompt") ? q.get("prompt") : null,
      chat: q.has("chat") ? truthy(q.get("chat")) : null,
      seed: q.has("seed") ? q.get("seed") : null,
      model: q.get("model") || "",
      ids: q.has("t") ? decodeIds(q.get("t")) : [],
    };
  }

  /* Keeps the address bar in step with the view; currentQuery() builds the query, and the bar
     is written only while ready() says the view is one to keep. */
  function create(currentQuery, toast, ready) {
    let timer = null;
    function schedule() {
      clearTimeout(timer);
      // Browsers throttle history.replaceState; one update after things rest is enough.
      timer = setTimeout(() => {
        if (!ready()) return;
        try { history.replaceState(null, "", "?" + currentQuery().toString()); } catch (e) { /* sandboxed page */ }
      }, 300);
    }
    function copy() {
      const url = location.origin + location.pathname + "?" + currentQuery().toString();
      const done = () => toast("Link copied: it opens this prompt, these settings and this text.", "note");
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(url).then(done, () => window.prompt("Copy this link:", url));
      } else {
        window.prompt("Copy this link:", url);
      }
    }
    return { schedule, copy };
  }

  global.DPLink = { encodeIds, decodeIds, query, read, create };
})(window);

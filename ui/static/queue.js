/* The page's actions, in order: everything that changes the session goes to the server as
   one action through the component's `trigger(name, data)`.

   Actions go one at a time: the next waits for the `ack` of the last, so they reach the
   session in the order they were made (a later payload carries the ack of its action). While
   Generate runs, Step, Undo, Reset, a new prompt, another model and Stop interrupt it at once
   and say how many generated tokens the page shows (`keep`): the server cuts the session back
   to exactly those, so what you saw is what you have. An ack that never comes (a server
   restarted under the page) frees the queue after ACK_TIMEOUT_MS. */
(function (global) {
  "use strict";
  const INTERRUPTS = new Set(["prompt", "reset", "model", "step", "pick", "undo", "rewind", "stop", "goto"]);
  const ACK_TIMEOUT_MS = 20000;
  const MAX_QUEUED = 8;

  /* st: the page's shared state ({pending, queue, nextId, generating, stopping});
     trigger: the component's; hooks: {ready(name) -> bool, kept() -> number of generated
     tokens shown, setGenerating(on)}. */
  function create(st, trigger, hooks) {
    function act(name, data) {
      if (!hooks.ready(name)) return;
      const msg = Object.assign({}, data || {}, { id: st.nextId++ });
      if (st.generating && INTERRUPTS.has(name)) {
        msg.keep = hooks.kept(); // the server keeps exactly what this page shows
        st.stopping = true;
        st.generating = false;
        hooks.setGenerating(false);
        trigger(name, msg);
        st.pending = { id: msg.id, at: performance.now() };
        return;
      }
      if (st.pending && performance.now() - st.pending.at < ACK_TIMEOUT_MS) {
        if (st.queue.length < MAX_QUEUED) st.queue.push([name, msg]);
        return;
      }
      send(name, msg);
    }
    function send(name, msg) {
      st.pending = { id: msg.id, at: performance.now() };
      if (name === "generate") { st.generating = true; st.stopping = false; hooks.setGenerating(true); }
      trigger(name, msg);
    }
    function acked(id) {
      if (!st.pending || id !== st.pending.id) return;
      st.pending = null;
      const next = st.queue.shift();
      if (next) send(next[0], next[1]);
    }
    return { act, acked };
  }

  global.DPQueue = { create, INTERRUPTS };
})(window);

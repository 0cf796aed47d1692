/* Getting a tab's session back when the server behind it restarted: a worker that
   deploy/cluster.py started again, or one `python app.py` restarted by hand.

   A session lives in one server process's memory, but the page holds all it is made of: the
   link's state (prompt, model, settings, seed, the text's token ids). So when the server no
   longer knows the tab, the page opens it there again (app.js's start(ids)): the same text,
   the same settings, the same next-token chart. Only a Generate that was running is lost; the
   page says it was stopped, and how many of its tokens it kept.

   How a restart shows:
   - Gradio's app id (GET gradio_api/app_id, a random number drawn by each server process)
     differs from the one this page was built with. Looked at every POLL_MS, at once when the
     tab is shown again, and when an action goes unanswered for SLOW_MS. While the server does
     not answer, actions are held here and sent once it is back, after the rebuild.
   - The server answers an action with `lost` (ui/views.py): it holds no session for this tab.
   - Gradio's own client sees the event stream of an action in flight break. It then drops
     every later trigger and reloads the page once the server answers again (Gradio 6's
     Blocks: "Connection Lost"). The reloaded page starts from the link like any other; a note
     left in sessionStorage on `pagehide` lets it say what happened and send the actions the
     old page never had answered.
   app.js calls watch() once and sends every action through its `send`. */
(function (global) {
  "use strict";
  const POLL_MS = 5000, DOWN_POLL_MS = 1000, SLOW_MS = 3000;
  const NOTE = "dp-reconnect", NOTE_MAX_AGE_MS = 10 * 60 * 1000;
  // Never sent a second time: a start is replaced by the rebuild's own; a Generate that had
  // reached the server was running, and is reported as stopped instead; a Stop has nothing left.
  const NOT_AGAIN = new Set(["start", "generate", "stop"]);

  const clock = () => new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const plural = (n, word) => n + " " + word + (n === 1 ? "" : "s");

  function restoredText(why, stopped) {
    return (why === "restarted" ? "The server was restarted and had lost this tab's session"
      : "The server no longer held this tab's session (it was restarted, or it closed the session after a long pause)") +
      ": it was rebuilt from this page, with the same text, settings and chart." + (stopped >= 0 ? " The Generate " +
      "that was running was stopped after " + plural(stopped, "token") + "; press Generate to go on." : "");
  }

  /* st: app.js's state (seq, pending, queue, generating, live, nextId).
     opts: trigger(name, msg) (the component's), act(name, data), start() (opens the session
     from what the page shows), shown() (generated tokens on the page), stopGenerating(),
     status(text, kind). Returns { send(name, msg), payload(D) -> true if it took D }. */
  function watch(st, opts) {
    const config = global.gradio_config || {};
    let appId = config.app_id === undefined ? null : config.app_id; // the server behind the tab now
    let builtOn = appId; // the server that holds the session the page shows
    let up = true, looking = false, timer = null;
    let recovering = null; // { why, stopped, startId, again } while a rebuild is on its way
    const unanswered = new Map(); // msg id -> [name, msg]: sent, no answer yet
    const held = []; // [name, msg] made while the server did not answer
    let genFrom = 0, genSent = false; // tokens shown when the last Generate was sent; did it go?

    // A page Gradio reloaded after its server changed: the old page left a note (pagehide).
    const note = readNote();
    if (note && appId !== null && note.app !== null && note.app !== appId) {
      recovering = { why: "restarted", stopped: note.stopped, startId: null, again: note.again };
    }

    function send(name, msg) {
      if (name === "generate") { genFrom = opts.shown(); genSent = false; }
      if (recovering && name === "start" && recovering.startId === null) recovering.startId = msg.id;
      if (!up && !(recovering && name === "start")) { held.push([name, msg]); return; }
      if (name === "generate") genSent = true;
      unanswered.set(msg.id, [name, msg]);
      opts.trigger(name, msg);
      setTimeout(() => { if (unanswered.has(msg.id)) look(); }, SLOW_MS);
    }

    function payload(D) {
      if (D.lost && st.live) { recover("lost"); return true; } // a page without a session shows the error
      if (D.ack != null) unanswered.delete(D.ack);
      if (recovering && D.ack != null && D.ack === recovering.startId) {
        const { why, stopped, again } = recovering;
        recovering = null;
        if (D.text) {
          builtOn = appId;
          // After app.js has shown this payload (whose status line would overwrite it).
          setTimeout(() => opts.status(restoredText(why, stopped), "note"), 0);
          for (const [name, msg] of again || []) opts.act(name, fresh(msg));
        }
      }
      return false;
    }

    /* The server behind this tab has no session for it: open it there again, then send what
       was not answered, in order, before anything queued after it. A `lost` answer while a
       rebuild is on its way changes nothing; a new server (why "restarted") starts over. */
    function recover(why) {
      if (why === "lost" && recovering && unanswered.has(recovering.startId)) return;
      // Which server answered is not known yet: the next look takes its id as the one that
      // holds the rebuilt session, instead of seeing a change and rebuilding a second time.
      if (why === "lost") appId = null;
      const heldGenerate = held.some(([name]) => name === "generate");
      const stopped = recovering ? recovering.stopped
        : st.generating && genSent && !heldGenerate ? Math.max(0, opts.shown() - genFrom) : -1;
      const again = pending();
      unanswered.clear();
      held.length = 0;
      const queued = st.queue.splice(0);
      st.seq = 0; // the new server numbers its payloads from 1
      st.pending = null;
      st.stopping = false;
      st.typing = false; // the start takes the prompt box as it is
      if (st.generating) { st.generating = false; opts.stopGenerating(); }
      recovering = { why, stopped, startId: null, again: [] };
      opts.start();
      for (const [name, msg] of again) opts.act(name, fresh(msg));
      st.queue.push(...queued);
    }

    // What the page did that the server never answered, oldest first, to be sent again.
    function pending() {
      const list = [...unanswered.values()].filter(([name]) => !NOT_AGAIN.has(name))
        .concat(held.filter(([name]) => name !== "start" && name !== "stop"));
      return list.concat(recovering ? recovering.again || [] : []);
    }
    function fresh(msg) {
      const data = Object.assign({}, msg);
      delete data.id; // act() numbers it anew
      delete data.keep; // the rebuilt session holds exactly what the page shows
      return data;
    }

    async function look() {
      if (looking) return;
      looking = true;
      clearTimeout(timer);
      let id = null;
      try {
        const r = await fetch("gradio_api/app_id", { cache: "no-store" });
        if (r.ok) id = (await r.json()).app_id;
      } catch (e) { /* not answering: id stays null */ }
      looking = false;
      if (id === null || id === undefined) {
        if (up) opts.status("The server stopped answering at " + clock() + ". This tab reconnects by itself " +
          "when it is back; what you do meanwhile is kept and sent then.", "error");
        up = false;
      } else {
        const was = up;
        up = true;
        if (appId === null) appId = builtOn = id;
        if (id !== appId) { appId = id; recover("restarted"); }
        else if (!was) {
          opts.status("", "note"); // the same server: only the way to it had broken
          for (const [name, msg] of held.splice(0)) send(name, msg);
        }
      }
      timer = setTimeout(look, up ? POLL_MS : DOWN_POLL_MS);
    }

    function readNote() {
      try {
        const raw = sessionStorage.getItem(NOTE);
        sessionStorage.removeItem(NOTE);
        const n = raw && JSON.parse(raw);
        return n && Date.now() - n.at < NOTE_MAX_AGE_MS ? n : null;
      } catch (e) { return null; } // storage refused (a sandboxed page): no note
    }
    global.addEventListener("pagehide", () => {
      const stopped = recovering ? recovering.stopped : st.generating && genSent ? Math.max(0, opts.shown() - genFrom) : -1;
      const again = pending().concat(st.queue.filter(([name]) => !NOT_AGAIN.has(name)));
      try {
        sessionStorage.setItem(NOTE, JSON.stringify({ app: builtOn, at: Date.now(), stopped, again }));
      } catch (e) { /* storage refused: the reloaded page just opens the link */ }
    });
    document.addEventListener("visibilitychange", () => { if (!document.hidden) look(); });
    global.addEventListener("online", look);
    timer = setTimeout(look, POLL_MS);
    return { send, payload };
  }

  global.DPReconnect = { watch, restoredText };
})(window);

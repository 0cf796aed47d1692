/* The playground's keys, for a class that works from the keyboard alone:

     S or →  Step            U or ←  Undo            G  Generate       Esc  Stop
     1–9     pick the n-th bar
     R       Rewind to the step being looked back at     B  back to the next token

   Keys never act while the focus is in a box that takes typing, or with Ctrl, Alt or Meta
   held (Alt+arrows move the chain's cards). */
(function (global) {
  "use strict";

  /* element: the playground (keys stop when it leaves the page); on: {step, undo, generate,
     escape, pickNth(n), rewind, back}; each returns false when it did nothing. */
  function listen(element, on) {
    document.addEventListener("keydown", (ev) => {
      if (ev.ctrlKey || ev.metaKey || ev.altKey || !element.isConnected) return;
      const t = ev.target;
      const typing = t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName));
      if (ev.key === "Escape") { if (on.escape() !== false) ev.preventDefault(); return; }
      if (typing) return;
      const k = ev.key.toLowerCase();
      let done;
      if (k === "s" || ev.key === "ArrowRight") done = on.step();
      else if (k === "u" || ev.key === "ArrowLeft") done = on.undo();
      else if (k === "g") done = on.generate();
      else if (k === "r") done = on.rewind();
      else if (k === "b") done = on.back();
      else if (/^[1-9]$/.test(ev.key)) done = on.pickNth(Number(ev.key));
      else return;
      if (done !== false) ev.preventDefault();
    });
  }

  global.DPKeys = { listen };
})(window);

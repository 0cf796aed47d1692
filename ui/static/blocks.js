/* Probability blocks, in their panel below the chart: the likely futures of the text, each a
   block as tall as its chance (Loom's "block multiverse").

   Expand asks the server (the 'blocks' action; model/blocks.py expands breadth-first, one
   batched forward per level). The view has a column per depth. The zoomed block fills the
   first column and the whole height; below it each block's height is its path probability as
   a share of the zoomed block's, so a block's children (and a grey "other" for the tokens not
   shown) split exactly its own height. A block's probability is the one Step draws with under
   the chart's settings; the label shows the token and its probability after its parent, the
   colour is the text's colour for that probability.

   Click or tap a block to zoom in: it fills the height and its futures get the room. Click
   the zoomed block (first column), "Out" or Esc to go back out. Keys, with the focus on a
   block: ↑ ↓ the block above or below in its column, → its most likely child, ← its parent,
   Enter or Space zooms, Home the text. "Open as text" makes the zoomed block's path the
   session's text (the server's open_path, as a continuation opens). "Expand from here" asks
   for the zoomed block's own futures, to the depth and threshold of the form (the threshold
   then counts from the block), and they replace what was below it.

   An expansion is plain data (ui/blocks_view.py):
     {settings, base, after, budget_hit, forwards, nodes: [{id, parent, token, label, p, raw_p,
      path_p, depth, children, other, ends, path}]}   node 0 is the text itself */
(function (global) {
  "use strict";
  const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
  const pct = (x) => (x >= 0.995 ? (100 * x).toFixed(0) : x >= 0.1 ? (100 * x).toFixed(0) : x >= 0.01 ? (100 * x).toFixed(1)
    : (100 * x).toPrecision(2)) + "%";
  // The zoomed block's column is narrower than the others (FIRST_COLUMN of one): its futures
  // need the room more.
  const LABEL_PX = 16, TWO_LINES_PX = 34, MIN_COLUMN_PX = 76, FIRST_COLUMN = 0.6;

  // box: the panel's body; limits: the server's (ui/actions.py Limits, with block_defaults);
  // hooks.expand(options) and hooks.open(ids) send the actions.
  function mount(box, limits, hooks) {
    const d = limits.block_defaults;
    const st = { B: null, zoom: 0, focus: 0 };
    global.DPBlocks.state = st; // for tests and benchmarks that read what the panel shows
    const field = (cls, label, value, min, max, step) => '<label>' + label + ' <input type="number" class="dp-num ' + cls +
      '" min="' + min + '" max="' + max + '" step="' + step + '" value="' + value + '"></label>';
    box.innerHTML =
      '<div class="dp-blocks-form" role="group" aria-label="probability blocks settings">' +
      field("dp-blocks-depth", "depth", d.depth, 1, limits.block_depth, 1) +
      field("dp-blocks-top", "children", d.top, 1, limits.block_children, 1) +
      field("dp-blocks-threshold", "down to p", d.threshold, limits.block_threshold, 1, "any") +
      field("dp-blocks-nodes", "at most", d.nodes, 1, limits.block_nodes, 1) + " blocks " +
      '<button type="button" class="dp-btn dp-primary dp-blocks-go">Expand</button></div>' +
      '<p class="dp-muted dp-blocks-help">From the text as it is now, the most likely next tokens, then theirs, ' +
      "to the depth, keeping a path while its probability (the product of its tokens') is at least the " +
      "threshold. Probabilities are the chart's: what Step draws with these settings. Limits: depth " +
      limits.block_depth + ", " + limits.block_children + " children per block, " + limits.block_nodes +
      " blocks, p ≥ " + limits.block_threshold + ".</p>" +
      '<div class="dp-blocks-out" aria-live="polite" hidden>' +
      '<div class="dp-blocks-bar"><button type="button" class="dp-btn dp-blocks-out-btn">← Out</button>' +
      '<span class="dp-blocks-crumbs"></span>' +
      '<button type="button" class="dp-btn dp-blocks-here">Expand from here</button>' +
      '<button type="button" class="dp-btn dp-primary dp-blocks-open">Open as text</button></div>' +
      '<div class="dp-blocks-view" role="group" aria-label="blocks: arrows move, Enter zooms, Esc zooms out">' +
      '<div class="dp-blocks-canvas"></div></div>' +
      '<p class="dp-muted dp-blocks-summary"></p><p class="dp-blocks-stale" hidden></p></div>';
    const $ = (sel) => box.querySelector(sel);
    const view = $(".dp-blocks-view"), canvas = $(".dp-blocks-canvas");

    function options() {
      return {
        depth: Number($(".dp-blocks-depth").value), top: Number($(".dp-blocks-top").value),
        threshold: Number($(".dp-blocks-threshold").value), nodes: Number($(".dp-blocks-nodes").value),
      };
    }
    function expand(from) {
      box.classList.add("dp-blocks-busy");
      $(".dp-blocks-out").setAttribute("aria-busy", "true");
      hooks.expand(Object.assign(options(), { from: from || [] }));
    }
    $(".dp-blocks-go").addEventListener("click", () => expand());
    $(".dp-blocks-here").addEventListener("click", () => { if (st.B && st.zoom > 0) expand(st.B.nodes[st.zoom].path); });
    $(".dp-blocks-out-btn").addEventListener("click", () => zoomOut(true));
    $(".dp-blocks-open").addEventListener("click", () => {
      const B = st.B;
      if (B && st.zoom > 0) hooks.open(B.base.concat(B.nodes[st.zoom].path));
    });
    $(".dp-blocks-form").addEventListener("keydown", (ev) => {
      // Enter in a box expands, as a form would; the page's own keys stay out of the boxes.
      if (ev.key === "Enter" && ev.target.matches("input")) { ev.preventDefault(); expand(); }
      if (ev.target.matches("input")) ev.stopPropagation();
    });

    /* ---- drawing: the zoomed block in the first column, its subtree to the right ---- */
    function subtreeDepth(id) {
      const n = st.B.nodes[id];
      let deepest = n.depth;
      for (const c of n.children) deepest = Math.max(deepest, subtreeDepth(c));
      return deepest;
    }
    function words(n) {
      return n.id === 0 ? "the text now" : JSON.stringify(n.label);
    }
    function aria(n) {
      if (n.id === 0) return "the text now; its likely futures follow";
      return words(n) + ": " + pct(n.p) + " after " + words(st.B.nodes[n.parent]) + ", path " + pct(n.path_p) +
        " (model's own " + pct(n.raw_p) + ")" + (n.ends ? ", ends the text" : "") +
        (n.id === st.zoom ? ", zoomed in: Enter zooms out" : n.children.length ? ", " + n.children.length + " futures" : "");
    }
    function block(n, col, y, h, cw) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "dp-block" + (n.id === st.zoom ? " dp-block-zoomed" : "") + (n.ends ? " dp-block-ends" : "");
      b.dataset.node = n.id;
      b.tabIndex = n.id === st.focus ? 0 : -1;
      b.style.cssText = "left:" + cw.left(col) + "px;top:" + y.toFixed(2) + "px;width:" + (cw.width(col) - 2) + "px;height:" +
        Math.max(1, h - 1).toFixed(2) + "px;background:" + (n.id === 0 ? "#e5e7eb" : global.DPText.colour(n.p));
      b.setAttribute("aria-label", aria(n));
      b.title = aria(n);
      if (h >= LABEL_PX) {
        const name = document.createElement("span");
        name.className = "dp-block-tok";
        name.textContent = n.id === 0 ? "the text" : n.label;
        b.appendChild(name);
        if (n.id !== 0) {
          const p = document.createElement("small");
          p.textContent = pct(n.p);
          b.appendChild(p);
        }
        if (h >= TWO_LINES_PX) b.classList.add("dp-block-tall");
      }
      canvas.appendChild(b);
    }
    function draw() {
      const B = st.B, Z = B.nodes[st.zoom];
      canvas.textContent = "";
      const cols = subtreeDepth(st.zoom) - Z.depth + 1;
      const colW = Math.max(MIN_COLUMN_PX, Math.floor(view.clientWidth / (cols - 1 + FIRST_COLUMN)));
      const firstW = Math.floor(FIRST_COLUMN * colW);
      const cw = { left: (col) => (col === 0 ? 0 : firstW + (col - 1) * colW), width: (col) => (col === 0 ? firstW : colW) };
      const H = view.clientHeight;
      canvas.style.width = cw.left(cols) + "px";
      canvas.style.height = H + "px";
      block(Z, 0, 0, H, cw);
      // Children split their parent's height by their probability after it (path_p / parent's).
      const work = [[Z, 0, H]];
      while (work.length) {
        const [n, y0, h] = work.pop();
        const col = n.depth - Z.depth + 1;
        let y = y0;
        for (const c of n.children) {
          const ch = h * B.nodes[c].p;
          block(B.nodes[c], col, y, ch, cw);
          work.push([B.nodes[c], y, ch]);
          y += ch;
        }
        if (n.other !== null && n.other > 0 && n.path_p > 0) {
          const oh = h * n.other / n.path_p;
          const o = document.createElement("div");
          o.className = "dp-block-other";
          o.style.cssText = "left:" + cw.left(col) + "px;top:" + y.toFixed(2) + "px;width:" + (cw.width(col) - 2) + "px;height:" +
            Math.max(1, oh - 1).toFixed(2) + "px";
          o.title = "other tokens: " + pct(n.other / n.path_p) + " after " + words(n);
          if (oh >= LABEL_PX) o.textContent = "other " + pct(n.other / n.path_p);
          canvas.appendChild(o);
        }
      }
      crumbs();
    }
    function crumbs() {
      const B = st.B, parts = [];
      for (let id = st.zoom; id > 0; id = B.nodes[id].parent) parts.unshift("<code>" + esc(B.nodes[id].label) + "</code>");
      $(".dp-blocks-crumbs").innerHTML = "<span class=\"dp-muted\">…" + esc(B.after.slice(-24)) + "</span>" + parts.join("") +
        (st.zoom ? ' <span class="dp-muted">path ' + pct(B.nodes[st.zoom].path_p) + "</span>" : "");
      $(".dp-blocks-out-btn").disabled = st.zoom === 0;
      $(".dp-blocks-open").disabled = st.zoom === 0;
      $(".dp-blocks-here").disabled = st.zoom === 0 || B.nodes[st.zoom].ends;
    }

    function zoom(id, focus) {
      st.zoom = id;
      st.focus = id;
      draw();
      if (focus) el(id).focus({ preventScroll: true });
    }
    function zoomOut(focus) {
      if (st.B && st.zoom > 0) zoom(st.B.nodes[st.zoom].parent, focus);
    }
    const el = (id) => canvas.querySelector('.dp-block[data-node="' + id + '"]');
    function moveFocus(id) {
      const b = el(id);
      if (!b) return;
      for (const x of canvas.querySelectorAll('.dp-block[tabindex="0"]')) x.tabIndex = -1;
      b.tabIndex = 0;
      st.focus = id;
      b.focus({ preventScroll: true });
    }
    canvas.addEventListener("click", (ev) => {
      const b = ev.target.closest(".dp-block");
      if (!b) return;
      const id = Number(b.dataset.node);
      if (id === st.zoom) zoomOut(true); else zoom(id, true);
    });
    view.addEventListener("keydown", (ev) => {
      const b = ev.target.closest && ev.target.closest(".dp-block");
      if (!b || !st.B || ev.ctrlKey || ev.metaKey || ev.altKey) return;
      const B = st.B, n = B.nodes[Number(b.dataset.node)];
      // The blocks of a column, top to bottom, as drawn.
      const column = () => [...canvas.querySelectorAll(".dp-block")].filter((x) => x.style.left === b.style.left)
        .sort((x, y) => parseFloat(x.style.top) - parseFloat(y.style.top)).map((x) => Number(x.dataset.node));
      let to;
      if (ev.key === "ArrowUp" || ev.key === "ArrowDown") {
        const c = column(), at = c.indexOf(n.id);
        to = c[at + (ev.key === "ArrowUp" ? -1 : 1)];
      } else if (ev.key === "ArrowRight") to = n.children[0];
      else if (ev.key === "ArrowLeft") to = n.id === st.zoom ? undefined : n.parent;
      else if (ev.key === "Home") to = st.zoom;
      else if (ev.key === "Escape") { if (st.zoom === 0) return; zoomOut(true); }
      else return; // Enter and Space click the button itself: it zooms
      ev.preventDefault();
      ev.stopPropagation(); // the page's own keys (→ Step, ← Undo, Esc) are not for the blocks
      if (to !== undefined) moveFocus(to);
    });

    function show(B) {
      idle();
      const s = B.settings, from = s.from || [];
      const at = from.length ? findPath(from, B.base) : -1;
      if (from.length && at < 0) return; // the blocks it belongs under are gone (another text)
      if (from.length) graft(at, B); else { st.B = B; st.zoom = 0; st.focus = 0; }
      $(".dp-blocks-out").hidden = false;
      $(".dp-blocks-stale").hidden = true;
      const shown = B.nodes.length - 1;
      $(".dp-blocks-summary").textContent = shown + " block" + (shown === 1 ? "" : "s") + " to depth " + s.depth +
        (from.length ? " below the zoomed block (paths of p ≥ " + s.threshold + " of its own)" : ", paths of p ≥ " +
          s.threshold) + ", at most " + s.top + " children each (" + B.forwards + " forward" +
        (B.forwards === 1 ? "" : "s") + ")" + (B.budget_hit ? "; the limit of " + s.nodes + " blocks left some out" : "") +
        (shown === 0 ? ": no next token reaches the threshold. Lower it." : ".");
      draw();
    }
    // The block of the blocks shown whose path is `path` (after the same text), or -1.
    function findPath(path, base) {
      const B = st.B;
      if (!B || JSON.stringify(B.base) !== JSON.stringify(base)) return -1;
      const key = JSON.stringify(path);
      const n = B.nodes.find((x) => !x.gone && x.path.length === path.length && JSON.stringify(x.path) === key);
      return n ? n.id : -1;
    }
    // A block's own expansion replaces what was below it; the view stays zoomed on it.
    function graft(at, E) {
      const B = st.B, offset = B.nodes.length - 1;
      const id = (i) => (i === 0 ? at : offset + i);
      const old = B.nodes[at].children.slice();
      while (old.length) { const n = B.nodes[old.pop()]; n.gone = true; old.push(...n.children); }
      B.nodes[at].children = E.nodes[0].children.map(id);
      B.nodes[at].other = E.nodes[0].other;
      for (const n of E.nodes.slice(1)) {
        B.nodes.push(Object.assign({}, n, { id: id(n.id), parent: id(n.parent), children: n.children.map(id) }));
      }
      st.zoom = at;
      st.focus = at;
    }
    // An answer came without blocks (an error): the panel is not busy any more.
    function idle() {
      box.classList.remove("dp-blocks-busy");
      $(".dp-blocks-out").removeAttribute("aria-busy");
    }
    // Another prompt or model: the blocks belong to a text that is gone.
    function clear() {
      st.B = null;
      canvas.textContent = "";
      $(".dp-blocks-out").hidden = true;
    }
    // The text now holds `ids` (its generated tokens): say so where the blocks start elsewhere.
    function sync(ids) {
      const B = st.B, note = $(".dp-blocks-stale");
      const same = !B || JSON.stringify(B.base) === JSON.stringify(ids);
      note.hidden = same;
      if (!same) {
        note.textContent = "These blocks start after " + B.base.length + " generated token" + (B.base.length === 1 ? "" : "s") +
          "; the text has changed since. Open as text still opens the block's own path; Expand starts from the text as it is.";
      }
    }
    // The panel opened or the window changed: the columns take the new width.
    function redraw() { if (st.B && view.clientWidth) draw(); }
    box.closest("details").addEventListener("toggle", redraw);
    return { show, idle, clear, redraw, sync, state: st };
  }

  global.DPBlocks = { mount };
})(window);

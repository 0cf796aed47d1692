/* The tree of generations: every branch the session has made, drawn as rows of tokens.

   A row is a run of steps with one way on; where a node has several children, each child's
   run is a row of its own, indented under it. Each node shows its token and the probability
   it was chosen with; the current path is marked, the current node outlined. Click or tap a
   node to go there (the chart, the text and the settings follow). Keys, with the focus in
   the tree: ← parent, → child (the one last stood on, else the first), ↑ ↓ the previous and
   next sibling, Home the prompt; each moves there at once. Enter or Space on a node goes to
   it. The tree is sent with every snapshot (ui/tree_view.py):
     {current, path, nodes: [[parent, token, p], ...]}   node 0 is the prompt */
(function (global) {
  "use strict";

  /* box: the element to draw in; on: {goto(node), labelOf(token)}. */
  function mount(box, on) {
    let T = null, kids = [], lastChild = {};
    box.setAttribute("role", "tree");

    function button(id) {
      const [parent, token, p] = T.nodes[id];
      const b = document.createElement("button");
      b.type = "button";
      b.className = "dp-node";
      b.dataset.node = id;
      b.setAttribute("role", "treeitem");
      b.tabIndex = id === T.current ? 0 : -1;
      if (id === 0) {
        b.textContent = "prompt";
        b.classList.add("dp-node-root");
        b.setAttribute("aria-label", "the prompt");
      } else {
        const label = on.labelOf(token);
        const name = document.createElement("span");
        name.className = "dp-node-tok";
        name.textContent = label;
        const prob = document.createElement("small");
        prob.textContent = (100 * p).toFixed(p >= 0.1 ? 0 : 1) + "%";
        b.append(name, prob);
        b.setAttribute("aria-label", JSON.stringify(label) + ", p " + (100 * p).toFixed(1) + "%, after " +
          (parent === 0 ? "the prompt" : JSON.stringify(on.labelOf(T.nodes[parent][1]))) +
          (kids[id].length > 1 ? ", " + kids[id].length + " branches" : ""));
      }
      if (T.onPath.has(id)) b.classList.add("dp-on-path");
      if (id === T.current) { b.classList.add("dp-current"); b.setAttribute("aria-current", "true"); }
      return b;
    }

    // One run of single-child steps, then its branches under it (iterative: a tree may be
    // a thousand branch points deep).
    function draw() {
      box.textContent = "";
      const work = [[0, box]];
      while (work.length) {
        let [id, host] = work.pop();
        const row = document.createElement("div");
        row.className = "dp-tree-row";
        row.setAttribute("role", "group");
        host.appendChild(row);
        for (;;) {
          row.appendChild(button(id));
          if (kids[id].length !== 1) break;
          id = kids[id][0];
        }
        if (kids[id].length > 1) {
          const group = document.createElement("div");
          group.className = "dp-tree-kids";
          host.appendChild(group);
          for (const c of kids[id].slice().reverse()) work.push([c, group]);
        }
      }
    }

    function show(tree) {
      if (!tree || !Array.isArray(tree.nodes)) return;
      const hadFocus = box.contains(document.activeElement);
      T = { current: tree.current, nodes: tree.nodes, onPath: new Set([0].concat(tree.path || [])) };
      kids = tree.nodes.map(() => []);
      tree.nodes.forEach((n, i) => { if (i > 0 && kids[n[0]]) kids[n[0]].push(i); });
      const path = [0].concat(tree.path || []);
      for (let i = 1; i < path.length; i++) lastChild[path[i - 1]] = path[i];
      draw();
      const current = node(T.current);
      if (hadFocus && current) current.focus({ preventScroll: false });
      if (current && !hadFocus) keepInView(current);
      box.closest(".dp-tree-box").querySelector(".dp-tree-count").textContent =
        tree.nodes.length > 1 ? "(" + (tree.nodes.length - 1) + " step" + (tree.nodes.length === 2 ? "" : "s") +
          ", " + (kids.filter((k) => k.length === 0).length) + " branch" +
          (kids.filter((k) => k.length === 0).length === 1 ? "" : "es") + ")" : "";
    }
    // Scroll the tree's own box (never the page) so that the current node shows.
    function keepInView(el) {
      const b = box.getBoundingClientRect(), r = el.getBoundingClientRect();
      if (r.top < b.top || r.bottom > b.bottom) box.scrollTop += r.top - b.top - b.height / 2;
    }
    const node = (id) => box.querySelector('.dp-node[data-node="' + id + '"]');

    function go(id) {
      if (!T || id === undefined || id === null || id < 0 || id >= T.nodes.length) return;
      const el = node(id);
      if (el) {
        for (const b of box.querySelectorAll('.dp-node[tabindex="0"]')) b.tabIndex = -1;
        el.tabIndex = 0;
        el.focus();
      }
      if (id !== T.current) on.goto(id);
    }

    box.addEventListener("click", (ev) => {
      const b = ev.target.closest(".dp-node");
      if (b) go(Number(b.dataset.node));
    });
    box.addEventListener("keydown", (ev) => {
      const b = ev.target.closest && ev.target.closest(".dp-node");
      if (!b || !T || ev.ctrlKey || ev.metaKey || ev.altKey) return;
      const id = Number(b.dataset.node);
      const parent = T.nodes[id][0];
      const siblings = parent >= 0 ? kids[parent] : [0];
      const at = siblings.indexOf(id);
      let to;
      if (ev.key === "ArrowLeft") to = parent >= 0 ? parent : undefined;
      else if (ev.key === "ArrowRight") to = kids[id].includes(lastChild[id]) ? lastChild[id] : kids[id][0];
      else if (ev.key === "ArrowUp") to = siblings[at - 1];
      else if (ev.key === "ArrowDown") to = siblings[at + 1];
      else if (ev.key === "Home") to = 0;
      else if (ev.key === "Enter" || ev.key === " ") to = id;
      else return;
      ev.preventDefault();
      ev.stopPropagation(); // the page's own arrow keys (Step, Undo) are not for the tree
      go(to);
    });
    return { show };
  }

  global.DPTree = { mount };
})(window);

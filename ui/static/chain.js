/* The chain editor: the `samplers` setting as a column of stage cards, in the order they run.

   Each card shows its stage's title and colour (model/sampling.py's table), whether it acts
   (one of its settings differs from the default) or is skipped, and its changed values. The
   order changes by dragging a card (pointer events: mouse and touch alike), by its ↑ and ↓
   buttons, or by Alt+ArrowUp / Alt+ArrowDown on a focused card; × removes a stage, the select
   adds one, and the preset buttons set the orders of model/chain.py's PRESETS (from the
   schema). Every change goes through the controls' own path (set(list)), so the chart, Step,
   Generate and the URL see it as they see a slider.

   The cards follow DPPipeline.chainOrder, the order the pipeline walks: with temperature_last
   on, temperature is drawn last and stays there (its buttons are off); the other cards move
   among themselves and temperature keeps its place in the list for when the switch is off. */
(function (global) {
  "use strict";
  const PL = global.DPPipeline;

  function el(tag, attrs, children) {
    return global.DPControls.el(tag, attrs, children);
  }

  /* box: the element to fill; get(): the settings now; set(list): write a new chain. Returns
     {update(settings)}: call it after every change of the settings. */
  function mount(box, get, set) {
    const schema = PL.schema();
    const C = schema.chain;
    const max = C.max || 32;
    const byName = {};
    for (const st of schema.stages) byName[st.name] = st;
    let entries = []; // chainOrder's entries, as drawn
    let settings = null;
    let wantFocus = null; // {pos, part} to focus after the next draw
    let dragging = null;
    let drawn = ""; // the settings the cards show, as JSON
    let drawnShape = ""; // which cards there are, in which order, acting or not

    const presetRow = el("div", { cls: "dp-chain-presets", role: "group", "aria-label": "chain presets" });
    const presetButtons = {};
    for (const [key, label] of Object.entries(C.preset_labels || {})) {
      if (!C.presets[key]) continue;
      const b = el("button", { type: "button", cls: "dp-btn dp-chain-preset", id: "chain-preset-" + key.replace(/\./g, ""),
        text: label, "aria-pressed": "false",
        title: "the order " + ((C.preset_names || {})[key] || label) + " uses: " + C.presets[key].join(" → ") });
      b.addEventListener("click", () => set(C.presets[key].slice()));
      presetButtons[key] = b;
      presetRow.appendChild(b);
    }
    const note = el("div", { cls: "dp-chain-note", "aria-live": "polite" });
    const list = el("ol", { cls: "dp-chain-list", "aria-label": "the stages in the order they run" });
    const addSelect = el("select", { cls: "dp-chain-add-stage", "aria-label": "stage to add" });
    const addButton = el("button", { type: "button", cls: "dp-btn dp-chain-add", text: "Add" });
    const addRow = el("div", { cls: "dp-chain-add-row" }, [addSelect, addButton]);
    box.append(presetRow, note, list, addRow);

    addButton.addEventListener("click", () => {
      const name = addSelect.value;
      const now = chainNow();
      if (!name || now.length >= max) return;
      set(now.concat([name]));
    });

    // ---- edits: on the list of free cards (those not sent last), mapped back to `samplers` ----
    const chainNow = () => PL.parseChain(get().samplers); // a link may hold letters or a preset
    const freeEntries = () => entries.filter((e) => !e.moved);
    function reorderFree(names) {
      const out = chainNow();
      freeEntries().forEach((e, k) => { out[e.index] = names[k]; });
      set(out);
    }
    function moveFree(from, to, part) {
      const free = freeEntries().map((e) => e.name);
      if (from === to || to < 0 || to >= free.length) return;
      const [name] = free.splice(from, 1);
      free.splice(to, 0, name);
      wantFocus = { pos: to, part };
      reorderFree(free);
    }
    function remove(pos) {
      const e = entries[pos];
      const out = chainNow();
      out.splice(e.index, 1);
      wantFocus = { pos: Math.min(pos, out.length - 1), part: "card" };
      set(out);
    }

    // ---- drawing ----
    function valuesLine(stage, s) {
      const parts = [];
      for (const name of stage.settings) {
        const x = schema.settings[name];
        const v = s[name];
        if (JSON.stringify(v) === JSON.stringify(x.default)) continue;
        parts.push(x.label + " " + (typeof v === "object" ? JSON.stringify(v) : PL.fmt(v)));
      }
      return parts.join(" · ");
    }

    // A card's words: whether it acts, its changed values, and what a screen reader says.
    function describe(e, pos, s) {
      const stage = byName[e.name];
      const on = PL.changed(stage, s);
      const line = on ? valuesLine(stage, s) : "skipped: off";
      const where = "position " + (pos + 1) + " of " + entries.length;
      const label = stage.title + ", " + where + ", " + (on ? "active: " + line : "skipped: off") +
        (e.moved ? ", runs last (temperature last)" : ". Alt+ArrowUp or Alt+ArrowDown moves it");
      return { on, text: line + (e.moved ? " · runs last" : ""), label };
    }

    function card(e, pos, s, freePos, nFree) {
      const stage = byName[e.name];
      const { on, text, label } = describe(e, pos, s);
      const title = stage.title;
      const b = (cls, text, label, disabled) => el("button", { type: "button", cls: "dp-chain-btn " + cls, text,
        "aria-label": label, title: label, disabled });
      const up = b("dp-chain-up", "↑", "Move " + title + " up (Alt+ArrowUp)", e.moved || freePos === 0);
      const down = b("dp-chain-down", "↓", "Move " + title + " down (Alt+ArrowDown)", e.moved || freePos === nFree - 1);
      const del = b("dp-chain-remove", "×", "Remove " + title + " from the chain", false);
      const li = el("li", {
        cls: "dp-chain-card" + (on ? " dp-chain-on" : " dp-chain-off") + (e.moved ? " dp-chain-moved" : ""),
        tabindex: "0", "data-stage": e.name, "data-pos": pos, "aria-label": label,
        title: e.moved ? "“Temperature last” runs it after the other stages" : "drag, or Alt+↑ / Alt+↓, to move it",
      }, [
        el("span", { cls: "dp-chain-grip", "aria-hidden": "true", text: e.moved ? "" : "⋮⋮" }),
        el("span", { cls: "dp-chain-body" }, [
          el("span", { cls: "dp-chain-head-line" }, [
            el("span", { cls: "dp-chain-title", text: title }),
            el("span", { cls: "dp-chain-line", text }),
          ]),
          on ? el("span", { cls: "dp-chain-effect" }) : null,
        ]),
        up, down, del,
      ]);
      li.style.setProperty("--dp-stage", stage.colour);
      up.addEventListener("click", () => moveFree(freePos, freePos - 1, "up"));
      down.addEventListener("click", () => moveFree(freePos, freePos + 1, "down"));
      del.addEventListener("click", () => remove(pos));
      li.addEventListener("keydown", (ev) => {
        if (ev.target !== li || !ev.altKey || e.moved) return;
        if (ev.key === "ArrowUp") { ev.preventDefault(); moveFree(freePos, freePos - 1, "card"); }
        else if (ev.key === "ArrowDown") { ev.preventDefault(); moveFree(freePos, freePos + 1, "card"); }
      });
      if (!e.moved) li.addEventListener("pointerdown", (ev) => startDrag(ev, li));
      return li;
    }

    // ---- what each stage did at the step on the chart (stage_view.js draws it) ----
    let shown = null; // {R, opts}: drawn again whenever the cards are
    const outside = el("div", { cls: "dp-chain-outside" }); // stages the chain does not list
    box.insertBefore(outside, list);
    function show(R, opts) {
      shown = R ? { R, opts } : null;
      const V = global.DPStageView;
      outside.textContent = "";
      for (const slot of list.querySelectorAll(".dp-chain-effect")) slot.textContent = "";
      if (!R) return;
      for (const stage of R.stages) {
        if (!stage.trace) continue;
        const parts = [el("span", { cls: "dp-chain-mini-box" }), el("span", { cls: "dp-chain-caption" })];
        parts[0].innerHTML = V.mini(stage.name, stage.trace, R.settings, stage.colour);
        parts[1].textContent = V.caption(stage.name, stage.trace, R.settings, opts.labelOf);
        if (stage.pos >= 0) {
          const li = list.children[stage.pos];
          const slot = li && li.querySelector(".dp-chain-effect");
          if (!slot) continue;
          slot.textContent = "";
          slot.append(...parts);
          if (stage.name === "xtc") li.classList.toggle("dp-chain-fired", Boolean(stage.trace.info.fired));
          continue;
        }
        // Logit bias and mirostat run outside the listed chain: a card of their own, above it.
        const head = el("span", { cls: "dp-chain-title", text: stage.title });
        const extra = stage.name === "mirostat" ? muPlot(opts.mu || [], R.settings.mirostat_tau, stage.trace.info.mu) : null;
        const card = el("div", { cls: "dp-chain-card dp-chain-on dp-chain-fixed", "data-stage": stage.name },
          [el("span", { cls: "dp-chain-body" }, [head, el("span", { cls: "dp-chain-effect" }, parts), extra])]);
        card.style.setProperty("--dp-stage", stage.colour);
        outside.appendChild(card);
      }
    }
    // Mirostat's μ along the text (one value per generated step, then this step's), with τ:
    // μ moves towards the surprise it aims at, step by step.
    function muPlot(history, tau, now) {
      const values = history.concat([now]);
      const w = 160, h = 34, hi = Math.max(2 * tau, ...values) * 1.05;
      const x = (i) => (values.length === 1 ? w / 2 : (i * w) / (values.length - 1));
      const y = (v) => h - 2 - (h - 4) * (v / hi);
      const pts = values.map((v, i) => x(i).toFixed(1) + "," + y(v).toFixed(1)).join(" ");
      const box = el("span", { cls: "dp-chain-mu" });
      box.innerHTML = '<svg class="dp-mini dp-mu" viewBox="0 0 ' + w + " " + h + '" preserveAspectRatio="none" ' +
        'role="img" aria-label="mirostat μ over ' + values.length + ' steps, τ = ' + tau + '">' +
        '<line class="dp-mini-cut" x1="0" x2="' + w + '" y1="' + y(tau).toFixed(1) + '" y2="' + y(tau).toFixed(1) + '"/>' +
        '<polyline class="dp-mu-line" points="' + pts + '"/></svg>' +
        '<span class="dp-chain-caption">μ over ' + values.length + " step" + (values.length === 1 ? "" : "s") +
        " · dashed: τ = " + tau + "</span>";
      return box;
    }

    function update(s) {
      settings = s;
      if (dragging) return; // drawn when the drag ends
      const n = PL.normalise(s);
      const key = JSON.stringify(n);
      if (key === drawn && !wantFocus) return; // nothing the cards show has changed
      drawn = key;
      const next = PL.chainOrder(n);
      // The same cards, acting or skipped as before, only other values (a slider moving): their
      // words change in place. Rebuilding six cards on every move of a drag took 4-5 ms a frame.
      const shape = JSON.stringify([next.map((e) => [e.name, e.moved, PL.changed(byName[e.name], n)]),
        n.samplers, n.mirostat, n.logit_bias.length]);
      if (shape === drawnShape && !wantFocus) {
        entries = next;
        entries.forEach((e, pos) => {
          const li = list.children[pos], words = describe(e, pos, n);
          li.querySelector(".dp-chain-line").textContent = words.text;
          li.setAttribute("aria-label", words.label);
        });
        return; // the chart's render draws what each stage did (show) next
      }
      drawnShape = shape;
      entries = next;
      list.textContent = "";
      let freePos = 0;
      const nFree = entries.filter((e) => !e.moved).length;
      entries.forEach((e, pos) => list.appendChild(card(e, pos, n, e.moved ? -1 : freePos++, nFree)));
      list.classList.toggle("dp-chain-replaced", Boolean(n.mirostat));
      note.textContent = n.mirostat ? "Mirostat is on: the chain is only temperature, then mirostat."
        : !entries.length ? "The chain is empty: the model's distribution is sampled as it is."
          : n.logit_bias.length ? "Logit bias runs first, before these." : "";
      for (const [key, b] of Object.entries(presetButtons)) {
        const same = JSON.stringify(C.presets[key]) === JSON.stringify(n.samplers);
        b.setAttribute("aria-pressed", String(same));
        b.classList.toggle("dp-chain-current", same);
      }
      fillAdd(n.samplers);
      if (wantFocus) { // after an edit made here: the focus stays on the card it moved
        const li = list.children[Math.max(0, Math.min(wantFocus.pos, list.children.length - 1))];
        const sel = { up: ".dp-chain-up", down: ".dp-chain-down" }[wantFocus.part];
        let target = li && (sel ? li.querySelector(sel) : li);
        if (target && target.disabled) target = li;
        if (target) target.focus();
      }
      wantFocus = null;
      if (shown) show(shown.R, shown.opts);
    }

    function fillAdd(chain) {
      const value = addSelect.value;
      addSelect.textContent = "";
      addSelect.appendChild(el("option", { value: "", text: chain.length >= max ? "the chain is full (" + max + ")" : "Add a stage …" }));
      const missing = C.stages.filter((n) => !chain.includes(n));
      const again = C.stages.filter((n) => chain.includes(n));
      const group = (label, names) => {
        if (!names.length) return;
        const g = el("optgroup", { label });
        for (const n of names) g.appendChild(el("option", { value: n, text: byName[n].title }));
        addSelect.appendChild(g);
      };
      group("not in the chain", missing);
      group("again (a second time)", again);
      addSelect.value = C.stages.includes(value) ? value : "";
      addSelect.disabled = addButton.disabled = chain.length >= max;
    }

    // ---- dragging: the card follows the pointer through the list; dropping sets the order ----
    function startDrag(ev, li) {
      if (ev.button !== 0 || ev.target.closest("button")) return;
      const startY = ev.clientY;
      const from = freeEntries().findIndex((e) => e.index === entries[Number(li.dataset.pos)].index);
      let active = false;
      const onMove = (mv) => {
        if (!active) {
          if (Math.abs(mv.clientY - startY) < 6) return;
          active = true;
          dragging = { li };
          li.classList.add("dp-chain-dragging");
          try { li.setPointerCapture(ev.pointerId); } catch (e) { /* the pointer is gone */ }
        }
        mv.preventDefault();
        // Past the middle of a neighbour (a free card), the card takes its place.
        const cards = Array.from(list.children).filter((c) => c !== li && !c.classList.contains("dp-chain-moved"));
        let before = null;
        for (const c of cards) {
          const r = c.getBoundingClientRect();
          if (mv.clientY < r.top + r.height / 2) { before = c; break; }
        }
        if (!before) {
          const last = cards[cards.length - 1];
          before = last ? last.nextSibling : null;
        }
        if (before !== li && before !== li.nextSibling) list.insertBefore(li, before);
      };
      const onEnd = (end) => {
        window.removeEventListener("pointermove", onMove);
        window.removeEventListener("pointerup", onEnd);
        window.removeEventListener("pointercancel", onEnd);
        window.removeEventListener("keydown", onKey, true);
        if (!active) return;
        li.classList.remove("dp-chain-dragging");
        dragging = null;
        const to = Array.from(list.children).filter((c) => !c.classList.contains("dp-chain-moved")).indexOf(li);
        if (end.type !== "pointerup" || to === from) { drawn = ""; drawnShape = ""; update(settings || get()); return; }
        moveFree(from, to, "card");
      };
      // Esc during a drag puts the card back where it was.
      const onKey = (kd) => {
        if (kd.key !== "Escape" || !active) return;
        kd.preventDefault();
        kd.stopPropagation();
        onEnd({ type: "cancel" });
      };
      // The card's events reach the window whether or not it holds the pointer.
      window.addEventListener("pointermove", onMove);
      window.addEventListener("pointerup", onEnd);
      window.addEventListener("pointercancel", onEnd);
      window.addEventListener("keydown", onKey, true);
    }

    return { update, show };
  }

  global.DPChain = { mount };
})(window);

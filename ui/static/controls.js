/* The decoding settings' controls, built from model/sampling.py's table (props.schema): one
   row per setting in the table's order, with a slider, a number box, a reset button and the
   setting's own help text. The page holds the settings in one object; every control writes
   it through DPPipeline.clampToControl, so the box, the slider, the chart, Step and the URL
   always hold the same value, and a typed value out of range says so at the box. */
(function (global) {
  "use strict";
  const PL = global.DPPipeline;

  function el(tag, attrs, children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") e.textContent = v;
      else if (k === "cls") e.className = v;
      else if (v !== null && v !== undefined && v !== false) e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children || []) if (c) e.appendChild(c);
    return e;
  }

  const domId = (name) => name.replace(/_/g, "-");

  /* Build every control into root (main ones) and more (the rest); onChange(settings, name)
     runs after each accepted change. Returns {get, set, setAll}. */
  function build(schema, presets, root, more, presetBox, onChange) {
    const settings = PL.defaults();
    const rows = {};
    const names = Object.keys(schema.settings);
    names.forEach((name, i) => {
      const x = schema.settings[name];
      const row = x.kind === "bool" ? boolRow(name, x)
        : x.kind === "float" || x.kind === "int" ? numberRow(name, x) : valueRow(name, x);
      rows[name] = row;
      (i < schema.main_settings ? root : more).appendChild(row.el);
    });

    function numberRow(name, x) {
      const [lo, hi, step] = x.control;
      const id = "dp-c-" + domId(name);
      const range = el("input", { type: "range", id, min: lo, max: hi, step, value: x.default,
        "aria-describedby": id + "-help" });
      // A text box, not type=number: that one hides what was typed ("1,5" reads as 15 or as
      // nothing), so a decimal comma or a typo could not be answered by name.
      const box = el("input", { type: "text", cls: "dp-num", "data-min": lo, "data-max": hi, "data-step": step,
        value: x.default, "aria-label": x.label + " value", inputmode: x.kind === "int" ? "numeric" : "decimal",
        autocomplete: "off", spellcheck: "false" });
      const reset = el("button", { type: "button", cls: "dp-ctl-reset", text: "↺",
        title: "back to " + PL.fmt(x.default) + " (off)", "aria-label": "Reset " + x.label });
      const msg = el("div", { cls: "dp-ctl-msg", "aria-live": "polite" });
      const row = el("div", { cls: "dp-ctl", id: domId(name), "data-name": name }, [
        el("div", { cls: "dp-ctl-head" }, [el("label", { for: id, text: x.label }), box, reset]),
        range,
        el("div", { cls: "dp-ctl-help", id: id + "-help", text: x.help }),
        msg,
      ]);
      // The slider can only hold values on its grid; the box can hold anything until it is
      // committed (Enter, or leaving it), when the value is clamped onto the grid.
      range.addEventListener("input", () => accept(name, range.value, false));
      box.addEventListener("input", () => {
        const n = PL.readNumber(box.value);
        if (Number.isFinite(n) && n >= lo && n <= hi) accept(name, n, false, true);
      });
      // Enter commits, and so does leaving the box (change); the second of the two finds the
      // value already committed and keeps the message the first one wrote.
      const commit = () => { if (box.value !== PL.fmt(settings[name])) accept(name, box.value, true); };
      box.addEventListener("change", commit);
      box.addEventListener("keydown", (ev) => {
        if (ev.key === "Enter") commit();
        else if (ev.key === "ArrowUp" || ev.key === "ArrowDown") { // as a number box steps
          ev.preventDefault();
          accept(name, settings[name] + (ev.key === "ArrowUp" ? step : -step), true);
        }
      });
      reset.addEventListener("click", () => accept(name, x.default, true));
      return { el: row, show: (v) => { range.value = v; box.value = PL.fmt(v); }, msg,
        live: () => box === document.activeElement };
    }

    function boolRow(name, x) {
      const id = "dp-c-" + domId(name);
      const box = el("input", { type: "checkbox", id });
      const row = el("div", { cls: "dp-ctl dp-ctl-bool", id: domId(name), "data-name": name }, [
        el("label", { for: id }, [box, document.createTextNode(" " + x.label)]),
        el("div", { cls: "dp-ctl-help", text: x.help }),
      ]);
      box.addEventListener("change", () => accept(name, box.checked, true));
      return { el: row, show: (v) => { box.checked = Boolean(v); }, msg: null, live: () => false };
    }

    // A list or object setting (the chain's order, DRY's breakers, logit biases): its value as
    // JSON in a text box, as llama.cpp's server takes it (e.g. [["\n", 1]] or [[13, false]]
    // for logit_bias, ["\n", ":"] for the breakers). Enter or leaving the box commits it; a
    // value the page cannot read keeps the one that runs and says why at the box.
    function valueRow(name, x) {
      const id = "dp-c-" + domId(name);
      const box = el("input", { type: "text", cls: "dp-list-box", id, value: JSON.stringify(x.default),
        autocomplete: "off", spellcheck: "false", "aria-describedby": id + "-help" });
      const msg = el("div", { cls: "dp-ctl-msg", "aria-live": "polite" });
      const row = el("div", { cls: "dp-ctl dp-ctl-list", id: domId(name), "data-name": name }, [
        el("div", { cls: "dp-ctl-head" }, [el("label", { for: id, text: x.label })]),
        box,
        el("div", { cls: "dp-ctl-help", id: id + "-help", text: x.help }),
        msg,
      ]);
      const commit = () => { if (box.value !== JSON.stringify(settings[name])) accept(name, box.value, true); };
      box.addEventListener("change", commit);
      box.addEventListener("keydown", (ev) => { if (ev.key === "Enter") commit(); });
      return { el: row, show: (v) => { box.value = JSON.stringify(v); }, msg, live: () => box === document.activeElement };
    }

    // typing: the box is mid-edit, so leave its text alone.
    function accept(name, raw, commit, typing) {
      const r = PL.clampToControl(name, raw, settings[name]);
      settings[name] = r.value;
      const row = rows[name];
      if (!typing) row.show(r.value);
      else row.el.querySelector("input[type=range]").value = r.value;
      if (row.msg) {
        row.msg.textContent = commit ? r.message : "";
        row.el.classList.toggle("dp-ctl-warn", Boolean(commit && r.message));
      }
      changed(name);
      return r;
    }

    // A preset's button is pressed while every setting is the preset's (after a move of any
    // slider it is not), so the page says which preset, if any, is the one running.
    const presetButtons = [];
    for (const [label, values] of Object.entries(presets)) {
      const b = el("button", { type: "button", cls: "dp-btn dp-preset", text: label, "aria-pressed": "false",
        id: "preset-" + label.toLowerCase(), title: values.description || "" });
      const full = Object.assign(PL.defaults(), values.settings);
      b.addEventListener("click", () => setAll(full, "preset"));
      presetButtons.push([b, PL.normalise(full)]);
      presetBox.appendChild(b);
    }
    function markPresets() {
      const now = JSON.stringify(PL.normalise(settings));
      for (const [b, full] of presetButtons) {
        const on = JSON.stringify(full) === now;
        b.classList.toggle("dp-preset-current", on);
        b.setAttribute("aria-pressed", String(on));
      }
    }
    const changed = (why) => { markPresets(); onChange(Object.assign({}, settings), why); };

    // Several values at once (a preset, a shared link): each through the same clamp; returns
    // the messages of those that had to change.
    function setAll(values, why) {
      const messages = [];
      for (const name of names) {
        if (!(name in values)) continue;
        const r = PL.clampToControl(name, values[name], settings[name]);
        settings[name] = r.value;
        rows[name].show(r.value);
        if (r.message) messages.push(name + ": " + r.message);
        if (rows[name].msg) { rows[name].msg.textContent = ""; rows[name].el.classList.remove("dp-ctl-warn"); }
      }
      changed(why);
      return messages;
    }

    return { get: () => Object.assign({}, settings), setAll, accept };
  }

  /* A whole-number box (the seed, the tokens per Generate): clamped into [lo, hi], with a
     message beside it when the typed value had to change. onCommit(value) on each commit. */
  function integerBox(input, msgEl, lo, hi, initial, label, onCommit) {
    let value = initial;
    input.type = "text"; // as the settings' boxes: see numberRow
    input.autocomplete = "off";
    input.value = initial;
    function commit() {
      const text = String(input.value).trim();
      if (text === String(value)) return; // Enter, then leaving the box: already committed
      const n = PL.readNumber(text);
      let message = "";
      if (!Number.isFinite(n)) {
        message = PL.notANumber(text, label, String(value));
      } else {
        const v = Math.min(Math.max(Math.round(n), lo), hi);
        if (n < lo) message = n + " is below the minimum " + lo + ": using " + v + ".";
        else if (n > hi) message = n + " is above the maximum " + hi.toLocaleString("en") + ": using " + v + ".";
        else if (v !== n) message = label + " is a whole number: using " + v + ".";
        value = v;
      }
      input.value = value;
      if (msgEl) msgEl.textContent = message;
      onCommit(value, message);
    }
    input.addEventListener("change", commit);
    input.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter") commit();
      else if (ev.key === "ArrowUp" || ev.key === "ArrowDown") {
        ev.preventDefault();
        input.value = String(value + (ev.key === "ArrowUp" ? 1 : -1));
        commit();
      }
    });
    // A value from elsewhere (the server, a link); the message stays while the value is the one it explains.
    return { get: () => value, set: (v) => { if (v !== value && msgEl) msgEl.textContent = ""; value = v; input.value = v; } };
  }

  global.DPControls = { build, integerBox, el, domId };
})(window);

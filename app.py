"""The Decoding Playground: watch a language model choose its next token.

    python app.py                                  # checkpoints/shakespeare, plus SmolLM2 in the menu
    python app.py --model path/to/gpt2-snapshot --model checkpoints/shakespeare --port 7861

Every browser tab has its own session. Sliders reshape the chart in the browser itself (the
server sends each step's logits once; ui/static/pipeline.js recomputes the pipeline), so only
Step, Generate, Undo, Reset and clicks reach the server.

Scripting a session with gradio_client (each Client is its own session):

    from gradio_client import Client
    c = Client("http://127.0.0.1:7860/")
    c.predict("To be, or not", 0, api_name="/reset")            # prompt, seed (model, chat optional)
    c.predict({"temperature": 0.7, "top_p": 0.9}, 10, api_name="/distribution")  # nothing committed
    c.predict({"temperature": 0.7}, api_name="/step")            # sample one token
    c.predict(42, api_name="/pick")                              # append token id 42
    c.predict(api_name="/undo")
    for update in c.submit(20, {"temperature": 0.8}, api_name="/generate"):  # streams; stops
        print(update["text"])                                              # at end-of-text
    c.predict(api_name="/export")                                # the whole history as JSON

Settings are SamplingSettings fields (temperature, top_k, top_p, min_p, typical_p,
repetition_penalty, presence_penalty, frequency_penalty, no_repeat_ngram_size,
temperature_last); missing ones keep their defaults (temperature 1, every filter off).
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio: no calls home

import argparse
import ctypes
import html
import json
import tempfile
import time
import traceback
import functools
import inspect
from pathlib import Path

import gradio as gr
import torch

from model.sampling import SamplingSettings
from ui import explain, page
from ui.chart import distribution_summary, payload_json, step_payload
from ui.model_panel import model_panel_html
from ui.presets import DESCRIPTIONS, PRESETS, preset_values
from ui.settings import (CONTROLS, DEFAULTS, SETTING_NAMES, check_integer, check_text,
                         settings_from_api, settings_from_query, settings_from_values)
from ui.state import SMOLLM2, ModelRegistry, UserState
from ui.tokens import output_html, prompt_chips_html, token_label

DEFAULT_MODELS = ["checkpoints/shakespeare", SMOLLM2]
MAX_PROMPT_CHARS = 4000  # longer prompts keep their end
MAX_GENERATE = 200  # tokens per Generate click
MAX_STEPS = 1000  # tokens one session may add before a Reset (bounds memory per visitor)
CHART_EVERY_S = 0.25  # while generating, send the chart at most this often (the text every token)
CONCURRENCY, QUEUE_SIZE = 4, 64
# Live sessions kept in memory, least recently used dropped first: ten times a full workshop
# room, and a bound on what clients that never say goodbye (scripts, raw API calls) can hold.
MAX_SESSIONS = 500


# ---- small helpers ----

def notice_html(text: str = "", kind: str = "note") -> str:
    if not text:
        return ""
    return f'<div class="dp-note dp-{kind}">{html.escape(text)}</div>'


def _error(e: Exception) -> gr.Error:
    """A handler's failure as a message on the page; the server carries on."""
    if isinstance(e, gr.Error):
        return e
    if not isinstance(e, (ValueError, OSError, KeyError)):
        traceback.print_exc()  # unexpected: keep the trace for whoever runs the server
    return gr.Error(str(e) or type(e).__name__, print_exception=False)


def _session(user: UserState | None):
    # print_exception=False on errors a visitor causes: the console keeps only real faults
    # (a room of 50 makes these by the hundred).
    if user is None or user.session is None:
        raise gr.Error("No model is loaded in this tab yet: choose one in the Model menu, or "
                       "wait for the loading message to clear.", print_exception=False)
    return user.session


def _settings(values) -> SamplingSettings:
    try:
        return settings_from_values(*values)
    except ValueError as e:
        raise _error(e) from None


def _check_room(session, n: int = 1) -> None:
    if len(session.history) + n > MAX_STEPS:
        raise gr.Error(f"This session holds {len(session.history)} new tokens; the limit is "
                       f"{MAX_STEPS}. Press Reset (or Undo) to continue.", print_exception=False)


def _check_distribution(session, settings: SamplingSettings) -> None:
    """Refuse settings that leave no distribution to draw from: an n-gram ban covering the
    whole vocabulary, or values so extreme that the logits overflow (API callers can send
    repetition_penalty=1e-300 or temperature=1e-320; the sliders cannot). The pipeline itself
    says which setting is at fault."""
    try:
        session.distribution(settings)
    except ValueError as e:
        raise gr.Error(str(e), print_exception=False) from None


def view(registry, user, mode="live", inspect=None, notice=None):
    """(chart payload, coloured text, prompt chips, notice) for the user's session."""
    loaded = registry.get(user.model)
    s = user.session
    text = notice if notice is not None else s.notice
    chart = payload_json(step_payload(user, loaded, max_steps=MAX_STEPS, mode=mode, inspect=inspect,
                                      notice=text))
    wrapped = user.model_text() if user.chat else None
    chips = prompt_chips_html(s.tokenizer, s.ids[:s.prompt_len], s.eot, wrapped)
    return chart, output_html(s.tokenizer, s), chips, notice_html(text)


def _start(registry, user, model, prompt, seed, chat) -> UserState:
    """Load `model` if needed and start a session on `prompt`."""
    prompt = check_text("prompt", prompt)
    seed = check_integer("seed", seed, 0, 2**63 - 1)
    loaded = registry.get(model)
    user = user or UserState()
    user.new_session(loaded, prompt, seed, bool(chat), MAX_PROMPT_CHARS)
    return user


def _model_extras(registry, user):
    loaded = registry.get(user.model)
    return model_panel_html(loaded), gr.update(visible=loaded.chat, value=user.chat)


# ---- handlers for the page ----

def on_load(registry, request: gr.Request):
    """A visitor arrives: read the shared link's query parameters, load, show the first chart."""
    params = dict(request.query_params) if request is not None else {}
    problems = []
    model = params.get("model", registry.default)
    if model not in registry.names:
        problems.append(f"model {model!r} is not served here; using {registry.default}")
        model = registry.default
    prompt = params.get("prompt", "")[-MAX_PROMPT_CHARS:]
    try:
        seed = check_integer("seed", int(params.get("seed", 0)), 0, 2**31 - 1)
    except ValueError:
        problems.append(f"seed={params.get('seed')!r} is not a whole number in [0, 2^31); using 0")
        seed = 0
    values, bad = settings_from_query(params)
    problems += bad
    chat = params.get("chat", "").lower() in ("1", "true", "yes", "on")
    controls = [values.get(name, DEFAULTS[name]) for name in SETTING_NAMES]
    head = [model, prompt, seed]
    link = ("Ignored in the link: " + "; ".join(problems) + ".") if problems else ""
    if not registry.is_loaded(model):
        yield (None, *head, gr.skip(), *controls, gr.skip(), gr.skip(), gr.skip(),
               notice_html(f"Loading {model} ...", "loading"), gr.skip())
    try:
        user = _start(registry, None, model, prompt, seed, chat)
    except Exception as e:  # the page still opens, with the reason in place of the chart
        yield (None, *head, gr.update(visible=False), *controls, "", "", "",
               notice_html(f"Could not load model {model!r}: {e}", "error"), "")
        return
    chart, text, chips, note = view(registry, user)
    panel, chat_update = _model_extras(registry, user)
    if link:
        note += notice_html(link)
    yield (user, *head, chat_update, *controls, chart, text, chips, note, panel)


def on_model(registry, user, model, prompt, seed, chat):
    """Switch models: a loading message first (the first load can take a while)."""
    if not registry.is_loaded(model):
        yield (user, gr.skip(), gr.skip(), gr.skip(),
               notice_html(f"Loading {model} ... (the first load can take a minute)", "loading"),
               gr.skip(), gr.skip())
    try:
        user = _start(registry, user, model, prompt, seed, chat)
    except Exception as e:
        keep = f" Still using {user.model}." if user and user.session else ""
        yield (user, gr.skip(), gr.skip(), gr.skip(),
               notice_html(f"Could not load model {model!r}: {e}.{keep}", "error"), gr.skip(), gr.skip())
        return
    chart, text, chips, note = view(registry, user)
    panel, chat_update = _model_extras(registry, user)
    yield user, chart, text, chips, note, panel, chat_update


def on_reset(registry, user, prompt, seed, chat):
    """Start again from the prompt (Reset, typing in the prompt, the chat switch)."""
    if user is None or user.session is None:
        raise gr.Error("No model is loaded in this tab yet: choose one in the Model menu.",
                       print_exception=False)
    try:
        prompt = check_text("prompt", prompt)
        seed = check_integer("seed", seed, 0, 2**63 - 1)
        loaded = registry.get(user.model)
        user.reset(prompt, bool(chat) and loaded.chat, seed)
    except Exception as e:
        raise _error(e) from None
    return (user, *view(registry, user))


def on_step(registry, user, *values):
    s = _session(user)
    settings = _settings(values)
    _check_room(s)
    _check_distribution(s, settings)
    s.step(settings)
    chart, text, _, note = view(registry, user)
    return chart, text, note


def on_pick(registry, user, evt: gr.EventData, *values):
    """A bar was clicked: append that token, whatever the filters say."""
    s = _session(user)
    settings = _settings(values)
    _check_room(s)
    _check_distribution(s, settings)
    try:
        s.pick(evt.token, settings)
    except (ValueError, AttributeError, TypeError) as e:  # TypeError: a request without event data
        raise _error(ValueError(f"cannot pick that bar: {e}")) from None
    chart, text, _, note = view(registry, user)
    return chart, text, note


def on_undo(registry, user):
    s = _session(user)
    undone = s.undo()
    chart, text, _, note = view(registry, user, notice=None if undone else "Nothing to undo: only the prompt is left.")
    return chart, text, note


def on_generate(registry, user, n, *values):
    """Stream n tokens; the Stop button cancels between tokens."""
    s = _session(user)
    settings = _settings(values)
    try:
        n = check_integer("tokens to generate", n, 1, MAX_GENERATE)
    except ValueError as e:
        raise _error(e) from None
    n = min(n, MAX_STEPS - len(s.history))
    _check_room(s)
    last_chart = 0.0
    stops = user.stop_tokens()
    for i in range(n):
        _check_distribution(s, settings)
        record = s.step(settings)
        done = i == n - 1 or record.token in stops
        # The text goes out every token; the chart (the whole vocabulary's logits) at most
        # every CHART_EVERY_S, so a slow connection is not flooded, and always at the end.
        if done or time.monotonic() - last_chart >= CHART_EVERY_S:
            chart, text, _, note = view(registry, user)
            last_chart = time.monotonic()
            yield chart, text, note
        else:
            yield gr.skip(), output_html(s.tokenizer, s), gr.skip()
        if record.token in stops:
            what = "end-of-text" if record.token == s.eot else "the end of its turn"
            yield gr.skip(), gr.skip(), notice_html(f"The model produced {what}: generation stopped.")
            break


def on_inspect(registry, user, evt: gr.EventData):
    """A past token was clicked: show the distribution it was drawn from."""
    s = _session(user)
    try:
        step = check_integer("step", evt.step, 0, max(len(s.history) - 1, 0))
        if not s.history:
            raise ValueError("there are no steps to look at yet")
    except (ValueError, AttributeError, TypeError) as e:  # TypeError: a request without event data
        raise _error(ValueError(f"cannot show that token: {e}")) from None
    if s.history[step].logits is None:
        raise gr.Error(f"Step {step + 1} is too far back to show (older steps drop their logits); "
                       "rewinding there still works through Undo.", print_exception=False)
    chart, _, _, _ = view(registry, user, mode="inspect", inspect=step, notice="")
    return chart


def on_rewind(registry, user, evt: gr.EventData):
    s = _session(user)
    try:
        s.rewind(check_integer("step", evt.step, 0, len(s.history)))
    except (ValueError, AttributeError, TypeError) as e:  # TypeError: a request without event data
        raise _error(ValueError(f"cannot rewind there: {e}")) from None
    chart, text, _, note = view(registry, user)
    return chart, text, note


def on_seed(registry, user, seed):
    """A new seed changes u for the coming positions; the tokens so far stay."""
    s = _session(user)
    try:
        s.seed = check_integer("seed", seed, 0, 2**63 - 1)
    except ValueError as e:
        raise _error(e) from None
    return view(registry, user)[0]


def on_preset(name: str):
    values = preset_values(name)
    return [values[n] for n in SETTING_NAMES]


def on_export(user):
    s = _session(user)
    data = s.export() | {"model": user.model, "chat": user.chat}
    folder = Path(tempfile.mkdtemp(prefix="playground-"))
    path = folder / "decoding-history.json"
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False))
    return gr.update(value=str(path), visible=True)


# ---- the API: plain data in, plain data out ----

def _record_dict(session, record) -> dict:
    out = record.to_dict()
    out["label"] = token_label(session.tokenizer, record.token)
    out["candidates"] = {stage: [[t, p] for t, p in pairs] for stage, pairs in record.candidates.items()}
    return out | {"text": session.text, "generated": session.generated_text,
                  "steps": len(session.history), "notice": session.notice}


def api_reset(registry, user, prompt, seed, model, chat):
    try:
        model = check_text("model", model) or (user.model if user and user.model else registry.default)
        user = _start(registry, user, model, prompt, 0 if seed is None else seed, bool(chat))
    except Exception as e:
        raise _error(e) from None
    s = user.session
    tokens = [{"id": t, "label": token_label(s.tokenizer, t)} for t in s.ids]
    return user, {"model": user.model, "prompt": user.prompt, "model_text": user.model_text(),
                  "prompt_tokens": tokens, "text": s.text, "seed": s.seed, "notice": s.notice}


def _api_settings(value) -> SamplingSettings:
    try:
        return settings_from_api(value)
    except ValueError as e:
        raise _error(e) from None


def api_step(registry, user, settings):
    s = _session(user)
    settings = _api_settings(settings)
    _check_room(s)
    _check_distribution(s, settings)
    return _record_dict(s, s.step(settings))


def api_pick(registry, user, token, settings):
    s = _session(user)
    settings = _api_settings(settings)
    _check_room(s)
    try:
        token = check_integer("token", token, 0, s.vocab_size - 1, " (a token id)")
    except ValueError as e:
        raise _error(e) from None
    _check_distribution(s, settings)
    return _record_dict(s, s.pick(token, settings))


def api_undo(registry, user):
    s = _session(user)
    record = s.undo()
    return {"undone": None if record is None else record.to_dict(), "text": s.text,
            "steps": len(s.history)}


def api_distribution(registry, user, settings, top_n):
    s = _session(user)
    settings = _api_settings(settings)
    try:
        top_n = check_integer("top_n", 20 if top_n is None else top_n, 1, 1000)
    except ValueError as e:
        raise _error(e) from None
    _check_distribution(s, settings)
    summary = distribution_summary(s.distribution(settings), s.tokenizer, settings, s.next_u(), top_n)
    return summary | {"position": len(s.ids), "steps": len(s.history)}


def api_generate(registry, user, n, settings):
    s = _session(user)
    settings = _api_settings(settings)
    try:
        n = check_integer("n", 20 if n is None else n, 1, MAX_GENERATE)
    except ValueError as e:
        raise _error(e) from None
    _check_room(s, n)
    stops = user.stop_tokens()
    for _ in range(n):
        _check_distribution(s, settings)
        record = s.step(settings)
        yield _record_dict(s, record)
        if record.token in stops:
            break


def api_export(registry, user):
    s = _session(user)
    return s.export() | {"model": user.model, "chat": user.chat}


# ---- the page ----

def free_session(demo: gr.Blocks, session_hash: str | None) -> None:
    """Drop a closed tab's state (its UserState: KV cache, history, logits) now.

    Gradio keeps a closed tab's gr.State for an hour in case the same session reconnects, and
    keeps the session's entry until 10,000 sessions have passed. A reloaded page is a new
    session, so in a workshop room that memory would only pile up."""
    holder = getattr(demo, "state_holder", None)  # Gradio sets it when the server starts
    if holder is None or not session_hash or session_hash not in holder:
        return
    holder.delete_state(session_hash)  # runs each gr.State's delete_callback
    with holder.lock:
        holder.session_data.pop(session_hash, None)
        holder.time_last_used.pop(session_hash, None)
    _trim_heap()


@functools.cache
def _libc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, musl): nothing to trim
        return None


def _trim_heap() -> None:
    """glibc keeps freed memory for reuse instead of returning it (a closed session's
    cache and logits are thousands of small blocks): hand it back, so the server's RSS
    falls when visitors leave. Measured: 774 MB -> 542 MB after 30 closed sessions."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def _bind(fn, registry):
    """fn(registry, ...) as a handler of the remaining parameters. Unlike functools.partial it
    keeps the signature and type hints Gradio reads to pass gr.Request / gr.EventData, and
    stays a generator function where fn is one (Gradio streams those)."""
    if inspect.isgeneratorfunction(fn):
        def handler(*args, **kwargs):
            yield from fn(registry, *args, **kwargs)
    else:
        def handler(*args, **kwargs):
            return fn(registry, *args, **kwargs)
    functools.update_wrapper(handler, fn)
    sig = inspect.signature(fn)
    handler.__signature__ = sig.replace(parameters=list(sig.parameters.values())[1:])
    return handler


def build_demo(model_paths: list[str] | None = None, loader=None) -> gr.Blocks:
    """The playground's Blocks. model_paths: what the Model menu offers (first = default);
    loader: replaces model.loading.load_model (tests)."""
    registry = ModelRegistry(model_paths or DEFAULT_MODELS, loader=loader)
    gr.set_static_paths(page.static_paths())
    head = page.head_html()

    with gr.Blocks(title="Decoding Playground") as demo:
        state = gr.State(None, time_to_live=6 * 3600)  # a UserState per browser tab

        with gr.Row(equal_height=True):
            gr.HTML(page.HEADER, scale=3)
            model_dd = gr.Dropdown(registry.choices(), value=registry.default, label="Model",
                                   elem_id="model", scale=1, min_width=240, interactive=True)
        notice = gr.HTML(elem_id="notice", apply_default_css=False)

        with gr.Row():
            with gr.Column(scale=4, min_width=320):
                prompt = gr.Textbox(label=f"Prompt (up to {MAX_PROMPT_CHARS:,} characters; longer keeps the end)",
                                    lines=3, max_lines=8, max_length=MAX_PROMPT_CHARS, elem_id="prompt",
                                    placeholder="Type a prompt. Empty = start of a new document.")
                chat = gr.Checkbox(label="Chat template", visible=False, elem_id="chat",
                                   info="Wrap the prompt as one user turn of a conversation (ChatML).")
                prompt_tokens = gr.HTML(elem_id="prompt-tokens", apply_default_css=False)
                gr.Markdown("**Presets**")
                with gr.Row(elem_id="presets"):
                    preset_buttons = {name: gr.Button(name, size="sm", min_width=60,
                                                      elem_id=f"preset-{name.lower()}")
                                      for name in PRESETS}
                sliders = {}
                main, extra = CONTROLS[:6], CONTROLS[6:]
                for c in main:
                    sliders[c.name] = gr.Slider(c.minimum, c.maximum, value=c.default, step=c.step,
                                                label=c.label, info=c.info, elem_id=c.elem_id)
                temperature_last = gr.Checkbox(False, label="Temperature last (llama.cpp order)",
                                               info=explain.INFO["temperature_last"],
                                               elem_id="temperature-last")
                with gr.Accordion("More penalties", open=False):
                    for c in extra:
                        sliders[c.name] = gr.Slider(c.minimum, c.maximum, value=c.default, step=c.step,
                                                    label=c.label, info=c.info, elem_id=c.elem_id)
                seed = gr.Number(0, label="Seed", precision=0, minimum=0, maximum=2**31 - 1,
                                 info=explain.INFO["seed"], elem_id="seed")

            with gr.Column(scale=7, min_width=480):
                chart = gr.HTML("", html_template=page.CHART_TEMPLATE, js_on_load=page.CHART_JS, head=head,
                                elem_id="chart", apply_default_css=False,
                                presets=json.dumps({n: preset_values(n) for n in PRESETS}))
                with gr.Row(equal_height=True, elem_id="actions"):
                    step_btn = gr.Button("Step", variant="primary", elem_id="step", scale=2, min_width=90)
                    gen_btn = gr.Button("Generate", elem_id="generate", scale=2, min_width=100)
                    n_tokens = gr.Number(20, precision=0, minimum=1, maximum=MAX_GENERATE, elem_id="n-tokens",
                                         show_label=False, container=False, min_width=130, scale=0)
                    stop_btn = gr.Button("Stop", variant="stop", elem_id="stop", scale=1, min_width=70)
                    undo_btn = gr.Button("Undo", elem_id="undo", scale=1, min_width=70)
                    reset_btn = gr.Button("Reset", elem_id="reset", scale=1, min_width=70)
                output = gr.HTML("", js_on_load=page.OUTPUT_JS, elem_id="output", apply_default_css=False)
                gr.HTML(page.LEGEND, apply_default_css=False)
                with gr.Row():
                    export_btn = gr.Button("Export history (JSON)", size="sm", elem_id="export")
                    link_btn = gr.Button("Copy link to this view", size="sm", elem_id="copy-link")
                export_file = gr.File(label="History", visible=False, elem_id="export-file")
                gr.Markdown(f"<span class='dp-muted'>Limits: prompts up to {MAX_PROMPT_CHARS:,} "
                            f"characters, {MAX_GENERATE} tokens per Generate, {MAX_STEPS} new tokens per "
                            "session (then Reset). The address bar always holds the prompt and "
                            "settings: share it to share this view.</span>")

        with gr.Accordion("How decoding works (and a common misconception)", open=False):
            gr.Markdown(explain.GUIDE)
            gr.Markdown("\n".join(f"* **{n}**: {d}" for n, d in DESCRIPTIONS.items()))
        with gr.Accordion("About this model", open=False):
            model_panel = gr.HTML(apply_default_css=False)

        # The API's inputs: hidden, plain JSON so every value is validated by our own code.
        with gr.Group(visible=False):
            a_prompt = gr.Textbox(label="prompt")
            a_seed = gr.JSON(None, label="seed")
            a_model = gr.Textbox("", label="model")
            a_chat = gr.Checkbox(False, label="chat")
            a_settings = gr.JSON({}, label="settings")
            a_token = gr.JSON(None, label="token")
            a_n = gr.JSON(None, label="n")
            a_top_n = gr.JSON(None, label="top_n")
            a_out = gr.JSON(label="result")
            a_buttons = {name: gr.Button(name) for name in
                         ("reset", "step", "pick", "undo", "distribution", "generate", "export")}

        controls = [sliders[n] for n in SETTING_NAMES[:-1]] + [temperature_last]
        shown = [chart, output, prompt_tokens, notice]
        step_out = [chart, output, notice]
        quiet = dict(show_progress="hidden", api_visibility="private")
        def bind(fn):
            return _bind(fn, registry)

        demo.load(bind(on_load), None,
                  [state, model_dd, prompt, seed, chat, *controls, *shown, model_panel], **quiet)
        model_dd.input(bind(on_model), [state, model_dd, prompt, seed, chat],
                       [state, *shown, model_panel, chat], **quiet)
        reset_args = dict(fn=bind(on_reset), inputs=[state, prompt, seed, chat],
                          outputs=[state, *shown], trigger_mode="always_last", **quiet)
        prompt.input(**reset_args)
        chat.input(**reset_args)
        reset_btn.click(**reset_args)
        seed.input(bind(on_seed), [state, seed], chart, trigger_mode="always_last", **quiet)
        step_btn.click(bind(on_step), [state, *controls], step_out, **quiet)
        chart.pick(bind(on_pick), [state, *controls], step_out, **quiet)
        chart.rewind(bind(on_rewind), [state], step_out, **quiet)
        output.inspect(bind(on_inspect), [state], chart, **quiet)
        undo_btn.click(bind(on_undo), [state], step_out, **quiet)
        gen_event = gen_btn.click(bind(on_generate), [state, n_tokens, *controls], step_out,
                                  concurrency_limit=2, concurrency_id="generate", **quiet)
        stop_btn.click(None, None, None, cancels=[gen_event])
        for name, button in preset_buttons.items():
            button.click(functools.partial(on_preset, name), None, controls, **quiet)
        for control in controls:
            # Server-set values (presets, a shared link) fire no DOM input event: redraw here.
            control.change(None, controls, None, js=page.CONTROLS_JS)
        export_btn.click(on_export, [state], export_file, **quiet)
        link_btn.click(None, None, None, js="() => { navigator.clipboard && "
                       "navigator.clipboard.writeText(location.href); }")

        api = dict(api_visibility="public", show_progress="hidden")
        b = a_buttons
        b["reset"].click(bind(api_reset), [state, a_prompt, a_seed, a_model, a_chat],
                         [state, a_out], api_name="reset", **api)
        b["step"].click(bind(api_step), [state, a_settings], a_out, api_name="step", **api)
        b["pick"].click(bind(api_pick), [state, a_token, a_settings], a_out, api_name="pick", **api)
        b["undo"].click(bind(api_undo), [state], a_out, api_name="undo", **api)
        b["distribution"].click(bind(api_distribution), [state, a_settings, a_top_n], a_out,
                                api_name="distribution", **api)
        b["generate"].click(bind(api_generate), [state, a_n, a_settings], a_out,
                            api_name="generate", concurrency_limit=2, concurrency_id="generate", **api)
        b["export"].click(bind(api_export), [state], a_out, api_name="export", **api)

        def free_closed_session(request: gr.Request):
            free_session(demo, request.session_hash)
        demo.unload(free_closed_session)

    # api_open=False: Gradio's direct REST route (/gradio_api/run/...) would run a handler
    # outside the queue, past CONCURRENCY and QUEUE_SIZE. The page and gradio_client both
    # use the queue, so they are unaffected.
    demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE, api_open=False)
    demo.registry = registry  # for the launcher's warm-up and for tests
    return demo


def main(argv=None):
    parser = argparse.ArgumentParser(description="The Decoding Playground: watch a language model "
                                                 "choose its next token.")
    parser.add_argument("--model", action="append", metavar="PATH",
                        help="a checkpoint directory, a Hugging Face GPT-2 snapshot directory, or "
                             f"'{SMOLLM2}'; repeat for several (the first is the default). "
                             f"Default: {' and '.join(DEFAULT_MODELS)}")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (0.0.0.0 = every interface, e.g. for a workshop)")
    parser.add_argument("--port", type=int, default=7860, help="port to listen on (default 7860)")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per request (default 1: visitors' requests run in "
                             "parallel already, and more threads per request fight over the cores)")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, but is {args.threads}")
    # Measured on 2 shared cores: a step took 8 ms on one thread and 80 ms on two, because
    # up to CONCURRENCY handlers each spin two OpenMP threads on the same cores.
    torch.set_num_threads(args.threads)

    # The default checkpoint lives next to this file, wherever the server is started from.
    here = Path(__file__).resolve().parent
    defaults = [os.path.relpath(here / m) if (here / m).exists() else m for m in DEFAULT_MODELS]
    demo = build_demo(args.model or defaults)
    try:  # load the default model now, so the first visitor does not wait for it
        demo.registry.get(demo.registry.default)
    except Exception as e:
        print(f"warning: could not load {demo.registry.default}: {e}")
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, ssr_mode=False,
                footer_links=["api"], state_session_capacity=MAX_SESSIONS)


if __name__ == "__main__":
    main()

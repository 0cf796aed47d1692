"""The Decoding Playground: watch a language model choose its next token.

    python app.py                                  # checkpoints/shakespeare, plus SmolLM2 in the menu
    python app.py --model path/to/gpt2-snapshot --model checkpoints/shakespeare --port 7861

This file is the layout and the wiring. What each action does is ui/actions.py, shared by the
page (ui/handlers.py, ui/views.py) and the scripting API (ui/api.py); the page itself is
ui/page.py and ui/static/. Every browser tab has its own session. Settings reshape the chart in
the browser (the server sends each step's logits once; ui/static/pipeline.js walks the same
table of stages as model/sampling.py), so only actions reach the server.

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
    c.predict("To be, or not to be", api_name="/score")          # every token's loss; the next token
    c.predict(5, api_name="/lens")                               # each layer's top 5 for the next token
    c.predict(1000, {"temperature": 1}, api_name="/sample")      # 1,000 draws: counts, TV, KL
    rows = c.predict(8, 30, {}, api_name="/continuations")       # 8 continuations of 30 tokens
    c.predict(rows[2]["ids"], {}, api_name="/open_continuation") # make one of them the text
    c.predict(30, {"num_beams": 4, "length_penalty": 1.0, "early_stopping": False},
              api_name="/beam")                                  # beam search: candidates, ranking
    c.predict(0, {}, api_name="/beam_open")                      # the best beam becomes the text
    c.predict({"depth": 3, "top": 4, "threshold": 0.01}, {}, api_name="/blocks")  # likely futures
    c.predict(api_name="/tree")                                  # every branch made so far
    c.predict(3, api_name="/goto")                               # stand at node 3 of the tree
    c.predict(exported, api_name="/load_tree")                   # open what /export gave
    c.predict("checkpoints/shakespeare@316", "checkpoints/shakespeare", "To be, or not to be", "auto",
              api_name="/compare_models")                        # KL per position, top-1 agreement
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio: no calls home

import json

import gradio as gr

from model.sampling import schema
from ui import explain, learn_page, page, server
from ui.actions import BLOCK_DEFAULTS, Actions, Limits
from ui.api import API
from ui.handlers import PageHandlers
from ui.learn import LearnPage
from ui.presets import DESCRIPTIONS, presets_for_page
from ui.sessions import SessionTable
from ui.state import DEFAULT_PROMPT_CACHE_BYTES, ModelRegistry

LIMITS = Limits()


def build_demo(model_paths: list[str] | None = None, loader=None, limits: Limits = LIMITS,
               budget_bytes: int | None = None, prompt_cache_bytes: int = DEFAULT_PROMPT_CACHE_BYTES) -> gr.Blocks:
    """The playground's Blocks. model_paths: what the Model menu offers (first = default);
    loader: replaces model.loading.load_model (tests); budget_bytes: what all sessions may
    hold together (None = no budget); prompt_cache_bytes: each model's cache of prefilled
    prompts (0 = none)."""
    registry = ModelRegistry(model_paths or server.DEFAULT_MODELS, loader=loader,
                             prompt_cache_bytes=prompt_cache_bytes)
    sessions = SessionTable(budget_bytes)
    actions = Actions(registry, limits, sessions)
    handlers, api, learn = PageHandlers(actions), API(actions), LearnPage(actions)
    gr.set_static_paths(page.static_paths())

    with gr.Blocks(title="Decoding Playground", delete_cache=(3600, 3600)) as demo:
        # A UserState per browser tab; freed when Gradio drops it (closed tab, expiry).
        state = gr.State(None, time_to_live=6 * 3600, delete_callback=lambda user: user and user.free())
        playground = gr.HTML(
            "", html_template=page.TEMPLATE, js_on_load=page.MOUNT_JS, head=page.head_html(),
            elem_id="playground", apply_default_css=False, container=False, padding=False,
            schema=json.dumps(schema()),
            limits=json.dumps(limits.to_dict() | {"block_defaults": BLOCK_DEFAULTS}),
            presets=json.dumps(presets_for_page()), models=json.dumps(registry.choices()))
        with gr.Accordion("Score a text: what pretraining sees", open=False, elem_id="score-section"):
            scorer = gr.HTML("", html_template=page.SCORE_TEMPLATE, js_on_load=page.SCORE_MOUNT_JS,
                             elem_id="scorer", apply_default_css=False, container=False, padding=False,
                             limits=json.dumps(limits.to_dict()))
        with gr.Accordion("Watch it learn, and compare two models", open=False, elem_id="learn-section"):
            learner = gr.HTML("", html_template=learn_page.TEMPLATE, js_on_load=learn_page.MOUNT_JS,
                              head=learn_page.head_html(), elem_id="learner", apply_default_css=False,
                              container=False, padding=False,
                              variants=json.dumps(actions.variants.choices()))
        with gr.Accordion("How decoding works (and a common misconception)", open=False):
            gr.Markdown(explain.GUIDE)
            gr.Markdown("\n".join(f"* **{n}**: {d}" for n, d in DESCRIPTIONS.items()))
        with gr.Accordion("About this model", open=False):
            model_panel = gr.HTML(apply_default_css=False, elem_id="model-panel")

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
            a_text = gr.Textbox(label="text")
            a_beam = gr.JSON({}, label="beam options")
            a_model_b = gr.Textbox("", label="model_b")
            a_mode = gr.Textbox("", label="mode")
            a_out = gr.JSON(label="result")
            a_node = gr.JSON(None, label="node")
            a_data = gr.JSON(None, label="data")
            b = {name: gr.Button(name) for name in
                 ("reset", "step", "pick", "undo", "distribution", "generate", "export", "score", "lens")}
            # Many futures: draws, continuations, and opening one.
            a_m = gr.JSON(None, label="m")
            a_ids = gr.JSON(None, label="ids")
            b.update({name: gr.Button(name) for name in ("sample", "continuations", "open_continuation")})
            b.update({name: gr.Button(name) for name in ("beam", "beam_open")})  # beam search
            b.update({name: gr.Button(name) for name in ("tree", "goto", "load_tree")})  # the tree
            b["compare_models"] = gr.Button("compare_models")  # two models on one text
            a_block_options = gr.JSON({}, label="block options")
            b["blocks"] = gr.Button("blocks")  # probability blocks

        # ---- the page: one component, its own events; each answers with one payload ----
        # (Named page_*, so that the API's own names stay free.)
        quiet = dict(show_progress="hidden", api_visibility="private", trigger_mode="multiple")
        for name in page.EVENTS:
            opening = name in ("start", "model")
            outputs = [state, playground] + ([model_panel] if opening else [])
            limits = (dict(concurrency_limit=server.GENERATE_CONCURRENCY, concurrency_id="generate")
                      if name in ("generate", "beam", "blocks") else {})
            getattr(playground, name)(getattr(handlers, name), [state], outputs,
                                      api_name=f"page_{name}", **limits, **quiet)
        # The scorer reads the tab's model and changes nothing: the state is only an input.
        scorer.score(handlers.score, [state], [scorer], api_name="page_score", **quiet)
        # Watching it learn and comparing read the tab's session too, and change nothing.
        for name in learn_page.EVENTS:
            getattr(learner, name)(getattr(learn, name), [state], [learner], api_name=f"page_{name}", **quiet)

        # ---- the API ----
        pub = dict(api_visibility="public", show_progress="hidden")
        b["reset"].click(api.reset, [state, a_prompt, a_seed, a_model, a_chat], [state, a_out],
                         api_name="reset", **pub)
        b["step"].click(api.step, [state, a_settings], a_out, api_name="step", **pub)
        b["pick"].click(api.pick, [state, a_token, a_settings], a_out, api_name="pick", **pub)
        b["undo"].click(api.undo, [state], a_out, api_name="undo", **pub)
        b["distribution"].click(api.distribution, [state, a_settings, a_top_n], a_out,
                                api_name="distribution", **pub)
        b["generate"].click(api.generate, [state, a_n, a_settings], a_out, api_name="generate",
                            concurrency_limit=server.GENERATE_CONCURRENCY, concurrency_id="generate", **pub)
        b["export"].click(api.export, [state], a_out, api_name="export", **pub)
        b["score"].click(api.score, [state, a_text], a_out, api_name="score", **pub)
        b["lens"].click(api.lens, [state, a_top_n], a_out, api_name="lens", **pub)
        b["sample"].click(api.sample, [state, a_n, a_settings], a_out, api_name="sample", **pub)
        b["continuations"].click(api.continuations, [state, a_n, a_m, a_settings], a_out,
                                 api_name="continuations", **pub)
        b["open_continuation"].click(api.open_continuation, [state, a_ids, a_settings], a_out,
                                     api_name="open_continuation", **pub)
        # A search runs the model many times: it shares Generate's concurrency limit.
        b["beam"].click(api.beam, [state, a_n, a_beam], a_out, api_name="beam",
                        concurrency_limit=server.GENERATE_CONCURRENCY, concurrency_id="generate", **pub)
        b["beam_open"].click(api.beam_open, [state, a_token, a_settings], a_out, api_name="beam_open", **pub)
        # Probability blocks run the model once per level over many rows: Generate's limit too.
        b["blocks"].click(api.blocks, [state, a_block_options, a_settings], a_out, api_name="blocks",
                          concurrency_limit=server.GENERATE_CONCURRENCY, concurrency_id="generate", **pub)
        # The tree of generations.
        b["tree"].click(api.tree, [state], a_out, api_name="tree", **pub)
        b["goto"].click(api.goto, [state, a_node], a_out, api_name="goto", **pub)
        b["load_tree"].click(api.load_tree, [state, a_data], a_out, api_name="load_tree", **pub)
        b["compare_models"].click(api.compare_models, [state, a_model, a_model_b, a_text, a_mode], a_out,
                                  api_name="compare_models", **pub)

        # A closed tab's session is freed at once (Gradio would keep its state for an hour).
        def closed(request: gr.Request):
            sessions.release(request.session_hash)
        demo.unload(closed)

    # api_open=False: Gradio's direct REST route (/gradio_api/run/...) would run a handler
    # outside the queue, past CONCURRENCY and QUEUE_SIZE. The page and gradio_client both
    # use the queue, so they are unaffected.
    demo.queue(default_concurrency_limit=server.CONCURRENCY, max_size=server.QUEUE_SIZE, api_open=False)
    demo.registry, demo.actions, demo.sessions = registry, actions, sessions  # launcher, tests
    return demo


def main(argv=None):
    server.main(argv, build_demo)


if __name__ == "__main__":
    main()

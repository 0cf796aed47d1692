"""The playground's handlers, called directly, and one real server driven by gradio_client.

Every model here is a tiny random GPT saved by the fixture below, with a tokenizer trained on
a few lines of Hamlet: nothing is downloaded.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sys
import types
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gradio as gr
import pytest
import torch

import app
from model.checkpoint import save_checkpoint
from model.config import GPTConfig
from model.gpt import GPT
from model.sampling import SamplingSettings, pick_token, run_pipeline
from model.tokenizer import EOT, train_bpe
from ui.chart import decode_logits
from ui.presets import PRESETS, preset_values
from ui.settings import DEFAULTS, SETTING_NAMES, settings_from_query
from ui.state import ModelRegistry, UserState
from ui.tokens import token_label, visible

HAMLET = """To be, or not to be, that is the question:
Whether 'tis nobler in the mind to suffer
The slings and arrows of outrageous fortune,
Or to take arms against a sea of troubles
And by opposing end them. To die: to sleep;
No more; and by a sleep to say we end
The heart-ache and the thousand natural shocks
That flesh is heir to, 'tis a consummation
Devoutly to be wish'd. To die, to sleep;
To sleep: perchance to dream: ay, there's the rub;
"""


def make_tiny_checkpoint(directory: Path, chat: bool = False, block_size: int = 64) -> Path:
    """A random 2-layer GPT with a 400-token BPE. Its embeddings are scaled up so the
    next-token distributions are peaked enough for every filter to cut something."""
    enc = train_bpe([HAMLET * 4], 400)
    if chat:  # ChatML's special tokens, as SmolLM2-Instruct has them
        import tiktoken
        n = enc.n_vocab
        enc = tiktoken.Encoding("tiny-chat", pat_str=enc._pat_str, mergeable_ranks=enc._mergeable_ranks,
                                special_tokens={EOT: n - 1, "<|im_start|>": n, "<|im_end|>": n + 1})
    cfg = GPTConfig(vocab_size=enc.n_vocab, block_size=block_size, n_layer=2, n_head=2, n_embd=32,
                    eot_token=enc.eot_token)
    torch.manual_seed(0)
    gpt = GPT(cfg)
    with torch.no_grad():
        gpt.transformer.wte.weight.mul_(10)
    metrics = [{"step": 10 * i, "train_loss": 6 * 0.9 ** i, "val_loss": 6.2 * 0.92 ** i} for i in range(20)]
    return save_checkpoint(directory, gpt, cfg, enc, metrics=metrics)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return str(make_tiny_checkpoint(tmp_path_factory.mktemp("tiny")))


@pytest.fixture(scope="module")
def registry(ckpt):
    return ModelRegistry([ckpt])


def settings_values(**changes):
    values = DEFAULTS | changes
    return [values[n] for n in SETTING_NAMES]


def start(registry, prompt="To be", seed=0, chat=False):
    return app.on_reset(registry, _user(registry, prompt, seed), prompt, seed, chat)[0]


def _user(registry, prompt="To be", seed=0):
    return app._start(registry, None, registry.default, prompt, seed, False)


def payload(chart_json: str) -> dict:
    return json.loads(chart_json)


def request(**query):
    return types.SimpleNamespace(query_params=query)


# ---- page handlers ----

def test_first_visit_loads_model_and_sends_the_chart_data(registry):
    outputs = list(app.on_load(registry, request()))[-1]
    user = outputs[0]
    chart, text, chips = outputs[-5], outputs[-4], outputs[-3]
    p = payload(chart)
    assert user.session is not None and p["model"] == registry.default
    # The chart gets the exact logits of the session: the page recomputes from them.
    assert torch.equal(decode_logits(p["logits"]), user.session.logits.float())
    assert p["u"] == user.session.next_u() and p["step"] == 0
    assert len(p["labels_all"]) == p["vocab"]
    assert "end-of-text" in chips and "⟨start of text⟩" in text  # empty prompt starts from EOT


def test_shared_link_sets_prompt_and_settings(registry):
    outputs = list(app.on_load(registry, request(prompt="To be", temperature="0.5", top_k="40",
                                                 top_p="7", seed="3", temperature_last="1")))[-1]
    user, model, prompt, seed = outputs[:4]
    controls = dict(zip(SETTING_NAMES, outputs[5:5 + len(SETTING_NAMES)]))
    assert prompt == "To be" and seed == 3 and user.session.seed == 3
    assert controls["temperature"] == 0.5 and controls["top_k"] == 40
    assert controls["top_p"] == 1.0  # clamped into the slider's range, with a note
    assert controls["temperature_last"] is True
    assert "top_p=7 is outside" in outputs[-2]


def test_url_values_that_are_not_numbers_are_skipped_with_a_note():
    values, problems = settings_from_query({"temperature": "nan", "top_k": "abc", "min_p": "0.1"})
    assert values == {"min_p": 0.1}
    assert len(problems) == 2 and "temperature" in problems[0]


def test_step_appends_the_token_the_chart_predicts(registry):
    user = start(registry)
    s = user.session
    settings = SamplingSettings(temperature=0.8, top_k=20, top_p=0.9)
    predicted = pick_token(run_pipeline(s.logits, settings, s.ids).probs, s.next_u())
    chart, text, notice = app.on_step(registry, user, *settings_values(temperature=0.8, top_k=20, top_p=0.9))
    assert s.history[-1].token == predicted
    assert payload(chart)["step"] == 1 and 'data-step="0"' in text


def test_temperature_zero_steps_to_the_argmax(registry):
    user = start(registry)
    top = int(torch.argmax(user.session.logits))
    app.on_step(registry, user, *settings_values(temperature=0.0))
    assert user.session.history[-1].token == top and user.session.history[-1].how == "greedy"


def test_clicking_a_bar_picks_that_token_even_if_filtered(registry):
    user = start(registry)
    worst = int(torch.argmin(user.session.logits))
    evt = gr.EventData(None, {"token": worst})
    app.on_pick(registry, user, evt, *settings_values(top_k=1))
    assert user.session.history[-1].token == worst and user.session.history[-1].how == "picked"
    with pytest.raises(gr.Error, match="token"):
        app.on_pick(registry, user, gr.EventData(None, {"token": 10 ** 9}), *settings_values())


def test_undo_and_rewind_return_to_earlier_distributions(registry):
    user = start(registry)
    s = user.session
    first = s.logits.clone()
    for _ in range(3):
        app.on_step(registry, user, *settings_values())
    app.on_undo(registry, user)
    assert len(s.history) == 2
    app.on_rewind(registry, user, gr.EventData(None, {"step": 0}))
    assert len(s.history) == 0 and torch.equal(s.logits, first)
    _, _, notice = app.on_undo(registry, user)
    assert "Nothing to undo" in notice


def test_generate_streams_text_and_ends_with_the_chart(registry):
    user = start(registry)
    updates = list(app.on_generate(registry, user, 6, *settings_values(temperature=0.9)))
    assert 1 <= len(user.session.history) <= 6
    texts = [u[1] for u in updates if isinstance(u[1], str)]  # the others are gr.skip()
    assert len(texts) == len(user.session.history) and all("dp-text" in t for t in texts)
    charts = [u[0] for u in updates if isinstance(u[0], str)]
    assert payload(charts[-1])["step"] == len(user.session.history)


def test_generate_refuses_more_than_the_limit(registry):
    user = start(registry)
    with pytest.raises(gr.Error, match="tokens to generate"):
        list(app.on_generate(registry, user, app.MAX_GENERATE + 1, *settings_values()))


def test_inspecting_a_past_token_sends_the_distribution_it_was_drawn_from(registry):
    user = start(registry)
    app.on_step(registry, user, *settings_values(temperature=0.7))
    record = user.session.history[0]
    p = payload(app.on_inspect(registry, user, gr.EventData(None, {"step": 0})))
    assert p["mode"] == "inspect" and p["chosen"] == record.token and p["u"] == record.u
    assert torch.equal(decode_logits(p["logits"]), record.logits.float())
    assert p["chosen_settings"]["temperature"] == 0.7


def test_a_new_seed_changes_u_but_keeps_the_text(registry):
    user = start(registry)
    app.on_step(registry, user, *settings_values())
    before = payload(app.view(registry, user)[0])["u"]
    after = payload(app.on_seed(registry, user, 12345))["u"]
    assert before != after and len(user.session.history) == 1


def test_presets_set_every_control():
    for name in PRESETS:
        values = app.on_preset(name)
        assert len(values) == len(SETTING_NAMES)
        SamplingSettings.from_dict(dict(zip(SETTING_NAMES, values)))  # valid settings
    assert preset_values("Greedy")["temperature"] == 0.0


def test_long_prompt_keeps_its_end_and_says_so(registry):
    user = start(registry)
    prompt = HAMLET * 20
    _, chart, text, chips, notice = app.on_reset(registry, user, prompt, 0, False)
    assert "longer than the model&#x27;s context" in notice
    assert len(user.session.ids) == user.session.block_size
    assert user.session.text == user.session.tokenizer.decode(user.session.ids)
    assert HAMLET.strip()[-10:] in user.session.text


def test_a_megabyte_prompt_via_the_api_keeps_its_end(registry):
    user = start(registry)
    prompt = "x" * 1_000_000 + HAMLET
    _, info = app.api_reset(registry, user, prompt, 0, "", False)
    assert "cut to its last 4,000 characters" in info["notice"]
    assert info["text"].endswith(HAMLET[-20:]) and len(user.session.ids) == user.session.block_size


def test_control_characters_are_shown_visibly(registry):
    user = start(registry)
    _, chart, text, chips, notice = app.on_reset(registry, user, "a\x00b\x07\tc\n", 0, False)
    assert "␀" in chips and "␇" in chips and "↵" in chips
    assert "␀" in text
    assert visible(" \n\t\x1b") == "␣↵⇥␛"


def test_token_labels_show_whitespace_and_partial_bytes(registry):
    tok = registry.get(registry.default).tokenizer
    space = tok.encode(" ")[0]
    assert token_label(tok, space) == "␣"
    byte = next(t for t in range(256) if tok.decode_single_token_bytes(t) == b"\xe2")
    assert token_label(tok, byte) == "\\xe2"


def test_bad_slider_values_are_a_clear_error(registry):
    user = start(registry)
    with pytest.raises(gr.Error, match="top_p"):
        app.on_step(registry, user, *settings_values(top_p=float("nan")))


def test_handlers_without_a_model_say_what_to_do(registry):
    with pytest.raises(gr.Error, match="No model is loaded"):
        app.on_step(registry, None, *settings_values())
    with pytest.raises(gr.Error, match="No model is loaded"):
        app.on_reset(registry, None, "hi", 0, False)


def test_a_model_that_fails_to_load_is_a_message_not_a_crash(tmp_path):
    reg = ModelRegistry([str(tmp_path / "missing")])
    outputs = list(app.on_load(reg, request()))[-1]
    assert outputs[0] is None and "Could not load model" in outputs[-2] and "does not exist" in outputs[-2]
    updates = list(app.on_model(reg, UserState(), str(tmp_path / "missing"), "", 0, False))
    assert "Could not load model" in updates[-1][4]


def test_switching_models_resets_and_shows_the_chat_switch(registry, ckpt, tmp_path):
    chat_ckpt = str(make_tiny_checkpoint(tmp_path / "chat", chat=True))
    reg = ModelRegistry([ckpt, chat_ckpt])
    user = list(app.on_load(reg, request(prompt="hello")))[-1][0]
    updates = list(app.on_model(reg, user, chat_ckpt, "hello", 0, True))
    user, chart, text, chips, notice, panel, chat_update = updates[-1]
    assert user.model == chat_ckpt and chat_update["visible"] is True
    assert "<|im_start|>user\nhello<|im_end|>" in user.session.text
    assert "The chat template wraps your text" in chips
    _, _, _, chips, _ = app.on_reset(reg, user, "hello", 0, False)
    assert "<|im_start|>" not in user.session.text


def test_model_panel_states_weight_tying_and_draws_the_loss_curve(registry):
    user = start(registry)
    panel, _ = app._model_extras(registry, user)
    assert "Weight tying" in panel and "(out, in)" in panel and "(400, 32)" in panel
    assert "<svg" in panel and "train_loss" in panel and "val_loss" in panel


def test_every_browser_tab_has_its_own_session(registry):
    a, b = start(registry, "To be"), start(registry, "The slings")
    app.on_step(registry, a, *settings_values())
    assert len(a.session.history) == 1 and len(b.session.history) == 0
    assert a.session is not b.session and a.session.gpt is b.session.gpt  # weights are shared


def test_export_writes_the_history_as_json(registry):
    user = start(registry)
    app.on_step(registry, user, *settings_values())
    path = app.on_export(user)["value"]
    data = json.loads(Path(path).read_text())
    assert data["steps"][0]["token"] == user.session.history[0].token and data["model"] == user.model


# ---- the API's validation ----

@pytest.mark.parametrize("settings, match", [
    ({"temperature": float("nan")}, "temperature"),
    ({"temperature": -1}, "temperature"),
    ({"top_k": 2.5}, "top_k"),
    ({"top_p": "high"}, "top_p"),
    ({"bogus": 1}, "unknown sampling settings"),
    ([0.7], "JSON object"),
])
def test_api_rejects_bad_settings_clearly(registry, settings, match):
    user = start(registry)
    with pytest.raises(gr.Error, match=match):
        app.api_step(registry, user, settings)
    assert len(user.session.history) == 0


@pytest.mark.parametrize("token", [-1, 400, 1e30, "5", None, float("nan"), True])
def test_api_pick_rejects_bad_token_ids(registry, token):
    user = start(registry)
    with pytest.raises(gr.Error, match="token"):
        app.api_pick(registry, user, token, {})


def test_api_distribution_matches_run_pipeline(registry):
    user = start(registry)
    out = app.api_distribution(registry, user, {"temperature": 0.7, "top_k": 5}, 10)
    pipe = run_pipeline(user.session.logits, SamplingSettings(temperature=0.7, top_k=5), user.session.ids)
    assert out["kept"] == int((pipe.probs > 0).sum()) == 5
    assert out["next_token"]["id"] == pick_token(pipe.probs, user.session.next_u())
    assert math.isclose(sum(t["prob"] for t in out["tokens"]), 1.0, rel_tol=1e-9)
    removed = [t for t in out["tokens"] if t["removed_by"]]
    assert removed and all(t["removed_by"] == "top-k" for t in removed)
    with pytest.raises(gr.Error, match="top_n"):
        app.api_distribution(registry, user, {}, 10 ** 6)


def test_api_reset_rejects_bad_prompts_and_seeds(registry):
    user = start(registry)
    for prompt, seed, match in [(5, 0, "prompt must be text"), ("hi", -1, "seed"), ("hi", "x", "seed"),
                                ("\ud800", 0, "not valid Unicode")]:
        with pytest.raises(gr.Error, match=match):
            app.api_reset(registry, user, prompt, seed, "", False)


def test_no_repeat_ngram_that_bans_everything_is_an_error_not_nan(tmp_path):
    # A 2-gram ban after "a a" with a vocabulary where only "a" is plausible still leaves
    # other tokens; build the extreme case directly: ban the whole (tiny) vocabulary.
    reg = ModelRegistry(["fake"], loader=lambda name: _all_banned_model())
    user = app._start(reg, None, "fake", "", 0, False)
    user.session.reset("")
    s = user.session
    s._ids = [0, 0, 1, 0, 2, 0]  # after "0", each of 0, 1, 2 has followed "0" once
    with pytest.raises(gr.Error, match="no_repeat_ngram_size 2 bans every token"):
        app.api_step(reg, user, {"no_repeat_ngram_size": 2})


@pytest.mark.parametrize("settings", [{"repetition_penalty": 1e-320}, {"temperature": 1e-320},
                                      {"presence_penalty": -1e308, "frequency_penalty": -1e308}])
def test_settings_that_overflow_the_logits_are_refused(registry, settings):
    user = start(registry, "To be, or not to be")
    with pytest.raises(gr.Error, match="overflow"):
        app.api_step(registry, user, settings)
    with pytest.raises(gr.Error, match="overflow"):
        app.api_pick(registry, user, 3, settings)
    assert len(user.session.history) == 0


def _all_banned_model():
    import tiktoken
    enc = tiktoken.Encoding("three", pat_str=r"\S", mergeable_ranks={b"a": 0, b"b": 1},
                            special_tokens={EOT: 2})
    cfg = GPTConfig(vocab_size=3, block_size=16, n_layer=1, n_head=1, n_embd=8, eot_token=2)
    return GPT(cfg).eval(), enc


# ---- one real server, scripted with gradio_client ----

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_gradio_client_scripts_a_session(ckpt):
    from gradio_client import Client

    demo = app.build_demo([ckpt])
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, ssr_mode=False,
                quiet=True)
    try:
        c = Client(f"http://127.0.0.1:{port}/", verbose=False)
        info = c.predict("To be", 7, api_name="/reset")
        assert info["seed"] == 7 and [t["label"] for t in info["prompt_tokens"]][0] == "To"
        dist = c.predict({"temperature": 0.0}, 5, api_name="/distribution")
        assert dist["kept"] == 1 and len(dist["tokens"]) == 5
        step = c.predict({"temperature": 0.0}, api_name="/step")
        assert step["token"] == dist["next_token"]["id"] and step["how"] == "greedy"
        picked = c.predict(3, {}, api_name="/pick")
        assert picked["token"] == 3 and picked["steps"] == 2
        assert c.predict(api_name="/undo")["steps"] == 1
        job = c.submit(4, {"temperature": 0.9}, api_name="/generate")
        results = list(job)
        assert job.outputs()[-1]["steps"] >= 2 and results
        exported = c.predict(api_name="/export")
        assert exported["seed"] == 7 and len(exported["steps"]) == job.outputs()[-1]["steps"]
        # Bad input is a clear error for this caller, and the server carries on.
        with pytest.raises(Exception, match="top_p must be a finite number in"):
            c.predict({"top_p": 5}, api_name="/step")
        with pytest.raises(Exception, match="temperature must be a number"):
            c.predict({"temperature": "hot"}, api_name="/step")
        with pytest.raises(Exception, match="token"):
            c.predict(-5, {}, api_name="/pick")
        other = Client(f"http://127.0.0.1:{port}/", verbose=False)  # a second, separate session
        with pytest.raises(Exception, match="No model is loaded"):
            other.predict({}, api_name="/step")
        assert c.predict({}, 3, api_name="/distribution")["steps"] == len(exported["steps"])
        assert set(c.view_api(print_info=False, return_format="dict")["named_endpoints"]) >= {
            "/reset", "/step", "/pick", "/undo", "/distribution", "/generate"}
    finally:
        demo.close()

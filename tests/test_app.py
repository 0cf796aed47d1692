"""The playground's actions, its page handlers and its API, called directly, and one real
server driven by gradio_client.

Every model here is a tiny random GPT saved by testkit.models.make_tiny_checkpoint, with a
tokenizer trained on a few lines of Hamlet: nothing is downloaded.
"""

from __future__ import annotations

import json
import math
import threading

import gradio as gr
import pytest
import torch

import app
from model.config import GPTConfig
from model.gpt import GPT
from model.sampling import SETTINGS, SamplingSettings, pick_token, run_pipeline
from model.tokenizer import EOT
from testkit.models import HAMLET, make_tiny_checkpoint
from testkit.server import launch
from ui.actions import Actions, Limits, UserError
from ui.api import API
from ui.chart import decode_logits
from ui.handlers import PageHandlers
from ui.presets import PRESETS, preset_values
from ui.sessions import HEADROOM, SessionTable
from ui.state import ModelRegistry
from ui.tokens import token_label, visible


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return str(make_tiny_checkpoint(tmp_path_factory.mktemp("tiny")))


@pytest.fixture(scope="module")
def registry(ckpt):
    return ModelRegistry([ckpt])


class Page:
    """The page's side of the protocol: send an action as the page's trigger does, get the
    payload it would draw."""

    def __init__(self, registry, limits=Limits(), sessions=None):
        self.actions = Actions(registry, limits, sessions)
        self.handlers, self.api = PageHandlers(self.actions), API(self.actions)
        self.user, self.panel, self.n = None, None, 0

    def send(self, action, **data):
        self.n += 1
        evt = gr.EventData(None, dict(data, id=self.n))
        fn = getattr(self.handlers, action)
        args = (self.user, evt) + ((None,) if action in ("start", "model") else ())
        out = fn(*args)
        payloads = list(out) if action in ("start", "model", "generate") else [out]
        decoded = []
        for p in payloads:
            self.user = p[0]
            if len(p) > 2 and isinstance(p[2], str):
                self.panel = p[2]
            decoded.append(json.loads(p[1]))
        assert decoded[-1]["ack"] == self.n or any(d["ack"] == self.n for d in decoded)
        return decoded if action in ("start", "model", "generate") else decoded[0]

    def start(self, prompt="To be", seed=0, **kw):
        return self.send("start", prompt=prompt, seed=seed, **kw)[-1]

    @property
    def session(self):
        return self.user.session


def settings(**changes):
    return {name: x.default for name, x in SETTINGS.items()} | changes


# ---- opening a tab ----

def test_first_visit_loads_model_and_sends_the_chart_data(registry):
    page = Page(registry)
    p = page.start(prompt="")
    s = page.session
    assert s is not None and p["chart"]["model"] == registry.default
    # The chart gets the exact logits of the session: the page recomputes from them.
    assert torch.equal(decode_logits(p["chart"]["logits"]), s.logits.float())
    assert p["chart"]["u"] == s.next_u() and p["chart"]["step"] == 0
    assert len(p["chart"]["labels_all"]) == p["chart"]["vocab"]
    assert "end-of-text" in p["chips"] and p["text"]["prompt"]["start_of_text"]  # empty = EOT
    assert "Weight tying" in page.panel


def test_a_link_restores_prompt_seed_and_text(registry):
    """A link carries the committed token ids: the same view comes back, sampled tokens
    recorded as sampled (the seed's u gives them again), the others as picked."""
    page = Page(registry)
    page.start(prompt="To be", seed=3)
    st = settings(temperature=0.9, top_k=20)
    for _ in range(4):
        page.send("step", settings=st)
    page.send("pick", token=5, settings=st)
    ids, hows = page.session.ids[page.session.prompt_len:], [r.how for r in page.session.history]
    again = Page(registry)
    p = again.start(prompt="To be", seed=3, ids=ids, settings=st)
    assert [t["token"] for t in p["text"]["tokens"]] == ids
    assert [r.how for r in again.session.history] == hows == ["sampled"] * 4 + ["picked"]
    assert torch.equal(again.session.logits, page.session.logits)
    assert torch.equal(decode_logits(p["chart"]["logits"]), page.session.logits.float())


def test_a_link_naming_another_model_or_bad_ids_opens_with_a_note(registry):
    page = Page(registry)
    p = page.start(model="/etc/passwd", ids=[10**9])
    assert p["chart"]["model"] == registry.default
    assert "is not served here" in p["notice"]["text"] and "could not be restored" in p["notice"]["text"]


def test_a_model_that_fails_to_load_is_a_message_not_a_crash(tmp_path):
    page = Page(ModelRegistry([str(tmp_path / "missing")]))
    payloads = page.send("start", prompt="", seed=0)
    assert page.user is None
    assert payloads[0]["loading"].startswith("Loading")
    assert "does not exist" in payloads[-1]["notice"]["text"] and payloads[-1]["loading"] == ""


def test_starting_a_session_runs_the_model_once_and_a_refused_prompt_keeps_the_old_one(registry):
    actions = Actions(registry)
    gpt = registry.get(registry.default).gpt
    forwards = []
    real = gpt.forward
    gpt.forward = lambda *a, **k: forwards.append(a[0].shape) or real(*a, **k)
    try:
        user = actions.start(None, None, "To be, or not to be", 3)
    finally:
        del gpt.forward  # the class's own again
    assert len(forwards) == 1 and forwards[0][1] == len(user.session.ids)  # the prompt, once
    before = user.session
    with pytest.raises(ValueError, match="not valid Unicode"):
        actions.start(user, None, "bad \ud800 prompt", 3)
    assert user.session is before and user.prompt == "To be, or not to be"


def test_switching_models_resets_and_shows_the_chat_switch(registry, ckpt, tmp_path):
    chat_ckpt = str(make_tiny_checkpoint(tmp_path / "chat", chat=True))
    page = Page(ModelRegistry([ckpt, chat_ckpt]))
    page.start(prompt="hello")
    p = page.send("model", name=chat_ckpt, prompt="hello", chat=True, seed=0)[-1]
    assert page.user.model == chat_ckpt and p["model"] == {"name": chat_ckpt, "chat": True,
                                                          "chat_on": True, "mode": "exact"}
    assert "<|im_start|>user\nhello<|im_end|>" in page.session.text
    assert "The chat template wraps your text" in p["chips"]
    page.send("prompt", text="hello", chat=False)
    assert "<|im_start|>" not in page.session.text
    p = page.send("model", name="/etc", prompt="x")[-1]
    assert "is not served here" in p["notice"]["text"] and page.user.model == chat_ckpt


# ---- one token at a time ----

def test_step_appends_the_token_the_chart_predicts(registry):
    page = Page(registry)
    page.start()
    s = page.session
    st = SamplingSettings(temperature=0.8, top_k=20, top_p=0.9)
    predicted = pick_token(run_pipeline(s.logits, st, s.ids).probs, s.next_u())
    p = page.send("step", settings=st.to_dict())
    assert s.history[-1].token == predicted
    assert p["chart"]["step"] == 1 and p["text"]["tokens"][0]["token"] == predicted


def test_temperature_zero_steps_to_the_argmax(registry):
    page = Page(registry)
    page.start()
    top = int(torch.argmax(page.session.logits))
    page.send("step", settings=settings(temperature=0.0))
    assert page.session.history[-1].token == top and page.session.history[-1].how == "greedy"


def test_picking_a_bar_appends_that_token_even_if_filtered(registry):
    page = Page(registry)
    page.start()
    worst = int(torch.argmin(page.session.logits))
    page.send("pick", token=worst, settings=settings(top_k=1))
    assert page.session.history[-1].token == worst and page.session.history[-1].how == "picked"
    p = page.send("pick", token=10**9, settings=settings())
    assert "token must be a whole number from 0 to 399" in p["notice"]["text"]
    assert len(page.session.history) == 1 and len(p["text"]["tokens"]) == 1


def test_undo_and_rewind_return_to_earlier_distributions(registry):
    page = Page(registry)
    page.start()
    s = page.session
    first = s.logits.clone()
    for _ in range(3):
        page.send("step", settings=settings())
    page.send("undo")
    assert len(s.history) == 2
    page.send("rewind", step=0)
    assert len(s.history) == 0 and torch.equal(s.logits, first)
    assert "Nothing to undo" in page.send("undo")["notice"]["text"]


def test_open_path_keeps_the_shared_steps_and_replays_only_where_the_paths_part(registry):
    page = Page(registry)
    page.start()
    s, actions = page.session, page.actions
    for _ in range(4):
        page.send("step", settings=settings(temperature=0.9))
    old = [r.token for r in s.history]
    kept = s.history[:2]
    other = (old[2] + 1) % s.vocab_size
    path = old[:2] + [other, 7]
    assert actions.open_path(page.user, path, SamplingSettings()) == 2
    assert [r.token for r in s.history] == path
    assert s.history[:2] == kept  # the same records: nothing before the fork was redone
    assert actions.open_path(page.user, path[:1], SamplingSettings()) == 0  # a prefix: rewind only
    assert [r.token for r in s.history] == path[:1]
    with pytest.raises(UserError, match="token id must be a whole number from 0 to 399"):
        actions.open_path(page.user, [1, 10**6], SamplingSettings())
    assert [r.token for r in s.history] == path[:1]  # a refused path changes nothing


def test_generate_streams_only_new_tokens_and_ends_with_a_snapshot(registry):
    page = Page(registry)
    page.start()
    payloads = page.send("generate", n=6, settings=settings(temperature=0.9))
    s = page.session
    assert 1 <= len(s.history) <= 6
    appends, end = payloads[:-1], payloads[-1]
    assert all(p["text"]["mode"] == "append" and "chart" not in p for p in appends)
    # each append follows on from the last one (tokens made close together ride in one)
    starts = [p["text"]["from"] for p in appends]
    assert starts[0] == 0 and all(b == a + len(p["text"]["tokens"])
                                  for a, b, p in zip(starts, starts[1:], appends))
    streamed = [t["token"] for p in appends for t in p["text"]["tokens"]]
    assert streamed == [r.token for r in s.history][:len(streamed)]
    assert end["text"]["mode"] == "full" and end["chart"]["step"] == len(s.history)
    seqs = [p["seq"] for p in payloads]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_generate_refuses_more_than_the_limit_and_stops_at_the_session_limit(registry):
    page = Page(registry, Limits(session_tokens=5))
    page.start()
    p = page.send("generate", n=Limits().generate_tokens + 1, settings=settings())[-1]
    assert "tokens to generate must be a whole number from 1 to 200" in p["notice"]["text"]
    p = page.send("generate", n=20, settings=settings())[-1]
    assert len(page.session.history) == 5 and "reached 5 new tokens" in p["notice"]["text"]


class Stream:
    """A Generate's payloads taken as Gradio takes them: on a thread of their own, one after
    another (the generator resumes only once its last payload is handed over). The stream is
    held after `hold_after` payloads until `resume()`, as a slow network or a busy server
    holds it."""

    def __init__(self, page, hold_after, **data):
        page.n += 1
        self.gen = page.handlers.generate(page.user, gr.EventData(None, dict(data, id=page.n)))
        self.payloads, self.held, self.go = [], threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._take, args=(hold_after,), daemon=True)
        self.thread.start()
        assert self.held.wait(30)

    def _take(self, hold_after):
        for out in self.gen:
            self.payloads.append(json.loads(out[1]))
            if len(self.payloads) == hold_after:
                self.held.set()
                self.go.wait(30)
        self.held.set()

    def resume(self):
        self.go.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


def interrupt(page, stream, action, **data) -> dict:
    """Send `action` while `stream` is held: its answer must wait for the stream's last payload
    and be numbered after it. (An answer made first, and overtaken by a late stream payload,
    was dropped by the page as older, its acknowledgement with it: the page then waited.)"""
    answer = []
    sender = threading.Thread(target=lambda: answer.append(page.send(action, **data)), daemon=True)
    sender.start()
    sender.join(0.5)
    assert sender.is_alive(), f"{action} answered before the interrupted stream had ended"
    stream.resume()
    sender.join(30)
    assert answer, f"{action} did not answer"
    assert all(p["seq"] < answer[0]["seq"] for p in stream.payloads), (stream.payloads, answer)
    return answer[0]


def test_any_action_during_generate_stops_it_where_the_page_stopped_showing_it(registry, monkeypatch):
    """Stop, Step, Undo, Reset or a new prompt mid-Generate: the session keeps exactly the
    tokens the page had shown (`keep`), then the action runs; the Generate adds nothing more,
    and the action's answer reaches the page after the Generate's last payload."""
    import ui.handlers
    monkeypatch.setattr(ui.handlers, "STREAM_EVERY_S", 0)  # a payload per token, to stop between them
    page = Page(registry)
    page.start()
    s = page.session
    stream = Stream(page, 8, n=50, settings=settings())
    shown = 5  # the page had drawn five of the eight
    interrupt(page, stream, "step", settings=settings(), keep=shown)
    assert len(stream.payloads) == 8  # the Generate saw it was stopped: no more tokens, no snapshot
    assert len(s.history) == shown + 1
    stream = Stream(page, 2, n=50, settings=settings())
    p = interrupt(page, stream, "reset", prompt="The slings", seed=0, keep=1)
    assert len(stream.payloads) == 2 and len(s.history) == 0 and p["text"]["tokens"] == []
    for action, data in (("undo", {}), ("prompt", {"text": "Alas"}), ("stop", {})):
        stream = Stream(page, 3, n=50, settings=settings())
        p = interrupt(page, stream, action, keep=2, **data)
        assert len(stream.payloads) == 3
    assert len(s.history) == 2 and len(p["text"]["tokens"]) == 2


def test_step_pick_generate_and_a_links_tokens_run_the_pipeline_once_per_token(registry, monkeypatch):
    import model.session

    runs = []
    real = model.session.run_pipeline
    monkeypatch.setattr(model.session, "run_pipeline", lambda *a, **k: runs.append(1) or real(*a, **k))
    page = Page(registry)
    page.start(prompt="To be", seed=3)
    st = settings(temperature=0.9, top_k=20)
    for action, data, tokens in (("step", {}, 1), ("pick", {"token": 5}, 1), ("generate", {"n": 4}, 4)):
        runs.clear()
        page.send(action, settings=st, **data)
        assert len(runs) == tokens, (action, len(runs))
    ids = page.session.ids[page.session.prompt_len:]
    runs.clear()
    again = Page(registry)
    again.start(prompt="To be", seed=3, ids=ids, settings=st)
    assert again.session.ids == page.session.ids
    assert len(runs) == len(ids)  # the chart needs none: the page runs its own


def test_an_action_after_a_generate_has_ended_does_not_wait(registry, monkeypatch):
    page = Page(registry)
    page.start()
    stream = Stream(page, 0, n=3, settings=settings())
    stream.thread.join(30)
    ended = page.user.streaming
    assert ended.is_set()
    waits = []
    monkeypatch.setattr(ended, "wait", lambda *a: waits.append(a) or True)
    p = page.send("step", settings=settings())
    assert waits == [] and p["ack"] == page.n and len(page.session.history) == 4


def test_inspecting_a_past_token_sends_the_distribution_it_was_drawn_from(registry):
    page = Page(registry)
    page.start()
    page.send("step", settings=settings(temperature=0.7))
    record = page.session.history[0]
    p = page.send("inspect", step=0)["chart"]
    assert p["mode"] == "inspect" and p["chosen"] == record.token and p["u"] == record.u
    assert torch.equal(decode_logits(p["logits"]), record.logits.float())
    assert p["chosen_settings"]["temperature"] == 0.7
    assert "no steps" not in json.dumps(p)
    assert "step must be a whole number from 0 to 0" in page.send("inspect", step=4)["notice"]["text"]


def test_a_new_seed_changes_u_but_keeps_the_text(registry):
    page = Page(registry)
    page.start()
    page.send("step", settings=settings())
    before = page.send("seed", seed=0)["chart"]["u"]
    after = page.send("seed", seed=12345)["chart"]["u"]
    assert before != after and len(page.session.history) == 1
    assert "seed must be a whole number from 0 to 4,294,967,295" in page.send("seed", seed=-1)["notice"]["text"]


def test_presets_are_valid_settings():
    for name in PRESETS:
        SamplingSettings.from_dict(preset_values(name))
    assert preset_values("Greedy")["temperature"] == 0.0


def test_long_prompt_keeps_its_end_and_says_so(registry):
    page = Page(registry)
    page.start()
    p = page.send("prompt", text=HAMLET * 20)
    s = page.session
    assert "longer than the model's context" in p["status"]
    assert len(s.ids) == s.block_size and s.text == s.tokenizer.decode(s.ids)
    assert HAMLET.strip()[-10:] in s.text


def test_control_characters_are_shown_visibly(registry):
    page = Page(registry)
    page.start()
    p = page.send("prompt", text="a\x00b\x07\tc\n")
    assert "␀" in p["chips"] and "␇" in p["chips"] and "↵" in p["chips"]
    assert visible(" \n\t\x1b") == "␣↵⇥␛"


def test_token_labels_show_whitespace_and_partial_bytes(registry):
    tok = registry.get(registry.default).tokenizer
    assert token_label(tok, tok.encode(" ")[0]) == "␣"
    byte = next(t for t in range(256) if tok.decode_single_token_bytes(t) == b"\xe2")
    assert token_label(tok, byte) == "\\xe2"


def test_bad_settings_from_the_page_are_a_message_and_change_nothing(registry):
    page = Page(registry)
    page.start()
    for bad, match in [({"top_p": float("nan")}, "top_p"), ({"temperature": -1}, "temperature"),
                       ({"bogus": 1}, "unknown sampling settings"), ([1], "JSON object")]:
        p = page.send("step", settings=bad)
        assert match in p["notice"]["text"] and p["notice"]["kind"] == "error"
    assert len(page.session.history) == 0


def test_actions_without_a_model_say_what_to_do(registry):
    page = Page(registry)
    for name in ("step", "undo", "prompt", "stop", "export"):
        assert "No model is loaded" in page.send(name, settings={})["notice"]["text"], name


def test_a_server_without_the_tabs_session_says_so_and_the_pages_start_brings_it_back(registry):
    """A restarted server holds nothing for a tab that was open before: each action is answered
    with `lost` (acknowledged, so the page's queue goes on), and the start the page then sends
    from what it shows (prompt, seed, settings, token ids: static/reconnect.js) gives the same
    text and chart."""
    page = Page(registry)
    page.start(prompt="To be", seed=3)
    st = settings(temperature=0.9, top_k=20)
    for _ in range(3):
        page.send("step", settings=st)
    restarted = Page(registry)  # a new process: the same model, no sessions
    for name in ("step", "pick", "undo", "rewind", "inspect", "stop", "seed", "export", "lens", "generate"):
        answers = restarted.send(name, settings=st, token=1, step=0, seed=1, n=5, top_n=5)
        answer = answers[-1] if isinstance(answers, list) else answers
        assert answer["lost"] is True and answer["generating"] is False, name
        assert "No model is loaded" in answer["notice"]["text"]  # shown by a page that had no session
    ids = page.session.ids[page.session.prompt_len:]
    p = restarted.start(prompt="To be", seed=3, ids=ids, settings=st)
    assert "lost" not in p
    assert [t["token"] for t in p["text"]["tokens"]] == ids
    assert torch.equal(decode_logits(p["chart"]["logits"]), page.session.logits.float())
    assert restarted.send("step", settings=st)["text"]["tokens"][-1]["token"] == \
        page.send("step", settings=st)["text"]["tokens"][-1]["token"]


def test_every_tab_has_its_own_session(registry):
    a, b = Page(registry), Page(registry)
    a.start("To be")
    b.start("The slings")
    a.send("step", settings=settings())
    assert len(a.session.history) == 1 and len(b.session.history) == 0
    assert a.session is not b.session and a.session.gpt is b.session.gpt  # weights are shared


def test_export_sends_the_history_and_writes_no_file(registry, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    page = Page(registry)
    page.start()
    page.send("step", settings=settings())
    data = page.send("export")["export"]
    assert data["steps"][0]["token"] == page.session.history[0].token and data["model"] == page.user.model
    assert list(tmp_path.iterdir()) == []


def test_model_panel_states_the_card_weight_tying_and_draws_the_loss_curve(registry):
    page = Page(registry)
    page.start()
    panel = page.panel
    assert "Weight tying" in panel and "(out, in)" in panel and "(400, 32)" in panel
    assert "<svg" in panel and "train_loss" in panel and "val_loss" in panel and "Mode" in panel


# ---- the memory budget ----

def test_sessions_past_the_budget_are_closed_least_recent_first_with_a_message(registry):
    overhead = 10_000_000  # what the rest of the server holds (models, Python, ...)
    table = SessionTable(budget_bytes=None, resident=lambda: overhead + table.held_bytes())
    pages = [Page(registry, sessions=table) for _ in range(3)]
    for i, page in enumerate(pages):
        page.start(f"To be {i}")
    one = pages[0].user.memory_bytes()
    assert one > 0 and table.held_bytes() == sum(p.user.memory_bytes() for p in pages)
    # room for two and a half sessions beside the rest of the server
    table.budget_bytes = int((overhead + 2.5 * one) / HEADROOM)
    pages[1].send("step", settings=settings())  # pages[0] is now the least recently used
    assert pages[0].user.evicted and pages[0].session is None
    assert pages[1].session is not None and pages[2].session is not None
    p = pages[0].send("step", settings=settings())
    assert p.get("evicted") and "closed to keep the server's memory" in p["notice"]["text"]
    p = pages[0].start("To be 0")  # one click: start again
    assert pages[0].session is not None and not pages[0].user.evicted


def test_a_closed_tab_is_freed_at_once(registry):
    table = SessionTable()
    page = Page(registry, sessions=table)
    page.start()
    page.user.owner = "tab-1"
    table.release("tab-1")
    assert page.session is None and not page.user.evicted


# ---- the API's validation ----

@pytest.mark.parametrize("bad, match", [
    ({"temperature": float("nan")}, "temperature"),
    ({"temperature": -1}, "temperature"),
    ({"top_k": 2.5}, "top_k"),
    ({"top_p": "high"}, "top_p"),
    ({"bogus": 1}, "unknown sampling settings"),
    ([0.7], "JSON object"),
])
def test_api_rejects_bad_settings_clearly(registry, bad, match):
    page = Page(registry)
    page.start()
    with pytest.raises(gr.Error, match=match):
        page.api.step(page.user, bad)
    assert len(page.session.history) == 0


@pytest.mark.parametrize("token", [-1, 400, 1e30, "5", None, float("nan"), True])
def test_api_pick_rejects_bad_token_ids(registry, token):
    page = Page(registry)
    page.start()
    with pytest.raises(gr.Error, match="token"):
        page.api.pick(page.user, token, {})


def test_api_distribution_matches_run_pipeline(registry):
    page = Page(registry)
    page.start()
    out = page.api.distribution(page.user, {"temperature": 0.7, "top_k": 5}, 10)
    s = page.session
    pipe = run_pipeline(s.logits, SamplingSettings(temperature=0.7, top_k=5), s.ids)
    assert out["kept"] == int((pipe.probs > 0).sum()) == 5
    assert out["next_token"]["id"] == pick_token(pipe.probs, s.next_u())
    assert math.isclose(sum(t["prob"] for t in out["tokens"]), 1.0, rel_tol=1e-9)
    removed = [t for t in out["tokens"] if t["removed_by"]]
    assert removed and all(t["removed_by"] == "top-k" for t in removed)
    with pytest.raises(gr.Error, match="top_n"):
        page.api.distribution(page.user, {}, 10 ** 6)


def test_api_reset_rejects_bad_prompts_and_seeds(registry):
    api = API(Actions(registry))
    for prompt, seed, match in [(5, 0, "prompt must be text"), ("hi", -1, "seed"), ("hi", "x", "seed"),
                                ("\ud800", 0, "not valid Unicode")]:
        with pytest.raises(gr.Error, match=match):
            api.reset(None, prompt, seed, "", False)


def test_a_megabyte_prompt_via_the_api_keeps_its_end(registry):
    api = API(Actions(registry))
    user, info = api.reset(None, "x" * 1_000_000 + HAMLET, 0, "", False)
    assert "cut to its last 4,000 characters" in info["notice"]
    assert info["text"].endswith(HAMLET[-20:]) and len(user.session.ids) == user.session.block_size


def test_no_repeat_ngram_that_bans_everything_is_an_error_not_nan():
    reg = ModelRegistry(["fake"], loader=lambda name: _all_banned_model())
    api = API(Actions(reg))
    user, _ = api.reset(None, "", 0, "", False)
    user.session._ids = [0, 0, 1, 0, 2, 0]  # after "0", each of 0, 1, 2 has followed "0" once
    with pytest.raises(gr.Error, match="no_repeat_ngram_size 2 bans every token"):
        api.step(user, {"no_repeat_ngram_size": 2})


@pytest.mark.parametrize("bad", [{"repetition_penalty": 1e-320}, {"temperature": 1e-320},
                                 {"presence_penalty": -1e308, "frequency_penalty": -1e308}])
def test_settings_that_overflow_the_logits_are_refused(registry, bad):
    api = API(Actions(registry))
    user, _ = api.reset(None, "To be, or not to be", 0, "", False)
    with pytest.raises(gr.Error, match="overflow"):
        api.step(user, bad)
    with pytest.raises(gr.Error, match="overflow"):
        api.pick(user, 3, bad)
    assert len(user.session.history) == 0


def _all_banned_model():
    import tiktoken
    enc = tiktoken.Encoding("three", pat_str=r"\S", mergeable_ranks={b"a": 0, b"b": 1},
                            special_tokens={EOT: 2})
    cfg = GPTConfig(vocab_size=3, block_size=16, n_layer=1, n_head=1, n_embd=8, eot_token=2)
    return GPT(cfg).eval(), enc, {"name": "three"}


def test_user_errors_name_the_value_and_the_range():
    a = Actions(ModelRegistry(["x"]))
    with pytest.raises(UserError, match=r"seed must be a whole number from 0 to 4,294,967,295, but is 3\.5"):
        a.check_seed(3.5)


# ---- one real server, scripted with gradio_client ----

def test_gradio_client_scripts_a_session(ckpt):
    from gradio_client import Client

    demo = app.build_demo([ckpt])
    url = launch(demo)
    try:
        c = Client(url, verbose=False)
        info = c.predict("To be", 7, api_name="/reset")
        assert info["seed"] == 7 and [t["label"] for t in info["prompt_tokens"]][0] == "To"
        assert info["mode"] == "exact"
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
        other = Client(url, verbose=False)  # a second, separate session
        with pytest.raises(Exception, match="No model is loaded"):
            other.predict({}, api_name="/step")
        assert c.predict({}, 3, api_name="/distribution")["steps"] == len(exported["steps"])
        assert set(c.view_api(print_info=False, return_format="dict")["named_endpoints"]) >= {
            "/reset", "/step", "/pick", "/undo", "/distribution", "/generate"}
    finally:
        demo.close()


def test_the_mode_flag_loads_models_fast_and_the_page_and_api_say_so(ckpt, monkeypatch):
    launched = {}
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kw: launched.update(demo=self))
    app.main(["--model", ckpt, "--mode", "fast", "--port", "7999"])
    demo = launched["demo"]
    assert demo.registry.get(ckpt).card["mode"] == "fast"
    page = Page(demo.registry)
    assert page.start()["model"]["mode"] == "fast"
    assert "fast:" in page.panel
    _, info = page.api.reset(None, "To be", 0, "", False)
    assert info["mode"] == "fast"

"""The views of the inside of the model, through the API (gradio_client against a real server)
and the page's handlers: a text scored as pretraining scores it, the logit lens on the
session's next token, weight tying in the model panel, and DDP vs FSDP memory from the
checkpoint's own processes.

References: the training forward's own loss (GPT(idx, targets)), Hugging Face transformers'
GPT2LMHeadModel(..., labels=...) loss, the playground's /distribution for the same text as a
prompt, and the session's own logits.
"""

from __future__ import annotations

import json
import math
import re
import types

import gradio as gr
import pytest
import torch

import app
from model import load_model
from model.checkpoint import save_checkpoint
from model.hf_gpt2 import CONV1D
from model.inspect import read_run_memory
from testkit.models import HAMLET, make_tiny_checkpoint, random_gpt, tiny_config
from testkit.server import ROOT, launch
from ui.actions import Actions, Limits
from ui.api import API
from ui.handlers import PageHandlers
from ui.model_panel import model_panel_html
from ui.state import ModelRegistry

SHAKESPEARE = str(ROOT / "checkpoints" / "shakespeare")
TEXT = "ROMEO:\nBut, soft! what light through yonder window breaks?\nIt is the east, and Juliet is the sun."
SNAPSHOT_TEXT = "To be, or not to be, that is the question"  # well under its 64 positions


@pytest.fixture(scope="module")
def server(gpt2_snapshot):
    from gradio_client import Client

    snapshot = str(gpt2_snapshot)
    demo = app.build_demo([SHAKESPEARE, snapshot])
    url = launch(demo)
    clients = []

    def client():
        c = Client(url, verbose=False)
        clients.append(c)
        return c

    yield types.SimpleNamespace(url=url, demo=demo, snapshot=snapshot, client=client)
    for c in clients:
        c.close()
    demo.close()


def _hf_from_ours(gpt):
    """Our GPT-2-architecture weights in transformers' GPT2LMHeadModel (its Conv1D layers store
    (in, out), the transpose of nn.Linear)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    c = gpt.config
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=c.vocab_size, n_positions=c.block_size, n_embd=c.n_embd,
                                    n_layer=c.n_layer, n_head=c.n_head, layer_norm_epsilon=c.norm_eps,
                                    tie_word_embeddings=c.tie_embeddings)).eval()
    state = {name: (t.t() if name.endswith(CONV1D) else t).detach().clone().contiguous()
             for name, t in gpt.state_dict().items()}
    hf.load_state_dict(state, strict=True)
    return hf


def _losses(gpt, hf, ids):
    idx = torch.tensor([ids])
    with torch.no_grad():
        training = float(gpt(idx[:, :-1], targets=idx[:, 1:]))
        theirs = float(hf(input_ids=idx, labels=idx).loss)
    return training, theirs


# ---- /score: the mean is pretraining's loss ----

def test_score_mean_loss_is_the_training_loss_and_transformers_loss_on_the_default_model(server):
    c = server.client()
    r = c.predict(TEXT, api_name="/score")  # before any /reset: the default model
    assert r["model"] == SHAKESPEARE
    gpt, tok, _ = load_model(SHAKESPEARE)
    ids = [t["id"] for t in r["tokens"]]
    assert ids == tok.encode(TEXT) and r["predicted"] == len(ids) - 1 > 20
    training, theirs = _losses(gpt, _hf_from_ours(gpt), ids)
    assert abs(r["mean_loss_nats_per_token"] - training) < 1e-5
    assert abs(r["mean_loss_nats_per_token"] - theirs) < 1e-5
    # the mean is the mean of what each token shows, and the other figures follow from it
    assert r["mean_loss_nats_per_token"] == pytest.approx(
        sum(t["surprisal"] for t in r["tokens"][1:]) / r["predicted"], rel=1e-9)
    assert r["perplexity"] == pytest.approx(math.exp(r["mean_loss_nats_per_token"]), rel=1e-9)
    assert r["nats_per_char"] == pytest.approx(r["total_nats"] / len(tok.decode(ids[1:])), rel=1e-9)
    first = r["tokens"][0]
    assert first["prob"] is None and first["rank"] is None and first["top"] is None
    assert "first token" in r["note"] and "no prediction" in r["note"]
    for t in r["tokens"][1:]:
        assert t["surprisal"] == pytest.approx(-math.log(t["prob"]), rel=1e-9)
        assert t["rank"] >= 1 and len(t["top"]) == 5
        assert (t["rank"] == 1) == (t["top"][0][0] == t["id"])


def test_score_mean_loss_is_the_training_loss_and_transformers_loss_on_a_gpt2_snapshot(server, gpt2_snapshot):
    from transformers import GPT2LMHeadModel

    c = server.client()
    c.predict("", 0, server.snapshot, False, api_name="/reset")  # the snapshot from the menu
    r = c.predict(SNAPSHOT_TEXT, api_name="/score")
    assert r["model"] == server.snapshot
    gpt, tok, _ = load_model(gpt2_snapshot)
    ids = [t["id"] for t in r["tokens"]]
    assert ids == tok.encode(SNAPSHOT_TEXT) and r["predicted"] > 5
    hf = GPT2LMHeadModel.from_pretrained(gpt2_snapshot).eval()
    training, theirs = _losses(gpt, hf, ids)
    assert abs(r["mean_loss_nats_per_token"] - training) < 1e-5
    assert abs(r["mean_loss_nats_per_token"] - theirs) < 1e-5


@pytest.mark.parametrize("which", ["default", "snapshot"])
def test_the_scores_last_position_is_the_playgrounds_distribution_for_the_text_as_prompt(server, which):
    model, text = (SHAKESPEARE, TEXT) if which == "default" else (server.snapshot, SNAPSHOT_TEXT)
    c = server.client()
    c.predict(text, 0, model, False, api_name="/reset")
    scored = c.predict(text, api_name="/score")
    shown = c.predict({}, 10, api_name="/distribution")  # the chart's raw distribution
    assert [i for i, _, _ in scored["next"]] == [t["id"] for t in shown["tokens"]]
    # The same vector, computed twice: the session's prefill attends through its KV cache,
    # the scorer without one, so they agree to float rounding (~2e-6 here), not bit for bit.
    for (i, _, p), t in zip(scored["next"], shown["tokens"]):
        assert abs(p - t["raw_prob"]) < 1e-5, i


# ---- /lens: each layer's guess, the last one the model's output ----

def test_the_lens_last_layer_is_the_models_own_output(server):
    c = server.client()
    c.predict(TEXT, 0, SHAKESPEARE, False, api_name="/reset")
    for _ in range(3):
        c.predict({"temperature": 0.8}, api_name="/step")
    lens = c.predict(5, api_name="/lens")
    shown = c.predict({}, 5, api_name="/distribution")
    gpt = load_model(SHAKESPEARE).gpt
    blocks = [f"block {i}" for i in range(1, gpt.config.n_layer + 1)]
    assert [e["layer"] for e in lens["layers"]] == ["embedding"] + blocks
    assert lens["position"] == shown["position"] and lens["steps"] == 3
    last = lens["layers"][-1]
    assert [i for i, _, _ in last["top"]] == [t["id"] for t in shown["tokens"]]
    for (_, _, p), t in zip(last["top"], shown["tokens"]):
        assert abs(p - t["raw_prob"]) < 1e-6
    assert lens["final_token"]["id"] == shown["tokens"][0]["id"] and last["final_rank"] == 1
    assert all(e["final_rank"] >= 1 and len(e["top"]) == 5 for e in lens["layers"])
    assert lens["layers"][0]["top"] != last["top"]  # the embedding alone guesses otherwise


def test_the_lens_sees_the_window_the_sessions_logits_saw_after_the_context_slides(tmp_path):
    """Past a full context the session slides its window; the lens must read the same one."""
    registry = ModelRegistry([str(make_tiny_checkpoint(tmp_path / "tiny", block_size=16))])
    actions = Actions(registry, Limits())
    api = API(actions)
    user, _ = api.reset(None, HAMLET, 0, "", False)
    s = user.session
    for _ in range(5):  # the context is full after the prompt: these steps slide it
        api.step(user, {"temperature": 0})
    assert len(s.ids) > 16 and "context is full" in s.notice
    lens = api.lens(user, 5)
    probs = s.logits.softmax(-1)
    last = lens["layers"][-1]
    assert [i for i, _, _ in last["top"]] == probs.topk(5).indices.tolist()
    for i, _, p in last["top"]:
        assert abs(p - float(probs[i])) < 1e-6
    assert lens["window"]["start"] > 0 and lens["window"]["start"] + lens["window"]["count"] == len(s.ids)


# ---- bad input: a clear message, never a traceback ----

def test_bad_input_to_score_and_lens_gets_a_clear_message(server):
    c = server.client()
    cases = [("/score", ("",), "empty"), ("/score", ("x" * (Limits().score_chars + 1),), "at most"),
             ("/lens", (5,), "No model is loaded"),  # a fresh session: nothing to look at yet
             ]
    for endpoint, args, words in cases:
        with pytest.raises(Exception) as e:
            c.predict(*args, api_name=endpoint)
        assert words in str(e.value) and "Traceback" not in str(e.value), (endpoint, str(e.value)[:300])
    c.predict("To be", 0, api_name="/reset")
    for bad in (0, -1, 10**6, 2.5, "five", [5], {"n": 5}):
        with pytest.raises(Exception) as e:
            c.predict(bad, api_name="/lens")
        assert "top_n must be a whole number from 1 to" in str(e.value), (bad, str(e.value)[:300])
    assert len(c.predict(None, api_name="/lens")["layers"][0]["top"]) == 5  # None = the default


def test_the_api_refuses_text_that_is_not_valid_unicode_or_not_text(tmp_path):
    api = API(Actions(ModelRegistry([str(make_tiny_checkpoint(tmp_path / "tiny"))]), Limits()))
    for bad, words in (("a\ud800b", "not valid Unicode"), (123, "text must be text"),
                       (["To be"], "text must be text")):
        with pytest.raises(gr.Error) as e:
            api.score(None, bad)
        assert words in str(e.value), str(e.value)


# ---- the page's side: payloads for the scorer and the lens ----

class Page:
    """The page's two components as their triggers send: the playground's actions (start,
    step, lens) and the scorer's 'score'."""

    def __init__(self, registry, limits=Limits()):
        self.handlers = PageHandlers(Actions(registry, limits))
        self.user, self.panel, self.n = None, None, 0

    def _evt(self, **data):
        self.n += 1
        return gr.EventData(None, dict(data, id=self.n))

    def start(self, prompt):
        for out in self.handlers.start(self.user, self._evt(prompt=prompt, seed=0), None):
            self.user, payload = out[0], json.loads(out[1])
            if len(out) > 2 and isinstance(out[2], str):
                self.panel = out[2]
        return payload

    def act(self, name, **data):
        self.user, payload = getattr(self.handlers, name)(self.user, self._evt(**data))
        payload = json.loads(payload)
        assert payload["ack"] == self.n
        return payload

    def score(self, text):
        payload = json.loads(self.handlers.score(self.user, self._evt(text=text)))
        assert payload["ack"] == self.n
        return payload


@pytest.fixture(scope="module")
def registry():
    return ModelRegistry([SHAKESPEARE])


def test_the_scorer_payload_colours_every_token_and_explains_with_its_numbers(registry):
    page = Page(registry)
    p = page.score(TEXT)  # the scorer works before the playground has started
    assert "error" not in p and p["model"] == SHAKESPEARE
    assert p["tokens"][0]["p"] is None and p["tokens"][0]["top"] is None
    assert all(0 < t["p"] <= 1 and t["rank"] >= 1 for t in p["tokens"][1:])
    assert "".join(t["text"] for t in p["tokens"]) == TEXT  # every character under one token
    api = API(page.handlers.actions).score(None, TEXT)
    assert p["mean"] == pytest.approx(api["mean_loss_nats_per_token"], rel=1e-5)
    assert f"{api['mean_loss_nats_per_token']:.3f} nats per token" in p["explain"]
    assert "Pretraining predicts every position and averages these losses" in p["explain"]
    assert "Inference reads only the last position" in p["explain"]
    assert "no prediction" in p["explain"]
    assert "4.281 nats per token" in p["explain"]  # the model's own validation loss, from its metrics
    assert [i for i, _, _ in p["next"]] == [i for i, _, _ in api["next"]]
    again = page.score(TEXT)
    assert again["seq"] > p["seq"]


def test_a_text_longer_than_the_context_shows_the_window_it_scored(registry):
    page = Page(registry)
    text = HAMLET * 8  # ~1,000 tokens, under the scorer's character limit; the context is 256
    assert len(text) <= Limits().score_chars
    p = page.score(text)
    assert p["window"]["cut"] and p["window"]["count"] == 256 == len(p["tokens"])
    assert p["n_tokens"] > 256 and p["window"]["start"] == p["n_tokens"] - 256
    assert p["tokens"][0]["i"] == p["window"]["start"] and p["tokens"][0]["p"] is None
    assert "only the window of its last 256 is scored" in p["explain"]


def test_the_scorer_turns_bad_text_into_a_message(registry):
    page = Page(registry)
    too_long = Limits().score_chars + 1
    for bad, words in (("", "empty"), (None, "empty"), ("y" * too_long, f"{too_long:,} characters"),
                       ({"text": 1}, "text must be text")):
        p = page.score(bad)
        assert words in p["error"], p


def test_the_lens_payload_answers_the_lens_action_for_the_current_step(registry):
    page = Page(registry)
    page.start(TEXT)
    page.act("step", settings={"temperature": 0})
    p = page.act("lens", top_n=5)
    L = p["lens"]
    s = page.user.session
    assert L["context"] == s.ids and L["position"] == len(s.ids) and L["steps"] == 1
    assert len(L["layers"]) == 5 and L["layers"][0]["layer"] == "embedding"
    probs = s.logits.softmax(-1)
    assert [i for i, _, _ in L["layers"][-1]["top"]] == probs.topk(5).indices.tolist()
    assert L["final"]["id"] == int(probs.argmax()) and L["layers"][-1]["rank"] == 1
    bad = page.act("lens", top_n="all")
    assert bad["notice"]["kind"] == "error" and "top_n" in bad["notice"]["text"]


# ---- the model panel: tying on the tensors, memory from the processes ----

def test_a_tied_model_shows_one_tensor_in_one_storage(registry):
    page = Page(registry)
    page.start("")
    gpt = registry.get(SHAKESPEARE).gpt
    assert gpt.lm_head.weight is gpt.transformer.wte.weight
    ptr = f"{gpt.transformer.wte.weight.data_ptr():#x}"
    assert page.panel.count(f"<code>{ptr}</code>") == 2  # both names, one address
    assert "(4,096, 256)" in page.panel and "One tensor, not two" in page.panel
    assert "Tying saves 1,048,576 parameters" in page.panel
    rows = re.findall(r'<code class="dp-tie-row">([^<]*)</code>', page.panel)
    first = gpt.transformer.wte.weight[267, :8].tolist()  # " the"
    assert rows == [" ".join(f"{v:+.4f}" for v in first)] * 2


def test_an_untied_model_says_so(tmp_path, bpe_tokenizer):
    config = tiny_config(tie_embeddings=False)
    directory = save_checkpoint(tmp_path / "untied", random_gpt(config), config, bpe_tokenizer)
    loaded = ModelRegistry([str(directory)]).get(str(directory))
    html = model_panel_html(loaded)
    assert "Not tied" in html and "2 storages" in html and "One tensor" not in html
    wte, head = loaded.gpt.transformer.wte.weight, loaded.gpt.lm_head.weight
    assert wte.data_ptr() != head.data_ptr() and f"{wte.data_ptr():#x}" in html
    assert "DDP vs FSDP" not in html  # its directory has no memory.json


def test_the_panel_draws_ddp_and_fsdp_from_the_runs_own_processes(registry):
    data = read_run_memory(SHAKESPEARE)
    assert data is not None and "one-step rerun" in data["rerun"]
    by = {}
    for entry in data["ranks"]:
        by.setdefault(entry["parallel"], []).append(entry)
    assert sorted(by) == ["ddp", "fsdp"] and all(len(v) == 2 for v in by.values())
    whole = data["runs"][0]["model_param_bytes"]
    # measured by the processes: each DDP rank holds the whole model, the FSDP ranks split it
    assert all(e["param_bytes"] == e["grad_bytes"] == whole for e in by["ddp"])
    assert sum(e["param_bytes"] for e in by["fsdp"]) == whole
    assert all(abs(e["param_bytes"] - whole / 2) < 0.01 * whole for e in by["fsdp"])
    assert all(run["step"] == 1 and "--max-steps 1" in run["command"] for run in data["runs"])
    html = model_panel_html(registry.get(SHAKESPEARE))
    assert 'data-parallel="ddp"' in html and 'data-parallel="fsdp"' in html
    for e in by["ddp"] + by["fsdp"]:
        assert f"{e['param_bytes'] / 1e6:,.1f} MB" in html and f"{e['peak_rss_bytes'] / 1e6:,.1f} MB" in html
    assert "one-step rerun" in html and "torchrun --standalone --nproc_per_node=2" in html
    assert "50% of the model" in html and "the whole model" in html


def test_a_training_runs_own_memory_file_is_drawn_as_one_run(tmp_path):
    """What training/memory.py writes (one run, ranks without a `parallel` of their own)."""
    directory = make_tiny_checkpoint(tmp_path / "tiny")
    entry = {"rank": 0, "param_bytes": 4000, "grad_bytes": 4000, "optimizer_state_bytes": 8016,
             "rss_bytes": 300_000_000, "peak_rss_bytes": 310_000_000, "peak_cuda_allocated_bytes": None}
    (directory / "memory.json").write_text(json.dumps(
        {"format_version": 1, "parallel": "fsdp", "world": 2, "step": 1, "model_param_bytes": 8000,
         "note": "counted", "ranks": [entry, entry | {"rank": 1}]}))
    html = model_panel_html(ModelRegistry([str(directory)]).get(str(directory)))
    assert html.count('data-parallel="fsdp"') == 1 and "50% of the model" in html
    (directory / "memory.json").write_text("{not json")
    assert "DDP vs FSDP" not in model_panel_html(ModelRegistry([str(directory)]).get(str(directory)))

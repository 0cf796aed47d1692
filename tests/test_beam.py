"""Beam search (model/beam.py): the same tokens and sequences_scores as transformers'
generate(num_beams=..., do_sample=False, ...), what each step records for the page, the
action that opens a ranked beam as the text, the CLI, and refusals that name the value."""

from __future__ import annotations

import itertools
import json
import runpy

import gradio as gr
import pytest
import torch

import model
from model.beam import beam_search, check_beam_args
from model.loading import load_model
from model.sampling import SamplingSettings
from testkit.models import make_tiny_checkpoint, random_gpt, tiny_config
from ui.actions import Actions, Limits, UserError, beam_options
from ui.api import API
from ui.handlers import PageHandlers
from ui.state import ModelRegistry

PROMPT = [5, 17, 33, 2]


def _hf_beam(hf, prompt, n, num_beams, length_penalty, early_stopping, eos):
    with torch.no_grad():
        out = hf.generate(torch.tensor([prompt]), max_new_tokens=n, do_sample=False, num_beams=num_beams,
                          length_penalty=length_penalty, early_stopping=early_stopping, eos_token_id=eos,
                          pad_token_id=eos, return_dict_in_generate=True, output_scores=True)
    score = float(out.sequences_scores[0]) if num_beams > 1 else None
    return out.sequences[0].tolist(), score


def test_beam_search_equals_transformers_generate_tokens_and_sequences_scores(gpt2_snapshot):
    """num_beams 1, 2, 4 x length_penalty 0, 1, 2 x early_stopping True, False, "never", with
    an end-of-text inside the search (a token the model likes, so hypotheses finish early)."""
    from transformers import GPT2LMHeadModel

    gpt, _, _ = load_model(gpt2_snapshot)
    hf = GPT2LMHeadModel.from_pretrained(gpt2_snapshot).eval()
    greedy = hf.generate(torch.tensor([PROMPT]), max_new_tokens=6, do_sample=False, pad_token_id=0)[0].tolist()
    ended_early, stops = 0, set()
    for eos_at, num_beams, lp, early in itertools.product((0, 3), (1, 2, 4), (0.0, 1.0, 2.0), (True, False, "never")):
        eos = greedy[len(PROMPT) + eos_at]
        theirs, score = _hf_beam(hf, PROMPT, 8, num_beams, lp, early, eos)
        result = beam_search(gpt, PROMPT, 8, num_beams, lp, early, eos_token_id=eos)
        where = f"num_beams={num_beams} length_penalty={lp} early_stopping={early} eos={eos}"
        assert PROMPT + result.best.tokens == theirs, where
        if score is not None:
            assert result.best.score == pytest.approx(score, abs=1e-5), where
        ended_early += any(h.tokens[-1] == eos and len(h.tokens) < 8 for h in result.ranking)
        stops.add(result.stopped)
        if num_beams == 4:  # model.generate returns the same sequence, prompt first
            out = model.generate(gpt, torch.tensor([PROMPT]), 8, num_beams=num_beams, length_penalty=lp,
                                 early_stopping=early, eos_token_id=eos)
            assert out[0].tolist() == theirs, where
    assert ended_early >= 20  # the end-of-text really is inside the searches
    assert {"max_new_tokens", "end_of_text", "no_improvement", "early_stopping"} <= stops, stops


def test_every_step_records_its_candidates_and_the_beams_follow_them():
    gpt = random_gpt(tiny_config(), scale=3.0)
    eos = 7
    result = beam_search(gpt, [1, 2, 3], 12, num_beams=3, length_penalty=1.5, eos_token_id=eos)
    beams = [[]]
    for n, step in enumerate(result.steps):
        cands = step.candidates
        assert len(cands) == 6 and [c.score for c in cands] == sorted((c.score for c in cands), reverse=True)
        kept = [c for c in cands if c.status == "kept"]
        last = n == len(result.steps) - 1
        assert len(kept) == (0 if last else 3) and all(not c.ends for c in kept)
        assert [c.beam for c in kept] == list(range(len(kept)))
        for c in cands:
            assert 0 <= c.parent < len(beams) and c.penalised == pytest.approx(c.score / (n + 1) ** 1.5)
            assert c.ends == (c.token == eos or n == 11)
            assert c.status != "finished" or c.ends
        assert step.beams == [beams[c.parent] + [c.token] for c in kept]
        beams = step.beams or beams
    finished = [(n, c.token) for n, s in enumerate(result.steps) for c in s.candidates if c.status == "finished"]
    assert {(h.step, h.tokens[-1]) for h in result.ranking} <= set(finished)
    assert [h.score for h in result.ranking] == sorted((h.score for h in result.ranking), reverse=True)


@pytest.mark.parametrize("config", [tiny_config(), tiny_config(norm="rmsnorm", position="rope", mlp="swiglu",
                                                                n_kv_head=2, bias=False, mlp_hidden=48)],
                         ids=["gpt2", "llama"])
def test_reordered_cache_rows_give_each_beam_its_own_history(config):
    """Each finished sequence's sum of log-probabilities, recomputed by one full forward over
    prompt + tokens, is what the search (cache rows reordered at every step) added up."""
    gpt = random_gpt(config, scale=3.0)
    prompt = [4, 9, 15, 22, 3]
    result = beam_search(gpt, prompt, 10, num_beams=5, length_penalty=0.0, early_stopping="never")
    assert len({tuple(h.tokens) for h in result.ranking}) == 5
    for h in result.ranking:
        ids = torch.tensor([prompt + h.tokens])
        with torch.no_grad():
            logp = torch.log_softmax(gpt(ids)[0, len(prompt) - 1:-1].float(), -1)  # (len, V)
        total = logp.gather(1, torch.tensor(h.tokens)[:, None]).sum()
        assert float(total) == pytest.approx(h.logprob, abs=1e-4)
        assert h.score == pytest.approx(h.logprob, abs=1e-6)  # length_penalty 0: no division


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_beams=0), "num_beams must be a whole number from 1 to 16, but is 0"),
    (dict(num_beams=17), "but is 17"), (dict(num_beams=True), "but is True"),
    (dict(max_new_tokens=0), "max_new_tokens must be a whole number >= 1, but is 0"),
    (dict(length_penalty=float("nan")), "length_penalty must be a finite number, but is nan"),
    (dict(early_stopping="sometimes"), "early_stopping must be True, False or \"never\", but is 'sometimes'"),
])
def test_bad_beam_arguments_are_refused_naming_the_value(kwargs, message):
    args = dict(num_beams=4, max_new_tokens=5, length_penalty=1.0, early_stopping=False) | kwargs
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_beam_args(**args)
    gpt = random_gpt(tiny_config())
    with pytest.raises(ValueError, match="below the model's context of 64, but is 64"):
        beam_search(gpt, [1], 64)
    with pytest.raises(ValueError, match=r"token id in \[0, 320\)"):
        beam_search(gpt, [1, 320], 4)


# ---- the action, the API and the page's handlers ----

@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    return ModelRegistry([str(make_tiny_checkpoint(tmp_path_factory.mktemp("tiny")))])


@pytest.mark.parametrize("options, message", [
    ([4], "beam options must be a JSON object"),
    ({"beams": 4}, "unknown beam option 'beams'"),
    ({"num_beams": 17}, "num_beams must be a whole number from 1 to 16, but is 17"),
    ({"num_beams": 2.5}, "num_beams must be a whole number from 1 to 16, but is 2.5"),
    ({"length_penalty": 11}, "length_penalty must be a number from -10 to 10, but is 11"),
    ({"length_penalty": "1"}, "length_penalty must be a number from -10 to 10, but is '1'"),
    ({"early_stopping": 1}, "early_stopping must be true, false or \"never\", but is 1"),
])
def test_beam_options_from_outside_are_refused_naming_the_value(options, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        beam_options(options, Limits())


def test_the_page_searches_then_opens_a_ranked_beam_as_the_text(registry):
    actions = Actions(registry, Limits())
    handlers, api = PageHandlers(actions), API(actions)
    user = None
    for out in handlers.start(None, gr.EventData(None, {"prompt": "To be", "seed": 0, "id": 1}), None):
        user = out[0]
    s = user.session
    s.step(SamplingSettings(temperature=0))
    base = [r.token for r in s.history]
    user, payload = handlers.beam(user, gr.EventData(None, {"n": 6, "id": 2, "options": {
        "num_beams": 3, "length_penalty": 0.5, "early_stopping": "never"}}))
    B = json.loads(payload)["beam"]
    assert B["settings"] == {"num_beams": 3, "length_penalty": 0.5, "early_stopping": "never", "tokens": 6}
    assert B["from"] == 1 and len(B["ranking"]) == 3 and 1 <= len(B["steps"]) <= 6
    assert all(isinstance(c["label"], str) for st in B["steps"] for c in st["candidates"])
    assert [r.token for r in s.history] == base  # a search leaves the text as it was
    # The same search through the API gives the same ranking.
    again = api.beam(user, 6, {"num_beams": 3, "length_penalty": 0.5, "early_stopping": "never"})
    assert [h["tokens"] for h in again["ranking"]] == [h["tokens"] for h in B["ranking"]]
    user, payload = handlers.beam_open(user, gr.EventData(None, {"rank": 2, "id": 3, "settings": {}}))
    assert json.loads(payload)["ack"] == 3 and "notice" not in json.loads(payload)
    assert [r.token for r in s.history] == base + B["ranking"][2]["tokens"]
    assert s.history[0].token == base[0]
    out = api.beam_open(user, 0, {})
    assert out["steps"] == 1 + len(B["ranking"][0]["tokens"])
    # Refusals name the value and change nothing.
    user, payload = handlers.beam_open(user, gr.EventData(None, {"rank": 3, "id": 4, "settings": {}}))
    assert "rank must be a whole number from 0 to 2" in json.loads(payload)["notice"]["text"]
    user, payload = handlers.beam(user, gr.EventData(None, {"n": 101, "id": 5, "options": {}}))
    assert "tokens to search must be a whole number from 1 to 63" in json.loads(payload)["notice"]["text"]
    actions.reset(user, "Another prompt")
    with pytest.raises(UserError, match="prompt or the model changed since this beam search"):
        actions.open_beam(user, 0, SamplingSettings())
    fresh = Actions(registry, Limits())
    with pytest.raises(UserError, match="no beam search to open"):
        fresh.open_beam(fresh.start(None, None, "To be", 0), 0, SamplingSettings())


# ---- the command line ----

def test_cli_num_beams_prints_the_best_beam_and_the_ranking(tiny_checkpoint, capsys):
    main = runpy.run_module("model.generate")["main"]
    assert main(["--model", str(tiny_checkpoint), "--prompt", "To be", "--max-new-tokens", "6",
                 "--num-beams", "3", "--length-penalty", "0.5", "--early-stopping", "never"]) == 0
    printed = capsys.readouterr().out
    gpt, tokenizer, _ = load_model(tiny_checkpoint)
    ids = tokenizer.encode("To be")
    best = beam_search(gpt, ids, 6, 3, 0.5, "never", eos_token_id=gpt.config.eot_token).best
    assert printed == "To be" + tokenizer.decode(best.tokens) + "\n"
    assert main(["--model", str(tiny_checkpoint), "--prompt", "To be", "--max-new-tokens", "6",
                 "--num-beams", "3", "--show-probs"]) == 0
    assert capsys.readouterr().out.count("\n#") == 2
    assert main(["--model", str(tiny_checkpoint), "--num-beams", "17"]) == 2
    assert "num_beams must be a whole number from 1 to 16, but is 17" in capsys.readouterr().err


# ---- SmolLM2 ----

@pytest.mark.smollm2
def test_beam_search_on_smollm2_equals_transformers():
    """The real model in exact mode, in chat form, ending at <|im_end|> as a chat turn does."""
    from transformers import AutoModelForCausalLM

    from model.chat import apply_chat_template
    from testkit.models import require_smollm2_file

    path = require_smollm2_file()
    gpt, tok, _ = load_model("smollm2")
    hf = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
    prompt = tok.encode(apply_chat_template(tok, "Reply with one word: is the sky blue?"), allowed_special="all")
    eos = tok.encode_single_token("<|im_end|>")
    ended = 0
    for num_beams, lp, early in [(4, 1.0, False), (3, 0.0, True), (2, 2.0, "never")]:
        theirs, score = _hf_beam(hf, prompt, 12, num_beams, lp, early, eos)
        result = beam_search(gpt, prompt, 12, num_beams, lp, early, eos_token_id=eos)
        where = f"num_beams={num_beams} length_penalty={lp} early_stopping={early}"
        assert prompt + result.best.tokens == theirs, where
        assert result.best.score == pytest.approx(score, abs=1e-4), where
        ended += result.best.tokens[-1] == eos
    assert ended == 3  # each best turn ended inside the search

"""The sampler lab's engine: the chain as data (`samplers` in every accepted form), the list
settings' decoders, the random stages' own draws, and mirostat's μ carried by the session
through step, undo, rewind and model.generate."""

from __future__ import annotations

import json

import pytest
import torch

from model import load_model
from model.chain import DEFAULT_CHAIN, PRESETS, parse_letters, parse_samplers
from model.decode import generate
from model.sampling import SamplingSettings, chain_of, draw_stage_u, draw_u, run_pipeline, schema
from model.session import DecodingSession


@pytest.fixture(scope="module")
def model(tiny_checkpoint):
    gpt, tokenizer, _ = load_model(tiny_checkpoint)
    return gpt, tokenizer


def names(settings: dict) -> list[str]:
    return [st.name for st in chain_of(SamplingSettings.from_dict(settings))]


# ---- the chain ----

def test_samplers_accepts_names_letters_semicolon_names_and_presets():
    assert parse_samplers("edskypmxt") == PRESETS["llama.cpp"]
    assert parse_samplers("penalties;dry;top_n_sigma;top_k;typ_p;top_p;min_p;xtc;temperature") == \
        PRESETS["llama.cpp"]
    assert parse_samplers(["top-k", "Temp", "nucleus", "typical"]) == ("top_k", "temperature", "top_p",
                                                                      "typical_p")
    assert parse_samplers("hf")[:2] == ("penalties", "temperature")
    assert parse_samplers("webui")[-2:] == ("min_p", "xtc")
    assert parse_letters("typ") == ["temperature", "typical_p", "top_p"]  # --sampling-seq: letters only


def test_unknown_letters_and_names_are_refused_naming_them_and_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown letters 'qz'.*known stages: penalties.*k=top_k"):
        parse_samplers("kqz")
    with pytest.raises(ValueError, match=r"unknown stage 'top_q'.*known stages"):
        parse_samplers(["top_k", "top_q"])
    with pytest.raises(ValueError, match="samplers must be"):
        SamplingSettings.from_dict({"samplers": 7})


def test_the_default_chain_lists_todays_stages_and_shows_new_ones_once_changed():
    assert names({}) == ["penalties", "temperature", "top_k", "top_p", "min_p", "typical_p"]
    assert names({"top_n_sigma": 1.0}) == ["penalties", "temperature", "top_n_sigma", "top_k", "top_p",
                                           "min_p", "typical_p"]
    assert SamplingSettings().samplers == DEFAULT_CHAIN


def test_a_stage_may_run_twice_and_temperature_last_moves_every_temperature():
    assert names({"samplers": "ktkt", "top_k": 3}) == ["top_k", "temperature", "top_k", "temperature"]
    assert names({"samplers": "tkt", "temperature_last": True}) == ["top_k", "temperature", "temperature"]
    pipe = run_pipeline(torch.randn(20, dtype=torch.float64), SamplingSettings(samplers=("top_k", "top_k"),
                                                                              top_k=4))
    assert [s.active for s in pipe.stages] == [True, True] and int((pipe.probs > 0).sum()) == 4


def test_logit_bias_runs_first_and_mirostat_replaces_the_chain():
    assert names({"logit_bias": [[1, 2.0]], "samplers": "kt"}) == ["logit_bias", "top_k", "temperature"]
    assert names({"mirostat": 2, "top_k": 5, "logit_bias": {"3": -1}}) == ["logit_bias", "temperature",
                                                                           "mirostat"]


def test_a_chain_that_leaves_no_token_names_the_stage_that_emptied_it():
    with pytest.raises(ValueError, match="logit_bias bans every token"):
        run_pipeline(torch.zeros(3), SamplingSettings(logit_bias=((0, False), (1, False), (2, False))))


# ---- the list settings ----

def test_logit_bias_takes_llama_cpp_servers_forms_and_bans_with_false():
    pairs = SamplingSettings.from_dict({"logit_bias": [[2, 1.5], [0, False]]}).logit_bias
    assert pairs == SamplingSettings.from_dict({"logit_bias": {"2": 1.5, "0": False}}).logit_bias
    pipe = run_pipeline(torch.zeros(4, dtype=torch.float64), SamplingSettings(logit_bias=pairs))
    assert pipe.probs[0] == 0 and pipe.stage("logit_bias").logits[2] == 1.5


def test_logit_bias_refuses_ids_outside_the_vocabulary_and_bad_values_by_name():
    with pytest.raises(ValueError, match="token id 9, but the vocabulary has ids 0 to 3"):
        run_pipeline(torch.zeros(4), SamplingSettings.from_dict({"logit_bias": [[9, 1.0]]}))
    for bad, words in [([[1, float("nan")]], "must be a number"), ([[1, 2, 3]], "pairs"),
                       ([[-1, 1.0]], "ids are >= 0"), ([[1, 1.0]] * 1025, "at most 1024"),
                       ("x", "must be a list")]:
        with pytest.raises(ValueError, match=words):
            SamplingSettings.from_dict({"logit_bias": bad})
    with pytest.raises(ValueError, match="needs the model's tokenizer"):
        run_pipeline(torch.zeros(4), SamplingSettings.from_dict({"logit_bias": [["hello", 1.0]]}))


def test_logit_bias_text_goes_to_each_of_its_tokens(model):
    _, tokenizer = model
    ids = tokenizer.encode_ordinary("To be")
    settings = SamplingSettings.from_dict({"logit_bias": [["To be", False]]})
    pipe = run_pipeline(torch.zeros(tokenizer.n_vocab, dtype=torch.float64), settings, vocab=tokenizer)
    assert all(pipe.probs[i] == 0 for i in ids)


def test_dry_sequence_breakers_state_their_limits():
    for bad, words in [("\n", "must be a list"), ([""], "non-empty"), (["x" * 41], "at most 40"),
                       (["a"] * 17, "at most 16")]:
        with pytest.raises(ValueError, match=words):
            SamplingSettings.from_dict({"dry_sequence_breakers": bad})
    with pytest.raises(ValueError, match="pass the tokenizer"):
        run_pipeline(torch.zeros(5), SamplingSettings(dry_multiplier=1.0), [0, 1, 2, 0, 1])


def test_the_schema_is_json_with_the_list_settings_as_kinds_the_controls_skip():
    s = json.loads(json.dumps(schema()))
    assert {s["settings"][n]["kind"] for n in ("samplers", "dry_sequence_breakers", "logit_bias")} == {"list",
                                                                                                      "json"}
    assert s["chain"]["letters"]["s"] == "top_n_sigma" and s["settings"]["samplers"]["control"] is None


# ---- random stages and state ----

def test_xtc_draws_its_own_u_from_seed_position_and_stage():
    u = draw_stage_u(7, 3, "xtc")
    assert u == draw_stage_u(7, 3, "xtc") and 0 <= u < 1
    assert len({u, draw_stage_u(8, 3, "xtc"), draw_stage_u(7, 4, "xtc"), draw_u(7, 3)}) == 4


def test_dynamic_temperature_at_t0_is_not_greedy():
    assert SamplingSettings(temperature=0.0).greedy
    assert not SamplingSettings(temperature=0.0, dynatemp_range=0.5).greedy


def test_mirostat_mu_is_kept_per_step_and_undo_and_rewind_restore_it(model):
    settings = SamplingSettings(mirostat=2, mirostat_tau=3.0, mirostat_eta=0.5)
    s = DecodingSession(*model, seed=5)
    s.reset("To be, or not")
    records = list(s.generate(6, settings))
    assert records[0].mu == 6.0  # starts at 2τ
    assert all(r.mu is not None for r in records) and len({r.mu for r in records}) > 1
    after = s.mirostat_mu
    s.undo()
    assert s.mirostat_mu == records[-1].mu
    again = s.step(settings)
    assert again.token == records[-1].token and s.mirostat_mu == after
    s.rewind(2)
    assert s.mirostat_mu == records[2].mu
    assert [r.token for r in s.generate(4, settings)] == [r.token for r in records[2:]]


def test_model_generate_carries_mu_and_dry_as_the_session_does(model):
    gpt, tokenizer = model
    settings = SamplingSettings(mirostat=1, mirostat_tau=2.5, dry_multiplier=0.8)
    for settings in (SamplingSettings(mirostat=1, mirostat_tau=2.5),
                     SamplingSettings(dry_multiplier=0.8, xtc_probability=0.5, xtc_threshold=0.05,
                                      top_n_sigma=2.0, samplers="edskypmxt", temperature=0.9)):
        s = DecodingSession(gpt, tokenizer, seed=11)
        s.reset("ROMEO:")
        session_tokens = [r.token for r in s.generate(12, settings)]
        idx = torch.tensor([s.ids[:s.prompt_len]])
        out = generate(gpt, idx, 12, settings, seed=11, tokenizer=tokenizer)
        assert out[0, s.prompt_len:].tolist() == session_tokens


# ---- the command line ----

def test_cli_flags_take_llama_cpp_names_and_forms():
    import argparse

    from model.generate import add_setting_flags, settings_from_flags

    ap = argparse.ArgumentParser()
    add_setting_flags(ap)
    s = settings_from_flags(ap.parse_args(
        ["--sampling-seq", "typ", "--logit-bias", "5-inf", "--logit-bias", "7+1.5",
         "--dry-sequence-breaker", "none", "--temp", "0.7", "--repeat-last-n", "64", "--mirostat-lr", "0.2",
         "--top-n-sigma", "1.5", "--xtc-probability", "0.5", "--dry-multiplier", "0.8", "--mirostat", "2"]))
    assert s.samplers == ("temperature", "typical_p", "top_p")
    assert s.logit_bias == ((5, False), (7, 1.5)) and s.dry_sequence_breakers == ()
    assert (s.temperature, s.penalty_last_n, s.mirostat_eta, s.top_n_sigma, s.mirostat) == \
        (0.7, 64, 0.2, 1.5, 2)
    named = settings_from_flags(ap.parse_args(["--samplers", "top_k;temp"]))
    assert named.samplers == ("top_k", "temperature")
    with pytest.raises(SystemExit):
        ap.parse_args(["--sampling-seq", "kq"])


def test_cli_generates_with_a_llama_cpp_chain(tiny_checkpoint, capsys):
    from model.generate import main

    argv = ["--model", str(tiny_checkpoint), "--prompt", "ROMEO:", "--max-new-tokens", "5", "--seed", "3",
            "--sampling-seq", "edkt", "--dry-multiplier", "0.8", "--top-k", "5", "--logit-bias", "0-inf"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert main(argv) == 0 and capsys.readouterr().out == first  # same seed, same text


def test_a_step_records_xtcs_own_draw(model):
    s = DecodingSession(*model, seed=9)
    s.reset("To be")
    record = s.step(SamplingSettings(xtc_probability=0.5, xtc_threshold=0.05))
    assert record.draws == {"xtc": draw_stage_u(9, record.position, "xtc")}


def test_the_breaker_cache_keeps_a_bounded_number_of_breaker_sets(model):
    from model import stage_table

    _, tokenizer = model
    for i in range(stage_table.BREAKER_SETS_KEPT + 8):
        heads = stage_table.breaker_heads(tokenizer, (f"x{i}", ":"), tokenizer.n_vocab)
        assert heads is stage_table.breaker_heads(tokenizer, (f"x{i}", ":"), tokenizer.n_vocab)
    assert len(stage_table._BREAKER_CACHE[tokenizer]["heads"]) == stage_table.BREAKER_SETS_KEPT

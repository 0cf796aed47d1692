"""Many futures (model/futures.py): N draws follow the distribution they are drawn from, with
Step's own rule and seeds; N continuations are what Generate writes with each one's seed; each
step records the entropy it was drawn from."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from model.futures import continuation_seed, continue_many, draw_many, draw_numbers, histogram
from model.sampling import SEED_MAX, SamplingSettings, draw_u, run_pipeline
from model.session import DecodingSession
from testkit.models import llama_config, random_gpt, tiny_config

# The 1 % critical values of chi-square (scipy.stats.chi2.ppf(0.99, df)), for the dfs used here.
CHI2_99 = {4: 13.277, 9: 21.666}


def _session(bpe_tokenizer, config=tiny_config, seed=7, prompt="ROMEO: But, soft!"):
    gpt = random_gpt(config(block_size=64), seed=5, scale=3.0)
    s = DecodingSession(gpt, bpe_tokenizer, seed=seed)
    s.reset(prompt)
    return s


def test_draws_of_a_known_distribution_pass_a_chi_square_test_at_the_one_percent_level():
    # Ten tokens with known probabilities: the counts of 10,000 draws against N p, df = 9.
    logits = torch.log(torch.tensor([0.3, 0.2, 0.15, 0.1, 0.08, 0.07, 0.05, 0.03, 0.015, 0.005]))
    settings = SamplingSettings(temperature=1.0)
    pipe = run_pipeline(logits, settings)
    for seed in (0, 1, 2):
        draws = draw_many(pipe, settings, seed, position=5, n=10_000)
        counts = torch.bincount(draws, minlength=10).double()
        expected = 10_000 * pipe.probs
        chi2 = float(((counts - expected) ** 2 / expected).sum())
        assert chi2 < CHI2_99[9], (seed, chi2)


def test_draws_after_top_k_never_leave_the_kept_set_and_follow_the_renormalised_probabilities():
    logits = torch.linspace(3.0, -3.0, 40)
    settings = SamplingSettings(temperature=0.8, top_k=5)
    pipe = run_pipeline(logits, settings)
    draws = draw_many(pipe, settings, 3, position=9, n=10_000)
    assert set(draws.tolist()) <= set(range(5))
    counts = torch.bincount(draws, minlength=40)[:5].double()
    expected = 10_000 * pipe.probs[:5]
    assert float(((counts - expected) ** 2 / expected).sum()) < CHI2_99[4]


def test_draw_i_is_the_token_steps_rule_picks_with_the_ith_number_and_draw_0_is_steps_own():
    logits = torch.randn(300, generator=torch.Generator().manual_seed(1)) * 2
    settings = SamplingSettings(temperature=1.3, top_p=0.9)
    pipe = run_pipeline(logits, settings)
    u = draw_numbers(11, 4, 200)
    assert u[0] == draw_u(11, 4)
    from model.sampling import pick_token
    expected = [pick_token(pipe.probs, float(x)) for x in u]
    assert draw_many(pipe, settings, 11, 4, 200).tolist() == expected
    # A larger N extends the same sample.
    assert draw_many(pipe, settings, 11, 4, 1000)[:200].tolist() == expected


def test_greedy_draws_are_all_the_argmax():
    logits = torch.tensor([0.1, 2.0, 1.9, -1.0])
    settings = SamplingSettings(temperature=0.0)
    assert draw_many(run_pipeline(logits, settings), settings, 0, 1, 100).tolist() == [1] * 100


def test_tv_and_kl_match_an_independent_computation_and_treat_zero_counts_as_zero_terms():
    p = np.array([0.5, 0.3, 0.15, 0.05])
    draws = torch.tensor([0] * 6 + [1] * 3 + [2] * 1)  # token 3 never drawn
    counts, tv, kl = histogram(draws, torch.tensor(p, dtype=torch.float64))
    f = np.array([0.6, 0.3, 0.1, 0.0])
    assert counts.tolist() == [6, 3, 1, 0]
    assert tv == pytest.approx(0.5 * sum(abs(a - b) for a, b in zip(f, p)), abs=1e-15)
    assert kl == pytest.approx(0.6 * math.log(0.6 / 0.5) + 0.3 * math.log(1.0) + 0.1 * math.log(0.1 / 0.15),
                               abs=1e-15)
    # The law of large numbers, on a real distribution: both shrink as N grows.
    pipe = run_pipeline(torch.randn(200, generator=torch.Generator().manual_seed(2)), SamplingSettings())
    tvs, kls = zip(*[histogram(draw_many(pipe, SamplingSettings(), 0, 0, n), pipe.probs)[1:]
                     for n in (100, 1000, 10_000)])
    assert tvs[0] > tvs[1] > tvs[2] and kls[0] > kls[1] > kls[2]


def test_continuation_seeds_start_at_the_sessions_and_wrap_at_the_largest_seed():
    assert [continuation_seed(5, j) for j in range(3)] == [5, 6, 7]
    assert continuation_seed(SEED_MAX, 2) == 1


@pytest.mark.parametrize("config", [tiny_config, llama_config], ids=["gpt2", "llama"])
@pytest.mark.parametrize("settings", [
    SamplingSettings(temperature=1.0),
    SamplingSettings(temperature=0.9, top_k=20, repetition_penalty=1.3),
    SamplingSettings(temperature=1.0, mirostat=2, mirostat_tau=4.0),
], ids=["plain", "penalty", "mirostat"])
def test_each_continuation_is_what_generate_writes_with_its_seed(bpe_tokenizer, config, settings):
    s = _session(bpe_tokenizer, config)
    s.step(settings)  # a history, so that penalties and μ carry state into the continuations
    rows = continue_many(s, settings, n=6, m=12)
    before = list(s.ids)
    assert s.ids == before and s.seed == 7  # nothing in the session changed
    for j, row in enumerate(rows):
        alone = _session(bpe_tokenizer, config)
        alone.step(settings)
        alone.set_seed(row.seed)
        records = list(alone.generate(12, settings))
        assert row.tokens == [r.token for r in records], j
        # The batched matmul may differ from one row's in the last bits (see model/futures.py).
        assert row.probs == pytest.approx([r.prob for r in records], rel=1e-6, abs=1e-12)
        assert row.raw_probs == pytest.approx([r.raw_prob for r in records], rel=1e-6, abs=1e-12)


@pytest.mark.parametrize("config", [tiny_config, llama_config], ids=["gpt2", "llama"])
def test_a_single_continuation_is_generate_bit_for_bit(bpe_tokenizer, config):
    settings = SamplingSettings(temperature=1.1, top_p=0.95)
    s = _session(bpe_tokenizer, config)
    (row,) = continue_many(s, settings, n=1, m=20)
    alone = _session(bpe_tokenizer, config)
    records = list(alone.generate(20, settings))
    assert row.tokens == [r.token for r in records]
    assert row.probs == [r.prob for r in records]  # exactly: one row is one row's arithmetic
    assert row.logprob == sum(math.log(r.prob) for r in records)


def test_a_continuation_ends_on_a_stop_token(bpe_tokenizer):
    s = _session(bpe_tokenizer)
    settings = SamplingSettings(temperature=1.0)
    probe = continue_many(s, settings, n=8, m=10)
    stop = probe[3].tokens[2]  # make a token row 3 draws a stop token
    rows = continue_many(s, settings, n=8, m=10, stop_tokens={stop})
    assert rows[3].stopped and rows[3].tokens == probe[3].tokens[:3]
    for a, b in zip(probe, rows):
        cut = a.tokens.index(stop) + 1 if stop in a.tokens else len(a.tokens)
        assert b.tokens == a.tokens[:cut]


def test_each_step_records_the_entropy_of_the_distribution_it_was_drawn_from(bpe_tokenizer):
    s = _session(bpe_tokenizer)
    settings = SamplingSettings(temperature=0.7, top_k=10)
    pipe = s.distribution(settings)
    record = s.step(settings)
    p = pipe.probs.numpy()
    q = pipe.raw_view.probs().numpy()
    assert record.entropy == pytest.approx(-sum(x * math.log2(x) for x in p if x > 0), rel=1e-12)
    assert record.raw_entropy == pytest.approx(-sum(x * math.log2(x) for x in q if x > 0), rel=1e-12)
    assert 0 < record.entropy <= math.log2(10) + 1e-12


# ---- through the page's handlers and the API (ui/actions.py, ui/api.py) ----

@pytest.fixture(scope="module")
def page_registry(tmp_path_factory):
    from testkit.models import make_tiny_checkpoint
    from ui.state import ModelRegistry
    return ModelRegistry([str(make_tiny_checkpoint(tmp_path_factory.mktemp("tiny")))])


def test_page_sample_continuations_and_open_make_the_text_a_continuation(page_registry):
    from tests.test_app import Page
    page = Page(page_registry)
    page.start("ROMEO:", seed=3)
    settings = {"temperature": 1.0, "top_k": 30}
    page.send("step", settings=settings)
    sample = page.send("sample", n=1000, settings=settings)["sample"]
    assert sample["n"] == 1000 and sum(c for _, c in sample["counts"]) == 1000
    # Draw 0 is the token Step picks next.
    stepped = page.send("step", settings=settings)["text"]["tokens"][-1]
    assert sample["first"] == stepped["token"] and stepped["h"] > 0 and stepped["sb"] >= 0
    page.send("undo")
    rows = page.send("continuations", n=4, m=6, settings=settings)["continuations"]
    assert [r["seed"] for r in rows] == [3, 4, 5, 6]
    assert rows[0]["ids"][1] == stepped["token"]  # continuation 0 is what Step/Generate write
    opened = page.send("open", ids=rows[2]["ids"], settings=settings)
    assert [t["token"] for t in opened["text"]["tokens"]] == rows[2]["ids"]
    # Opening replays the tokens through the session: its own probabilities, which the batched
    # forward's last bits may differ from.
    assert [t["p"] for t in opened["text"]["tokens"]][1:] == pytest.approx(rows[2]["p"], abs=2e-4)


def test_limits_are_enforced_with_messages_that_name_the_value(page_registry):
    import gradio as gr

    from ui.actions import Actions, Limits
    from ui.api import API
    api = API(Actions(page_registry, Limits()))
    user, _ = api.reset(None, "To be", 0, "", False)
    with pytest.raises(gr.Error, match="N \\(draws\\) must be a whole number from 1 to 10,000.*10001"):
        api.sample(user, 10_001, {})
    with pytest.raises(gr.Error, match="continuations must be .* 1 to 16.*17"):
        api.continuations(user, 17, 5, {})
    with pytest.raises(gr.Error, match="tokens per continuation .* 1 to 200.*201"):
        api.continuations(user, 2, 201, {})
    with pytest.raises(gr.Error, match="room for \\d+ more tokens here, not 200"):
        api.continuations(user, 2, 200, {})  # the tiny model's context is 64
    small = API(Actions(page_registry, Limits(continuation_cache_bytes=1000)))
    user2, _ = small.reset(None, "To be", 0, "", False)
    with pytest.raises(gr.Error, match="MiB of KV cache; the limit is"):
        small.continuations(user2, 4, 10, {})
    out = api.sample(user, 100, {"temperature": 0})
    assert len(out["counts"]) == 1 and out["tv"] >= 0 and out["counts"][0][2] == 100


def test_the_page_events_answer_junk_with_a_message_and_leave_the_text_alone(page_registry):
    from tests.test_app import Page
    page = Page(page_registry)
    page.start("ROMEO:", seed=3)
    page.send("step", settings={})
    before = list(page.session.ids)
    for action, data in [("sample", {"n": 10_001}), ("sample", {"n": "many"}), ("sample", {"settings": [1]}),
                         ("continuations", {"n": 0, "m": 5}), ("continuations", {"n": 2, "m": float("nan")}),
                         ("open", {"ids": "abc"}), ("open", {"ids": [-1]}), ("open", {"ids": [10**9]})]:
        out = page.send(action, **data)
        assert out["notice"]["kind"] == "error" and len(out["notice"]["text"]) > 10, (action, data)
        assert page.session.ids == before, (action, data)

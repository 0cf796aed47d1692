"""The sampling pipeline: the same numbers as Hugging Face's logits processors (ties and exact
boundaries included), picks whose frequencies follow the distribution, and clear errors."""

from __future__ import annotations

import doctest
import math
import re

import pytest
import torch
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
)

import model.sampling
from model import generate
from model.sampling import (
    SEED_MAX,
    SamplingSettings,
    apply_penalties,
    banned_ngram_tokens,
    draw_u,
    entropy_bits,
    next_token_probs,
    pick_token,
    run_pipeline,
    sampling_order,
)
from testkit.models import random_gpt, tiny_config


def hf_probs(logits: torch.Tensor, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, typical_p=1.0,
             repetition_penalty=1.0, no_repeat_ngram_size=0, context=(), temperature_last=False):
    """The distribution transformers' `generate(do_sample=True)` samples from: its processors,
    built the way GenerationMixin._get_logits_processor builds them, in its order."""
    penalties, warpers = [], []
    if repetition_penalty != 1.0:
        penalties.append(RepetitionPenaltyLogitsProcessor(float(repetition_penalty)))
    if no_repeat_ngram_size:
        penalties.append(NoRepeatNGramLogitsProcessor(no_repeat_ngram_size))
    if top_k != 0:
        warpers.append(TopKLogitsWarper(top_k))
    if top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p))
    if min_p:
        warpers.append(MinPLogitsWarper(min_p))
    if typical_p < 1.0:
        warpers.append(TypicalLogitsWarper(typical_p))
    if temperature != 1.0:
        temp = TemperatureLogitsWarper(float(temperature))
        warpers = warpers + [temp] if temperature_last else [temp] + warpers
    input_ids = torch.tensor([list(context) or [0]])
    scores = logits.to(torch.float64)[None].clone()
    for processor in penalties + warpers:
        scores = processor(input_ids, scores)
    return scores.softmax(dim=-1)[0]


def assert_equals_hugging_face(ours: torch.Tensor, theirs: torch.Tensor, logits: torch.Tensor, where):
    """Equal to Hugging Face's distribution. The one freedom: where a filter's cut falls inside
    a run of exactly tied logits of more than 16 tokens, HF keeps whichever of them torch's
    unstable CPU sort happens to put last (an artefact of the sort's internals), while we
    always keep the higher ids (what HF does wherever that sort is stable, which the page
    repeats). Then the two must still be the same distribution up to exchanging those tied
    tokens, and ours must have kept the higher ids."""
    if torch.allclose(ours, theirs, atol=1e-12, rtol=0):
        return
    only_ours = ((ours > 0) & (theirs == 0)).nonzero().flatten()
    only_theirs = ((theirs > 0) & (ours == 0)).nonzero().flatten()
    assert len(only_ours) == len(only_theirs) > 0, where
    assert torch.equal(logits[only_ours].sort().values, logits[only_theirs].sort().values), where
    assert torch.allclose(ours.sort().values, theirs.sort().values, atol=1e-12, rtol=0), where
    for i in only_ours:  # each token we keep instead beats a tied one of HF's on id
        tied = only_theirs[logits[only_theirs] == logits[i]]
        assert (tied < i).all(), where


def random_logits(gen: torch.Generator, vocab: int) -> torch.Tensor:
    """Float64 logits; every third draw is rounded so that ties (at the k-th value, at the top)
    are common."""
    logits = torch.randn(vocab, generator=gen, dtype=torch.float64) * 3
    if torch.randint(3, (1,), generator=gen).item() == 0:
        logits = logits.round()
    return logits


def random_settings(gen: torch.Generator, vocab: int) -> dict:
    def pick(options):
        return options[torch.randint(len(options), (1,), generator=gen).item()]

    return dict(
        temperature=pick([1.0, 0.7, 1.5, 0.05, 3.0]),
        top_k=pick([0, 1, 2, 3, 5, vocab - 1, vocab, vocab + 10]),
        top_p=pick([1.0, 0.0, 0.3, 0.5, 0.9, 0.95, torch.rand(1, generator=gen).item()]),
        min_p=pick([0.0, 0.0, 0.05, 0.2, 1.0]),
        typical_p=pick([1.0, 1.0, 0.2, 0.5, 0.9, 0.99]),
    )


# ---- agreement with Hugging Face ----

def test_next_token_probs_matches_hugging_face_warpers_on_random_logits():
    gen = torch.Generator().manual_seed(0)
    for trial in range(600):
        vocab = int(torch.randint(2, 60, (1,), generator=gen))
        logits = random_logits(gen, vocab)
        s = random_settings(gen, vocab)
        ours = next_token_probs(logits, **s)
        assert_equals_hugging_face(ours, hf_probs(logits, **s), logits, (trial, s))
        assert ours.dtype == torch.float64 and math.isclose(float(ours.sum()), 1.0, rel_tol=1e-12)


def test_temperature_last_matches_hugging_face_with_temperature_applied_after_the_filters():
    gen = torch.Generator().manual_seed(1)
    for trial in range(300):
        vocab = int(torch.randint(2, 40, (1,), generator=gen))
        logits = random_logits(gen, vocab)
        s = random_settings(gen, vocab)
        s["temperature"] = [0.3, 2.0, 5.0][trial % 3]
        pipe = run_pipeline(logits, SamplingSettings(**s, temperature_last=True))
        assert [st.name for st in pipe.stages][-1] == "temperature"
        assert_equals_hugging_face(pipe.probs, hf_probs(logits, **s, temperature_last=True), logits,
                                   (trial, s))


def test_temperature_last_lets_filters_see_the_unscaled_distribution():
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0], dtype=torch.float64)
    # At T = 1 the top two tokens hold 0.87 of the mass; at T = 10 they hold only 0.30.
    first = next_token_probs(logits, temperature=10.0, top_p=0.8)
    last = run_pipeline(logits, SamplingSettings(temperature=10.0, top_p=0.8, temperature_last=True)).probs
    assert int((first > 0).sum()) == 4
    assert int((last > 0).sum()) == 2


def test_penalties_match_hugging_face_repetition_and_no_repeat_ngram_processors():
    gen = torch.Generator().manual_seed(2)
    for trial in range(300):
        vocab = int(torch.randint(3, 12, (1,), generator=gen))
        logits = random_logits(gen, vocab)
        context = torch.randint(vocab, (int(torch.randint(1, 15, (1,), generator=gen)),),
                                generator=gen).tolist()
        penalty = [1.0, 1.3, 0.7, 2.0][trial % 4]
        n = [0, 1, 2, 3, 4][trial % 5]
        settings = SamplingSettings(repetition_penalty=penalty, no_repeat_ngram_size=n)
        ours = apply_penalties(logits, context, settings)
        expected = logits[None].clone()
        if penalty != 1.0:
            expected = RepetitionPenaltyLogitsProcessor(penalty)(torch.tensor([context]), expected)
        if n:
            expected = NoRepeatNGramLogitsProcessor(n)(torch.tensor([context]), expected)
        assert torch.equal(ours, expected[0]), (trial, context, penalty, n)
        if ours.isfinite().any():  # and through the whole pipeline, with warpers after them
            full = run_pipeline(logits, SamplingSettings(repetition_penalty=penalty,
                                                         no_repeat_ngram_size=n, top_k=3,
                                                         temperature=0.8), context).probs
            hf = hf_probs(logits, repetition_penalty=penalty, no_repeat_ngram_size=n, top_k=3,
                          temperature=0.8, context=context)
            assert torch.allclose(full, hf, atol=1e-12)


def test_presence_and_frequency_penalties_subtract_once_and_per_occurrence():
    logits = torch.zeros(5, dtype=torch.float64)
    out = apply_penalties(logits, [1, 1, 1, 3], SamplingSettings(presence_penalty=0.5,
                                                                 frequency_penalty=0.25))
    assert out.tolist() == [0.0, -(0.5 + 3 * 0.25), 0.0, -(0.5 + 0.25), 0.0]


def test_banned_ngram_tokens_lists_tokens_that_would_repeat_an_ngram():
    assert banned_ngram_tokens([1, 2, 3, 1, 2], 3) == [3]
    assert banned_ngram_tokens([1, 2, 3, 1, 2], 2) == [3]
    assert banned_ngram_tokens([5, 6, 5], 1) == [5, 6]
    assert banned_ngram_tokens([1, 2], 4) == []


# ---- the edge cases named in the docs ----

def test_top_k_keeps_every_token_tied_with_the_kth_logit():
    logits = torch.tensor([3.0, 2.0, 2.0, 2.0, 1.0], dtype=torch.float64)
    probs = next_token_probs(logits, top_k=2)
    assert (probs > 0).tolist() == [True, True, True, True, False]
    assert torch.allclose(probs, hf_probs(logits, top_k=2), atol=0)


def test_top_k_zero_and_larger_than_the_vocabulary_change_nothing():
    logits = torch.randn(7, dtype=torch.float64)
    plain = logits.softmax(-1)
    assert torch.allclose(next_token_probs(logits, top_k=0), plain, atol=1e-15)
    assert torch.allclose(next_token_probs(logits, top_k=100), plain, atol=1e-15)
    assert torch.allclose(next_token_probs(logits, top_k=100), hf_probs(logits, top_k=100), atol=0)


def test_top_p_exactly_at_a_boundary_keeps_the_set_that_reaches_p_and_no_more():
    # Probabilities exactly 0.5, 0.25, 0.25 (powers of two: no rounding anywhere).
    logits = torch.tensor([math.log(2.0), 0.0, 0.0], dtype=torch.float64)
    assert logits.softmax(-1).tolist() == [0.5, 0.25, 0.25]
    for p, kept in [(0.5, 1), (0.75, 2), (0.7500001, 3), (0.4999, 1)]:
        probs = next_token_probs(logits, top_p=p)
        assert int((probs > 0).sum()) == kept, p
        assert torch.equal(probs, hf_probs(logits, top_p=p)), p


def test_top_p_one_is_off_and_zero_keeps_only_the_top_token():
    logits = torch.tensor([0.1, 2.0, -1.0, 2.0], dtype=torch.float64)
    assert torch.allclose(next_token_probs(logits, top_p=1.0), logits.softmax(-1), atol=1e-15)
    probs = next_token_probs(logits, top_p=0.0)
    assert int((probs > 0).sum()) == 1 and torch.equal(probs, hf_probs(logits, top_p=0.0))


def test_temperature_towards_zero_approaches_greedy_and_zero_is_argmax():
    logits = torch.tensor([1.0, 3.0, 2.9, -2.0], dtype=torch.float64)
    tops = [float(next_token_probs(logits, temperature=t)[1]) for t in (2.0, 1.0, 0.5, 0.1, 0.01)]
    assert tops == sorted(tops) and tops[-1] > 0.9999
    assert next_token_probs(logits, temperature=0.0).tolist() == [0.0, 1.0, 0.0, 0.0]
    assert torch.allclose(next_token_probs(logits, temperature=1e-3),
                          hf_probs(logits, temperature=1e-3), atol=1e-12)
    # A large temperature approaches uniform.
    assert torch.allclose(next_token_probs(logits, temperature=1e6), torch.full((4,), 0.25,
                                                                                dtype=torch.float64), atol=1e-5)


def test_greedy_picks_the_first_of_tied_top_tokens():
    logits = torch.tensor([0.0, 5.0, 5.0], dtype=torch.float64)
    assert next_token_probs(logits, temperature=0.0).tolist() == [0.0, 1.0, 0.0]


def test_pipeline_keeps_every_stage_and_inactive_stages_pass_logits_through():
    logits = torch.randn(10, dtype=torch.float64)
    pipe = run_pipeline(logits, SamplingSettings(top_k=3))
    assert [s.name for s in pipe.stages] == ["penalties", "temperature", "top_k", "top_p",
                                             "min_p", "typical_p"]
    assert [s.active for s in pipe.stages] == [False, False, True, False, False, False]
    assert torch.equal(pipe.stage("temperature").logits, pipe.raw)
    assert int(pipe.stage("top_k").kept.sum()) == 3
    assert torch.equal(pipe.probs, pipe.stage("typical_p").probs)


def test_docstring_example_runs():
    assert doctest.testmod(model.sampling).failed == 0


def test_entropy_of_a_uniform_distribution_over_eight_tokens_is_three_bits():
    assert entropy_bits(torch.full((8,), 1 / 8, dtype=torch.float64)) == pytest.approx(3.0)


@pytest.mark.parametrize("vocab", [37, 2048, 49152])
def test_entropy_is_the_same_bits_whether_or_not_the_vector_holds_zeros(vocab):
    """Records and exports carry entropies: the shortcut for a vector without zeros must give
    the bits of the sum over its positive entries, and zeros must add nothing."""
    g = torch.Generator().manual_seed(vocab)
    for scale in (0.5, 3.0, 60.0):  # at 60, most of the vector underflows to 0
        probs = (torch.randn(vocab, dtype=torch.float64, generator=g) * scale).softmax(-1)
        for vector in (probs, probs.float()):  # float32 underflows sooner
            positive = vector[vector > 0]
            assert entropy_bits(vector) == float(-(positive * positive.log2()).sum())


# ---- picking ----

def chi_square_p_value(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """P(chi-square >= observed) for counts drawn from probs (every expected count >= 5)."""
    n = int(counts.sum())
    expected = probs * n
    assert (expected[probs > 0] >= 5).all()
    stat = float((((counts - expected) ** 2)[probs > 0] / expected[probs > 0]).sum())
    df = int((probs > 0).sum()) - 1
    return float(torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64),
                                         torch.tensor(stat / 2, dtype=torch.float64)))


def test_pick_token_frequencies_match_the_distribution_chi_square():
    logits = torch.tensor([2.0, 1.5, 1.5, 0.3, -1.0, -1.2, -9.0, 0.8], dtype=torch.float64)
    probs = next_token_probs(logits, top_k=6)
    assert probs[5] == 0 and probs[6] == 0  # top-k removed them
    counts = torch.zeros(8, dtype=torch.float64)
    for position in range(10_000):
        counts[pick_token(probs, draw_u(seed=123, position=position))] += 1
    assert counts[probs == 0].sum() == 0  # a removed token is never picked
    assert chi_square_p_value(counts, probs) > 1e-3


def test_generate_sampling_frequencies_match_the_distribution_chi_square():
    gpt = random_gpt(tiny_config(), seed=5)
    prompt = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        logits = gpt(prompt)[0, -1]
    settings = dict(temperature=0.1, top_k=8)  # sharpen the random model's flat logits
    probs = next_token_probs(logits, **settings)
    assert 0.2 < float(probs.max()) < 0.9  # far from uniform, far from greedy
    out = generate(gpt, prompt.repeat(10_000, 1), max_new_tokens=1, seed=7, **settings)
    counts = torch.bincount(out[:, -1], minlength=gpt.config.vocab_size).double()
    assert counts[probs == 0].sum() == 0
    assert chi_square_p_value(counts, probs) > 1e-3


def test_same_seed_reproduces_and_another_seed_differs():
    assert draw_u(5, 17) == draw_u(5, 17)
    assert draw_u(5, 17) != draw_u(6, 17) and draw_u(5, 17) != draw_u(5, 18)
    assert all(0.0 <= draw_u(s, p) < 1.0 for s in range(20) for p in range(20))
    gpt = random_gpt(tiny_config(), seed=5)
    prompt = torch.tensor([[1, 2, 3]])
    a = generate(gpt, prompt, 30, temperature=1.0, seed=11)
    assert torch.equal(a, generate(gpt, prompt, 30, temperature=1.0, seed=11))
    assert not torch.equal(a, generate(gpt, prompt, 30, temperature=1.0, seed=12))


def test_pick_for_a_fixed_u_is_the_token_whose_cumulative_interval_holds_u():
    probs = next_token_probs(torch.tensor([0.5, 2.0, 1.0, 2.0, -3.0], dtype=torch.float64), top_k=4)
    order = sampling_order(probs)
    assert order.tolist()[:4] == [1, 3, 2, 0]  # probability descending, ties by lower id
    cumulative = probs[order].cumsum(0)
    for u in torch.linspace(0, 1, 1001)[:-1].tolist():
        i = int((cumulative < u).sum())  # the first position whose cumulative reaches u
        assert pick_token(probs, u) == int(order[i])
    assert pick_token(probs, 0.0) == 1
    assert pick_token(probs, 1 - 1e-16) == 0  # the last kept token, never a removed one


def test_pick_for_a_fixed_u_changes_only_when_the_distribution_does():
    logits = torch.randn(50, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    us = [draw_u(0, p) for p in range(200)]
    base = next_token_probs(logits, temperature=0.9)
    # Settings that leave the distribution as it is leave every pick as it is.
    same = next_token_probs(logits, temperature=0.9, top_k=50, top_p=1.0, min_p=0.0)
    assert torch.equal(base, same)
    assert [pick_token(base, u) for u in us] == [pick_token(same, u) for u in us]
    # A different distribution moves at least some picks.
    other = next_token_probs(logits, temperature=0.9, top_k=5)
    assert [pick_token(base, u) for u in us] != [pick_token(other, u) for u in us]
    # But a u inside the top token's interval still lands on the top token.
    top = int(base.argmax())
    assert pick_token(base, 0.0) == pick_token(other, 0.0) == top


# ---- bad inputs ----

@pytest.mark.parametrize("kwargs, message", [
    (dict(temperature=float("nan")), "temperature must be a finite number >= 0.0 (0 = greedy), but is nan"),
    (dict(temperature=-1.0), "temperature must be a finite number >= 0.0 (0 = greedy), but is -1.0"),
    (dict(temperature="hot"), "temperature must be a number (0 = greedy), but is 'hot'"),
    (dict(top_k=-1), "top_k must be an integer >= 0 (0 = off), but is -1"),
    (dict(top_k=2.5), "top_k must be an integer >= 0 (0 = off), but is 2.5"),
    (dict(top_p=1.01), "top_p must be a finite number in [0.0, 1.0] (1 = off), but is 1.01"),
    (dict(top_p=-0.2), "top_p must be a finite number in [0.0, 1.0] (1 = off), but is -0.2"),
    (dict(min_p=2.0), "min_p must be a finite number in [0.0, 1.0] (0 = off), but is 2.0"),
    (dict(typical_p=float("inf")), "typical_p must be a finite number in [0.0, 1.0] (1 = off), but is inf"),
])
def test_bad_settings_raise_value_error_naming_the_argument_and_value(kwargs, message):
    with pytest.raises(ValueError) as info:
        next_token_probs(torch.zeros(3), **kwargs)
    assert str(info.value) == message


def test_other_bad_settings_raise_value_error_naming_them():
    with pytest.raises(ValueError, match="repetition_penalty must be > 0"):
        SamplingSettings(repetition_penalty=0)
    with pytest.raises(ValueError, match="no_repeat_ngram_size"):
        SamplingSettings(no_repeat_ngram_size=1.5)
    with pytest.raises(ValueError, match="temperature_last must be true or false, but is 'yes'"):
        SamplingSettings(temperature_last="yes")
    with pytest.raises(ValueError, match=r"unknown sampling settings \['topk'\]"):
        SamplingSettings.from_dict({"topk": 3})
    # One range for seeds everywhere (the session, the CLI, the API, the page's box).
    for bad in (-1, SEED_MAX + 1, 3.5, None, True):
        with pytest.raises(ValueError, match=f"seed must be a whole number from 0 to 4,294,967,295, "
                                             f"but is {re.escape(repr(bad))}$"):
            draw_u(bad, 0)
    assert 0 <= draw_u(SEED_MAX, 0) < 1


def test_settings_accept_integral_floats_from_sliders_and_normalise_them():
    s = SamplingSettings(top_k=40.0, temperature=1)
    assert s.top_k == 40 and isinstance(s.top_k, int) and isinstance(s.temperature, float)
    assert SamplingSettings.from_dict(s.to_dict()) == s


def test_broken_logits_raise_value_error():
    with pytest.raises(ValueError, match="NaN"):
        next_token_probs(torch.tensor([0.0, float("nan")]))
    with pytest.raises(ValueError, match="all -inf"):
        next_token_probs(torch.full((3,), float("-inf")))
    with pytest.raises(ValueError, match=r"1-D tensor \(vocab,\)"):
        next_token_probs(torch.zeros(2, 3))


@pytest.mark.parametrize("settings, context, match", [
    (dict(temperature=1e-320), [], "temperature 1e-320 is too small"),
    (dict(no_repeat_ngram_size=1), [0, 1, 2, 3, 4], "no_repeat_ngram_size 1 bans every token"),
    (dict(repetition_penalty=1e-320), [0, 1], "penalties overflow the logits"),
])
def test_settings_that_leave_no_distribution_raise_instead_of_returning_nan(settings, context, match):
    logits = torch.tensor([3.0, 2.0, 1.0, 0.5, -1.0], dtype=torch.float64)
    with pytest.raises(ValueError, match=match):
        run_pipeline(logits, SamplingSettings(**settings), context)

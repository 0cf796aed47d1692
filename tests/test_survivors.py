"""Stages on the survivors only (model/kept.py) give the same bits as every stage on the whole
(V,) vector (testkit/full_pipeline.py, the pipeline as it ran before): the same logits after
every stage, the same final probabilities, the same pick, the same errors; and a step's record
lists each stage's most likely tokens with exactly those probabilities."""

from __future__ import annotations

import random

import pytest
import torch

from model.kept import Kept, top_candidates
from model.sampling import SamplingSettings, choose, run_pipeline
from model.session import TOP_CANDIDATES
from testkit import full_pipeline as reference
from testkit.sampling_cases import LetterVocab, random_case

LLAMA_CPP = SamplingSettings(samplers="edskypmxt", repetition_penalty=1.1, penalty_last_n=64,
                             dry_multiplier=0.8, top_n_sigma=2.0, top_k=40, typical_p=0.95, top_p=0.95,
                             min_p=0.05, xtc_probability=0.5, xtc_threshold=0.1, temperature=0.8)


def both(case):
    """(ours, the reference's) on one case; an error on either side is returned, not raised."""
    settings = SamplingSettings.from_dict(case["settings"])
    logits = torch.tensor(case["logits"], dtype=torch.float64)
    kw = dict(seed=case["seed"], vocab=LetterVocab(len(case["logits"])), mu=case["mu"])
    out = []
    for run in (run_pipeline, reference.full_pipeline):
        try:
            out.append(run(logits, settings, case["context"], **kw))
        except ValueError as e:
            out.append(e)
    return settings, out[0], out[1]


def assert_same(settings, pipe, ref, seed, position, where):
    if isinstance(ref, ValueError) or isinstance(pipe, ValueError):
        assert isinstance(ref, ValueError) and isinstance(pipe, ValueError), (where, pipe, ref)
        return
    ref_stages, ref_probs = ref
    assert [(s.name, s.active) for s in pipe.stages] == [(n, a) for n, a, _ in ref_stages], where
    for stage, (name, _, logits) in zip(pipe.stages, ref_stages):
        assert torch.equal(stage.logits, logits), f"logits after {name} differ: {where}"
        assert torch.equal(stage.probs, logits.softmax(-1)), f"probabilities after {name} differ: {where}"
    assert torch.equal(pipe.probs, ref_probs), f"final probabilities differ: {where}"
    token, u, _ = choose(pipe, settings, seed, position)
    expected = int(torch.argmax(ref_probs)) if settings.greedy else reference.pick_token(ref_probs, u)
    assert token == expected, where


@pytest.mark.parametrize("vocab, cases", [(37, 600), (2048, 300), (49152, 12), (50257, 12)])
def test_every_stage_gives_the_whole_vectors_bits_on_random_settings_and_chains(vocab, cases):
    # 49,152 is SmolLM2's vocabulary; 50,257 (GPT-2's) is no multiple of any SIMD width, so
    # survivors land in every lane and in the scalar tail of a vectorised loop.
    rng = random.Random(vocab)
    compared = 0
    for _ in range(cases):
        case = random_case(rng, vocab)
        settings, pipe, ref = both(case)
        where = f"settings {case['settings']}, vocab {vocab}"
        assert_same(settings, pipe, ref, case["seed"], len(case["context"]), where)
        compared += not isinstance(ref, ValueError)
    assert compared >= cases * 0.8


@pytest.mark.parametrize("vocab", [4096, 49152])
def test_the_full_llama_cpp_chain_gives_the_whole_vectors_bits(vocab):
    """Every stage of `edskypmxt` on, over model-like logits (a long tail, a few likely tokens):
    top-k leaves 40, and every stage after it runs on those alone."""
    gen = torch.Generator().manual_seed(vocab)
    for case in range(20):
        logits = torch.randn(vocab, generator=gen, dtype=torch.float64) * 2.5
        logits[torch.randint(vocab, (8,), generator=gen)] += 9.0
        context = torch.randint(vocab, (120,), generator=gen).tolist()
        vocab_stub = LetterVocab(vocab)
        pipe = run_pipeline(logits, LLAMA_CPP, context, seed=case, vocab=vocab_stub)
        ref = reference.full_pipeline(logits, LLAMA_CPP, context, seed=case, vocab=vocab_stub)
        assert_same(LLAMA_CPP, pipe, ref, case, len(context), f"case {case}")
        assert pipe.stage("top_k").kept_view.n <= 40 + 5


def test_a_records_candidates_are_each_stages_top_tokens_with_the_whole_vectors_probabilities():
    rng = random.Random(7)
    for _ in range(200):
        case = random_case(rng, rng.choice([37, 2048]))
        settings, pipe, ref = both(case)
        if isinstance(ref, ValueError):
            continue
        for stage, (name, _, logits) in zip(pipe.stages, ref[0]):
            probs = logits.softmax(-1)
            ranked = sorted(((-float(p), i) for i, p in enumerate(probs.tolist()) if p > 0))
            expected = [(i, -q) for q, i in ranked[:TOP_CANDIDATES]]
            assert top_candidates(stage.kept_view, TOP_CANDIDATES) == expected, (name, case["settings"])


def test_candidates_break_ties_by_lower_id_and_leave_out_removed_tokens():
    kept = Kept.of(torch.tensor([1.0, 3.0, float("-inf"), 3.0, 2.0, 1.0], dtype=torch.float64))
    assert [t for t, _ in top_candidates(kept, 4)] == [1, 3, 4, 0]
    assert [t for t, _ in top_candidates(kept, 10)] == [1, 3, 4, 0, 5]


def test_a_softmax_over_the_survivors_alone_is_not_the_whole_vectors():
    """Why the survivors' softmax runs on the (V,) layout (model/kept.py): summed in SIMD
    lanes, the same survivors give a last-bit-different sum when they sit elsewhere. If this
    ever stops failing to match, torch's reduction changed; the tests above still hold."""
    gen = torch.Generator().manual_seed(1)
    differ = 0
    for _ in range(100):
        ids = torch.randperm(4096, generator=gen)[:40].sort().values
        values = torch.randn(40, generator=gen, dtype=torch.float64) * 3
        kept = Kept(values, ids, 4096)
        differ += not torch.equal(kept.kept_probs(), values.softmax(-1))
    assert differ > 0


def test_a_view_of_survivors_expands_to_the_whole_vector_and_maps_ids_to_positions():
    x = torch.tensor([0.5, float("-inf"), 2.0, float("-inf"), -1.0], dtype=torch.float64)
    kept = Kept.of(x)
    assert kept.ids.tolist() == [0, 2, 4] and kept.n == 3 and torch.equal(kept.full(), x)
    at, alive = kept.positions(torch.tensor([4, 1, 0]))
    assert alive.tolist() == [True, False, True] and at[alive].tolist() == [2, 0]
    assert kept.where(torch.tensor([True, True, True])) is kept
    assert kept.with_values(torch.tensor([1.0, float("-inf"), 3.0], dtype=torch.float64)).ids.tolist() == [0, 4]
    dense = Kept.of(torch.zeros(3, dtype=torch.float64))
    assert dense.ids is None and dense.id_list().tolist() == [0, 1, 2]


def test_logits_holding_plus_infinity_are_refused_naming_them():
    with pytest.raises(ValueError, match=r"\+inf"):
        run_pipeline(torch.tensor([0.0, float("inf")]))


def _after_top_k(gen, vocab=4096, k=40):
    """Logits with a long tail, cut to their top k (the reference's own cut): what the
    threshold stages see after a top-k."""
    logits = torch.randn(vocab, generator=gen, dtype=torch.float64) * 2.0
    return reference.apply_top_k(logits, k)


def _thresholds_on_the_reference_numbers(gen):
    """Settings whose threshold equals, to the bit, a number the whole-vector computation makes
    after top-k: a cumulative sum, a probability. Only there can a last-bit difference in a
    softmax change what is kept; random thresholds never land on one."""
    x = _after_top_k(gen, k=int(torch.randint(30, 50, (1,), generator=gen)))  # every SIMD alignment
    n = int(torch.isfinite(x).sum())
    j = int(torch.randint(n - 1, (1,), generator=gen))
    cases = []
    ascending = torch.sort(x, stable=True).values.softmax(-1).cumsum(-1)[-n:]
    p = 1.0 - float(ascending[j])
    if 1.0 - p == float(ascending[j]):
        cases.append({"top_p": p})
    log_probs = torch.log_softmax(x, -1)
    entropy = -(log_probs * log_probs.exp()).nansum(-1, keepdim=True)
    order = torch.sort(torch.abs(-log_probs - entropy), stable=True).indices
    cases.append({"typical_p": float(x.gather(-1, order).softmax(-1).cumsum(-1)[j])})
    probs = x.softmax(-1)
    kept_probs = probs[torch.isfinite(x)]
    q = float(kept_probs[j])
    cases.append({"epsilon_cutoff": q})
    m = q / float(probs.max())
    if m * float(probs.max()) == q:
        cases.append({"min_p": m})
    return x, cases


def test_thresholds_set_exactly_on_the_whole_vectors_numbers_keep_the_same_tokens():
    gen = torch.Generator().manual_seed(3)
    compared = 0
    for _ in range(150):
        x, cases = _thresholds_on_the_reference_numbers(gen)
        for values in cases:
            settings = SamplingSettings(**values)
            ref = reference.full_pipeline(x, settings)
            pipe = run_pipeline(x, settings)
            assert torch.equal(pipe.probs, ref[1]), values
            compared += 1
    assert compared >= 500

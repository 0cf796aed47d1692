"""Our llama.cpp stages against llama.cpp's own code (llama-cpp-python 0.3.36's low-level
sampler API), and ε/η against transformers' warpers: llama.cpp's test vectors, then a few
hundred random cases per sampler (testkit/sampler_agreement.py; its docstring says how
float32-vs-float64 threshold edges are told apart from real differences: a nudge of our
threshold by a relative 1e-5 reproduces llama.cpp's survivors). Edges are allowed, counted
and bounded; real differences are not. benchmarks/bench_sampler_agreement.py runs thousands.

Where llama.cpp is wrong we do the right thing and say so here:
- typical after top-nσ, or wherever a candidate's float32 probability underflows to 0: its
  entropy is 0·log 0 = NaN in llama.cpp (test_typical_after_top_n_sigma_...); ours is the
  entropy of the candidates with mass;
- mirostat 1's k beyond 2^31: C's undefined int conversion (x86 keeps one token; we keep all);
  such cases are left out of the comparison and counted;
- dynamic temperature after top-nσ: llama.cpp takes ln(array size) as the maximum entropy and
  counts top-nσ's masked tokens in it; ours counts the candidates left.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model import llama_samplers as ls
from model.sampling import SamplingSettings

L = pytest.importorskip("llama_cpp", reason="pip install llama-cpp-python==0.3.36 (requirements-dev.txt)")
from testkit import llamacpp as ref  # noqa: E402
from testkit import sampler_agreement as agree  # noqa: E402
from testkit.sampler_agreement import kept_ids, ours  # noqa: E402

pytestmark = pytest.mark.llamacpp

CASES = 300


def assert_agrees(tally: agree.Tally, max_edges: int = CASES // 50, max_quirks: int = 0):
    assert tally.cases >= CASES
    assert not tally.differ, f"{tally.name}: {len(tally.differ)} differences, e.g. {tally.differ[:3]}"
    assert tally.edges <= max_edges, f"{tally.name}: {tally.edges} threshold edges"
    assert tally.quirks <= max_quirks, f"{tally.name}: {tally.quirks} llama.cpp quirks"


# ---- llama.cpp's own test vectors (tests/test-sampling.cpp), as data ----

def test_vectors_of_llama_cpp_test_sampling_cpp():
    log = lambda probs: np.log(np.array(probs, dtype=np.float32))  # noqa: E731  the tester's logits
    # top-nσ: (probs, expected probs after the cut, n)
    for probs, expected, n in [([0.1, 0.2, 0.3, 0.4], [0.0, 0.0, 0.428571, 0.571429], 1.0),
                               ([0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4], 0.0),
                               ([0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4], 3.0)]:
        got = ours(log(probs), {"top_n_sigma": n}).probs
        assert np.allclose(got.numpy(), expected, atol=1e-5), (probs, n)
    # XTC: (probs, the survivors' probabilities, probability, threshold)
    for probs, expected, p, t in [([0.4, 0.3, 0.2, 0.1], [0.1], 0.99, 0.09),
                                  ([0.4, 0.3, 0.2, 0.1], [0.2, 0.1], 0.99, 0.19),
                                  ([0.4, 0.3, 0.2, 0.1], [0.3, 0.2, 0.1], 0.99, 0.29),
                                  ([0.4, 0.3, 0.2, 0.1], [0.4, 0.3, 0.2, 0.1], 0.99, 0.39)]:
        x = torch.tensor(log(probs).astype(np.float64))
        kept = torch.isfinite(ls.apply_xtc(x, p, t, u=0.0))
        assert np.allclose(sorted(np.array(probs)[kept.numpy()], reverse=True), expected, atol=1e-6)
    # penalties: (probs, history, expected probs, repeat, frequency, presence); last_n = len(history)
    for probs, history, expected, rep, freq, pres in [
            ([0.2] * 5, [0], [0, 0.25, 0.25, 0.25, 0.25], 50.0, 0.0, 0.0),
            ([0.2] * 5, [0, 1, 2], [0, 0, 0, 0.5, 0.5], 50.0, 0.0, 0.0),
            ([0.2] * 5, [0, 1, 2, 0, 0], [0, 0, 0, 0.5, 0.5], 50.0, 0.0, 0.0),
            ([0.2] * 5, [0], [0.000011, 0.249997, 0.249997, 0.249997, 0.249997], 1.0, 5.0, 5.0),
            ([0.2] * 5, [0, 1, 2], [0.000023, 0.000023, 0.000023, 0.499966, 0.499966], 1.0, 5.0, 5.0),
            ([0.2] * 5, [0, 1, 2, 0, 0], [0.0, 0.000023, 0.000023, 0.499977, 0.499977], 1.0, 5.0, 5.0)]:
        got = ours(log(probs), {"repetition_penalty": rep, "frequency_penalty": freq,
                                "presence_penalty": pres,
                                "penalty_last_n": len(history)}, history).probs
        assert np.allclose(got.numpy(), expected, atol=1e-5), (history, rep, freq, pres)
    # DRY: (probs, history, expected, multiplier, base, allowed length, last n, breakers as token ids)
    for probs, history, expected, mult, base, allowed, last_n, breakers in [
            ([0.25] * 4, [0, 1], [0.25] * 4, 1.0, 1.1, 2, 4, []),
            ([0.25] * 4, [0, 1, 2, 0, 1], [0.296923, 0.296923, 0.109232, 0.296923], 1.0, 1.1, 2, 5, []),
            ([0.2] * 5, [0, 1, 3, 4, 0, 1], [0.2] * 5, 1.0, 1.1, 2, 6, [[3]]),
            ([0.2] * 5, [0, 1, 2, 0, 1], [0.241818, 0.241818, 0.032727, 0.241818, 0.241818],
             2.0, 1.1, 2, 5, []),
            ([0.2] * 5, [0, 1, 2, 3, 4, 0, 1], [0.2] * 5, 1.0, 1.1, 4, 7, [])]:
        heads = {b[0]: [tuple(b[1:])] for b in breakers}
        x = torch.tensor(log(probs).astype(np.float64))
        s = SamplingSettings(dry_multiplier=mult, dry_base=base, dry_allowed_length=allowed,
                             dry_penalty_last_n=last_n)
        got = ls.apply_dry(x, history, s, heads).softmax(-1)
        assert np.allclose(got.numpy(), expected, atol=1e-5), (history, mult, allowed)


# ---- how float32-vs-float64 threshold edges are told apart ----

def test_a_threshold_on_a_probability_is_an_edge_and_a_moved_threshold_a_difference():
    """XTC's threshold set exactly to a float64 probability: llama.cpp's float32 probability
    falls on either side, and the nudge counts those cases as edges, never as differences.
    The control: the same cases against our stage with the threshold moved by 5% show real
    differences, which the nudge does not excuse."""
    rng = np.random.default_rng(10)
    on_edge, moved = agree.Tally("edge"), agree.Tally("moved")
    for case in range(200):
        x = agree.random_logits(rng, int(rng.integers(3, 12)))
        t = float(torch.tensor(x.astype(np.float64)).softmax(-1).sort(descending=True).values[1])
        if t > 0.45:
            continue
        got = set(ref.survivors(L.llama_sampler_init_xtc(1.0, t, 0, 0), x))
        for tally, ours_t in ((on_edge, t), (moved, t * 1.05)):
            s = {"xtc_probability": 1.0, "xtc_threshold": ours_t}
            tally.survivors(got, kept_ids(ours(x, s)),
                            agree.nudge(x, s, "xtc_threshold"), case)
    assert on_edge.edges > 10 and not on_edge.differ
    assert len(moved.differ) > 10


# ---- one sampler at a time, random cases ----

def test_top_n_sigma_keeps_what_llama_cpp_keeps():
    assert_agrees(agree.top_n_sigma(CASES))


def test_xtc_at_probability_one_removes_what_llama_cpp_removes():
    assert_agrees(agree.xtc(CASES))


def test_penalties_over_the_last_n_tokens_move_logits_as_llama_cpp_does():
    assert_agrees(agree.penalties(CASES), max_edges=0)


def test_dynamic_temperature_scales_as_llama_cpp_temp_ext():
    assert_agrees(agree.dynamic_temperature(CASES), max_edges=0)


def test_logit_bias_adds_and_bans_as_llama_cpp_does():
    assert_agrees(agree.logit_bias(CASES), max_edges=0)


def test_mirostat_cuts_as_llama_cpp_for_a_given_mu_and_updates_mu_after_its_pick():
    assert_agrees(agree.mirostat(CASES), max_edges=CASES // 20, max_quirks=CASES // 2)


def test_epsilon_and_eta_cutoffs_equal_transformers_warpers():
    assert_agrees(agree.epsilon_eta(CASES), max_edges=0)


def test_typical_after_top_n_sigma_is_well_defined_here_and_nan_in_llama_cpp():
    """llama.cpp's top-nσ leaves masked tokens in the array with logit -inf; typical's entropy
    then sums 0·log 0 = 0·(-inf) = NaN, every distance from the entropy is NaN, and which
    tokens survive depends on how its sort treats NaN. Ours computes typical over the tokens
    top-nσ kept (-inf ones hold no mass), the same as running typical on those alone."""
    x = np.array([3.0, 2.5, 2.0, -4.0, -5.0, -6.0], dtype=np.float32)
    got = ref.survivors(ref.chain(L.llama_sampler_init_top_n_sigma(1.0),
                                  L.llama_sampler_init_typical(0.5, 0)), x)
    pipe = ours(x, {"top_n_sigma": 1.0, "typical_p": 0.5, "samplers": "sy"})
    alone = ours(x[:3], {"typical_p": 0.5})
    assert kept_ids(pipe) == kept_ids(alone)
    # llama.cpp's answer is the NaN sort's: it differs from the well-defined one here.
    assert set(got) != kept_ids(pipe)


# ---- chains, and DRY on a real vocabulary ----

def test_random_chains_keep_what_llama_cpp_keeps():
    """Random orders, duplicates included. Our top-k, top-p, min-p and typical are Hugging
    Face's, equal to llama.cpp's except exactly at their thresholds and among tied logits;
    chains whose typical meets a float32 probability of 0 (NaN in llama.cpp, as above) are
    counted apart."""
    assert_agrees(agree.chains(CASES), max_edges=CASES // 50, max_quirks=CASES // 10)


@pytest.mark.smollm2
def test_dry_with_sequence_breakers_matches_llama_cpp_on_smollm2s_vocabulary():
    from model.loading import load_model
    from model.smollm2 import gguf_path

    _, tokenizer, _ = load_model("smollm2")
    model, vocab = ref.load_vocab(gguf_path())
    try:
        tally = agree.dry(80, 8, tokenizer, vocab)
    finally:
        L.llama_model_free(model)
    assert not tally.differ, tally.differ[:3]

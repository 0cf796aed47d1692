"""Batched decoding: one forward for many sequences of different lengths gives each the logits
it would get alone (and what Hugging Face's GPT-2 computes), and concurrent sessions stepping
through a shared Batcher write exactly what they write one after another."""

from __future__ import annotations

import threading
import time

import pytest
import torch
import torch.nn as nn

from model import load_model
from model.batching import Batcher
from model.sampling import SamplingSettings
from model.session import DecodingSession
from testkit.models import llama_config, random_gpt, tiny_config

CONFIGS = {"gpt2": tiny_config, "llama": llama_config}
SAMPLE = SamplingSettings(temperature=1.0, top_k=20)
LENGTHS = [1, 5, 17, 40]  # each row's prompt: caches of different lengths in one batch


def _ids(n: int, vocab: int, seed: int) -> list[int]:
    return torch.randint(0, vocab, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def _prefilled(gpt, ids: list[int]):
    cache = gpt.new_cache(1)
    with torch.no_grad():
        gpt(torch.tensor([ids]), cache=cache)
    return cache


@pytest.fixture(params=list(CONFIGS), ids=list(CONFIGS))
def gpt(request):
    return random_gpt(CONFIGS[request.param](), seed=3, scale=5.0)  # O(1) logits: see random_gpt


# ---- GPT.decode_step ----

@torch.no_grad()
def test_batched_step_matches_unbatched_steps_for_rows_of_different_lengths(gpt):
    vocab = gpt.config.vocab_size
    rows = [_ids(n, vocab, seed=n) for n in LENGTHS]
    batched = [_prefilled(gpt, r) for r in rows]
    alone = [_prefilled(gpt, r) for r in rows]
    for step in range(6):
        tokens = _ids(len(rows), vocab, seed=100 + step)
        logits = gpt.decode_step(tokens, batched)
        assert logits.shape == (len(rows), vocab)
        for b, (token, cache) in enumerate(zip(tokens, alone)):
            expected = gpt(torch.tensor([[token]]), cache=cache)[0, -1]
            assert (logits[b] - expected).abs().max() < 1e-5, (step, b)
            rows[b].append(token)
            full = gpt(torch.tensor([rows[b]]))[0, -1]  # no cache at all
            assert (logits[b] - full).abs().max() < 1e-5, (step, b)
    assert [c.pos for c in batched] == [n + 6 for n in LENGTHS]


@torch.no_grad()
def test_batched_step_matches_hugging_face_gpt2(gpt2_snapshot):
    from transformers import GPT2LMHeadModel

    ours, _, _ = load_model(gpt2_snapshot)
    hf = GPT2LMHeadModel.from_pretrained(gpt2_snapshot).eval()
    vocab = ours.config.vocab_size
    rows = [_ids(n, vocab, seed=n) for n in LENGTHS]
    caches = [_prefilled(ours, r) for r in rows]
    for step in range(3):
        tokens = _ids(len(rows), vocab, seed=200 + step)
        logits = ours.decode_step(tokens, caches)
        for b, token in enumerate(tokens):
            rows[b].append(token)
            expected = hf(torch.tensor([rows[b]])).logits[0, -1]
            assert (logits[b] - expected).abs().max() < 1e-4, (step, b)


class _Recording(nn.Module):
    """Stands in for a swapped layer (a quantized Linear, say): it records what it was given."""

    def __init__(self, inner: nn.Module, shapes: list):
        super().__init__()
        self.inner, self.shapes = inner, shapes

    def forward(self, x):
        self.shapes.append(tuple(x.shape[:-1]))
        return self.inner(x)


def test_decode_step_calls_the_models_own_layers_once_each_on_the_whole_batch(gpt):
    """So a layer swapped for another module (a quantized one) is what the batch runs on."""
    caches = [_prefilled(gpt, _ids(n, gpt.config.vocab_size, seed=n)) for n in LENGTHS]
    shapes: list = []
    for module in list(gpt.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):
                setattr(module, name, _Recording(child, shapes))
    gpt.decode_step([1, 2, 3, 4], caches)
    n_linear = 4 * gpt.config.n_layer + 1  # c_attn, c_proj, c_fc, mlp.c_proj per block; the head
    assert shapes == [(4, 1)] * n_linear


def test_decode_step_rejects_bad_input_naming_it_and_changes_no_cache(gpt):
    block = gpt.config.block_size
    a, b = _prefilled(gpt, [1, 2, 3]), _prefilled(gpt, [4])
    full = _prefilled(gpt, [5] * block)
    pair = gpt.new_cache(batch=2)
    cases = [
        (([1], [a, b]), "one token per cache"),
        (([1, 2], [a, a]), "same KV cache twice"),
        (([1, gpt.config.vocab_size], [a, b]), rf"integers in \[0, {gpt.config.vocab_size}\), but contain"),
        (([1, True], [a, b]), "but contain True"),
        (([1, 2], [a, full]), f"{block + 1} positions exceeds the model's context of {block}"),
        (([1], [pair]), "single-sequence KV caches"),
    ]
    for (tokens, caches), match in cases:
        with pytest.raises(ValueError, match=match):
            gpt.decode_step(tokens, caches)
    assert (a.pos, b.pos, full.pos) == (3, 1, block)


# ---- the Batcher ----

def _sessions(gpt, tokenizer, batcher=None) -> list[DecodingSession]:
    prompts = ["The rose", "ROMEO: But, soft! what light", "The", "In 1999 there were 42 apples",
               "It is the east, and Juliet", "def add(a, b):", "The quick brown fox", "Line 7:"]
    sessions = []
    for i, prompt in enumerate(prompts):
        s = DecodingSession(gpt, tokenizer, seed=i, batcher=batcher)
        s.reset(prompt)
        sessions.append(s)
    return sessions


@pytest.mark.parametrize("make_config", list(CONFIGS.values()), ids=list(CONFIGS))
def test_eight_threads_stepping_eight_sessions_write_what_sequential_steps_write(make_config,
                                                                                 bpe_tokenizer):
    gpt = random_gpt(make_config(block_size=64), seed=5, scale=3.0)
    steps = 12
    sequential = _sessions(gpt, bpe_tokenizer)
    for s in sequential:
        for _ in range(steps):
            s.step(SAMPLE)

    batcher = Batcher(gpt, max_batch=16, wait_ms=200)
    concurrent = _sessions(gpt, bpe_tokenizer, batcher)
    start, errors = threading.Barrier(len(concurrent)), []

    def run(s):
        try:
            start.wait()
            for _ in range(steps):
                s.step(SAMPLE)
        except BaseException as e:  # a failed thread must fail the test, not vanish
            errors.append(e)

    threads = [threading.Thread(target=run, args=(s,)) for s in concurrent]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and not any(t.is_alive() for t in threads)

    for alone, together in zip(sequential, concurrent):
        assert together.ids == alone.ids
        for a, b in zip(alone.history, together.history):
            assert (a.logits - b.logits).abs().max() < 1e-5
        assert (alone.logits - together.logits).abs().max() < 1e-5
        # Each session owns its row: a view would keep the whole batch's logits alive.
        assert together.logits.untyped_storage().nbytes() == 4 * gpt.config.vocab_size
    sizes = batcher.batch_sizes
    assert sum(n * count for n, count in sizes.items()) == len(concurrent) * steps
    assert max(sizes) > 1, sizes  # they really shared forwards
    assert sum(sizes.values()) < len(concurrent) * steps


class StoppedClock:
    """A clock that moves only when the test moves it."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_lone_caller_does_not_wait_for_company():
    gpt = random_gpt(tiny_config(), seed=1)
    batcher = Batcher(gpt, wait_ms=5_000, clock=StoppedClock())  # any wait would be long
    cache = _prefilled(gpt, [1, 2, 3])
    for token in range(20):
        logits = batcher.decode(token, cache)
    assert batcher.waits == 0
    assert logits.shape == (gpt.config.vocab_size,) and cache.pos == 23
    assert batcher.batch_sizes == {1: 20}


def test_a_caller_whose_neighbours_stepped_a_while_ago_does_not_wait_for_them():
    gpt = random_gpt(tiny_config(), seed=1)
    clock = StoppedClock()
    batcher = Batcher(gpt, wait_ms=500, clock=clock)
    a, b = _prefilled(gpt, [1, 2, 3]), _prefilled(gpt, [4, 5])
    batcher.decode(1, a)
    clock.now += 0.6  # a's batch ended longer ago than the wait: a is not coming right back
    batcher.decode(2, b)
    assert batcher.waits == 0
    assert batcher.batch_sizes == {1: 2}


def test_a_caller_whose_neighbour_stepped_just_now_waits_for_it_and_they_share_a_forward():
    gpt = random_gpt(tiny_config(), seed=1)
    batcher = Batcher(gpt, wait_ms=500, clock=StoppedClock())  # the wait never runs out
    a, b = _prefilled(gpt, [1, 2, 3]), _prefilled(gpt, [4, 5])
    batcher.decode(1, a)
    b_steps = threading.Thread(target=batcher.decode, args=(2, b))
    b_steps.start()
    deadline = time.monotonic() + 30
    while batcher.waits == 0 and time.monotonic() < deadline:
        time.sleep(0.01)  # b leads the next batch and waits for a, which stepped just before
    assert batcher.waits == 1 and b_steps.is_alive()
    batcher.decode(3, a)  # a comes back: one forward for both
    b_steps.join(timeout=30)
    assert batcher.batch_sizes == {1: 1, 2: 1} and (a.pos, b.pos) == (5, 3)


def test_an_exception_in_the_batched_forward_reaches_every_waiting_caller(monkeypatch):
    gpt = random_gpt(tiny_config(), seed=1)
    batcher = Batcher(gpt, wait_ms=100)
    caches = [_prefilled(gpt, [1] * (i + 1)) for i in range(6)]
    batches, all_waiting = [], threading.Event()

    def broken(tokens, caches_):
        all_waiting.wait(timeout=10)  # hold the first batch until every caller has queued
        batches.append(len(tokens))
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(gpt, "decode_step", broken)
    outcomes = []

    def call(cache):
        try:
            batcher.decode(7, cache)
            outcomes.append("returned")
        except RuntimeError as e:
            outcomes.append(str(e))

    threads = [threading.Thread(target=call, args=(c,)) for c in caches]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while len(batcher._pending) < len(caches) - 1 and time.monotonic() < deadline:
        time.sleep(0.01)  # the first caller leads and is held; the others queue behind it
    all_waiting.set()
    for t in threads:
        t.join(timeout=20)
    assert not any(t.is_alive() for t in threads), "a caller hangs"
    assert outcomes == ["out of memory (simulated)"] * len(caches)
    assert max(batches) > 1  # followers, not only leaders, heard of it
    monkeypatch.undo()
    assert batcher.decode(7, caches[0]).shape == (gpt.config.vocab_size,)  # still usable
    assert caches[0].pos == 2  # the failed step did not advance the cache


def test_a_bad_request_fails_alone_and_at_once():
    gpt = random_gpt(tiny_config(), seed=1)
    batcher = Batcher(gpt)
    cache = _prefilled(gpt, [1, 2])
    with pytest.raises(ValueError, match=r"integers in \[0, 320\), but contain 320"):
        batcher.decode(320, cache)
    assert batcher.decode(3, cache).shape == (320,) and cache.pos == 3


@pytest.mark.parametrize("kwargs, match", [
    (dict(max_batch=0), "max_batch must be an integer >= 1, but is 0"),
    (dict(max_batch=2.5), "max_batch must be an integer >= 1, but is 2.5"),
    (dict(wait_ms=-1), r"wait_ms must be a number of milliseconds in \[0, 10000\), but is -1"),
])
def test_batcher_rejects_bad_settings_naming_them(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Batcher(random_gpt(tiny_config()), **kwargs)


def test_a_session_refuses_a_batcher_of_another_model(bpe_tokenizer):
    gpt, other = random_gpt(tiny_config(), seed=1), random_gpt(tiny_config(), seed=2)
    with pytest.raises(ValueError, match="batcher serves another model"):
        DecodingSession(gpt, bpe_tokenizer, batcher=Batcher(other))

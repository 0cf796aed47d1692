"""A link's text replayed (DecodingSession.replay_many, the model over many tokens at once in
model/decode_rows.py) gives the session that stepping made, bit for bit: the same tokens, the
same record at every step, the same logits and KV cache, and the same steps after it."""

from __future__ import annotations

import pytest
import torch

import model.session
from model.decode_rows import GROUP, decode_rows, exact_group
from model.sampling import SamplingSettings
from model.session import DecodingSession
from testkit.models import llama_config, random_gpt, tiny_config

FILTERED = SamplingSettings(temperature=0.9, top_k=20, top_p=0.95, repetition_penalty=1.2)
MIROSTAT = SamplingSettings(mirostat=2, mirostat_tau=4.0, temperature=0.8)
CONFIGS = [tiny_config, llama_config]


def same_record(a, b) -> bool:
    fields = lambda r: {k: v for k, v in r.__dict__.items() if k != "logits"}  # noqa: E731
    both_kept = (a.logits is None) == (b.logits is None)
    return fields(a) == fields(b) and both_kept and (a.logits is None or torch.equal(a.logits, b.logits))


def assert_same_session(a: DecodingSession, b: DecodingSession):
    assert a.ids == b.ids and a.window == b.window and a.mirostat_mu == b.mirostat_mu
    assert len(a.history) == len(b.history)
    for n, (x, y) in enumerate(zip(a.history, b.history)):
        assert same_record(x, y), f"step {n} differs"
    assert torch.equal(a.logits, b.logits)
    pos = a._cache.pos
    assert pos == b._cache.pos
    assert torch.equal(a._cache.k[:, :, :, :pos], b._cache.k[:, :, :, :pos])
    assert torch.equal(a._cache.v[:, :, :, :pos], b._cache.v[:, :, :, :pos])


def stepped(gpt, tokenizer, settings, steps, picks=(), **kw) -> DecodingSession:
    """A session that stepped `steps` times, picking token 7 at the steps in `picks`."""
    s = DecodingSession(gpt, tokenizer, seed=5, **kw)
    s.reset("To be, or not to be")
    for n in range(steps):
        s.pick(7, settings) if n in picks else s.step(settings)
    return s


@pytest.mark.parametrize("make_config", CONFIGS, ids=["gpt2", "llama"])
@pytest.mark.parametrize("settings", [SamplingSettings(), FILTERED, MIROSTAT], ids=["default", "filtered", "mirostat"])
def test_a_replayed_text_is_the_stepped_session_bit_for_bit_and_steps_on_alike(make_config, settings, bpe_tokenizer):
    # A 32-token context: 70 tokens slide the window twice, so replay crosses prefills too; a
    # small logits allowance drops the older steps' logits as stepping does.
    gpt = random_gpt(make_config(block_size=32), seed=3)
    kw = dict(keep_logits_bytes=12 * 4 * gpt.config.vocab_size)
    original = stepped(gpt, bpe_tokenizer, settings, 70, picks={4, 33}, **kw)
    replayed = DecodingSession(gpt, bpe_tokenizer, seed=5, **kw)
    replayed.reset("To be, or not to be")
    records = replayed.replay_many(original.ids[original.prompt_len:], settings)
    assert records == replayed.history
    assert [r.how for r in records].count("picked") >= 2
    assert_same_session(original, replayed)
    for _ in range(5):  # the cache carries on: the next steps are the stepped session's
        assert same_record(original.step(settings), replayed.step(settings))
    assert_same_session(original, replayed)


def test_replay_many_equals_replaying_token_by_token(bpe_tokenizer):
    gpt = random_gpt(tiny_config(), seed=8)
    ids = stepped(gpt, bpe_tokenizer, FILTERED, 25).ids
    one, many = (DecodingSession(gpt, bpe_tokenizer, seed=2) for _ in range(2))
    for s in (one, many):
        s.reset("To be, or not to be")
    for t in ids[one.prompt_len:]:
        one.replay(t, FILTERED)
    many.replay_many(ids[many.prompt_len:], FILTERED)
    assert_same_session(one, many)


def test_a_replay_refused_midway_keeps_the_steps_before_and_a_cache_that_carries_on(bpe_tokenizer, monkeypatch):
    gpt = random_gpt(tiny_config(), seed=9)
    original = stepped(gpt, bpe_tokenizer, FILTERED, 12)
    replayed = DecodingSession(gpt, bpe_tokenizer, seed=5)
    replayed.reset("To be, or not to be")
    real, calls = model.session.run_pipeline, []

    def refuse_the_eighth(*args, **kw):
        calls.append(1)
        if len(calls) == 8:
            raise ValueError("the top_k stage removed every token")
        return real(*args, **kw)
    monkeypatch.setattr(model.session, "run_pipeline", refuse_the_eighth)
    with pytest.raises(ValueError, match="removed every token"):
        replayed.replay_many(original.ids[original.prompt_len:], FILTERED)
    monkeypatch.setattr(model.session, "run_pipeline", real)
    assert len(replayed.history) == 7
    original.rewind(7)
    assert_same_session(original, replayed)
    assert same_record(original.step(FILTERED), replayed.step(FILTERED))


@pytest.mark.parametrize("make_config", CONFIGS, ids=["gpt2", "llama"])
def test_decode_rows_gives_one_token_forwards_bits_in_groups_that_this_machine_computes_exactly(make_config):
    gpt = random_gpt(make_config(), seed=4)
    assert exact_group(gpt) in (1, GROUP)
    ids = torch.randint(gpt.config.vocab_size, (20,), generator=torch.Generator().manual_seed(1)).tolist()
    with torch.inference_mode():
        steps_cache = gpt.new_cache(1)
        gpt(torch.tensor([ids[:3]]), cache=steps_cache)
        steps = torch.stack([gpt(torch.tensor([[t]]), cache=steps_cache)[0, -1] for t in ids[3:]])
    for group in sorted({1, exact_group(gpt)}):
        cache = gpt.new_cache(1)
        with torch.inference_mode():
            gpt(torch.tensor([ids[:3]]), cache=cache)
        assert torch.equal(decode_rows(gpt, ids[3:], cache, group), steps), group
        assert cache.pos == steps_cache.pos


def test_decode_rows_refuses_an_empty_cache_and_tokens_past_the_context_naming_them():
    gpt = random_gpt(tiny_config(block_size=8), seed=1)
    with pytest.raises(ValueError, match="at least one position, but got batch 1, 0 positions"):
        decode_rows(gpt, [1, 2], gpt.new_cache(1))
    cache = gpt.new_cache(1)
    with torch.inference_mode():
        gpt(torch.tensor([[1, 2, 3]]), cache=cache)
    with pytest.raises(ValueError, match="6 tokens after 3 positions exceed the context of 8"):
        decode_rows(gpt, [1] * 6, cache)

"""Prompts prefilled once for every session that starts from them (model/prompt_cache.py):
a session started from the cache steps, to the bit, as one that ran its own prefill; the
cache runs the model once per prompt; what it keeps stays under its byte budget."""

from __future__ import annotations

import pytest
import torch

from model import load_model
from model.batching import Batcher
from model.prompt_cache import LARGEST_SHARE, PromptCache
from model.sampling import SamplingSettings
from model.session import DecodingSession

PROMPT = "To be, or not to be"


@pytest.fixture(scope="module", params=["exact", "fast"])
def model(request, tiny_checkpoint):
    gpt, tokenizer, _ = load_model(tiny_checkpoint, mode=request.param)
    return gpt, tokenizer


class CountingForwards:
    """Counts the model's forwards (prefills and steps alike)."""

    def __init__(self, gpt, monkeypatch):
        self.calls = 0
        forward = gpt.forward

        def counted(*args, **kwargs):
            self.calls += 1
            return forward(*args, **kwargs)
        monkeypatch.setattr(gpt, "forward", counted)


def walk(session: DecodingSession, steps: int = 6) -> list[torch.Tensor]:
    """The logits before each of `steps` steps, and after them: a few sampled, one greedy,
    an undo and a step again (which read the cache back)."""
    seen = [session.logits.clone()]
    for i in range(steps):
        session.step(SamplingSettings(temperature=0.0 if i == 2 else 0.9))
        seen.append(session.logits.clone())
    session.undo()
    session.step(SamplingSettings(temperature=1.3))
    seen.append(session.logits.clone())
    return seen


def test_a_session_started_from_the_cache_steps_to_the_bit_as_one_that_prefilled(model):
    gpt, tokenizer = model
    cache = PromptCache()
    own = DecodingSession(gpt, tokenizer, seed=3, prompt=PROMPT)
    first = DecodingSession(gpt, tokenizer, seed=3, prompt=PROMPT, prompt_cache=cache)
    copied = DecodingSession(gpt, tokenizer, seed=3, prompt=PROMPT, prompt_cache=cache)
    assert (cache.misses, cache.hits) == (1, 1)
    assert copied.cache.capacity == own.cache.capacity and copied.cache.pos == own.cache.pos
    expected = walk(own)
    for session in (first, copied):
        got = walk(session)
        assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))
        assert session.ids == own.ids


def test_sessions_from_the_cache_batch_their_steps_as_before(model):
    """Through a shared Batcher, several sessions from the cache step at once: the same tokens
    and logits as sessions that ran their own prefill, one at a time."""
    gpt, tokenizer = model
    cache = PromptCache()
    alone = [DecodingSession(gpt, tokenizer, seed=s, prompt=PROMPT) for s in range(4)]
    batcher = Batcher(gpt, wait_ms=0)
    shared = [DecodingSession(gpt, tokenizer, seed=s, prompt=PROMPT, prompt_cache=cache, batcher=batcher)
              for s in range(4)]
    for _ in range(5):
        for a, b in zip(alone, shared, strict=True):
            a.step(SamplingSettings(temperature=1.0))
            b.step(SamplingSettings(temperature=1.0))
            assert a.ids == b.ids and torch.equal(a.logits, b.logits)


def test_a_room_starting_from_one_prompt_runs_the_model_over_it_once(model, monkeypatch):
    gpt, tokenizer = model
    counter = CountingForwards(gpt, monkeypatch)
    cache = PromptCache()
    sessions = [DecodingSession(gpt, tokenizer, seed=s, prompt=PROMPT, prompt_cache=cache) for s in range(10)]
    assert counter.calls == 1
    for s in sessions:  # a reset to the room's prompt and one to a new one
        s.reset(PROMPT)
        s.reset("Friends, Romans")
    assert counter.calls == 2 and (cache.hits, cache.misses) == (9 + 10 + 9, 2)


def test_stepping_a_session_leaves_what_the_cache_keeps_unchanged(model):
    gpt, tokenizer = model
    cache = PromptCache()
    first = DecodingSession(gpt, tokenizer, prompt=PROMPT, prompt_cache=cache)
    n = first.cache.pos
    kept = [first.cache.k[:, :, :, :n].clone(), first.cache.v[:, :, :, :n].clone(), first.logits.clone()]
    for _ in range(70):  # past the tiny model's context: the window slides, the cache regrows
        first.step(SamplingSettings(temperature=1.0))
    with torch.inference_mode():
        first.logits.add_(1.0)  # even a session writing into its own logits changes nothing kept
    later = DecodingSession(gpt, tokenizer, prompt=PROMPT, prompt_cache=cache)
    assert cache.hits == 1
    got = [later.cache.k[:, :, :, :n], later.cache.v[:, :, :, :n], later.logits]
    assert all(torch.equal(a, b) for a, b in zip(got, kept, strict=True))


def test_a_prompt_too_large_for_its_share_is_not_kept_and_the_oldest_go_first(model):
    gpt, tokenizer = model
    session = DecodingSession(gpt, tokenizer, prompt=PROMPT)
    ids = tuple(session.ids)
    entry = (session.cache.k[:, :, :, :len(ids)].numel() * 4 * 2 + session.logits.numel() * 4)

    small = PromptCache(max_bytes=entry * LARGEST_SHARE - 1)
    small.put(ids, session.cache, session.logits)
    assert len(small) == 0 and small.bytes == 0

    room = PromptCache(max_bytes=entry * LARGEST_SHARE)
    for n in range(LARGEST_SHARE + 2):  # prompts of one length, so of one size
        room.put((n, *ids[1:]), session.cache, session.logits)
        assert room.bytes <= room.max_bytes
    assert len(room) == LARGEST_SHARE
    assert room.get((0, *ids[1:])) is None and room.get((LARGEST_SHARE + 1, *ids[1:])) is not None


def test_a_cache_that_does_not_hold_the_prompt_is_refused():
    cache = PromptCache()
    with pytest.raises(ValueError, match="holds 0 positions but the prompt has 2 ids"):
        from model.kv_cache import KVCache
        cache.put((1, 2), KVCache(1, 1, 1, 8, 4), torch.zeros(5))
    with pytest.raises(ValueError, match="max_bytes must be a whole number of bytes >= 0, but is -1"):
        PromptCache(max_bytes=-1)


def test_the_server_keeps_a_prompt_cache_per_model_unless_told_not_to(tiny_checkpoint, capsys):
    from ui.server import PROMPT_CACHE_MB, parse_args
    from ui.state import ModelRegistry

    assert parse_args([]).prompt_cache_mb == PROMPT_CACHE_MB
    with pytest.raises(SystemExit):
        parse_args(["--prompt-cache-mb", "-1"])
    assert "--prompt-cache-mb must be 0 (off) or more, but is -1" in capsys.readouterr().err

    name = str(tiny_checkpoint)
    kept = ModelRegistry([name]).get(name).prompt_cache
    assert isinstance(kept, PromptCache) and kept.max_bytes == PROMPT_CACHE_MB * 2**20
    assert ModelRegistry([name], prompt_cache_bytes=0).get(name).prompt_cache is None


def test_a_long_prompt_whose_prefill_grew_the_cache_is_copied_with_the_same_capacity(bpe_tokenizer):
    """150 positions: the prefill grows the cache past its first chunk. The copy gets the
    capacity the prefill ended with, and the steps after it are the same bits."""
    from testkit.models import llama_config, random_gpt

    gpt = random_gpt(llama_config(block_size=256), scale=3.0)
    line = "To be, or not to be, that is the question"
    per_line = len(bpe_tokenizer.encode(line + " "))
    prompt = " ".join([line] * (160 // per_line))
    cache = PromptCache()
    own = DecodingSession(gpt, bpe_tokenizer, seed=5, prompt=prompt)
    assert 128 < own.cache.pos < 256 and own.cache.capacity > 64
    DecodingSession(gpt, bpe_tokenizer, seed=5, prompt=prompt, prompt_cache=cache)
    copied = DecodingSession(gpt, bpe_tokenizer, seed=5, prompt=prompt, prompt_cache=cache)
    assert cache.hits == 1 and copied.cache.capacity == own.cache.capacity
    assert all(torch.equal(a, b) for a, b in zip(walk(copied), walk(own), strict=True))


def test_an_imported_tree_starts_from_the_cache_and_lands_where_a_fresh_one_does(model):
    gpt, tokenizer = model
    maker = DecodingSession(gpt, tokenizer, seed=2, prompt=PROMPT)
    for _ in range(4):
        maker.step(SamplingSettings(temperature=1.0))
    cache = PromptCache()
    DecodingSession(gpt, tokenizer, prompt=PROMPT, prompt_cache=cache)  # the room's prompt, kept
    fresh = DecodingSession(gpt, tokenizer, seed=2)
    fresh.adopt(maker.ids[:maker.prompt_len], maker.tree, maker.node)
    cached = DecodingSession(gpt, tokenizer, seed=2, prompt_cache=cache)
    hits = cache.hits
    cached.adopt(maker.ids[:maker.prompt_len], maker.tree, maker.node)
    assert cache.hits == hits + 2  # adopt starts from the empty prompt, then from the tree's
    assert cached.ids == fresh.ids == maker.ids
    assert torch.equal(cached.logits, fresh.logits)


def test_a_prompt_cache_serves_one_model_only(model, bpe_tokenizer):
    from testkit.models import random_gpt, tiny_config

    gpt, tokenizer = model
    cache = PromptCache()
    DecodingSession(gpt, tokenizer, prompt=PROMPT, prompt_cache=cache)
    other = random_gpt(tiny_config())
    with pytest.raises(ValueError, match="holds another model's prompts; give each loaded model its own"):
        DecodingSession(other, bpe_tokenizer, prompt=PROMPT, prompt_cache=cache)

"""DecodingSession: reproducible steps, undo and rewind that restore the exact state, a
context window that slides, and prompts that are too long or not text."""

from __future__ import annotations

import inspect
import json

import pytest
import torch

from model import load_model
from model.config import GPTConfig
from model.gpt import GPT
from model.sampling import SamplingSettings, draw_u
from model.session import KEEP_LOGITS_BYTES, KEEP_LOGITS_STEPS, DecodingSession
from testkit.models import llama_config, random_gpt, tiny_config

SAMPLE = SamplingSettings(temperature=1.0, top_k=20)
GREEDY = SamplingSettings(temperature=0.0)


@pytest.fixture(scope="module")
def model(tiny_checkpoint):
    gpt, tokenizer, _ = load_model(tiny_checkpoint)
    return gpt, tokenizer


@pytest.fixture
def session(model):
    return DecodingSession(*model, seed=0)


def _reference_logits(gpt, ids: list[int]) -> torch.Tensor:
    """The next token's logits by full recompute over the window the session keeps: when the
    context is over-full, the last half of it."""
    block = gpt.config.block_size
    window = 0  # a session's prompt is cropped to the context, so it starts unslid
    for n in range(block + 1, len(ids) + 1):  # replay the slides as the text grew
        if n - window > block:
            window = n - block // 2
    with torch.no_grad():
        return gpt(torch.tensor([ids[window:]]))[0, -1].float()


# ---- reproducibility ----

def test_same_seed_settings_and_prompt_give_the_same_text(model):
    texts = []
    for _ in range(2):
        s = DecodingSession(*model, seed=42)
        s.reset("ROMEO: But, soft!")
        list(s.generate(25, SAMPLE))
        texts.append((s.text, s.ids))
    assert texts[0] == texts[1]
    other = DecodingSession(*model, seed=43)
    other.reset("ROMEO: But, soft!")
    list(other.generate(25, SAMPLE))
    assert other.ids != texts[0][1]


def test_reset_with_a_seed_restarts_the_same_run(session):
    session.reset("The dog", seed=9)
    first = [r.token for r in session.generate(10, SAMPLE)]
    session.reset("The dog", seed=9)
    assert [r.token for r in session.generate(10, SAMPLE)] == first
    assert session.seed == 9


def test_each_sampled_step_uses_the_u_of_its_seed_and_position(session):
    session.reset("The dog")
    record = session.step(SAMPLE)
    assert record.how == "sampled" and record.u == draw_u(0, record.position)
    assert record.prob > 0 and 0 < record.raw_prob < 1


def test_empty_prompt_starts_from_end_of_text(session, model):
    _, tokenizer = model
    assert session.reset("") == ""
    assert session.ids == [tokenizer.eot_token] and session.prompt_len == 1
    record = session.step(GREEDY)
    assert record.position == 1 and session.generated_text == record.piece


def test_generate_is_a_lazy_generator(session):
    session.reset("The")
    stream = session.generate(3, GREEDY)
    assert inspect.isgenerator(stream)
    assert len(session.history) == 0  # nothing runs until the caller asks for a token
    first = next(stream)
    assert len(session.history) == 1 and first.how == "greedy"
    assert len(list(stream)) == 2


def test_greedy_step_takes_the_most_likely_token(session):
    session.reset("The quick")
    expected = int(session.distribution(GREEDY).raw.argmax())
    record = session.step(GREEDY)
    assert record.token == expected and record.u is None and record.prob == 1.0


def test_distribution_commits_nothing(session):
    session.reset("The quick")
    ids = list(session.ids)
    pipe = session.distribution(SAMPLE)
    assert session.ids == ids and not session.history
    assert torch.isclose(pipe.probs.sum(), torch.tensor(1.0, dtype=torch.float64))


# ---- the KV cache inside the session ----

@pytest.mark.parametrize("make_config", [tiny_config, llama_config], ids=["gpt2", "llama"])
def test_session_logits_match_full_recompute_after_steps_undo_and_rewind(make_config, bpe_tokenizer):
    gpt = random_gpt(make_config(), seed=6)
    s = DecodingSession(gpt, bpe_tokenizer, seed=1)
    s.reset("To be, or not to be")

    def check():
        assert (s.logits - _reference_logits(gpt, s.ids)).abs().max() < 1e-5

    for _ in range(12):
        s.step(SAMPLE)
        check()
    s.pick(7)
    check()
    assert s.undo().token == 7
    check()
    s.rewind(5)
    assert len(s.history) == 5
    check()
    s.step(GREEDY)
    check()
    s.rewind(0)
    assert s.ids[s.prompt_len:] == []
    check()


def test_undo_and_rewind_then_stepping_again_reproduces_the_same_run(session):
    session.reset("The quick brown")
    records = list(session.generate(15, SAMPLE))
    ids = list(session.ids)
    session.rewind(4)
    assert session.ids == ids[:session.prompt_len + 4]
    again = records[:4] + list(session.generate(11, SAMPLE))
    assert session.ids == ids
    assert [r.token for r in again] == [r.token for r in records]
    assert [r.prob for r in again] == pytest.approx([r.prob for r in records], abs=1e-6)
    session.undo()
    session.undo()
    assert session.step(SAMPLE).token == records[13].token


def test_undo_past_the_context_slide_reproduces_the_same_run(bpe_tokenizer):
    """The context fills and the window slides; undoing back across the slide and stepping
    again must give the original tokens, and the session's logits must always be what the
    model computes from the window the session keeps."""
    gpt = random_gpt(tiny_config(block_size=16), seed=8)
    s = DecodingSession(gpt, bpe_tokenizer, seed=2)
    s.reset("The rose of the roses")
    records = list(s.generate(30, SAMPLE))  # 30 steps past a 16-token context: two slides
    assert "context is full" in s.notice
    ids = list(s.ids)
    for steps in (29, 25, 20, 12, 3, 0):
        s.rewind(steps)
        assert s.ids == ids[:s.prompt_len + steps]
        assert (s.logits - _reference_logits(gpt, s.ids)).abs().max() < 1e-5, steps
        again = list(s.generate(30 - steps, SAMPLE))
        assert s.ids == ids, steps
        assert [r.prob for r in again] == pytest.approx([r.prob for r in records[steps:]], abs=1e-6)


def test_undo_is_free_and_a_long_rewind_recomputes_at_most_once(bpe_tokenizer, monkeypatch):
    """Undo cuts the KV cache back without running the model; rewinding past the steps that
    still keep their logits (or past a slide) runs it once, not once per step."""
    gpt = random_gpt(tiny_config(block_size=32, n_layer=1), seed=9)
    s = DecodingSession(gpt, bpe_tokenizer, seed=3)
    s.reset("The sea")
    list(s.generate(KEEP_LOGITS_STEPS + 20, SAMPLE))
    calls = []
    original = gpt.forward
    monkeypatch.setattr(gpt, "forward", lambda *a, **k: calls.append(1) or original(*a, **k))
    s.undo()
    s.undo()
    assert calls == []
    s.rewind(1)
    assert len(calls) == 1
    assert (s.logits - _reference_logits(gpt, s.ids)).abs().max() < 1e-5


def test_undo_with_nothing_to_undo_returns_none_and_keeps_the_prompt(session):
    session.reset("The dog")
    ids = list(session.ids)
    assert session.undo() is None
    assert session.ids == ids


@pytest.mark.parametrize("bad", [-1, 3, 1.5, True, "1", None])
def test_rewind_bad_values_raise_value_error_naming_the_range(session, bad):
    session.reset("The dog")
    list(session.generate(2, GREEDY))
    with pytest.raises(ValueError, match=r"rewind needs a step count in \[0, 2\], but got"):
        session.rewind(bad)
    assert len(session.history) == 2


def test_pick_appends_any_vocabulary_token_even_a_filtered_one(session):
    session.reset("The dog")
    probs = session.distribution(SamplingSettings(top_k=1)).probs
    filtered = int(probs.argmin())
    record = session.pick(filtered, SamplingSettings(top_k=1))
    assert record.how == "picked" and record.prob == 0.0 and session.ids[-1] == filtered


@pytest.mark.parametrize("bad", [-1, 320, 10_000, 2.5, "3"])
def test_pick_outside_the_vocabulary_raises_value_error_naming_the_token(session, bad):
    session.reset("The dog")
    with pytest.raises(ValueError, match=r"token must be integers in \[0, 320\), but contain") as info:
        session.pick(bad)
    assert repr(bad) in str(info.value)
    assert not session.history


def test_generate_rejects_a_bad_count(session):
    with pytest.raises(ValueError, match="integer >= 0, but is -2"):
        list(session.generate(-2))


# ---- prompts ----

class CountingTokenizer:
    """A tokenizer that notes how many characters each encode call was given."""

    def __init__(self, tokenizer):
        self.inner, self.encoded = tokenizer, []

    def encode(self, text, **kw):
        self.encoded.append(len(text))
        return self.inner.encode(text, **kw)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_one_megabyte_prompt_encodes_only_its_end_and_keeps_its_last_tokens_with_a_notice(model):
    gpt, tokenizer = model
    counting = CountingTokenizer(tokenizer)
    session = DecodingSession(gpt, counting, seed=0)
    counting.encoded.clear()
    tail = " and so the story ends."
    prompt = ("All work and no play makes Jack a dull boy. " * 24_000)[:1_000_000 - len(tail)] + tail
    assert len(prompt) == 1_000_000
    notice = session.reset(prompt)
    # What makes a megabyte quick: only a few bytes per position of context are encoded
    # (benchmarks/bench_prompt.py times it).
    assert counting.encoded == [8 * session.block_size]
    assert "keeps the last 64 tokens" in notice and session.notice == notice
    assert len(session.ids) == session.block_size == 64
    assert session.text.endswith(tail)
    assert session.ids[-8:] == tokenizer.encode(prompt[-200:])[-8:]
    record = session.step(GREEDY)  # the full context still decodes (and slides)
    assert record.position == 64


def test_prompt_over_the_character_limit_is_cut_with_a_notice(model):
    s = DecodingSession(*model, max_prompt_chars=1000)
    notice = s.reset("x" * 999 + " The end")
    assert "cut to its last 1,000 characters" in notice


def test_prompt_that_fits_has_no_notice(session):
    assert session.reset("The dog sleeps.") == ""


@pytest.mark.parametrize("bad, match", [
    ("abc\ud800def", r"prompt is not valid Unicode: surrogates not allowed at position 3 \('\\ud800'\)"),
    (b"abc\xff", "prompt is not valid UTF-8"),
    (42, "prompt must be text, but is int"),
])
def test_prompt_that_is_not_valid_text_raises_value_error(session, bad, match):
    session.reset("The dog")
    ids = list(session.ids)
    with pytest.raises(ValueError, match=match):
        session.reset(bad)
    assert session.ids == ids  # the session is unchanged


def test_bad_seed_raises_value_error(model):
    with pytest.raises(ValueError, match="seed must be a whole number from 0 to 4,294,967,295, but is -3"):
        DecodingSession(*model, seed=-3)


def test_export_is_plain_json(session):
    session.reset("The dog")
    list(session.generate(3, SAMPLE))
    data = json.loads(json.dumps(session.export()))
    assert data["text"] == session.text and len(data["steps"]) == 3
    assert data["steps"][0]["settings"]["top_k"] == 20


# ---- memory ----

def _tensors_held_by(session) -> list[torch.Tensor]:
    """Every tensor reachable from the session's own attributes, found by walking them (not
    by asking the session), leaving out the shared model, tokenizer and batcher."""
    shared = {id(session.gpt), id(session.tokenizer), id(session.batcher), id(session._lock)}
    found, seen, todo = [], set(), list(vars(session).values())
    while todo:
        obj = todo.pop()
        if id(obj) in seen or id(obj) in shared:
            continue
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            found.append(obj)
        elif isinstance(obj, dict):
            todo += list(obj.keys()) + list(obj.values())
        elif isinstance(obj, (list, tuple, set)):
            todo += list(obj)
        elif hasattr(obj, "__dict__") and not isinstance(obj, type) and not callable(obj):
            todo += list(vars(obj).values())
    return found


def _distinct_storage_bytes(tensors) -> int:
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


@pytest.mark.parametrize("make_config", [tiny_config, llama_config], ids=["gpt2", "llama"])
def test_memory_bytes_counts_every_tensor_the_session_holds(make_config, bpe_tokenizer):
    gpt = random_gpt(make_config(block_size=32), seed=2)
    s = DecodingSession(gpt, bpe_tokenizer, seed=0, keep_logits_bytes=10 * 4 * 320)
    s.reset("The rose of the roses is")

    def check():
        parts = s.memory_breakdown()
        tensors = parts["kv_cache"] + parts["logits"] + parts["kept_logits"] + parts["branches"]
        assert tensors == _distinct_storage_bytes(_tensors_held_by(s))
        assert parts["kv_cache"] == 2 * s._cache.k.numel() * 4  # at capacity, not at length
        assert 0 < parts["python"] and 0 < parts["tree"]
        assert s.memory_bytes() == tensors + parts["python"] + parts["tree"]

    check()
    before = s.memory_bytes()
    list(s.generate(30, SAMPLE))  # past the 32-token context: a slide, and a new cache
    check()
    assert s.memory_breakdown()["kept_logits"] == 10 * 4 * 320  # the allowance, and no more
    assert s.memory_bytes() > before
    s.undo()
    s.rewind(3)
    check()


class _WordTokenizer:
    """One token per space-separated word, for a model whose vocabulary no tokenizer here
    has: ids are a hash of the word, text is made up from the ids."""

    def __init__(self, vocab: int):
        self.vocab, self.eot_token = vocab, 0

    def encode(self, text, allowed_special=()):
        return [1 + sum(map(ord, word)) * 7919 % (self.vocab - 1) for word in text.split(" ")]

    def decode(self, ids):
        return " ".join(f"w{i}" for i in ids)


def test_a_smollm2_sized_session_holds_far_less_than_a_doubled_cache_and_256_steps_of_logits():
    """SmolLM2's cache shape (30 layers x 3 KV heads x 64) and vocabulary (49,152), narrow
    elsewhere to stay quick; a 4,000-character prompt of 1,142 tokens, then 20 steps. A cache
    that doubled its capacity and kept every step's logits held about 115 MB here."""
    config = GPTConfig(vocab_size=49152, block_size=8192, n_layer=30, n_head=3, n_kv_head=3,
                       n_embd=192, mlp_hidden=64, bias=False, norm="rmsnorm", position="rope",
                       mlp="swiglu", eot_token=0)
    torch.manual_seed(0)
    gpt = GPT(config).eval()
    words = [("abc" if i < 575 else "de") for i in range(1142)]  # 575 * 3 + 567 * 2 + 1141 spaces
    prompt = " ".join(words)
    assert len(prompt) == 4000
    s = DecodingSession(gpt, _WordTokenizer(config.vocab_size), seed=0)
    s.reset(prompt)
    assert len(s.ids) == 1142
    for _ in range(20):
        s.step(GREEDY)
    parts = s.memory_breakdown()
    per_position = 30 * 3 * 64 * 4 * 2  # keys and values, float32
    positions = parts["kv_cache"] // per_position
    assert 1162 <= positions <= 1162 + 1162 // 16 + 64, positions  # not doubled to 2,304
    assert parts["kept_logits"] == 20 * 49152 * 4 <= KEEP_LOGITS_BYTES
    assert s.memory_bytes() < 70e6, parts  # was ~115 MB


def test_undo_past_the_logits_allowance_recomputes_the_same_distribution(bpe_tokenizer, monkeypatch):
    gpt = random_gpt(tiny_config(), seed=4)
    step_bytes = 4 * gpt.config.vocab_size
    s = DecodingSession(gpt, bpe_tokenizer, seed=5, keep_logits_bytes=3 * step_bytes)
    s.reset("The rose of the")
    before, records = [], []
    for _ in range(10):
        before.append((list(s.ids), s.logits.clone(), s.distribution(SAMPLE).probs.clone()))
        records.append(s.step(SAMPLE))
        assert len([r for r in s.history if r.logits is not None]) == min(3, len(s.history))
    calls = []
    original = gpt.forward
    monkeypatch.setattr(gpt, "forward", lambda *a, **k: calls.append(1) or original(*a, **k))
    for i in reversed(range(10)):
        assert s.undo().token == records[i].token
        ids, logits, probs = before[i]
        assert s.ids == ids
        assert (s.logits - logits).abs().max() < 1e-5, i
        assert (s.distribution(SAMPLE).probs - probs).abs().max() < 1e-6, i
    assert len(calls) == 7  # the newest 3 undos were free; each older one ran one prefill
    assert [r.token for r in s.generate(10, SAMPLE)] == [r.token for r in records]


@pytest.mark.parametrize("bad", [-1, 1.5, True, "16MB"])
def test_bad_logits_allowance_raises_value_error_naming_it(model, bad):
    with pytest.raises(ValueError, match=r"keep_logits_bytes must be a whole number of bytes >= 0, but is"):
        DecodingSession(*model, keep_logits_bytes=bad)


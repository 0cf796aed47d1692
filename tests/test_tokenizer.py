"""Tokenizers: our tiktoken encodings agree with Hugging Face's GPT-2 tokenizer and with the
original merge-by-merge BPE, round-trip every text, and fail clearly on bad files."""

from __future__ import annotations

import json
import shutil

import pytest
import regex
import tiktoken
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model.tokenizer import (
    EOT,
    GPT2_PATTERN,
    META_FILE,
    RANKS_FILE,
    bytes_to_unicode,
    gpt2_tokenizer_from_snapshot,
    load_tokenizer,
    save_tokenizer,
    validate_ids,
)
from testkit.models import CORPUS

VARIED_TEXTS = [
    CORPUS,
    "",
    "Hello world",
    "I'm sure you're right; they'll see we've said it's 'tis she'd I'D YOU'RE",
    "emoji 🙂🚀 👩‍💻 family 👨‍👩‍👧 flag 🇫🇷 skin 👍🏽",
    "whitespace:    four  two\t\ttabs \u00a0nbsp \u3000ideographic",
    "line\nbreaks\n\n\nthree\r\nwindows\rcr\n",
    "   leading and trailing   ",
    "digits 0 12 345 6789 1234567890 3.14159 -2.5e10 1,000,000",
    "café naïve résumé façade Ελληνικά русский 中文 日本語 한국어 العربية",
    "combining: e\u0301 a\u0308 zero\u200bwidth",
    "punctuation!!! ??? ... --- ''' \"\"\" ((())) <|notspecial|>",
    "ROMEO: But, soft! what light through yonder window breaks?",
    "nights kings seas roses words The Line 7: the rose of the roses is 14.",
]


def reference_bpe_encode(text: str, vocab: dict[str, int], merges: list[tuple[str, str]]) -> list[int]:
    """GPT-2's original algorithm (openai/gpt-2 encoder.py): split with the regex, map bytes to
    characters, then repeatedly apply the highest-priority merge among adjacent pairs."""
    priority = {pair: i for i, pair in enumerate(merges)}
    byte_char = bytes_to_unicode()
    ids = []
    for piece in regex.findall(GPT2_PATTERN, text):
        word = [byte_char[b] for b in piece.encode("utf-8")]
        while len(word) > 1:
            best = min(zip(word, word[1:]), key=lambda pair: priority.get(pair, float("inf")))
            if best not in priority:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        ids.extend(vocab[w] for w in word)
    return ids


@pytest.fixture(scope="module")
def snapshot_tokenizers(gpt2_snapshot):
    from transformers import GPT2Tokenizer

    vocab = json.loads((gpt2_snapshot / "vocab.json").read_text(encoding="utf-8"))
    lines = (gpt2_snapshot / "merges.txt").read_text(encoding="utf-8").splitlines()
    merges = [tuple(line.split(" ")) for line in lines if line and not line.startswith("#version")]
    ours = gpt2_tokenizer_from_snapshot(gpt2_snapshot)
    hf = GPT2Tokenizer.from_pretrained(str(gpt2_snapshot))
    return ours, hf, vocab, merges


@pytest.mark.parametrize("text", VARIED_TEXTS, ids=range(len(VARIED_TEXTS)))
def test_snapshot_tokenizer_matches_hugging_face_and_reference_bpe(snapshot_tokenizers, text):
    ours, hf, vocab, merges = snapshot_tokenizers
    ids = ours.encode(text)
    assert ids == hf.encode(text)
    assert ids == reference_bpe_encode(text, vocab, merges)
    assert ours.decode(ids) == text == hf.decode(ids)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
       | st.text(alphabet=" \t\n\r'sdmtlvre0123456789aAé🙂.,!", max_size=40))
def test_snapshot_tokenizer_matches_hugging_face_on_random_text(snapshot_tokenizers, text):
    ours, hf, _, _ = snapshot_tokenizers
    assert ours.encode(text) == hf.encode(text)


def test_snapshot_end_of_text_is_a_special_token_with_gpt2s_id(snapshot_tokenizers):
    ours, hf, vocab, _ = snapshot_tokenizers
    assert ours.eot_token == vocab[EOT] == hf.eos_token_id
    assert ours.encode(EOT, allowed_special="all") == [vocab[EOT]]
    with pytest.raises(ValueError):  # tiktoken refuses special text unless it is allowed
        ours.encode(EOT)


def test_snapshot_merges_out_of_vocab_order_raise_value_error_naming_merges_file(gpt2_snapshot, tmp_path):
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(gpt2_snapshot / name, tmp_path / name)
    lines = (tmp_path / "merges.txt").read_text(encoding="utf-8").splitlines()
    header, merges = lines[:1], lines[1:]
    (tmp_path / "merges.txt").write_text("\n".join(header + merges[::-1]) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="merges.txt"):
        gpt2_tokenizer_from_snapshot(tmp_path)


def test_snapshot_without_tokenizer_files_raises_file_not_found_offline(tmp_path, monkeypatch):
    def offline(name):
        raise ConnectionError("no network")

    monkeypatch.setattr(tiktoken, "get_encoding", offline)
    with pytest.raises(FileNotFoundError, match="vocab.json"):
        gpt2_tokenizer_from_snapshot(tmp_path)


# ---- our own trained BPE ----

@pytest.mark.parametrize("text", VARIED_TEXTS, ids=range(len(VARIED_TEXTS)))
def test_trained_bpe_round_trips_every_text(bpe_tokenizer, text):
    assert bpe_tokenizer.decode(bpe_tokenizer.encode(text)) == text


def test_trained_bpe_has_every_byte_and_end_of_text_last(bpe_tokenizer):
    assert {bpe_tokenizer.encode_single_token(bytes([b])) for b in range(256)} == set(range(256))
    assert bpe_tokenizer.eot_token == bpe_tokenizer.n_vocab - 1
    assert bpe_tokenizer.decode([bpe_tokenizer.eot_token]) == EOT


def test_trained_bpe_compresses_its_training_text(bpe_tokenizer):
    assert len(bpe_tokenizer.encode(CORPUS)) < 0.8 * len(CORPUS.encode("utf-8"))


def test_saved_tokenizer_loads_back_identical(bpe_tokenizer, tmp_path):
    save_tokenizer(bpe_tokenizer, tmp_path)
    loaded = load_tokenizer(tmp_path)
    assert loaded._mergeable_ranks == bpe_tokenizer._mergeable_ranks
    assert loaded._special_tokens == bpe_tokenizer._special_tokens
    for text in VARIED_TEXTS:
        assert loaded.encode(text) == bpe_tokenizer.encode(text)


@pytest.mark.parametrize("missing", [RANKS_FILE, META_FILE])
def test_load_tokenizer_missing_file_raises_file_not_found_naming_it(bpe_tokenizer, tmp_path, missing):
    save_tokenizer(bpe_tokenizer, tmp_path)
    (tmp_path / missing).unlink()
    with pytest.raises(FileNotFoundError, match=missing):
        load_tokenizer(tmp_path)


def test_load_tokenizer_corrupt_files_raise_value_error_naming_directory(bpe_tokenizer, tmp_path):
    save_tokenizer(bpe_tokenizer, tmp_path)
    (tmp_path / RANKS_FILE).write_text("not-base64-and-no-rank\n")
    with pytest.raises(ValueError, match="corrupt"):
        load_tokenizer(tmp_path)


@pytest.mark.parametrize("bad", [-1, 320, 2.0, True, "5"])
def test_validate_ids_rejects_ids_outside_the_vocabulary(bad):
    with pytest.raises(ValueError, match=r"\[0, 320\)"):
        validate_ids([1, bad], 320)

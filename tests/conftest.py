"""Shared fixtures: a tokenizer trained here on a built-in text and tiny random checkpoints
(testkit/models.py builds them). Everything is built in temporary directories, so no test
downloads anything.
"""

from __future__ import annotations

import os

# Hugging Face libraries must never reach the network from a test.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest
import torch

from model import downloads
from model.checkpoint import save_checkpoint
from model.tokenizer import train_bpe
from testkit.gguf_files import train_vocab
from testkit.models import CORPUS_LINES, TINY_VOCAB, random_gpt, tiny_config

# Tiny models run fastest on one thread, and the machine's cores are shared.
torch.set_num_threads(1)

# Markers for what a test needs beyond Python (pyproject.toml lists them): each makes it slow.
NEEDS = ("browser", "workers", "torchrun", "smollm2", "llamacpp", "fuzz", "subprocess_app")


def pytest_collection_modifyitems(items):
    for item in items:
        if any(item.get_closest_marker(name) for name in NEEDS):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def bpe_tokenizer():
    """A tiktoken.Encoding trained on CORPUS (byte-level BPE, <|endoftext|> last)."""
    return train_bpe(CORPUS_LINES, vocab_size=TINY_VOCAB, name="tiny-test")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, bpe_tokenizer):
    """A checkpoint directory holding a tiny random GPT and the test tokenizer. Shared by every
    test: copy it before changing any of its files."""
    directory = tmp_path_factory.mktemp("tiny_checkpoint")
    save_checkpoint(directory, random_gpt(tiny_config()), tiny_config(), bpe_tokenizer,
                    metrics=[{"step": 0, "loss": 5.8}])
    return directory


@pytest.fixture(scope="session")
def gpt2_snapshot(tmp_path_factory):
    """A Hugging Face GPT-2 snapshot as the Hub lays it out (config.json, model.safetensors,
    vocab.json, merges.txt), with a byte-level BPE trained on CORPUS and random weights."""
    import json

    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel

    directory = tmp_path_factory.mktemp("gpt2_snapshot")
    bpe = ByteLevelBPETokenizer(add_prefix_space=False)
    bpe.train_from_iterator(CORPUS_LINES, vocab_size=TINY_VOCAB - 1, min_frequency=1,
                            show_progress=False)
    bpe._tokenizer.model.save(str(directory))  # vocab.json + merges.txt
    vocab_path = directory / "vocab.json"
    vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
    vocab["<|endoftext|>"] = len(vocab)  # GPT-2 keeps end-of-text as its last id
    vocab_path.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")

    torch.manual_seed(0)
    # Weights ten times GPT-2's init scale, and norms that are not the identity: with the
    # default init the logits are ~0.1 and a wrong detail (exact GELU for tanh GELU) would
    # change them by only 2e-6.
    config = GPT2Config(vocab_size=len(vocab), n_positions=64, n_embd=32, n_layer=2, n_head=4,
                        initializer_range=0.2, bos_token_id=len(vocab) - 1,
                        eos_token_id=len(vocab) - 1)
    hf = GPT2LMHeadModel(config)
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if ".ln_" in name:
                p.normal_(1.0 if name.endswith("weight") else 0.0, 0.2)
    hf.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium, once for every browser test (testkit/browser.py: a missing browser
    fails, it never skips)."""
    from playwright import sync_api

    from testkit.browser import launch

    with sync_api.sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


@pytest.fixture(scope="module")
def vocab():
    """(tokens by id, merges) of a small byte-level BPE laid out as SmolLM2's, for GGUF files
    the test writes (testkit/gguf_files.py)."""
    return train_vocab()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private model cache, so nothing reads or writes the user's."""
    directory = tmp_path / "cache"
    monkeypatch.setenv(downloads.CACHE_ENV, str(directory))
    return directory


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The playground on a tiny checkpoint, one server per test module that asks for it."""
    import app
    from testkit.models import make_tiny_checkpoint
    from testkit.server import launch

    demo = app.build_demo([str(make_tiny_checkpoint(tmp_path_factory.mktemp("tiny")))])
    yield launch(demo)
    demo.close()


@pytest.fixture
def tab(browser, server):
    """A laptop-sized tab on `server`. After the test: no JavaScript error happened, and the
    page asked for nothing outside 127.0.0.1 (no CDN, no font service)."""
    from testkit.page import Tab

    t = Tab(browser, server)
    yield t
    outside = [u for u in t.requests if not u.startswith("http://127.0.0.1:")]
    errors = t.errors
    t.close()
    assert not outside, f"the page requested addresses outside 127.0.0.1: {outside[:5]}"
    assert not errors, f"JavaScript errors on the page: {errors[:3]}"

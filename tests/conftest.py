"""Shared fixtures: a tokenizer trained here on a built-in text and a tiny random checkpoint.

Everything is built in temporary directories from the text below, so no test downloads
anything.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# `import model` works however pytest is started (`pytest` or `python -m pytest`).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# Hugging Face libraries must never reach the network from a test.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest
import torch

from model.checkpoint import save_checkpoint
from model.config import GPTConfig
from model.gpt import GPT
from model.tokenizer import train_bpe

# Tiny models run fastest on one thread, and the machine's cores are shared.
torch.set_num_threads(1)

CORPUS = """\
The quick brown fox jumps over the lazy dog. The dog doesn't mind; it's asleep, and it'll
stay asleep until we've gone. They're late, I'm early, you'd be on time.
In 1999 there were 42 apples, 7 pears and 1,024 grapes in the market at 10:30.
  Indented lines keep    their spaces,	tabs too.

Blank lines above and below.

café naïve résumé façade – “quoted” ‘text’ … Ελληνικά русский 中文 日本語 한국어
Emoji: 🙂 🚀 👩‍💻 🇫🇷 and symbols: © ® ™ € £ ¥ § ¶ • ≠ ≤ ≥ ∞ √ π.
ROMEO: But, soft! what light through yonder window breaks?
It is the east, and Juliet is the sun.
JULIET: O Romeo, Romeo! wherefore art thou Romeo?
def add(a, b):
    return a + b  # numbers: 3.14159, 2.71828, -17, +5, 0x1F
"""
# Repeat with small changes so that common pairs recur and the trainer learns real merges.
CORPUS_LINES = [CORPUS] + [f"Line {i}: the {w} of the {w}s is {i * 7}.\n"
                           for i, w in enumerate(["rose", "king", "sea", "night", "word"] * 8)]

TINY_VOCAB = 320  # 256 bytes + 63 merges + <|endoftext|>


@pytest.fixture(scope="session")
def bpe_tokenizer():
    """A tiktoken.Encoding trained on CORPUS (byte-level BPE, <|endoftext|> last)."""
    return train_bpe(CORPUS_LINES, vocab_size=TINY_VOCAB, name="tiny-test")


def tiny_config(**overrides) -> GPTConfig:
    values = dict(vocab_size=TINY_VOCAB, block_size=64, n_layer=2, n_head=4, n_embd=32,
                  eot_token=TINY_VOCAB - 1)
    values.update(overrides)
    return GPTConfig(**values)


def llama_config(**overrides) -> GPTConfig:
    """The Llama-style switches: RMSNorm, rotary positions, SwiGLU, grouped-query attention."""
    return tiny_config(norm="rmsnorm", position="rope", mlp="swiglu", n_kv_head=2, bias=False,
                       mlp_hidden=48, **overrides)


def random_gpt(config: GPTConfig, seed: int = 0, scale: float = 1.0) -> GPT:
    """A GPT with its own random init; scale > 1 multiplies every matrix, so that logits are
    O(1) rather than O(0.1) and a small mistake in the maths shows up clearly."""
    torch.manual_seed(seed)
    gpt = GPT(config).eval()
    if scale != 1.0:
        with torch.no_grad():
            for p in gpt.parameters():
                if p.dim() == 2:
                    p.mul_(scale)
    return gpt


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

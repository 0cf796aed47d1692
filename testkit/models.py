"""Tiny models made on the spot: a random GPT with a BPE trained on a few lines of Hamlet,
saved as a real checkpoint directory. Nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import torch

from model.checkpoint import save_checkpoint
from model.config import GPTConfig
from model.gpt import GPT
from model.tokenizer import EOT, train_bpe

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


HAMLET = """To be, or not to be, that is the question:
Whether 'tis nobler in the mind to suffer
The slings and arrows of outrageous fortune,
Or to take arms against a sea of troubles
And by opposing end them. To die: to sleep;
No more; and by a sleep to say we end
The heart-ache and the thousand natural shocks
That flesh is heir to, 'tis a consummation
Devoutly to be wish'd. To die, to sleep;
To sleep: perchance to dream: ay, there's the rub;
"""


def make_tiny_checkpoint(directory: Path, chat: bool = False, block_size: int = 64, n_layer: int = 2,
                         n_embd: int = 32) -> Path:
    """A random 2-layer GPT with a 400-token BPE. Its embeddings are scaled up so the
    next-token distributions are peaked enough for every filter to cut something. More
    layers and a wider embedding make each token slower (a Generate that lasts long enough
    to be interrupted)."""
    enc = train_bpe([HAMLET * 4], 400)
    if chat:  # ChatML's special tokens, as SmolLM2-Instruct has them
        import tiktoken
        n = enc.n_vocab
        enc = tiktoken.Encoding("tiny-chat", pat_str=enc._pat_str, mergeable_ranks=enc._mergeable_ranks,
                                special_tokens={EOT: n - 1, "<|im_start|>": n, "<|im_end|>": n + 1})
    cfg = GPTConfig(vocab_size=enc.n_vocab, block_size=block_size, n_layer=n_layer, n_head=2, n_embd=n_embd,
                    eot_token=enc.eot_token)
    torch.manual_seed(0)
    gpt = GPT(cfg)
    with torch.no_grad():
        gpt.transformer.wte.weight.mul_(10)
    metrics = [{"step": 10 * i, "train_loss": 6 * 0.9 ** i, "val_loss": 6.2 * 0.92 ** i} for i in range(20)]
    return save_checkpoint(directory, gpt, cfg, enc, metrics=metrics)


def require_smollm2_file():
    """The real SmolLM2 GGUF's path. scripts/test.sh fetches it before the tests; a test that
    needs it fails, never skips, where it is missing."""
    import pytest

    from model import smollm2

    path = smollm2.gguf_path()
    if not path.is_file():
        pytest.fail(f"{path} is missing; `python -m testkit.setup` (which scripts/test.sh runs) "
                    "fetches it (98 MB) once", pytrace=False)
    return path

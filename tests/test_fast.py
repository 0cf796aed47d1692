"""Fast mode (model/quant.py): the same model on 4-bit and 8-bit weights stays close to exact
mode, says which mode it runs in, and leaves exact mode as it was.

The reference is exact mode itself, which tests/test_gguf.py checks against Hugging Face
transformers. The tolerance is measured on the real SmolLM2 file and real English prose;
everything else runs on tiny GGUF files written here the way llama.cpp writes them.
"""

from __future__ import annotations

import runpy

import pytest
import torch
import torch.nn as nn

from model.checkpoint import save_checkpoint
from model.decode import generate
from model.gpt import Rotary
from model.loading import load_model
from model.quant import LOSSLESS, LOSSY, FastRotary, FusedRMSNorm, Int4Linear, Int8Head, divergence
from testkit.gguf_files import write_gguf
from testkit.models import llama_config, random_gpt, require_smollm2_file

# On SmolLM2 and English prose, measured (benchmarks/bench_fast.py): mean KL 0.0009 nats and
# top-1 agreement 98.2%; llama.cpp on the same file and tokens: 0.0030 and 96.9%. The bounds
# say fast mode is at least as close to exact as llama.cpp is, with 3x room for other CPUs.
MAX_MEAN_KL = 0.003  # nats per position, KL(exact || fast)
MIN_TOP1 = 0.96  # fraction of positions where both pick the same most likely token
REAL_POSITIONS, WINDOW = 1024, 512
DECODE_POSITIONS = 128
PROSE = ("execmodel", "assignment", "import")  # chapters of Python's reference manual


def tiny_gguf(tmp_path, vocab, qtype="Q4_1"):
    return write_gguf(tmp_path / f"tiny-{qtype}.gguf", qtype, vocab=vocab)


# ---- the real model ----

@pytest.fixture(scope="module")
def real_models():
    path = require_smollm2_file()
    return load_model(path), load_model(path, mode="fast")


@pytest.mark.smollm2
def test_fast_smollm2_stays_within_tolerance_of_exact_on_english_prose(real_models):
    from pydoc_data.topics import topics

    (exact, tok, exact_card), (fast, _, fast_card) = real_models
    assert exact_card["mode"] == "exact" and fast_card["mode"] == "fast"
    assert LOSSLESS in fast_card["arithmetic"]  # the file's own Q4_1 and Q8_0 codes
    ids = tok.encode("\n\n".join(topics[t] for t in PROSE))[:REAL_POSITIONS]
    assert len(ids) == REAL_POSITIONS
    with torch.inference_mode():
        windows = [torch.tensor([ids[s:s + WINDOW]]) for s in range(0, REAL_POSITIONS, WINDOW)]
        d = divergence(torch.cat([exact(w)[0] for w in windows]),
                       torch.cat([fast(w)[0] for w in windows]))
    print(f"fast vs exact on {d['positions']} positions: mean KL {d['mean_kl']:.5f} nats, "
          f"max {d['max_kl']:.4f}, top-1 agreement {d['top1']:.2%}")
    assert d["positions"] == REAL_POSITIONS
    assert d["mean_kl"] < MAX_MEAN_KL and d["top1"] > MIN_TOP1, d


@pytest.mark.smollm2
def test_fast_smollm2_decode_steps_stay_within_tolerance_and_know_paris(real_models):
    """The decode path (one position at a time through the KV cache), which is what the
    speed is measured on, against exact mode's logits for the same tokens."""
    from pydoc_data.topics import topics

    (exact, tok, _), (fast, _, _) = real_models
    ids = torch.tensor([tok.encode(topics["execmodel"])[:DECODE_POSITIONS]])
    with torch.inference_mode():
        cache_ = fast.new_cache()
        steps = [fast(ids[:, t:t + 1], cache=cache_) for t in range(ids.size(1))]
        d = divergence(exact(ids)[0], torch.cat(steps, dim=1)[0])
        prompt = torch.tensor([tok.encode("The capital of France is")])
        out = generate(fast, prompt, 3, temperature=0)
    print(f"fast decode steps vs exact on {d['positions']} positions: mean KL "
          f"{d['mean_kl']:.5f} nats, top-1 agreement {d['top1']:.2%}")
    assert d["mean_kl"] < MAX_MEAN_KL and d["top1"] > MIN_TOP1, d
    assert tok.decode(out[0, prompt.size(1):].tolist()).startswith(" Paris.")


# ---- tiny files ----

def test_fast_mode_runs_and_agrees_loosely_on_a_tiny_gguf(tmp_path, cache, vocab):
    path = tiny_gguf(tmp_path, vocab)
    exact, tok, _ = load_model(path)
    fast, _, card = load_model(path, mode="fast")
    assert card["mode"] == "fast" and "int4" in card["arithmetic"]
    prompt = torch.tensor([tok.encode("The quick brown fox jumps over the lazy dog. It's asleep.")])
    with torch.inference_mode():
        d = divergence(exact(prompt), fast(prompt))
        out = generate(fast, prompt, 16, temperature=0)
    assert d["mean_kl"] < 0.05 and d["top1"] >= 0.8, d
    assert out.shape == (1, prompt.size(1) + 16)


def test_fast_weights_are_the_files_own_codes_and_float32_files_are_requantized(
        tmp_path, cache, vocab):
    _, _, q4_card = load_model(tiny_gguf(tmp_path, vocab, "Q4_1"), mode="fast")
    _, _, f32_card = load_model(tiny_gguf(tmp_path, vocab, "F32"), mode="fast")
    assert LOSSLESS in q4_card["arithmetic"]
    assert LOSSY in f32_card["arithmetic"]


def test_int4_layer_computes_what_the_q4_1_weights_say(tmp_path, cache, vocab):
    """Against x @ W.T with the exact float32 weights: only bfloat16 rounding of the input,
    the scales and the output remains."""
    exact, _, _ = load_model(tiny_gguf(tmp_path, vocab))
    linear = exact.transformer.h[0].mlp.c_fc
    fast = Int4Linear(linear, "c_fc")
    x = torch.randn(5, linear.in_features)
    want = x.bfloat16().float() @ linear.weight.detach().t()
    assert fast.lossless
    torch.testing.assert_close(fast(x), want, rtol=2e-2, atol=2e-2 * want.abs().max().item())


def test_int8_head_keeps_the_tie_and_computes_the_products(tmp_path, cache, vocab):
    exact, _, _ = load_model(tiny_gguf(tmp_path, vocab))
    fast, _, _ = load_model(tiny_gguf(tmp_path, vocab), mode="fast")
    assert isinstance(fast.lm_head, Int8Head)
    assert fast.lm_head.weight is fast.transformer.wte.weight
    x = torch.randn(2, 3, exact.config.n_embd)
    x[..., 5] *= 20  # an outlier coordinate, as real hidden states have
    want = exact.lm_head(x)  # (2, 3, V)
    got = fast.lm_head(x)
    assert got.shape == want.shape and got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=0, atol=0.03 * want.abs().max().item())


def test_a_head_of_any_vocabulary_size_and_with_a_bias_works():
    head = nn.Linear(64, 50)  # 50 outputs: no multiple of anything
    x = torch.randn(3, 64)
    want = head(x)
    torch.testing.assert_close(Int8Head(head)(x), want, rtol=0, atol=0.03 * want.abs().max().item())


def test_rows_of_a_batch_get_the_logits_they_get_alone(tmp_path, cache, vocab):
    fast, tok, _ = load_model(tiny_gguf(tmp_path, vocab), mode="fast")
    texts = ["Hello world, said the dog.", "ROMEO: But soft, what light", "In 1999 there were 42"]
    rows = [tok.encode(t)[:6] for t in texts]
    with torch.inference_mode():
        together = fast(torch.tensor(rows))  # (3, 6, V)
        for b, row in enumerate(rows):
            torch.testing.assert_close(together[b], fast(torch.tensor([row]))[0], rtol=0, atol=1e-5)


def test_fused_rmsnorm_and_fast_rotary_equal_the_originals():
    norm = nn.RMSNorm(64, eps=1e-5)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)
    x = torch.randn(2, 3, 64) * 4
    torch.testing.assert_close(FusedRMSNorm(norm)(x), norm(x), rtol=1e-5, atol=1e-5)
    rotary = Rotary(16, 32, 10000.0)
    fast = FastRotary(rotary)
    q = torch.randn(2, 4, 3, 16)
    torch.testing.assert_close(fast(q, 5), rotary(q, 5), rtol=1e-6, atol=1e-6)
    # One position per row (batched decode) is the same as each row rotated alone.
    one = torch.randn(3, 4, 1, 16)
    positions = torch.tensor([0, 7, 30])
    rows = torch.cat([rotary(one[b:b + 1], int(p)) for b, p in enumerate(positions)])
    torch.testing.assert_close(fast.at_positions(one, positions), rows, rtol=1e-6, atol=1e-6)


# ---- modes, cards and refusals ----

def test_exact_mode_is_the_default_and_keeps_the_float32_modules(tmp_path, cache, vocab):
    gpt, _, card = load_model(tiny_gguf(tmp_path, vocab))
    assert card["mode"] == "exact" and card["arithmetic"].startswith("float32")
    assert type(gpt.lm_head) is nn.Linear and type(gpt.rotary) is Rotary
    assert type(gpt.transformer.h[0].attn.c_attn) is nn.Linear


def test_unknown_mode_is_refused_naming_it_and_the_modes(tmp_path, cache, vocab):
    allowed = r"mode must be one of \('exact', 'fast'\), but is 'turbo'"
    with pytest.raises(ValueError, match=allowed):
        load_model(tiny_gguf(tmp_path, vocab), mode="turbo")


def test_fast_mode_quantizes_our_float32_checkpoints_too(tiny_checkpoint):
    """GPT-2 style (LayerNorm, GELU, biases, learned positions): quantized the same way."""
    exact, tok, _ = load_model(tiny_checkpoint)
    fast, _, card = load_model(tiny_checkpoint, mode="fast")
    assert card["mode"] == "fast" and LOSSY in card["arithmetic"]
    assert fast.transformer.h[0].mlp.c_fc.bias is not None
    prompt = torch.tensor([tok.encode("To be, or not to be")])
    with torch.inference_mode():
        d = divergence(exact(prompt), fast(prompt))
    assert d["top1"] >= 0.8, d


def test_fast_mode_refuses_a_matrix_its_kernel_cannot_take(tmp_path, bpe_tokenizer):
    config = llama_config(n_embd=48, n_head=4)  # 48 inputs: not a multiple of 32
    directory = save_checkpoint(tmp_path / "odd", random_gpt(config), config, bpe_tokenizer)
    layer = r"odd.*transformer\.h\.0\.attn\.c_attn \(96 x 48\).*mode='exact'"
    with pytest.raises(ValueError, match=layer):
        load_model(directory, mode="fast")


def test_cli_decodes_in_fast_mode_and_refuses_an_unknown_one(tmp_path, cache, vocab, capsys):
    main = runpy.run_module("model.generate")["main"]
    path = str(tiny_gguf(tmp_path, vocab))
    assert main(["--model", path, "--mode", "fast", "--prompt", "Hello", "--max-new-tokens", "5",
                 "--temperature", "0"]) == 0
    assert capsys.readouterr().out.startswith("Hello")
    with pytest.raises(SystemExit):
        main(["--model", path, "--mode", "turbo"])
    assert "invalid choice: 'turbo'" in capsys.readouterr().err

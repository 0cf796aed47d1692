"""The compiled decode step (model/compiled_step.py) computes what the eager step does, into
the same KV cache, across cache growth and rewind, and steps aside where it must.

One tiny Llama-shaped model in fast mode is compiled once for the module (inductor, the
system's gcc): the slowest part of this file.
"""

from __future__ import annotations

import pytest
import torch

from model.compiled_step import CompiledStep
from model.quant import quantize_model
from testkit.models import random_gpt, tiny_config
from ui.state import ModelRegistry

STEPS = 150  # past two growths of the cache (64-position chunks)


@pytest.fixture(scope="module")
def fast_gpt():
    config = tiny_config(norm="rmsnorm", position="rope", mlp="swiglu", n_kv_head=2, bias=False,
                         n_embd=64, n_head=4, mlp_hidden=64, block_size=256)  # Llama's shape, int4-sized
    gpt = random_gpt(config, seed=3, scale=3.0)
    quantize_model(gpt)
    compiled = CompiledStep(gpt)
    assert compiled.warm() > 0 and compiled.ready, compiled.error
    return gpt, compiled


def prefill(gpt, ids):
    cache = gpt.new_cache(1)
    with torch.inference_mode():
        logits = gpt(torch.tensor([ids]), cache=cache)[0][:, -1]
    return cache, logits


def walk(gpt, step, cache, first, n):
    """Greedy decode n tokens through step(token, cache); the logits of each step."""
    out, token = [], first
    for _ in range(n):
        logits = step(token, cache)
        out.append(logits[0])
        token = int(logits[0].argmax())
    return torch.stack(out)


def feed(step, cache, tokens):
    """The logits after each of `tokens`, fed one by one through step(token, cache)."""
    return torch.stack([step(t, cache)[0] for t in tokens])


def eager(gpt):
    return lambda token, cache: gpt.decode_step([token], [cache])


def bf16_close(got, want, ulps=4):
    """Fast mode rounds activations to bfloat16 (8 bits of mantissa). The graph fuses the
    ops between two roundings, so a value may land one rounding step away from the eager
    one; allow a few such steps of the largest value."""
    torch.testing.assert_close(got, want, rtol=0, atol=ulps * 2.0 ** -8 * want.abs().max().item())


def test_compiled_step_gives_the_eager_logits_and_cache_through_cache_growth(fast_gpt):
    gpt, compiled = fast_gpt
    ids = [5, 17, 42, 8, 99, 3]
    tokens = torch.randint(0, gpt.config.vocab_size, (STEPS,), generator=torch.Generator().manual_seed(1)).tolist()
    cache_a, _ = prefill(gpt, ids)
    cache_b, _ = prefill(gpt, ids)
    want = feed(eager(gpt), cache_a, tokens)
    calls = compiled.graph_calls
    got = feed(compiled, cache_b, tokens)
    assert compiled.graph_calls - calls == STEPS  # every step ran the graph, none fell back
    bf16_close(got, want)
    assert (got.argmax(-1) == want.argmax(-1)).float().mean() >= 0.97
    assert cache_b.pos == cache_a.pos == len(ids) + STEPS
    n = cache_a.pos
    bf16_close(cache_b.k[..., :n, :], cache_a.k[..., :n, :])
    bf16_close(cache_b.v[..., :n, :], cache_a.v[..., :n, :])


def test_rewinding_the_cache_and_stepping_again_through_the_graph_repeats_the_run(fast_gpt):
    gpt, compiled = fast_gpt
    cache, first = prefill(gpt, [1, 2, 3])
    first = int(first.argmax())
    run = walk(gpt, compiled, cache, first, 20)
    cache.truncate(3 + 10)  # back to just after the 10th new token
    again = walk(gpt, compiled, cache, int(run[9].argmax()), 10)
    torch.testing.assert_close(again, run[10:], rtol=0, atol=0)


def test_decode_step_uses_the_graph_for_one_row_and_its_own_code_for_a_batch(fast_gpt):
    gpt, compiled = fast_gpt
    gpt.compiled_step = compiled
    try:
        (a, la), (b, _) = prefill(gpt, [4, 5]), prefill(gpt, [6, 7, 8])
        calls = compiled.graph_calls
        gpt.decode_step([int(la.argmax())], [a])
        assert compiled.graph_calls == calls + 1
        together = gpt.decode_step([1, 2], [a, b])  # ragged caches: the eager batched step
        assert compiled.graph_calls == calls + 1 and together.shape == (2, gpt.config.vocab_size)
    finally:
        gpt.compiled_step = None


def test_an_unready_step_decodes_eagerly_with_the_same_logits(fast_gpt):
    gpt, _ = fast_gpt
    cold = CompiledStep(gpt)  # never warmed: nothing compiles during a request
    cache_a, first = prefill(gpt, [9, 9, 9])
    cache_b, _ = prefill(gpt, [9, 9, 9])
    got = walk(gpt, cold, cache_a, int(first.argmax()), 5)
    want = walk(gpt, eager(gpt), cache_b, int(first.argmax()), 5)
    assert cold.graph_calls == 0 and not cold.ready
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_the_registry_compiles_fast_models_only_once_told_and_leaves_exact_ones(fast_gpt, bpe_tokenizer):
    gpt, _ = fast_gpt
    exact = random_gpt(tiny_config())
    models = {"fast": (gpt, bpe_tokenizer, {"name": "fast", "mode": "fast"}),
              "exact": (exact, bpe_tokenizer, {"name": "exact", "mode": "exact"})}
    registry = ModelRegistry(["fast", "exact"], loader=models.__getitem__)
    try:
        registry.get("fast")
        assert gpt.compiled_step is None  # loaded, but the server has not said it listens
        registry.compile_fast_models()
        compiled = gpt.compiled_step
        assert compiled is not None and compiled.finished.wait(900), "compiling never ended"
        assert compiled.ready, compiled.error
        registry.get("exact")  # loaded after: exact mode is never compiled
        assert exact.compiled_step is None
        cache, logits = prefill(gpt, [3, 1, 4])
        calls = compiled.graph_calls
        gpt.decode_step([int(logits.argmax())], [cache])
        assert compiled.graph_calls == calls + 1
    finally:
        gpt.compiled_step = None

"""The GPT itself: the same logits as Hugging Face's models, a KV cache that changes nothing
but the speed, and a training loss that averages over every position."""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F

from model import GPT, generate, load_model
from model.kv_cache import KVCache
from testkit.models import llama_config, random_gpt, tiny_config

CONFIGS = {"gpt2": tiny_config, "llama": llama_config}


@pytest.fixture(params=list(CONFIGS), ids=list(CONFIGS))
def gpt(request) -> GPT:
    return random_gpt(CONFIGS[request.param](), seed=1, scale=5.0)


def _random_ids(n: int, vocab: int, seed: int = 0, batch: int = 1) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, n), generator=torch.Generator().manual_seed(seed))


# ---- agreement with Hugging Face transformers ----

def _compare_with_hf(directory, hf_model) -> None:
    gpt, _, card = load_model(directory)
    ids = _random_ids(40, gpt.config.vocab_size, batch=2)
    with torch.no_grad():
        expected = hf_model(ids).logits
        assert (gpt(ids) - expected).abs().max() < 1e-4
        assert (gpt(ids, last_only=True)[:, -1] - expected[:, -1]).abs().max() < 1e-4


def test_logits_match_hugging_face_gpt2_from_safetensors_snapshot(gpt2_snapshot):
    from transformers import GPT2LMHeadModel

    _compare_with_hf(gpt2_snapshot, GPT2LMHeadModel.from_pretrained(gpt2_snapshot).eval())


def test_logits_match_hugging_face_gpt2_from_pytorch_model_bin(gpt2_snapshot, tmp_path):
    """The Hub's original GPT-2 files are pytorch_model.bin with unprefixed keys ("h.0...") and
    the attention-mask buffers ("h.0.attn.bias"). transformers 5 writes safetensors even with
    safe_serialization=False, so the test writes that legacy layout itself."""
    from transformers import GPT2LMHeadModel

    hf = GPT2LMHeadModel.from_pretrained(gpt2_snapshot).eval()
    for path in gpt2_snapshot.iterdir():
        if path.name != "model.safetensors":
            shutil.copy(path, tmp_path / path.name)
    n = hf.config.n_positions
    state = {k.removeprefix("transformer."): v for k, v in hf.state_dict().items()
             if k != "lm_head.weight"}
    for i in range(hf.config.n_layer):
        state[f"h.{i}.attn.bias"] = torch.tril(torch.ones(1, 1, n, n))
    torch.save(state, tmp_path / "pytorch_model.bin")
    assert GPT2LMHeadModel.from_pretrained(tmp_path).config.n_layer == hf.config.n_layer
    _compare_with_hf(tmp_path, hf)


def test_logits_match_hugging_face_gpt2_with_untied_head(gpt2_snapshot, tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=320, n_positions=48, n_embd=24, n_layer=2, n_head=3,
                        tie_word_embeddings=False, bos_token_id=319, eos_token_id=319)
    hf = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        hf.lm_head.weight.normal_()  # make sure the head really differs from the embeddings
    hf.save_pretrained(tmp_path)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(gpt2_snapshot / name, tmp_path / name)
    gpt, _, card = load_model(tmp_path)
    assert gpt.config.tie_embeddings is False
    assert gpt.lm_head.weight is not gpt.transformer.wte.weight
    _compare_with_hf(tmp_path, hf)


def _to_hf_llama(gpt: GPT):
    """Our Llama-style weights in transformers' LlamaForCausalLM (q/k/v and gate/up unfused)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    c = gpt.config
    hf = LlamaForCausalLM(LlamaConfig(
        vocab_size=c.vocab_size, hidden_size=c.n_embd, intermediate_size=c.hidden,
        num_hidden_layers=c.n_layer, num_attention_heads=c.n_head, num_key_value_heads=c.kv_heads,
        max_position_embeddings=c.block_size, rms_norm_eps=c.norm_eps, rope_theta=c.rope_theta,
        tie_word_embeddings=c.tie_embeddings, attention_bias=False, mlp_bias=False)).eval()
    sizes = [c.n_head * c.head_dim, c.kv_heads * c.head_dim, c.kv_heads * c.head_dim]
    state = {"model.embed_tokens.weight": gpt.transformer.wte.weight,
             "model.norm.weight": gpt.transformer.ln_f.weight,
             "lm_head.weight": gpt.lm_head.weight}
    for i, block in enumerate(gpt.transformer.h):
        p = f"model.layers.{i}."
        q, k, v = block.attn.c_attn.weight.split(sizes)
        gate, up = block.mlp.c_fc.weight.chunk(2)
        state.update({p + "self_attn.q_proj.weight": q, p + "self_attn.k_proj.weight": k,
                      p + "self_attn.v_proj.weight": v,
                      p + "self_attn.o_proj.weight": block.attn.c_proj.weight,
                      p + "mlp.gate_proj.weight": gate, p + "mlp.up_proj.weight": up,
                      p + "mlp.down_proj.weight": block.mlp.c_proj.weight,
                      p + "input_layernorm.weight": block.ln_1.weight,
                      p + "post_attention_layernorm.weight": block.ln_2.weight})
    hf.load_state_dict({k: v.detach().clone() for k, v in state.items()}, strict=True)
    return hf


def test_llama_style_logits_match_hugging_face_llama():
    """RMSNorm, rotary positions ("rotate half"), SwiGLU and grouped-query attention together
    compute what transformers' Llama computes."""
    gpt = random_gpt(llama_config(), seed=2, scale=10.0)  # O(1) logits: see random_gpt
    for p in gpt.parameters():  # non-trivial norm gains, so a misplaced norm weight shows
        if p.dim() == 1:
            p.data.uniform_(0.5, 1.5)
    hf = _to_hf_llama(gpt)
    ids = _random_ids(30, gpt.config.vocab_size, batch=2)
    with torch.no_grad():
        assert (gpt(ids) - hf(ids).logits).abs().max() < 1e-4


# ---- the KV cache ----

@torch.no_grad()
def test_kv_cache_decoding_matches_full_recompute(gpt):
    ids = _random_ids(5, gpt.config.vocab_size)
    cache = gpt.new_cache()
    logits = gpt(ids, cache=cache, last_only=True)[0, -1]
    for _ in range(40):
        full = gpt(ids)[0, -1]
        assert (logits - full).abs().max() < 1e-5
        nxt = int(full.argmax())
        assert int(logits.argmax()) == nxt
        ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
        logits = gpt(ids[:, -1:], cache=cache)[0, -1]
    assert cache.pos == ids.size(1)


@torch.no_grad()
def test_multi_token_prefill_into_non_empty_cache_matches_full_recompute(gpt):
    ids = _random_ids(30, gpt.config.vocab_size, batch=2)
    cache = gpt.new_cache(batch=2)
    full = gpt(ids)
    pieces = [ids[:, :6], ids[:, 6:7], ids[:, 7:19], ids[:, 19:30]]  # prefill, one step, chunks
    start = 0
    for piece in pieces:
        out = gpt(piece, cache=cache)
        end = start + piece.size(1)
        assert (out - full[:, start:end]).abs().max() < 1e-5
        start = end
    assert cache.pos == 30


@torch.no_grad()
def test_kv_cache_truncate_then_continue_matches_full_recompute(gpt):
    ids = _random_ids(20, gpt.config.vocab_size)
    cache = gpt.new_cache()
    gpt(ids, cache=cache)
    cache.truncate(12)  # forget positions 12..19 and continue from a different token
    other = torch.tensor([[(int(ids[0, 12]) + 1) % gpt.config.vocab_size]])
    out = gpt(other, cache=cache)[0, -1]
    assert (out - gpt(torch.cat([ids[:, :12], other], dim=1))[0, -1]).abs().max() < 1e-5


@torch.no_grad()
def test_kv_cache_grows_past_its_initial_capacity_without_changing_logits():
    gpt = random_gpt(tiny_config(block_size=600, n_layer=1), seed=3)
    ids = _random_ids(560, gpt.config.vocab_size)
    cache = gpt.new_cache()
    assert cache.k.size(3) < 560  # starts small
    outs = [gpt(ids[:, :200], cache=cache)] + [gpt(ids[:, i:i + 1], cache=cache) for i in range(200, 270)]
    outs.append(gpt(ids[:, 270:], cache=cache))
    assert cache.k.size(3) >= 560
    assert (torch.cat(outs, dim=1) - gpt(ids)).abs().max() < 1e-5


def test_kv_cache_refuses_to_write_past_max_len_and_bad_truncation():
    cache = KVCache(n_layer=1, batch=1, n_kv_head=1, max_len=4, head_dim=2)
    kv = torch.zeros(1, 1, 5, 2)
    with pytest.raises(ValueError, match="4 positions"):
        cache.append(0, kv, kv)
    with pytest.raises(ValueError, match="truncate"):
        cache.truncate(1)  # it holds 0 positions


def test_forward_past_the_context_raises_value_error_with_both_lengths():
    gpt = random_gpt(tiny_config(block_size=16))
    with pytest.raises(ValueError, match="17 positions exceeds the model's context of 16"):
        gpt(torch.zeros(1, 17, dtype=torch.long))
    cache = gpt.new_cache()
    gpt(torch.zeros(1, 10, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="17 positions"):
        gpt(torch.zeros(1, 7, dtype=torch.long), cache=cache)


def test_decode_layout_keeps_values_tying_and_logits_and_checkpoints_stay_contiguous(bpe_tokenizer,
                                                                                    tmp_path):
    """Loaded models store their matrices column-major for fast decoding; nothing else may
    notice: the same logits, the same tied Parameter, training still works, and a saved
    checkpoint holds ordinary contiguous (out, in) tensors."""
    from model.checkpoint import save_checkpoint

    gpt = random_gpt(tiny_config(), seed=7)
    ids = _random_ids(12, gpt.config.vocab_size, batch=2)
    with torch.no_grad():
        before = gpt(ids)
    head = gpt.lm_head.weight
    assert gpt.use_decode_layout() is gpt
    assert gpt.lm_head.weight is head is gpt.transformer.wte.weight
    assert head.stride() == (1, gpt.config.vocab_size)
    assert gpt.transformer.h[0].mlp.c_fc.weight.t().is_contiguous()
    with torch.no_grad():
        assert (gpt(ids) - before).abs().max() < 1e-5
    gpt.train()
    gpt(ids[:, :-1], targets=ids[:, 1:]).backward()
    torch.optim.AdamW(gpt.parameters(), lr=1e-2).step()
    assert gpt.lm_head.weight is gpt.transformer.wte.weight
    save_checkpoint(tmp_path, gpt.eval(), gpt.config, bpe_tokenizer)
    loaded, _, _ = load_model(tmp_path)
    assert not loaded.lm_head.weight.is_contiguous()  # loading applies the layout
    for name, tensor in gpt.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


# ---- training ----

def test_training_forward_returns_mean_next_token_loss_over_every_position(gpt):
    gpt.train()  # dropout is 0, so train mode must compute exactly what eval mode does
    ids = _random_ids(25, gpt.config.vocab_size, batch=3)
    x, y = ids[:, :-1], ids[:, 1:]
    loss = gpt(x, targets=y)
    with torch.no_grad():
        logits = gpt(x)  # (B, T, V)
    per_position = [F.cross_entropy(logits[b, t][None], y[b, t][None])
                    for b in range(x.size(0)) for t in range(x.size(1))]
    assert len(per_position) == 3 * 24
    assert torch.allclose(loss.detach(), torch.stack(per_position).mean(), atol=1e-5)
    loss.backward()  # and it is differentiable all the way to the (tied) embeddings
    assert gpt.transformer.wte.weight.grad is not None


def test_training_loss_ignores_targets_of_minus_one():
    gpt = random_gpt(tiny_config())
    ids = _random_ids(9, gpt.config.vocab_size, batch=2)
    x, y = ids[:, :-1], ids[:, 1:].clone()
    y[0, :4] = -1
    with torch.no_grad():
        logits = gpt(x)
        kept = y != -1
        expected = F.cross_entropy(logits[kept], y[kept])
        assert torch.allclose(gpt(x, targets=y), expected, atol=1e-6)


# ---- generate (nanoGPT's interface) ----

def _reference_greedy(gpt: GPT, ids: list[int], n: int) -> list[int]:
    """Greedy decoding by full recompute, with the same sliding window as the cached paths:
    when the context is over-full, keep its last half."""
    block = gpt.config.block_size
    window = max(0, len(ids) - block)
    ids = list(ids)
    for _ in range(n):
        with torch.no_grad():
            ids.append(int(gpt(torch.tensor([ids[window:]]))[0, -1].argmax()))
        if len(ids) - window > block:
            window = len(ids) - block // 2
    return ids


@pytest.mark.parametrize("arch", list(CONFIGS))
def test_generate_greedy_matches_full_recompute_even_past_the_context(arch):
    gpt = random_gpt(CONFIGS[arch](block_size=16), seed=4)
    prompt = _random_ids(5, gpt.config.vocab_size)
    out = generate(gpt, prompt, max_new_tokens=40, temperature=0.0)
    assert out.shape == (1, 45)
    assert out[0].tolist() == _reference_greedy(gpt, prompt[0].tolist(), 40)


def test_generate_crops_a_prompt_longer_than_the_context():
    gpt = random_gpt(tiny_config(block_size=16))
    prompt = _random_ids(40, gpt.config.vocab_size)
    out = generate(gpt, prompt, max_new_tokens=5, temperature=0)
    assert out[0, :40].tolist() == prompt[0].tolist()
    assert out[0].tolist() == _reference_greedy(gpt, prompt[0].tolist(), 5)


def test_generate_batch_rows_are_independent():
    gpt = random_gpt(tiny_config())
    prompts = _random_ids(6, gpt.config.vocab_size, batch=3)
    together = generate(gpt, prompts, 8, temperature=0)
    for b in range(3):
        assert torch.equal(together[b], generate(gpt, prompts[b:b + 1], 8, temperature=0)[0])


@pytest.mark.parametrize("idx", [[[0, 320]], [[-1, 3]]])
def test_generate_rejects_token_ids_outside_the_vocabulary(idx):
    gpt = random_gpt(tiny_config())
    with pytest.raises(ValueError, match=r"idx holds token ids outside \[0, 320\)"):
        generate(gpt, torch.tensor(idx), 3)


@pytest.mark.parametrize("kwargs, name", [
    (dict(temperature=float("nan")), "temperature"), (dict(temperature=-0.5), "temperature"),
    (dict(top_k=-1), "top_k"), (dict(top_k=2.5), "top_k"),
    (dict(top_p=1.5), "top_p"), (dict(top_p=-0.1), "top_p"),
    (dict(max_new_tokens=-1), "max_new_tokens"), (dict(max_new_tokens=2.0), "max_new_tokens"),
])
def test_generate_rejects_bad_settings_naming_the_argument_and_value(kwargs, name):
    gpt = random_gpt(tiny_config())
    args = dict(max_new_tokens=3) | kwargs
    bad = repr(list(kwargs.values())[0])
    with pytest.raises(ValueError, match=name) as info:
        generate(gpt, torch.tensor([[1, 2]]), **args)
    assert bad in str(info.value)


def test_generate_rejects_an_empty_or_one_dimensional_idx():
    gpt = random_gpt(tiny_config())
    for idx in (torch.zeros(1, 0, dtype=torch.long), torch.tensor([1, 2])):
        with pytest.raises(ValueError, match="idx must be"):
            generate(gpt, idx, 3)


def test_kv_cache_grows_in_small_chunks_and_copies_each_position_a_bounded_number_of_times():
    """Appending one position at a time up to 8,192: the spare room never exceeds 1/16 of the
    positions held plus one 64-position chunk (a doubling cache could sit half empty), and the
    copies on growth add up to under 20 copies per position (amortised O(1))."""
    cache = KVCache(n_layer=1, batch=1, n_kv_head=1, max_len=8192, head_dim=1)
    one = torch.zeros(1, 1, 1, 1)
    copied, capacity = 0, cache.capacity
    for n in range(1, 8193):
        cache.append(0, one, one)
        cache.advance(1)
        if cache.capacity != capacity:
            copied += n - 1  # a growth copies every position held before this one
            capacity = cache.capacity
        assert n <= capacity <= n + n // 16 + 64, (n, capacity)
    assert capacity == 8192
    assert copied < 20 * 8192, copied
    prefill = KVCache(n_layer=1, batch=1, n_kv_head=1, max_len=8192, head_dim=1)
    prefill.append(0, torch.zeros(1, 1, 1142, 1), torch.zeros(1, 1, 1142, 1))
    assert prefill.capacity == 1152  # a prefill takes what it needs, to the next chunk

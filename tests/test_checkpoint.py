"""Checkpoints: a saved model loads back exactly, a tied weight stays one tensor, and every
broken or mismatched file fails with an error that names it."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors import safe_open

from model import GPT, GPTConfig, load_model
from model.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_checkpoint, read_metrics, save_checkpoint
from testkit.models import CORPUS, llama_config, random_gpt, tiny_config


@pytest.fixture
def checkpoint(tiny_checkpoint, tmp_path):
    """A private copy of the shared tiny checkpoint, free to break."""
    return shutil.copytree(tiny_checkpoint, tmp_path / "ckpt")


def _ids(n=20, vocab=320):
    return torch.randint(0, vocab, (2, n), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("make_config", [tiny_config, llama_config], ids=["gpt2", "llama"])
def test_checkpoint_round_trip_gives_the_same_weights_logits_and_tokenizer(make_config, bpe_tokenizer,
                                                                           tmp_path):
    config = make_config()
    gpt = random_gpt(config, seed=3)
    save_checkpoint(tmp_path, gpt, config, bpe_tokenizer, metrics=[{"step": 1, "loss": 5.0}],
                    extra={"trained_on": "corpus"})
    loaded, tokenizer, _ = load_model(tmp_path)
    assert loaded.config == config and not loaded.training
    assert loaded.state_dict().keys() == gpt.state_dict().keys()
    for name, tensor in gpt.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    with torch.no_grad():
        assert torch.equal(loaded(_ids()), gpt(_ids()))
    assert tokenizer.encode(CORPUS) == bpe_tokenizer.encode(CORPUS)
    assert tokenizer.eot_token == bpe_tokenizer.eot_token
    assert read_metrics(tmp_path) == [{"step": 1, "loss": 5.0}]
    assert json.loads((tmp_path / CONFIG_FILE).read_text())["trained_on"] == "corpus"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_weight_tying_survives_save_and_load_as_one_tensor_stored_once(bpe_tokenizer, tmp_path):
    config = tiny_config()
    gpt = random_gpt(config)
    assert gpt.lm_head.weight is gpt.transformer.wte.weight
    save_checkpoint(tmp_path, gpt, config, bpe_tokenizer)
    with safe_open(tmp_path / WEIGHTS_FILE, "pt") as f:
        keys = set(f.keys())
    assert "transformer.wte.weight" in keys and "lm_head.weight" not in keys
    loaded, _, _ = load_checkpoint(tmp_path)
    assert loaded.lm_head.weight is loaded.transformer.wte.weight  # the same Parameter object
    assert sum(p is loaded.transformer.wte.weight for p in loaded.parameters()) == 1
    # Training the loaded model moves both "copies" together, because there is only one.
    loaded.train()
    optimizer = torch.optim.SGD(loaded.parameters(), lr=1.0)
    ids = _ids()
    loaded(ids[:, :-1], targets=ids[:, 1:]).backward()
    optimizer.step()
    assert loaded.lm_head.weight is loaded.transformer.wte.weight
    assert not torch.equal(loaded.transformer.wte.weight, gpt.transformer.wte.weight)


def test_embedding_and_head_weights_both_have_shape_vocab_by_embedding_size():
    """wte.weight and lm_head.weight are both (vocab, d), which is what makes tying possible.

    The embedding table holds one row of d numbers per token: (vocab, d). The head maps a
    d-vector to vocab logits, so as nn.Linear(d, vocab) it stores its weight as (out, in) =
    (vocab, d) and computes x @ W.T. The two matrices have the same shape, and row t of it is
    token t's vector both for reading the token in and for scoring it as the next token.
    """
    gpt = random_gpt(tiny_config(tie_embeddings=False))
    vocab, d = gpt.config.vocab_size, gpt.config.n_embd
    assert gpt.transformer.wte.weight.shape == gpt.lm_head.weight.shape == (vocab, d)
    x = torch.randn(d)
    assert torch.allclose(gpt.lm_head(x), gpt.lm_head.weight @ x, atol=1e-6)


def test_untied_checkpoint_stores_and_restores_both_matrices(bpe_tokenizer, tmp_path):
    config = tiny_config(tie_embeddings=False)
    gpt = random_gpt(config)
    save_checkpoint(tmp_path, gpt, config, bpe_tokenizer)
    with safe_open(tmp_path / WEIGHTS_FILE, "pt") as f:
        assert {"transformer.wte.weight", "lm_head.weight"} <= set(f.keys())
    loaded, _, _ = load_model(tmp_path)
    assert loaded.lm_head.weight is not loaded.transformer.wte.weight
    assert torch.equal(loaded.lm_head.weight, gpt.lm_head.weight)


def test_full_state_dict_with_two_copies_of_the_tied_weight_is_stored_once(bpe_tokenizer, tmp_path):
    """Distributed training exports a full state dict holding the tied tensor under both names."""
    config = tiny_config()
    state = {k: v.clone() for k, v in random_gpt(config).state_dict().items()}
    assert "lm_head.weight" in state
    save_checkpoint(tmp_path, state, config, bpe_tokenizer)
    with safe_open(tmp_path / WEIGHTS_FILE, "pt") as f:
        assert "lm_head.weight" not in set(f.keys())
    loaded, _, _ = load_model(tmp_path)
    assert loaded.lm_head.weight is loaded.transformer.wte.weight


# ---- broken files ----

def test_missing_config_raises_file_not_found_naming_it(checkpoint):
    (checkpoint / CONFIG_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=CONFIG_FILE):
        load_model(checkpoint)


def test_missing_weights_raise_file_not_found_naming_the_file(checkpoint):
    (checkpoint / WEIGHTS_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=WEIGHTS_FILE):
        load_model(checkpoint)


@pytest.mark.parametrize("keep", [0, 7, 100, -10])
def test_truncated_weights_raise_value_error_naming_the_file(checkpoint, keep):
    path = checkpoint / WEIGHTS_FILE
    data = path.read_bytes()
    path.write_bytes(data[:keep] if keep >= 0 else data[:keep])
    with pytest.raises(ValueError, match=WEIGHTS_FILE):
        load_model(checkpoint)


def test_weights_that_do_not_match_the_config_raise_value_error_naming_file_and_tensor(checkpoint):
    meta = json.loads((checkpoint / CONFIG_FILE).read_text())
    meta["gpt"]["n_embd"] = 64
    (checkpoint / CONFIG_FILE).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=f"{WEIGHTS_FILE}.*transformer.wte.weight: file \\(320, 32\\), "
                                         "config \\(320, 64\\)"):
        load_model(checkpoint)


def test_missing_and_unexpected_tensors_raise_value_error_naming_them(checkpoint):
    from safetensors.torch import load_file, save_file

    path = checkpoint / WEIGHTS_FILE
    state = load_file(path)
    state.pop("transformer.h.1.mlp.c_fc.bias")
    state["transformer.h.9.extra"] = torch.zeros(1)
    save_file(state, path)
    with pytest.raises(ValueError, match=r"missing \['transformer.h.1.mlp.c_fc.bias'\]"
                                         r".*unexpected \['transformer.h.9.extra'\]"):
        load_model(checkpoint)


def test_tied_config_with_a_different_head_raises_value_error(checkpoint):
    from safetensors.torch import load_file, save_file

    path = checkpoint / WEIGHTS_FILE
    state = load_file(path)
    state["lm_head.weight"] = state["transformer.wte.weight"] + 1
    save_file(state, path)
    with pytest.raises(ValueError, match="tied"):
        load_model(checkpoint)


@pytest.mark.parametrize("text, match", [
    ("{not json", "not valid JSON"),
    ('{"model_type": "playground-gpt", "gpt": {"n_layers": 2}}', "unknown GPTConfig fields"),
    ('{"model_type": "playground-gpt", "gpt": {"n_head": 5}}', "divisible"),
    ('{"model_type": "playground-gpt"}', "bad model config"),
    ('{"model_type": "bert"}', "model_type 'bert' is not supported"),
])
def test_bad_config_raises_value_error_naming_the_file(checkpoint, text, match):
    (checkpoint / CONFIG_FILE).write_text(text)
    with pytest.raises(ValueError, match=match) as info:
        load_model(checkpoint)
    assert CONFIG_FILE in str(info.value)


def test_model_path_that_does_not_exist_or_is_a_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "nowhere")
    (tmp_path / "file.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="is a file"):
        load_model(tmp_path / "file.bin")


class _NotATensor:
    pass


def test_pytorch_bin_holding_arbitrary_objects_is_refused(gpt2_snapshot, tmp_path):
    """Opening a checkpoint must never run code: only plain tensors are unpickled."""
    shutil.copy(gpt2_snapshot / CONFIG_FILE, tmp_path / CONFIG_FILE)
    torch.save({"wte.weight": torch.zeros(2), "payload": _NotATensor()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match="pytorch_model.bin could not be read as plain tensors"):
        load_model(tmp_path)


def test_read_metrics_skips_a_line_cut_short(checkpoint):
    with open(checkpoint / "metrics.jsonl", "a") as f:
        f.write('{"step": 2, "lo')
    assert read_metrics(checkpoint) == [{"step": 0, "loss": 5.8}]


def test_config_rejects_bad_values_naming_the_field():
    with pytest.raises(ValueError, match="GPTConfig.norm must be one of"):
        GPTConfig(norm="batchnorm")
    with pytest.raises(ValueError, match="GPTConfig.n_layer must be a positive integer, but is 0"):
        GPTConfig(n_layer=0)
    with pytest.raises(ValueError, match="n_head \\(4\\) must be divisible by n_kv_head \\(3\\)"):
        GPTConfig(n_head=4, n_embd=32, n_kv_head=3)
    for eot in (320, -1, 2.0):
        with pytest.raises(ValueError, match=rf"GPTConfig.eot_token must be a token id in \[0, 320\) "
                                             rf"or None, but is {eot!r}"):
            tiny_config(eot_token=eot)
    assert isinstance(GPT(tiny_config()), GPT)


def test_snapshot_whose_end_of_text_id_is_outside_the_vocabulary_raises_naming_config(gpt2_snapshot,
                                                                                      tmp_path):
    """transformers' GPT2Config defaults to eos_token_id 50256: a small model saved without
    setting it must fail at load time, not at the first empty prompt."""
    snapshot = shutil.copytree(gpt2_snapshot, tmp_path / "snap")
    meta = json.loads((snapshot / CONFIG_FILE).read_text())
    meta["eos_token_id"] = 50256
    (snapshot / CONFIG_FILE).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"config.json: GPTConfig.eot_token .* but is 50256"):
        load_model(snapshot)

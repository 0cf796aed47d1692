"""Looking inside predictions: scoring a text, the logit lens, weight tying.

References: the training forward's own loss, Hugging Face transformers' GPT2LMHeadModel loss
and hidden states, and the decoding session's logits for the same text as a prompt.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from model import load_model
from model.hf_gpt2 import CONV1D
from model.inspect import (
    NO_PREDICTION,
    layer_names,
    lens_logits,
    logit_lens,
    read_run_memory,
    residual_stream,
    score_text,
    tying_facts,
)
from model.session import DecodingSession
from testkit.models import CORPUS, HAMLET, llama_config, random_gpt, require_smollm2_file, tiny_config

DEFAULT = Path(__file__).resolve().parent.parent / "checkpoints" / "shakespeare"
TEXT = HAMLET[:400]
SNAPSHOT_TEXT = "ROMEO: But, soft! what light through yonder window breaks?"  # < 64 tokens there


@pytest.fixture(scope="module")
def default_model():
    return load_model(DEFAULT)


@pytest.fixture(scope="module")
def snapshot_model(gpt2_snapshot):
    return load_model(gpt2_snapshot)


@pytest.fixture(scope="module")
def hf_snapshot(gpt2_snapshot):
    from transformers import GPT2LMHeadModel
    return GPT2LMHeadModel.from_pretrained(gpt2_snapshot).eval()


def _to_hf_gpt2(gpt):
    """Our GPT-2-architecture weights in transformers' GPT2LMHeadModel (whose Conv1D layers
    store (in, out), the transpose of nn.Linear)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    c = gpt.config
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=c.vocab_size, n_positions=c.block_size, n_embd=c.n_embd,
                                    n_layer=c.n_layer, n_head=c.n_head, layer_norm_epsilon=c.norm_eps,
                                    tie_word_embeddings=c.tie_embeddings)).eval()
    state = {}
    for name, tensor in gpt.state_dict().items():
        if name.endswith(CONV1D):
            tensor = tensor.t()
        state[name] = tensor.detach().clone().contiguous()
    hf.load_state_dict(state, strict=True)
    return hf


def _ids(tokenizer, text):
    return torch.tensor([tokenizer.encode(text, allowed_special="all")])


# ---- score a text: the loss is pretraining's loss ----

def test_mean_loss_equals_training_loss_and_transformers_loss_on_the_default_model(default_model):
    gpt, tok, _ = default_model
    result = score_text(gpt, tok, TEXT)
    idx = _ids(tok, TEXT)
    assert result["predicted"] == idx.size(1) - 1 > 50
    with torch.no_grad():
        training = float(gpt(idx[:, :-1], targets=idx[:, 1:]))
        theirs = float(_to_hf_gpt2(gpt)(input_ids=idx, labels=idx).loss)
    assert abs(result["mean_loss_nats"] - training) < 1e-5
    assert abs(result["mean_loss_nats"] - theirs) < 1e-5
    assert result["perplexity"] == pytest.approx(math.exp(result["mean_loss_nats"]), rel=1e-12)


def test_mean_loss_equals_training_loss_and_transformers_loss_on_a_gpt2_snapshot(snapshot_model, hf_snapshot):
    gpt, tok, _ = snapshot_model
    text = SNAPSHOT_TEXT
    result = score_text(gpt, tok, text)
    idx = _ids(tok, text)
    with torch.no_grad():
        training = float(gpt(idx[:, :-1], targets=idx[:, 1:]))
        theirs = float(hf_snapshot(input_ids=idx, labels=idx).loss)
    assert abs(result["mean_loss_nats"] - training) < 1e-5
    assert abs(result["mean_loss_nats"] - theirs) < 1e-5


def test_every_position_is_scored_by_one_forward(default_model):
    gpt, tok, _ = default_model
    calls = []
    handle = gpt.transformer.h[0].register_forward_hook(lambda m, args, out: calls.append(out.shape))
    try:
        result = score_text(gpt, tok, TEXT)
    finally:
        handle.remove()
    assert calls == [torch.Size([1, result["window"]["count"], gpt.config.n_embd])]


def test_last_position_logits_equal_the_session_logits_for_the_text_as_prompt(default_model, snapshot_model):
    for (gpt, tok, _), text in ((default_model, TEXT), (snapshot_model, SNAPSHOT_TEXT)):
        result = score_text(gpt, tok, text)
        session = DecodingSession(gpt, tok)
        session.reset(text)
        assert session.ids == [t["id"] for t in result["tokens"]]
        assert torch.allclose(result["next_logits"], session.logits, atol=1e-5, rtol=0)
        probs = session.logits.softmax(-1)
        assert [i for i, _, _ in result["next_top"]] == probs.topk(5).indices.tolist()


def test_ranks_surprisals_and_top_lists_agree_with_the_probabilities(default_model):
    gpt, tok, _ = default_model
    text = "<|endoftext|>KING HENRY:\nOnce more unto the breach, dear friends, once more;"
    result = score_text(gpt, tok, text, top_n=7)
    ids = tok.encode(text, allowed_special="all")
    assert ids[0] == tok.eot_token  # special tokens are read as the session reads them
    with torch.no_grad():
        probs = gpt(torch.tensor([ids]))[0].float().softmax(-1)  # (T, V): row t predicts t + 1
    first, *rest = result["tokens"]
    assert first == {"index": 0, "id": ids[0], "text": "<|endoftext|>", "prob": None, "rank": None,
                     "surprisal_nats": None, "surprisal_bits": None, "entropy_bits": None,
                     "top": None}
    assert NO_PREDICTION in result["note"]
    assert [t["id"] for t in rest] == ids[1:] and [t["index"] for t in rest] == list(range(1, len(ids)))
    for entry in rest:
        row = probs[entry["index"] - 1]
        assert entry["prob"] == pytest.approx(float(row[entry["id"]]), rel=1e-4)
        assert entry["rank"] == 1 + int((row > row[entry["id"]]).sum())
        assert entry["surprisal_nats"] == pytest.approx(-math.log(entry["prob"]), abs=1e-9)
        assert entry["surprisal_bits"] == pytest.approx(entry["surprisal_nats"] / math.log(2), abs=1e-9)
        top_probs = [p for _, _, p in entry["top"]]
        assert len(entry["top"]) == 7 and top_probs == sorted(top_probs, reverse=True)
        assert [i for i, _, _ in entry["top"]] == row.topk(7).indices.tolist()
        if entry["rank"] <= 7:  # the true token sits in the top list at its rank
            assert entry["top"][entry["rank"] - 1][0] == entry["id"]
            assert entry["top"][entry["rank"] - 1][2] == pytest.approx(entry["prob"], rel=1e-6)
        else:
            assert entry["prob"] <= top_probs[-1]
        assert entry["text"] == tok.decode([entry["id"]])
    assert any(e["rank"] == 1 for e in rest) and any(e["rank"] > 7 for e in rest)
    total = sum(e["surprisal_nats"] for e in rest)
    assert result["total_nats"] == pytest.approx(total, rel=1e-9)
    assert result["mean_loss_nats"] == pytest.approx(total / len(rest), rel=1e-9)
    assert result["predicted_text"] == tok.decode(ids[1:])
    assert result["nats_per_char"] == pytest.approx(total / len(tok.decode(ids[1:])), rel=1e-9)
    assert result["bits_per_byte"] == pytest.approx(total / math.log(2) / len(tok.decode(ids[1:]).encode()),
                                                    rel=1e-9)


def test_a_text_longer_than_the_context_is_scored_over_its_last_window(bpe_tokenizer):
    gpt = random_gpt(tiny_config(), seed=3, scale=5.0)
    text = CORPUS * 2
    ids = bpe_tokenizer.encode(text, allowed_special="all")
    assert len(ids) > 4 * gpt.config.block_size
    result = score_text(gpt, bpe_tokenizer, text)
    start = len(ids) - gpt.config.block_size
    assert result["n_tokens"] == len(ids)
    assert result["window"] == {"start": start, "count": 64, "cut": True, "block_size": 64}
    assert "only its last 64 are scored" in result["note"]
    tokens = result["tokens"]
    assert [t["index"] for t in tokens] == list(range(start, len(ids)))
    assert tokens[0]["prob"] is None and all(t["prob"] is not None for t in tokens[1:])
    window = torch.tensor([ids[start:]])
    with torch.no_grad():
        training = float(gpt(window[:, :-1], targets=window[:, 1:]))
    assert abs(result["mean_loss_nats"] - training) < 1e-5
    session = DecodingSession(gpt, bpe_tokenizer)
    session.reset(text)
    assert session.ids == ids[start:]
    assert torch.allclose(result["next_logits"], session.logits, atol=1e-5, rtol=0)


def test_a_text_of_thousands_of_tokens_scores_the_default_models_window(default_model):
    gpt, tok, _ = default_model
    text = (HAMLET * 40)[:12000]
    result = score_text(gpt, tok, text)
    assert result["n_tokens"] > 2000
    assert result["window"]["count"] == gpt.config.block_size == len(result["tokens"])
    assert result["predicted"] == gpt.config.block_size - 1
    session = DecodingSession(gpt, tok)
    session.reset(text)  # cuts the text to its last 8 x 256 characters before encoding
    assert session.ids == [t["id"] for t in result["tokens"]]
    assert torch.allclose(result["next_logits"], session.logits, atol=1e-5, rtol=0)


def test_a_one_token_text_has_no_scored_prediction_but_a_next_distribution(default_model):
    gpt, tok, _ = default_model
    result = score_text(gpt, tok, "\n")
    assert len(result["tokens"]) == 1 and result["predicted"] == 0
    assert result["mean_loss_nats"] is None and result["perplexity"] is None
    assert result["nats_per_char"] is None and result["bits_per_byte"] is None
    session = DecodingSession(gpt, tok)
    session.reset("\n")
    assert torch.allclose(result["next_logits"], session.logits, atol=1e-5, rtol=0)


def test_bad_inputs_are_clear_value_errors(default_model):
    gpt, tok, _ = default_model
    with pytest.raises(ValueError, match="text is empty"):
        score_text(gpt, tok, "")
    with pytest.raises(ValueError, match="text must be a str, but is bytes"):
        score_text(gpt, tok, b"ROMEO")
    with pytest.raises(ValueError, match=r"top_n must be an integer in \[0, 4096\], but is -1"):
        score_text(gpt, tok, "ROMEO", top_n=-1)
    with pytest.raises(ValueError, match="ids is empty"):
        logit_lens(gpt, [])
    with pytest.raises(ValueError, match=r"ids must be integers in \[0, 4096\), but contain 4096"):
        logit_lens(gpt, [1, 4096])
    with pytest.raises(ValueError, match=r"token_id must be integers in \[0, 4096\)"):
        tying_facts(gpt, -1)
    gpt.train()
    try:
        with pytest.raises(ValueError, match=r"eval mode \(call gpt.eval\(\)\)"):
            score_text(gpt, tok, "ROMEO")
    finally:
        gpt.eval()


# ---- the logit lens ----

LENS_MODELS = {
    "gpt2": lambda: random_gpt(tiny_config(), seed=1, scale=5.0),
    "llama": lambda: random_gpt(llama_config(), seed=1, scale=5.0),
    "llama-untied": lambda: random_gpt(llama_config(tie_embeddings=False), seed=1, scale=5.0),
}


@pytest.mark.parametrize("arch", list(LENS_MODELS))
def test_logit_lens_last_entry_is_the_models_own_output(arch):
    gpt = LENS_MODELS[arch]()
    idx = torch.randint(0, gpt.config.vocab_size, (1, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        # the walk computes forward's own residual stream: same operations, same numbers
        streams = residual_stream(gpt, idx)
        assert len(streams) == gpt.config.n_layer + 1
        assert torch.equal(gpt.lm_head(gpt.transformer.ln_f(streams[-1])), gpt(idx))
        lens = lens_logits(gpt, idx)
        assert lens.shape == (gpt.config.n_layer + 1, gpt.config.vocab_size)
        assert torch.equal(lens[-1], gpt(idx, last_only=True)[0, -1])
        assert (lens[-1] - gpt(idx)[0, -1]).abs().max() < 1e-6
        assert not torch.allclose(lens[0], lens[-1], atol=1e-3)  # earlier layers do differ
    result = logit_lens(gpt, idx, top_n=4)
    _check_lens_entries(result, lens, gpt.config.n_layer)


def _check_lens_entries(result, lens, n_layer):
    probs = lens.softmax(-1)
    final = int(lens[-1].argmax())
    assert result["final_token"] == final
    assert [e["layer"] for e in result["layers"]] == layer_names(n_layer)
    assert layer_names(2) == ["embedding", "block 1", "block 2"]
    for entry, row, logits in zip(result["layers"], probs, lens):
        assert [i for i, _ in entry["top"]] == row.topk(len(entry["top"])).indices.tolist()
        assert entry["final_prob"] == pytest.approx(float(row[final]), rel=1e-6)
        # ranked by logits: far-off tokens' probabilities underflow to 0 and would all tie
        assert entry["final_rank"] == 1 + int((logits > logits[final]).sum())
    assert result["layers"][-1]["final_rank"] == 1
    assert result["layers"][-1]["top"][0][0] == final


def test_logit_lens_equals_transformers_hidden_states_on_a_gpt2_snapshot(snapshot_model, hf_snapshot):
    gpt, tok, _ = snapshot_model
    idx = _ids(tok, SNAPSHOT_TEXT)
    with torch.no_grad():
        hidden = hf_snapshot(idx, output_hidden_states=True).hidden_states
        head, ln_f = hf_snapshot.lm_head, hf_snapshot.transformer.ln_f
        # transformers gives each block's input, and the last block's output after ln_f
        theirs = torch.stack([head(ln_f(h[0, -1])) for h in hidden[:-1]] + [head(hidden[-1][0, -1])])
        ours = lens_logits(gpt, idx)
    assert (ours - theirs).abs().max() < 1e-4
    _check_lens_entries(logit_lens(gpt, idx[0].tolist()), ours, gpt.config.n_layer)


def test_logit_lens_on_the_default_model_reaches_its_prediction(default_model):
    gpt, tok, _ = default_model
    ids = tok.encode("KING HENRY:\nOnce more unto the")
    result = logit_lens(gpt, ids)
    with torch.no_grad():
        assert result["final_token"] == int(gpt(torch.tensor([ids]), last_only=True)[0, -1].argmax())
    assert result["position"] == len(ids) - 1 and result["window"]["cut"] is False
    _check_lens_entries(result, lens_logits(gpt, torch.tensor([ids])), gpt.config.n_layer)


@pytest.mark.smollm2
def test_logit_lens_on_smollm2(smollm2):
    gpt, tok, _ = smollm2
    ids = tok.encode("The capital of France is")
    idx = torch.tensor([ids])
    lens = lens_logits(gpt, idx)
    with torch.no_grad():
        assert torch.equal(lens[-1], gpt(idx, last_only=True)[0, -1])
    result = logit_lens(gpt, ids)
    assert tok.decode([result["final_token"]]) == " Paris"
    assert len(result["layers"]) == 31
    _check_lens_entries(result, lens, gpt.config.n_layer)


@pytest.fixture(scope="module")
def smollm2():
    require_smollm2_file()
    return load_model("smollm2")


# ---- weight tying ----

def test_tied_model_has_one_tensor_in_one_storage_serving_both_roles(default_model):
    gpt, tok, _ = default_model
    V, C = gpt.config.vocab_size, gpt.config.n_embd
    token = tok.encode(" love")[0]
    facts = tying_facts(gpt, token)
    assert facts["tied"] and facts["same_storage"] and facts["storages"] == 1
    assert facts["wte_shape"] == facts["lm_head_shape"] == [V, C]
    assert facts["params_saved"] == V * C == 4096 * 256
    assert facts["rows_equal"] and facts["embedding_row"] == facts["head_row"]
    assert facts["embedding_row"] == gpt.transformer.wte.weight[token, :8].tolist()
    assert facts["num_params"] == sum(p.numel() for p in gpt.parameters())
    assert "Tied" in facts["statement"] and f"({V}, {C})" in facts["statement"]
    # the row that embeds the token is the row that scores it: logit = final hidden . row
    ids = torch.tensor([tok.encode("ROMEO:\nI")])
    with torch.no_grad():
        h = gpt.transformer.ln_f(residual_stream(gpt, ids, every_layer=False)[-1])[0, -1]  # (C,)
        logit = gpt(ids, last_only=True)[0, -1, token]
        assert float(h @ gpt.transformer.wte.weight[token]) == pytest.approx(float(logit), abs=1e-5)


def test_untied_model_has_two_storages_and_different_rows():
    gpt = random_gpt(tiny_config(tie_embeddings=False))
    facts = tying_facts(gpt, 7, first=4)
    assert not facts["tied"] and not facts["same_storage"] and facts["storages"] == 2
    assert facts["params_saved"] == 0 and not facts["rows_equal"]
    assert len(facts["embedding_row"]) == 4 and facts["embedding_row"] != facts["head_row"]
    assert facts["statement"].startswith("Not tied") and "two storages" in facts["statement"]
    tied = random_gpt(tiny_config())
    assert facts["num_params"] - tying_facts(tied, 7)["num_params"] == 320 * 32


def test_a_directory_without_a_memory_record_reads_as_none(tmp_path):
    assert read_run_memory(tmp_path) is None
    (tmp_path / "memory.json").write_text("{not json")
    assert read_run_memory(tmp_path) is None


def test_each_scored_position_carries_the_entropy_of_its_prediction_in_bits(bpe_tokenizer):
    import math

    from model.inspect import score_text
    from testkit.models import random_gpt, tiny_config
    gpt = random_gpt(tiny_config(), seed=1, scale=3.0)
    text = "ROMEO: But, soft!"
    r = score_text(gpt, bpe_tokenizer, text)
    ids = bpe_tokenizer.encode(text)
    probs = gpt(torch.tensor([ids]))[0].float().softmax(-1).double()  # (T, V)
    for k, t in enumerate(r["tokens"][1:]):
        p = probs[k]
        want = float(-(p * p.log2()).sum())
        assert math.isclose(t["entropy_bits"], want, rel_tol=1e-5), k

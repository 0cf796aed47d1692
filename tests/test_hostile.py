"""Hostile input: thousands of generated bad values through the public API, a bystander whose
session must not notice, and checkpoints built to fail (or to attack) loading.

The server is a real one on 127.0.0.1 (launched in-process) serving a tiny random checkpoint.
Values travel through gradio_client, as a script would send them, and through `RawSession`,
which speaks the same queue protocol (POST queue/join, then the queue/data event stream) with
Python's permissive JSON, as curl or any other client could: NaN, infinities and lone
surrogates can only arrive that way (gradio_client's JSON encoder refuses them).

HOSTILE_EXAMPLES (default 2000) sets the number of generated inputs; benchmarks/bench_fuzz.py
runs many more.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import shutil
import threading
import traceback
import types
from pathlib import Path

import gradio as gr
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import app
from model.checkpoint import CONFIG_FILE, WEIGHTS_FILE
from model.loading import load_model
from model.sampling import SamplingSettings
from model.session import DecodingSession
from testkit.hostile import INF, NAN, Fuzz, check, count_sent, draw_args, plausible_settings, run
from testkit.raw_client import RawSession
from testkit.server import launch
from ui.actions import Actions
from ui.api import API

EXAMPLES = int(os.environ.get("HOSTILE_EXAMPLES", "2000"))
# How the generated inputs are spread over the endpoints (fractions of EXAMPLES).
SHARE = {"reset": 0.12, "distribution": 0.12, "step": 0.12, "pick": 0.12, "generate": 0.10,
         "score": 0.06, "lens": 0.05, "sequence": 0.14,  # a sequence example sends 3 calls, so ~2,000 in all
         "sample": 0.02, "continuations": 0.01, "open_continuation": 0.01,  # many futures
         "beam": 0.03, "beam_open": 0.01, "goto": 0.02, "load_tree": 0.02, "compare_models": 0.03,
         "blocks": 0.02}


def examples(name: str) -> settings:
    n = max(1, int(EXAMPLES * SHARE[name] / (3 if name == "sequence" else 1)))
    # database=None: nothing is written into the repository; derandomize: the same inputs on
    # every run, so a failure here is a failure on the next run too.
    return settings(max_examples=n, deadline=None, database=None, derandomize=True,
                    suppress_health_check=list(HealthCheck), print_blob=True)


@contextlib.contextmanager
def hostile_server(checkpoint):
    """A real server on 127.0.0.1 with an attacker's two clients and a bystander: a session
    in progress that nothing sent to the others may touch. Every trace a handler prints is an
    unexpected failure: they are recorded in `traces`."""
    from gradio_client import Client

    traces: list[str] = []
    real_print_exc, real_print_exception = traceback.print_exc, traceback.print_exception

    def record_exc(*args, **kwargs):
        traces.append(traceback.format_exc())
        real_print_exc(*args, **kwargs)

    def record_exception(*args, **kwargs):
        traces.append("".join(traceback.format_exception(*args[:3])) if args else "?")
        real_print_exception(*args, **kwargs)

    traceback.print_exc, traceback.print_exception = record_exc, record_exception
    ckpt = str(checkpoint)
    demo = app.build_demo([ckpt])
    url = launch(demo)
    srv = types.SimpleNamespace(url=url, model=ckpt, demo=demo, traces=traces)
    srv.raw = RawSession(url)  # the attacker, any JSON
    srv.client = Client(url, verbose=False)  # the attacker, through gradio_client
    srv.bystander = Client(url, verbose=False)
    srv.vocab = demo.registry.get(ckpt).gpt.config.vocab_size
    srv.bystander.predict("To be, or not", 11, api_name="/reset")
    srv.bystander.submit(5, {"temperature": 0.8, "top_k": 50}, api_name="/generate").result()
    srv.bystander_before = srv.bystander.predict(api_name="/export")
    srv.raw.call("reset", "To be", 1, "", False)
    srv.client.predict("To be", 1, api_name="/reset")
    try:
        yield srv
    finally:
        traceback.print_exc, traceback.print_exception = real_print_exc, real_print_exception
        for c in (srv.client, srv.bystander):
            c.close()
        srv.raw.close()
        demo.close()


@pytest.fixture(scope="module")
def server(tiny_checkpoint):
    """One server for the generated inputs below. When they are done, whatever order they ran
    in: no handler failed unexpectedly, and if every one of them ran, they sent what they were
    meant to."""
    with hostile_server(tiny_checkpoint) as srv:
        yield srv
        assert not srv.traces, "handlers failed unexpectedly:\n" + "\n".join(srv.traces[:3])
        if len(Fuzz.tests_run) == len(SHARE):
            sent = getattr(srv, "sent", 0)
            assert sent >= EXAMPLES * 0.95, f"only {sent} generated inputs were sent"


@pytest.mark.fuzz
@given(data=st.data())
@examples("reset")
def test_reset_survives_generated_hostile_input(server, data):
    Fuzz.tests_run.add("reset")
    run(server, "reset", *draw_args(data, "reset", server))


@pytest.mark.fuzz
@given(data=st.data())
@examples("distribution")
def test_distribution_survives_generated_hostile_input(server, data):
    Fuzz.tests_run.add("distribution")
    run(server, "distribution", *draw_args(data, "distribution", server))


@pytest.mark.fuzz
@given(data=st.data())
@examples("step")
def test_step_survives_generated_hostile_input(server, data):
    Fuzz.tests_run.add("step")
    run(server, "step", *draw_args(data, "step", server))


@pytest.mark.fuzz
@given(data=st.data())
@examples("pick")
def test_pick_survives_generated_hostile_input(server, data):
    Fuzz.tests_run.add("pick")
    run(server, "pick", *draw_args(data, "pick", server))


@pytest.mark.fuzz
@given(data=st.data())
@examples("generate")
def test_generate_survives_generated_hostile_input(server, data):
    Fuzz.tests_run.add("generate")
    run(server, "generate", *draw_args(data, "generate", server))


@pytest.mark.fuzz
@given(data=st.data())
@examples("score")
def test_score_survives_generated_hostile_input(server, data):
    Fuzz.tests_run.add("score")
    run(server, "score", *draw_args(data, "score", server))


@pytest.mark.fuzz
@given(data=st.data())
@examples("lens")
def test_lens_survives_generated_hostile_input(server, data):
    Fuzz.tests_run.add("lens")
    run(server, "lens", *draw_args(data, "lens", server))


@pytest.mark.fuzz
@given(data=st.data())
@examples("sample")
def test_sample_survives_generated_hostile_input(server, data):
    Fuzz.tests_run.add("sample")
    run(server, "sample", *draw_args(data, "sample", server))


@pytest.mark.fuzz
@given(data=st.data())
@examples("continuations")
def test_continuations_survive_generated_hostile_input(server, data):
    Fuzz.tests_run.add("continuations")
    run(server, "continuations", *draw_args(data, "continuations", server))


@pytest.mark.fuzz
@given(data=st.data())
@examples("open_continuation")
def test_open_continuation_survives_generated_hostile_input(server, data):
    Fuzz.tests_run.add("open_continuation")
    run(server, "open_continuation", *draw_args(data, "open_continuation", server))


@pytest.mark.fuzz
@given(data=st.data())
@examples("beam")
def test_beam_survives_generated_hostile_input(server, data):
    Fuzz.tests_run.add("beam")
    run(server, "beam", *draw_args(data, "beam", server))


@pytest.mark.fuzz
@given(data=st.data())
@examples("beam_open")
def test_beam_open_survives_generated_hostile_input(server, data):
    """Opening a ranked beam, after a search that succeeds half of the time."""
    Fuzz.tests_run.add("beam_open")
    if data.draw(st.booleans(), "search first"):
        run(server, "beam", data.draw(st.integers(1, 6), "n"), {"num_beams": data.draw(st.integers(1, 4))})
    run(server, "beam_open", *draw_args(data, "beam_open", server))


@pytest.mark.fuzz
@given(data=st.data())
@examples("goto")
def test_goto_survives_generated_hostile_input(server, data):
    Fuzz.tests_run.add("goto")
    run(server, "goto", *draw_args(data, "goto", server))


@pytest.mark.fuzz
@given(data=st.data())
@examples("load_tree")
def test_load_tree_survives_generated_hostile_input(server, data):
    Fuzz.tests_run.add("load_tree")
    run(server, "load_tree", *draw_args(data, "load_tree", server))


@pytest.mark.fuzz
@given(data=st.data())
@examples("compare_models")
def test_compare_models_survives_generated_hostile_input(server, data):
    Fuzz.tests_run.add("compare_models")
    run(server, "compare_models", *draw_args(data, "compare_models", server))


@pytest.mark.fuzz
@given(data=st.data())
@examples("blocks")
def test_blocks_survive_generated_hostile_input(server, data):
    Fuzz.tests_run.add("blocks")
    run(server, "blocks", *draw_args(data, "blocks", server))


CALLS = st.sampled_from(["reset", "distribution", "step", "pick", "undo", "generate", "export",
                         "score", "lens", "beam", "beam_open", "tree", "goto", "compare_models", "blocks"])


@pytest.mark.fuzz
@given(data=st.data())
@examples("sequence")
def test_calls_in_any_order_from_a_fresh_session_get_clear_answers(server, data):
    """A new session (no reset yet) calling anything in any order: step before reset, undo on
    an empty history, export of nothing."""
    Fuzz.tests_run.add("sequence")
    fresh = RawSession(server.url)
    try:
        for name in data.draw(st.lists(CALLS, min_size=3, max_size=3), "calls"):
            args = {"reset": lambda: (data.draw(st.sampled_from(["", "To be"])), 0, "", False),
                    "distribution": lambda: (data.draw(plausible_settings), 5),
                    "step": lambda: (data.draw(plausible_settings),),
                    "pick": lambda: (data.draw(st.integers(0, server.vocab - 1)), {}),
                    "generate": lambda: (data.draw(st.integers(1, 3)), data.draw(plausible_settings)),
                    "score": lambda: (data.draw(st.sampled_from(["To be, or not", "x", "🙂 ok"])),),
                    "lens": lambda: (data.draw(st.integers(1, 8)),),
                    "beam": lambda: (data.draw(st.integers(1, 4)), {"num_beams": data.draw(st.integers(1, 4))}),
                    "beam_open": lambda: (data.draw(st.integers(0, 3)), {}),
                    "goto": lambda: (data.draw(st.integers(0, 3)),),
                    "blocks": lambda: ({"depth": data.draw(st.integers(1, 3))}, data.draw(plausible_settings)),
                    "compare_models": lambda: (server.model, server.model,
                                               data.draw(st.sampled_from(["", "To be, or not"])), "auto"),
                    "undo": tuple, "export": tuple, "tree": tuple}[name]()
            count_sent(server)
            reply = fresh.call(name, *args)
            check(server, name, reply, args)
    finally:
        fresh.close()


def test_calls_before_reset_name_what_to_do_and_undo_on_empty_history_is_a_no_op(server):
    fresh = RawSession(server.url)
    try:
        for name, args in [("step", ({},)), ("pick", (1, {})), ("undo", ()), ("generate", (2, {})),
                           ("export", ()), ("distribution", ({}, 5)), ("lens", (5,)), ("tree", ()),
                           ("goto", (0,)), ("load_tree", ({},)), ("blocks", ({}, {}))]:
            reply = fresh.call(name, *args)
            assert not reply.ok and "No model is loaded" in reply.error, (name, reply)
        scored = fresh.call("score", "To be, or not")  # scoring needs no session: the default model
        assert scored.ok and scored.data["model"] == server.model, scored
        assert fresh.call("reset", "", 0, "", False).ok
        undo = fresh.call("undo")
        assert undo.ok and undo.data["undone"] is None and undo.data["steps"] == 0
    finally:
        fresh.close()


def test_many_concurrent_hostile_callers_do_not_disturb_each_other(server):
    """Eight raw sessions hammer bad and good input at once; each one's own text stays its
    own (each replays exactly), and no handler fails unexpectedly."""
    gpt, tokenizer, _ = load_model(server.model)
    results: dict[int, tuple[str, str]] = {}

    def caller(i: int):
        s = RawSession(server.url)
        try:
            s.call("reset", f"Line {i}", i, "", False)
            for j in range(6):
                s.call("step", {"temperature": NAN} if j % 2 else {"temperature": 0.9, "top_k": 20})
                s.call("pick", INF, {})
            text = s.call("export").data["text"]
            replay = DecodingSession(gpt, tokenizer, seed=i, max_prompt_chars=app.LIMITS.prompt_chars)
            replay.reset(f"Line {i}", seed=i)
            for _ in range(3):
                replay.step(SamplingSettings(temperature=0.9, top_k=20))
            results[i] = (text, replay.text)
        finally:
            s.close()

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert len(results) == 8
    for i, (got, want) in results.items():
        assert got == want, f"caller {i}"
    assert not server.traces


BARRAGE = max(20, EXAMPLES // 10)  # generated inputs sent past the bystander


@pytest.mark.fuzz
def test_the_bystander_and_the_server_are_unharmed_by_a_hostile_barrage(tiny_checkpoint):
    """On a server of its own: after a barrage of generated hostile input on every endpoint,
    the server answers normally, no handler failed unexpectedly, and the bystander's session
    is exactly as it was."""
    with hostile_server(tiny_checkpoint) as server:
        sent = []
        endpoints = sorted(set(SHARE) - {"sequence"})

        def barrage(name):
            # Each endpoint its share of the barrage, in turn: one random pick per example
            # left some of the 16 out.
            @given(data=st.data())
            @settings(max_examples=max(2, BARRAGE // len(endpoints)), deadline=None, database=None,
                      derandomize=True, suppress_health_check=list(HealthCheck))
            def attack(data):
                run(server, name, *draw_args(data, name, server))
                sent.append(name)
            attack()

        for name in endpoints:
            barrage(name)
        assert len(sent) >= 0.9 * BARRAGE and set(sent) == set(endpoints), sent
        sb = server.bystander
        assert sb.predict(api_name="/export") == server.bystander_before
        # Its next step is the one a replay of its own actions gives: neither its session nor
        # the shared model was touched.
        step = sb.predict({"temperature": 0.7}, api_name="/step")
        gpt, tokenizer, _ = load_model(server.model)
        replay = DecodingSession(gpt, tokenizer, seed=11, max_prompt_chars=app.LIMITS.prompt_chars)
        replay.reset("To be, or not", seed=11)
        for _ in range(5):
            replay.step(SamplingSettings(temperature=0.8, top_k=50))
        assert step["token"] == replay.step(SamplingSettings(temperature=0.7)).token
        assert step["text"] == replay.text
        # A newcomer gets the ordinary service.
        from gradio_client import Client
        newcomer = Client(server.url, verbose=False)
        try:
            assert newcomer.predict("To be", 3, api_name="/reset")["seed"] == 3
            assert newcomer.predict({"temperature": 0}, api_name="/step")["how"] == "greedy"
        finally:
            newcomer.close()
        assert not server.traces, "handlers failed unexpectedly:\n" + "\n".join(server.traces[:3])


# ---- checkpoints built to fail, or to attack ----

def copy_checkpoint(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_truncated_safetensors_is_refused_naming_the_file(tiny_checkpoint, tmp_path):
    ckpt = copy_checkpoint(tiny_checkpoint, tmp_path / "ckpt")
    weights = ckpt / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"model\.safetensors is not a readable safetensors file.*truncated"):
        load_model(ckpt)


def test_config_that_does_not_match_the_weights_is_refused_naming_the_file(tiny_checkpoint, tmp_path):
    ckpt = copy_checkpoint(tiny_checkpoint, tmp_path / "ckpt")
    meta = json.loads((ckpt / CONFIG_FILE).read_text())
    meta["gpt"]["n_embd"] *= 2
    (ckpt / CONFIG_FILE).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"model\.safetensors: the weights do not match config\.json"):
        load_model(ckpt)


class _WritesMarker:
    """Unpickling this runs code: it creates the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').close()",)


def gpt2_snapshot_shaped(directory: Path) -> Path:
    """config.json as a Hugging Face GPT-2 snapshot has it; the weights are up to the test."""
    directory.mkdir()
    (directory / CONFIG_FILE).write_text(json.dumps({
        "model_type": "gpt2", "vocab_size": 320, "n_positions": 64, "n_embd": 32, "n_layer": 2,
        "n_head": 4, "activation_function": "gelu_new", "eos_token_id": 319}))
    return directory


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_pickle_that_runs_code_is_refused_and_never_runs(tmp_path, writer):
    marker = tmp_path / "pwned"
    snapshot = gpt2_snapshot_shaped(tmp_path / "snapshot")
    weights = snapshot / "pytorch_model.bin"
    payload = {"transformer.wte.weight": torch.zeros(320, 32), "payload": _WritesMarker(marker)}
    if writer == "torch.save":  # the zip format torch.save writes
        torch.save(payload, weights)
    else:  # a bare pickle, as very old checkpoints are
        weights.write_bytes(pickle.dumps(payload))
    with pytest.raises(ValueError, match=r"pytorch_model\.bin could not be read as plain tensors"):
        load_model(snapshot)
    assert not marker.exists(), "loading the checkpoint ran the code in its pickle"
    # The file is a real attack: unpickling it without weights_only does run the code.
    if writer == "torch.save":
        torch.load(weights, weights_only=False)
    else:
        pickle.loads(weights.read_bytes())
    assert marker.exists()


def test_a_hostile_checkpoint_on_the_menu_is_a_message_not_a_crash(tiny_checkpoint, tmp_path):
    """A served path whose weights are an attack: the visitor gets the loader's message and
    the marker never appears."""
    from ui.state import ModelRegistry

    marker = tmp_path / "pwned"
    snapshot = gpt2_snapshot_shaped(tmp_path / "snapshot")
    torch.save({"payload": _WritesMarker(marker)}, snapshot / "pytorch_model.bin")
    registry = ModelRegistry([str(tiny_checkpoint), str(snapshot)])
    api = API(Actions(registry))
    with pytest.raises(gr.Error, match="pytorch_model.bin could not be read as plain tensors"):
        api.reset(None, "To be", 0, str(snapshot), False)
    assert not marker.exists()

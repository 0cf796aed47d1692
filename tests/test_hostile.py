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

import json
import math
import os
import pickle
import shutil
import socket
import sys
import threading
import traceback
import types
import uuid
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

import app
from model.checkpoint import CONFIG_FILE, WEIGHTS_FILE
from model.loading import load_model
from model.sampling import SamplingSettings
from model.session import DecodingSession
from ui.settings import SETTING_NAMES

EXAMPLES = int(os.environ.get("HOSTILE_EXAMPLES", "2000"))
# How the generated inputs are spread over the endpoints (fractions of EXAMPLES).
SHARE = {"reset": 0.17, "distribution": 0.2, "step": 0.2, "pick": 0.15, "generate": 0.13,
         "sequence": 0.15}  # a sequence example sends 3 calls, so ~2,000 in all
MAX_MESSAGE = 2_000_000  # an error message may quote the bad value, but stays bounded


def examples(name: str) -> settings:
    n = max(1, int(EXAMPLES * SHARE[name] / (3 if name == "sequence" else 1)))
    # database=None: nothing is written into the repository; derandomize: the same inputs on
    # every run, so a failure here is a failure on the next run too.
    return settings(max_examples=n, deadline=None, database=None, derandomize=True,
                    suppress_health_check=list(HealthCheck), print_blob=True)


# ---- a client that can send what gradio_client cannot ----

@dataclass
class Reply:
    ok: bool
    data: object = None  # the endpoint's JSON result (for /reset: its second output)
    error: str | None = None


class RawSession:
    """One session on the server's queue: POST /gradio_api/queue/join, then read the event
    stream /gradio_api/queue/data until this event completes. The JSON body is written by
    json.dumps as is: NaN, Infinity and \\ud800 escapes reach the server."""

    def __init__(self, url: str, timeout: float = 120.0, heartbeat: bool = False, config=None):
        self.url = url.rstrip("/")
        self.session_hash = uuid.uuid4().hex
        self.http = httpx.Client(timeout=timeout)
        config = config or self.http.get(f"{self.url}/config").json()
        self.deps = {d["api_name"]: d for d in config["dependencies"] if d.get("api_name")}
        self.state_ids = {c["id"] for c in config["components"] if c.get("type") == "state"}
        self._beat = None
        if heartbeat:  # as a browser tab does: the server frees the session when it closes
            self._beat = httpx.Client(timeout=httpx.Timeout(10, read=None))
            threading.Thread(target=self._heartbeat, daemon=True).start()

    def _heartbeat(self):
        try:
            with self._beat.stream("GET", f"{self.url}/gradio_api/heartbeat/{self.session_hash}") as r:
                for _ in r.iter_lines():
                    pass
        except (httpx.HTTPError, RuntimeError):
            pass  # closed by close(), or the server went away

    def close(self):
        self.http.close()
        if self._beat is not None:
            self._beat.close()

    def call(self, api_name: str, *args) -> Reply:
        dep = self.deps[api_name]
        values = iter(args)
        # gr.State inputs are held by the server: clients send null in their place.
        data = [None if i in self.state_ids else next(values, None) for i in dep["inputs"]]
        return self.join(dep["id"], data)

    def join(self, fn_index: int, data: list) -> Reply:
        body = json.dumps({"data": data, "fn_index": fn_index, "session_hash": self.session_hash,
                           "event_data": None, "trigger_id": None})
        r = self.http.post(f"{self.url}/gradio_api/queue/join", content=body,
                           headers={"content-type": "application/json"})
        if r.status_code != 200:
            return Reply(False, error=f"HTTP {r.status_code}: {r.text[:500]}")
        event = r.json()["event_id"]
        with self.http.stream("GET", f"{self.url}/gradio_api/queue/data",
                              params={"session_hash": self.session_hash}) as stream:
            for line in sse_lines(stream):
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                if msg.get("event_id") != event:
                    continue
                if msg.get("msg") == "process_completed":
                    out = msg.get("output") or {}
                    if not msg.get("success"):
                        return Reply(False, error=out.get("error"))
                    return Reply(True, data=(out.get("data") or [None])[-1])
                if msg.get("msg") == "unexpected_error":
                    return Reply(False, error=msg.get("message"))
        return Reply(False, error=None)  # the stream ended without completing this event


def sse_lines(response):
    """An event stream's lines. Only \n ends one: httpx's iter_lines also splits at U+0085 and
    U+2028, which a prompt may contain and the server sends unescaped inside the JSON."""
    buffer = b""
    for chunk in response.iter_bytes():
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            yield line.decode("utf-8").rstrip("\r")
    if buffer:
        yield buffer.decode("utf-8")


def strict_json(value) -> bool:
    """Whether gradio_client (httpx: allow_nan=False, UTF-8) can send the value."""
    try:
        json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")
        return True
    except (ValueError, UnicodeEncodeError):
        return False


# ---- generated values ----

NAN, INF = float("nan"), float("inf")
NASTY_TEXT = [
    "", " ", "\x00", "\x00" * 64, "\r\n\t\x1b[31m\x7f\x08", "\ud800", "a\udfffb", "\ud83d\ude00x\ud83d",
    "\u202e\u200b\ufeff\u0301", "<script>alert(1)</script>", "../../../../etc/passwd", "/etc/shadow",
    "<|endoftext|>", "<|endoftext|>" * 40, "<|im_start|>user\nhi<|im_end|>", "🙂" * 300,
    "%s%n{0}{{}}\\", "\n" * 5000, "x" * 1_000_000, "To be, or not to be",
    "line\x85next\u2028and\u2029", "\x85",
]
scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-2**80, max_value=2**80),
    st.floats(),  # NaN, ±inf, subnormals, -0.0
    st.sampled_from([NAN, INF, -INF, 0, -0.0, 5e-324, 1e-320, 1e308, -1e308, 2**31, 2**53 + 1,
                     2**63, 2**64, -1, 0.5, 1.5, 1e-9]),
    st.sampled_from(NASTY_TEXT),
    st.text(max_size=40),
    st.text(st.characters(categories=["Cs", "Cc", "Cf", "Co"]), max_size=8),  # surrogates, controls
)
junk = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)
texts = st.one_of(st.sampled_from(NASTY_TEXT), st.text(max_size=80),
                  st.text(st.characters(categories=["Cs", "Cc", "Zs", "So"]), max_size=30))
# Settings a student could set (so the success path is exercised) ...
plausible_settings = st.fixed_dictionaries({}, optional={
    "temperature": st.floats(0, 3), "top_k": st.integers(0, 400), "top_p": st.floats(0, 1),
    "min_p": st.floats(0, 1), "typical_p": st.floats(0, 1), "repetition_penalty": st.floats(0.1, 3),
    "presence_penalty": st.floats(-3, 3), "frequency_penalty": st.floats(-3, 3),
    "no_repeat_ngram_size": st.integers(0, 8), "temperature_last": st.booleans()})
# ... and everything else: known names with hostile values, unknown names, not a dict at all.
hostile_settings = st.one_of(
    plausible_settings,
    st.dictionaries(st.sampled_from(SETTING_NAMES + ("bogus", "", "__class__")), scalars, max_size=4),
    junk,
)
counts = st.one_of(st.integers(1, 6), st.integers(-5, 10_000), scalars, junk)


# ---- the server, the attacker's sessions and a bystander ----

class Fuzz:
    """What this module's tests have sent so far (the last test checks the total)."""
    sent = 0
    tests_run: set[str] = set()


@pytest.fixture(scope="module")
def server(tiny_checkpoint):
    from gradio_client import Client

    # Every trace a handler prints is an unexpected failure: record them.
    traces: list[str] = []
    real_print_exc, real_print_exception = traceback.print_exc, traceback.print_exception

    def record_exc(*args, **kwargs):
        traces.append(traceback.format_exc())
        real_print_exc(*args, **kwargs)

    def record_exception(*args, **kwargs):
        traces.append("".join(traceback.format_exception(*args[:3])) if args else "?")
        real_print_exception(*args, **kwargs)

    traceback.print_exc, traceback.print_exception = record_exc, record_exception
    ckpt = str(tiny_checkpoint)
    demo = app.build_demo([ckpt])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                ssr_mode=False, quiet=True)
    url = f"http://127.0.0.1:{port}/"
    srv = types.SimpleNamespace(url=url, model=ckpt, demo=demo, traces=traces)
    srv.raw = RawSession(url)  # the attacker, any JSON
    srv.client = Client(url, verbose=False)  # the attacker, through gradio_client
    srv.bystander = Client(url, verbose=False)
    srv.vocab = demo.registry.get(ckpt).gpt.config.vocab_size
    # The bystander: a session in progress that nothing sent to the others may touch.
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


def send(server, name: str, *args) -> Reply:
    """One call: every fourth through gradio_client (when it can carry the values), the rest
    raw. Both reach the same queue; gradio_client waits in 50 ms polls (about 100 ms a call
    here, against 15 ms raw), which would make 2,000 inputs take minutes."""
    Fuzz.sent += 1
    if Fuzz.sent % 4 == 0 and strict_json(list(args)):
        try:
            if name == "generate":
                data = server.client.submit(*args, api_name="/generate").result(timeout=120)
            else:
                data = server.client.predict(*args, api_name=f"/{name}")
        except Exception as e:  # gradio_client raises the server's message as AppError
            return Reply(False, error=str(e) if "AppError" in type(e).__name__ else f"{type(e).__name__}: {e}")
        if name == "reset" and isinstance(data, (list, tuple)):
            data = data[-1]
        return Reply(True, data=data)
    return server.raw.call(name, *args)


def check(server, name: str, reply: Reply, args) -> None:
    """A clear error, or a result that makes sense."""
    where = f"/{name} with {args!r:.300}"
    if not reply.ok:
        assert isinstance(reply.error, str) and reply.error.strip(), f"{where}: error without a message"
        assert len(reply.error) >= 10 and "Traceback" not in reply.error, f"{where}: unclear error {reply.error!r:.300}"
        assert len(reply.error) <= MAX_MESSAGE, f"{where}: a {len(reply.error)}-character error"
        return
    d = reply.data
    assert isinstance(d, dict), f"{where}: result {d!r:.200}"
    if name == "reset":
        assert isinstance(d["prompt_tokens"], list) and d["prompt_tokens"], where
        assert d["model"] == server.model and isinstance(d["text"], str), where
    elif name in ("step", "pick", "generate"):
        assert 0 <= d["token"] < server.vocab and 0 < d["steps"] <= app.MAX_STEPS, where
        assert 0.0 <= d["raw_prob"] <= 1.0 and math.isfinite(d["prob"]), where
    elif name == "distribution":
        assert 1 <= d["kept"] <= server.vocab and math.isfinite(d["entropy_bits"]), where
        assert all(0.0 <= t["prob"] <= 1.0 for t in d["tokens"]), where
    elif name == "undo":
        assert d["steps"] >= 0, where
    elif name == "export":
        assert isinstance(d["steps"], list), where


def keep_room(server, reply: Reply) -> None:
    """Start the attacker's sessions over before they reach MAX_STEPS, so the fuzzing keeps
    reaching the model instead of the (correct) 'press Reset' error."""
    steps = reply.data.get("steps") if reply.ok and isinstance(reply.data, dict) else None
    if isinstance(steps, int) and steps > app.MAX_STEPS - 50:  # /export's "steps" is a list
        server.client.predict("To be", 1, api_name="/reset")
        server.raw.call("reset", "To be", 1, "", False)


def run(server, name, *args):
    reply = send(server, name, *args)
    check(server, name, reply, args)
    keep_room(server, reply)
    return reply


# ---- the generated inputs, endpoint by endpoint ----

def model_names(server):
    return st.one_of(st.sampled_from(["", None, server.model, server.model + "/", "smollm2",
                                      "/", "/etc/passwd", "..", "checkpoints/shakespeare"]), texts, junk)


def draw_args(data, name: str, server) -> tuple:
    """Arguments for one call of /name, drawn from the hostile strategies (also used by
    benchmarks/bench_fuzz.py)."""
    if name == "reset":
        return (data.draw(st.one_of(texts, junk), "prompt"),
                data.draw(st.one_of(st.integers(0, 2**63 - 1), scalars, junk), "seed"),
                data.draw(model_names(server), "model"),
                data.draw(st.one_of(st.booleans(), scalars), "chat"))
    if name == "distribution":
        return (data.draw(hostile_settings, "settings"),
                data.draw(st.one_of(st.integers(1, 50), counts), "top_n"))
    if name == "step":
        return (data.draw(hostile_settings, "settings"),)
    if name == "pick":
        token = st.one_of(st.integers(0, server.vocab - 1), st.integers(-10, 10**6),
                          st.integers(server.vocab - 2, server.vocab + 2), scalars, junk)
        return data.draw(token, "token"), data.draw(hostile_settings, "settings")
    if name == "generate":
        return data.draw(counts, "n"), data.draw(hostile_settings, "settings")
    return ()  # undo, export


@given(data=st.data())
@examples("reset")
def test_reset_survives_generated_hostile_input(server, data):
    Fuzz.tests_run.add("reset")
    run(server, "reset", *draw_args(data, "reset", server))


@given(data=st.data())
@examples("distribution")
def test_distribution_survives_generated_hostile_input(server, data):
    Fuzz.tests_run.add("distribution")
    run(server, "distribution", *draw_args(data, "distribution", server))


@given(data=st.data())
@examples("step")
def test_step_survives_generated_hostile_input(server, data):
    Fuzz.tests_run.add("step")
    run(server, "step", *draw_args(data, "step", server))


@given(data=st.data())
@examples("pick")
def test_pick_survives_generated_hostile_input(server, data):
    Fuzz.tests_run.add("pick")
    run(server, "pick", *draw_args(data, "pick", server))


@given(data=st.data())
@examples("generate")
def test_generate_survives_generated_hostile_input(server, data):
    Fuzz.tests_run.add("generate")
    run(server, "generate", *draw_args(data, "generate", server))


CALLS = st.sampled_from(["reset", "distribution", "step", "pick", "undo", "generate", "export"])


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
                    "undo": tuple, "export": tuple}[name]()
            Fuzz.sent += 1
            reply = fresh.call(name, *args)
            check(server, name, reply, args)
    finally:
        fresh.close()


def test_calls_before_reset_name_what_to_do_and_undo_on_empty_history_is_a_no_op(server):
    fresh = RawSession(server.url)
    try:
        for name, args in [("step", ({},)), ("pick", (1, {})), ("undo", ()), ("generate", (2, {})),
                           ("export", ()), ("distribution", ({}, 5))]:
            reply = fresh.call(name, *args)
            assert not reply.ok and "No model is loaded" in reply.error, (name, reply)
        assert fresh.call("reset", "", 0, "", False).ok
        undo = fresh.call("undo")
        assert undo.ok and undo.data["undone"] is None and undo.data["steps"] == 0
    finally:
        fresh.close()


def test_many_concurrent_hostile_callers_do_not_disturb_each_other(server):
    """Eight raw sessions hammer bad and good input at once; each one's own text stays its
    own (each replays exactly), and no handler fails unexpectedly."""
    gpt, tokenizer = load_model(server.model)
    results: dict[int, tuple[str, str]] = {}

    def caller(i: int):
        s = RawSession(server.url)
        try:
            s.call("reset", f"Line {i}", i, "", False)
            for j in range(6):
                s.call("step", {"temperature": NAN} if j % 2 else {"temperature": 0.9, "top_k": 20})
                s.call("pick", INF, {})
            text = s.call("export").data["text"]
            replay = DecodingSession(gpt, tokenizer, seed=i, max_prompt_chars=app.MAX_PROMPT_CHARS)
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


def test_the_bystander_and_the_server_are_unharmed(server):
    """Runs last: after everything above, the server answers normally, no handler failed
    unexpectedly, and the bystander's session is exactly as it was."""
    sb = server.bystander
    assert sb.predict(api_name="/export") == server.bystander_before
    # Its next step is the one a replay of its own actions gives: neither its session nor
    # the shared model was touched.
    step = sb.predict({"temperature": 0.7}, api_name="/step")
    gpt, tokenizer = load_model(server.model)
    replay = DecodingSession(gpt, tokenizer, seed=11, max_prompt_chars=app.MAX_PROMPT_CHARS)
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
    if len(Fuzz.tests_run) == len(SHARE):
        assert Fuzz.sent >= EXAMPLES * 0.95, f"only {Fuzz.sent} generated inputs were sent"


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
    with pytest.raises(app.gr.Error, match="pytorch_model.bin could not be read as plain tensors"):
        app.api_reset(registry, None, "To be", 0, str(snapshot), False)
    assert not marker.exists()

"""Hostile input: the strategies that generate it and the checks its answers must pass.
tests/test_hostile.py sends ~2,000 inputs with them; benchmarks/bench_fuzz.py many more.

`server` below is any object with: url, model (the served path), vocab, raw (a RawSession),
client (a gradio_client.Client); send() counts what it sent in Fuzz.sent.
"""

from __future__ import annotations

import math

from hypothesis import strategies as st

from model.chain import CHAIN_STAGES, PRESETS
from model.sampling import SETTINGS
from model.tree_io import FORMAT, HOWS
from ui.actions import Limits

from .raw_client import Reply, strict_json

SETTING_NAMES = tuple(SETTINGS)
SESSION_TOKENS = Limits().session_tokens
TREE_NODES = Limits().tree_nodes
LENS_TOP_N = Limits().lens_top_n
SAMPLE_DRAWS, CONTINUATIONS, CONTINUATION_TOKENS = (Limits().sample_draws, Limits().continuations,
                                                    Limits().continuation_tokens)
BEAMS, BEAM_TOKENS = Limits().beams, Limits().beam_tokens
BLOCK_DEPTH, BLOCK_CHILDREN, BLOCK_NODES, BLOCK_THRESHOLD, BLOCK_PATH = (
    Limits().block_depth, Limits().block_children, Limits().block_nodes, Limits().block_threshold, Limits().block_path)
MAX_MESSAGE = 2_000_000  # an error message may quote the bad value, but stays bounded


class Fuzz:
    """What has been sent so far (the last hostile test checks the total)."""
    sent = 0
    tests_run: set[str] = set()


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
CLASSIC_SETTINGS = {
    "temperature": st.floats(0, 3), "top_k": st.integers(0, 400), "top_p": st.floats(0, 1),
    "min_p": st.floats(0, 1), "typical_p": st.floats(0, 1), "repetition_penalty": st.floats(0.1, 3),
    "presence_penalty": st.floats(-3, 3), "frequency_penalty": st.floats(-3, 3),
    "no_repeat_ngram_size": st.integers(0, 8), "temperature_last": st.booleans()}
# The list settings in the forms a user would type them (model/chain.py's decoders).
stage_names = st.sampled_from(CHAIN_STAGES + ("typ_p", "top-k", "temp", "nucleus", "eta_cutoff"))
LIST_SETTINGS = {
    "samplers": st.one_of(st.sampled_from(list(PRESETS)),
                          st.text("edskypmxt", min_size=1, max_size=12),
                          st.lists(stage_names, min_size=1, max_size=8),
                          st.lists(stage_names, min_size=1, max_size=8).map(";".join)),
    "dry_sequence_breakers": st.lists(st.sampled_from(["\n", ":", "\"", "*", "ROMEO:", " the", "🙂"])
                                      | st.text(min_size=1, max_size=6), max_size=5),
    "logit_bias": st.one_of(
        st.lists(st.tuples(st.integers(0, 300), st.floats(-20, 20) | st.just(False)).map(list), max_size=6),
        st.dictionaries(st.integers(0, 300).map(str), st.floats(-20, 20) | st.just(False), max_size=4),
        st.lists(st.tuples(st.sampled_from(["the", " ROMEO", "🙂"]), st.floats(-5, 5)).map(list),
                 max_size=2)),
}


def _plausible(x) -> st.SearchStrategy:
    """Any value in the setting's control range (its table row says which), or its list form."""
    if x.name in LIST_SETTINGS:
        return LIST_SETTINGS[x.name]
    if x.kind == "bool":
        return st.booleans()
    lo, hi, _ = x.control
    return st.integers(int(lo), int(hi)) if x.kind == "int" else st.floats(lo, hi)


LAB_SETTINGS = tuple(name for name in SETTINGS if name not in CLASSIC_SETTINGS)
# A few of the newer settings at a time: all of them in one draw would be too much data.
lab_settings = st.lists(st.sampled_from(LAB_SETTINGS), max_size=4, unique=True).flatmap(
    lambda names: st.fixed_dictionaries({n: _plausible(SETTINGS[n]) for n in names}))
plausible_settings = st.tuples(st.fixed_dictionaries({}, optional=CLASSIC_SETTINGS), lab_settings).map(
    lambda pair: pair[0] | pair[1])
# ... and everything else: known names with hostile values, unknown names, not a dict at all.
hostile_settings = st.one_of(
    plausible_settings,
    st.dictionaries(st.sampled_from(SETTING_NAMES + ("bogus", "", "__class__")), scalars, max_size=4),
    junk,
)
counts = st.one_of(st.integers(1, 6), st.integers(-5, 10_000), scalars, junk)


def count_sent(server) -> None:
    """One more input sent: in all (Fuzz.sent) and to this server alone (server.sent)."""
    Fuzz.sent += 1
    server.sent = getattr(server, "sent", 0) + 1


def send(server, name: str, *args) -> Reply:
    """One call: every fourth through gradio_client (when it can carry the values), the rest
    raw. Both reach the same queue; gradio_client waits in 50 ms polls (about 100 ms a call
    here, against 15 ms raw), which would make 2,000 inputs take minutes."""
    count_sent(server)
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
    assert isinstance(d, list if name == "continuations" else dict), f"{where}: result {d!r:.200}"
    if name == "reset":
        assert isinstance(d["prompt_tokens"], list) and d["prompt_tokens"], where
        assert d["model"] == server.model and isinstance(d["text"], str), where
    elif name in ("step", "pick", "generate"):
        assert 0 <= d["token"] < server.vocab and 0 < d["steps"] <= SESSION_TOKENS, where
        assert 0.0 <= d["raw_prob"] <= 1.0 and math.isfinite(d["prob"]), where
    elif name == "distribution":
        assert 1 <= d["kept"] <= server.vocab and math.isfinite(d["entropy_bits"]), where
        assert all(0.0 <= t["prob"] <= 1.0 for t in d["tokens"]), where
    elif name == "undo":
        assert d["steps"] >= 0, where
    elif name == "export":
        assert isinstance(d["steps"], list), where
    elif name == "score":
        tokens = d["tokens"]
        assert tokens and tokens[0]["prob"] is None and d["predicted"] == len(tokens) - 1, where
        assert all(0 <= t["id"] < server.vocab for t in tokens), where
        assert all(0.0 <= t["prob"] <= 1.0 and t["rank"] >= 1 for t in tokens[1:]), where
        assert d["predicted"] == 0 or (math.isfinite(d["mean_loss_nats_per_token"])
                                       and d["mean_loss_nats_per_token"] >= 0), where
    elif name == "sample":
        assert 1 <= d["n"] <= SAMPLE_DRAWS and sum(c for _, _, c, _ in d["counts"]) == d["n"], where
        assert 0.0 <= d["tv"] <= 1.0 and math.isfinite(d["kl"]) and d["kl"] >= 0.0, where
        assert all(0 <= t < server.vocab and 0.0 < p <= 1.0 for t, _, _, p in d["counts"]), where
    elif name == "continuations":
        assert isinstance(d, list) and 1 <= len(d) <= CONTINUATIONS, where
        assert all(1 <= len(r["tokens"]) <= CONTINUATION_TOKENS and r["logprob"] <= 0 for r in d), where
    elif name == "open_continuation":
        assert 0 <= d["replayed"] <= d["steps"] <= SESSION_TOKENS, where
    elif name == "tree":
        assert d["nodes"][0] == [-1, -1, 1.0] and 1 <= len(d["nodes"]) <= TREE_NODES, where
        assert 0 <= d["current"] < len(d["nodes"]) and len(d["labels"]) == len(d["nodes"]), where
    elif name == "goto":
        assert 0 <= d["node"] < TREE_NODES and 0 <= d["steps"] <= SESSION_TOKENS, where
    elif name == "load_tree":
        assert 1 <= d["nodes"] <= TREE_NODES and 0 <= d["steps"] <= SESSION_TOKENS, where
    elif name == "lens":
        assert len(d["layers"]) >= 2 and d["layers"][-1]["final_rank"] == 1, where
        assert all(1 <= len(e["top"]) <= LENS_TOP_N for e in d["layers"]), where
        assert all(0.0 <= p <= 1.0 for e in d["layers"] for _, _, p in e["top"]), where
    elif name == "beam":
        nb = d["settings"]["num_beams"]
        assert 1 <= nb <= BEAMS and 1 <= len(d["steps"]) <= d["settings"]["tokens"] <= BEAM_TOKENS, where
        # Sums of log-probabilities divided by a positive length ** length_penalty: <= 0.
        assert 1 <= len(d["ranking"]) <= nb and all(h["score"] <= 0 for h in d["ranking"]), where
        assert all(0 <= c["token"] < server.vocab and c["status"] in ("kept", "finished", "dropped")
                   for step in d["steps"] for c in step["candidates"]), where
    elif name == "beam_open":
        assert 0 <= d["steps"] <= SESSION_TOKENS and isinstance(d["text"], str), where
    elif name == "blocks":
        o, nodes = d["settings"], d["nodes"]
        assert 1 <= o["depth"] <= BLOCK_DEPTH and 1 <= o["top"] <= BLOCK_CHILDREN, where
        root = nodes[0]
        assert 1 <= len(nodes) <= o["nodes"] + 1 <= BLOCK_NODES + 1 and root["path"] == o["from"], where
        assert 0.0 < root["path_p"] <= 1.0 and (o["from"] or root["path_p"] == 1.0), where
        for n in nodes[1:]:  # the threshold counts from the block expanded from
            assert 0 <= n["token"] < server.vocab and 1 <= n["depth"] - root["depth"] <= o["depth"], where
            assert o["threshold"] * root["path_p"] * (1 - 1e-12) <= n["path_p"] <= nodes[n["parent"]]["path_p"], where
            assert 0.0 < n["p"] <= 1.0, where
            assert n["path"] == nodes[n["parent"]]["path"] + [n["token"]], where
        for n in nodes:  # an expanded block: its children and the rest are its whole probability
            if n["other"] is not None:
                kids = sum(nodes[c]["path_p"] for c in n["children"])
                assert len(n["children"]) <= o["top"] and abs(kids + n["other"] - n["path_p"]) < 1e-9, where
    elif name == "compare_models":
        assert d["mode"] in ("tokens", "chars"), where
        if d["mode"] == "tokens":
            assert d["positions"] and 0.0 <= d["agreement"] <= 1.0, where
            assert all(p["kl_pq"] is None or p["kl_pq"] >= -1e-9 for p in d["positions"]), where


def keep_room(server, reply: Reply) -> None:
    """Start the attacker's sessions over before they reach MAX_STEPS, so the fuzzing keeps
    reaching the model instead of the (correct) 'press Reset' error."""
    steps = reply.data.get("steps") if reply.ok and isinstance(reply.data, dict) else None
    if isinstance(steps, int) and steps > SESSION_TOKENS - 50:  # /export's "steps" is a list
        server.client.predict("To be", 1, api_name="/reset")
        server.raw.call("reset", "To be", 1, "", False)


def run(server, name, *args):
    reply = send(server, name, *args)
    check(server, name, reply, args)
    keep_room(server, reply)
    return reply


# ---- the generated inputs, endpoint by endpoint ----

def tree_files(server) -> st.SearchStrategy:
    """What /load_tree may be sent: junk, and exports close enough to real ones to reach
    every check (a real header, nodes in order, records with each field plausible or not)."""
    token = st.one_of(st.integers(0, server.vocab - 1), st.integers(-2, server.vocab + 2), scalars)
    record = st.fixed_dictionaries(
        {"position": st.one_of(st.integers(0, 8), scalars), "token": token, "piece": texts,
         "how": st.one_of(st.sampled_from(HOWS), texts), "u": st.one_of(st.floats(0, 0.99), scalars),
         "prob": st.one_of(st.floats(0, 1), scalars), "raw_prob": st.one_of(st.floats(0, 1), scalars),
         "settings": st.one_of(st.just({}), plausible_settings, hostile_settings),
         "candidates": st.dictionaries(st.sampled_from(["raw", "top_k", "bogus"]),
                                       st.lists(st.lists(st.one_of(token, st.floats(0, 1)), max_size=3),
                                                max_size=3), max_size=2),
         "mu": st.one_of(st.none(), st.floats()), "draws": st.one_of(st.just({"xtc": 0.5}), junk)},
        optional={"bogus": junk})
    def node(i):
        return st.fixed_dictionaries({
            "id": st.one_of(st.just(i), scalars), "parent": st.one_of(st.integers(0, max(0, i - 1)), scalars),
            "window": st.one_of(st.just(0), st.just(0), st.integers(-2, 300), scalars),
            "mu_after": st.one_of(st.none(), st.floats()), "record": st.one_of(record, junk)})
    root = st.just({"id": 0, "parent": None, "window": 0, "mu_after": None, "record": None})
    nodes = st.integers(0, 4).flatmap(lambda n: st.tuples(root, *[node(i) for i in range(1, n + 1)]).map(list))
    def mostly(good, bad):  # the right value about four times in five: the checks after it are reached
        return st.sampled_from([True, True, True, True, False]).flatmap(lambda ok: good if ok else bad)
    tree = st.fixed_dictionaries({"format": mostly(st.just(FORMAT), texts), "nodes": mostly(nodes, junk),
                                  "current": mostly(st.integers(0, 4), scalars)})
    export = st.fixed_dictionaries(
        {"model": mostly(st.just(server.model), model_names(server)),
         "vocab_size": mostly(st.just(server.vocab), scalars),
         "prompt_ids": mostly(st.lists(st.integers(0, server.vocab - 1), min_size=1, max_size=4),
                              st.one_of(st.lists(token, max_size=4), junk)),
         "seed": mostly(st.integers(0, 9), scalars), "tree": mostly(tree, junk)},
        optional={"chat": scalars, "typed_prompt": st.one_of(texts, junk)})
    return mostly(export, junk)


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
    if name == "score":
        return (data.draw(st.one_of(texts, junk), "text"),)
    if name == "lens":
        return (data.draw(st.one_of(st.integers(1, 8), st.integers(-5, LENS_TOP_N + 5), scalars, junk), "top_n"),)
    if name == "sample":
        n = st.one_of(st.sampled_from([1, 100, 1000, SAMPLE_DRAWS, SAMPLE_DRAWS + 1]), counts)
        return data.draw(n, "n"), data.draw(hostile_settings, "settings")
    if name == "continuations":
        n = st.one_of(st.integers(1, 3), st.sampled_from([CONTINUATIONS, CONTINUATIONS + 1]), counts)
        m = st.one_of(st.integers(1, 4), st.sampled_from([CONTINUATION_TOKENS, CONTINUATION_TOKENS + 1]), counts)
        return data.draw(n, "n"), data.draw(m, "m"), data.draw(hostile_settings, "settings")
    if name == "open_continuation":
        ids = st.one_of(st.lists(st.integers(0, server.vocab - 1), max_size=6),
                        st.lists(st.integers(-3, server.vocab + 3) | scalars, max_size=4),
                        st.lists(st.integers(0, 3), min_size=SESSION_TOKENS + 1, max_size=SESSION_TOKENS + 1),
                        junk)
        return data.draw(ids, "ids"), data.draw(hostile_settings, "settings")
    if name == "beam":
        options = st.one_of(
            st.fixed_dictionaries({}, optional={
                "num_beams": st.integers(1, 6), "length_penalty": st.floats(-3, 3),
                "early_stopping": st.sampled_from([True, False, "never", "true", "False"])}),
            st.dictionaries(st.sampled_from(["num_beams", "length_penalty", "early_stopping", "beams", ""]),
                            scalars, max_size=3),
            junk)
        return data.draw(st.one_of(st.integers(1, 8), counts), "n"), data.draw(options, "options")
    if name == "beam_open":
        rank = st.one_of(st.integers(0, 5), st.integers(-3, 40), scalars, junk)
        return data.draw(rank, "rank"), data.draw(hostile_settings, "settings")
    if name == "blocks":
        options = st.one_of(
            st.fixed_dictionaries({}, optional={
                "depth": st.integers(1, 4), "top": st.integers(1, 5), "threshold": st.floats(BLOCK_THRESHOLD, 0.5),
                "nodes": st.integers(1, 60), "from": st.lists(st.integers(0, server.vocab - 1), max_size=3)}),
            st.fixed_dictionaries({}, optional={
                "depth": st.sampled_from([0, BLOCK_DEPTH, BLOCK_DEPTH + 1]) | scalars,
                "top": st.sampled_from([0, BLOCK_CHILDREN, BLOCK_CHILDREN + 1]) | scalars,
                "threshold": st.sampled_from([0.0, BLOCK_THRESHOLD / 2, 1.0, 1.5]) | scalars,
                "nodes": st.sampled_from([0, BLOCK_NODES, BLOCK_NODES + 1]) | scalars,
                "from": st.lists(st.integers(-2, server.vocab + 2) | scalars, max_size=3)
                | st.lists(st.integers(0, 3), min_size=BLOCK_PATH + 1, max_size=BLOCK_PATH + 1) | junk}),
            st.dictionaries(st.sampled_from(["depth", "top", "threshold", "nodes", "from", "deep", ""]), scalars,
                            max_size=3),
            junk)
        return data.draw(options, "options"), data.draw(hostile_settings, "settings")
    if name == "goto":
        return (data.draw(st.one_of(st.integers(0, 8), st.integers(-5, 10**6), scalars, junk), "node"),)
    if name == "load_tree":
        return (data.draw(tree_files(server), "data"),)
    if name == "compare_models":
        specs = st.one_of(model_names(server), st.sampled_from(
            [f"{server.model}@0", f"{server.model}@3", f"{server.model}@-1", f"{server.model}@99999999999",
             f"{server.model}:fast", f"{server.model}:exact", f"{server.model}@x", "smollm2@3", "@", ":fast"]))
        return (data.draw(specs, "model_a"), data.draw(specs, "model_b"),
                data.draw(st.one_of(texts, junk), "text"),
                data.draw(st.one_of(st.sampled_from(["auto", "tokens", "chars", "", "words"]), scalars, junk), "mode"))
    return ()  # undo, export, tree

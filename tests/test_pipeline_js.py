"""The page's pipeline (ui/static/pipeline.js) under Node against model/sampling.py: the same
final probabilities, the same kept set after every stage, the same filter blamed for each
removed token, the same defaults and stage order, on hundreds of random settings over two
vocabularies. And every value the page's controls can produce is one the engine accepts as is.

Node is required (CI installs it): without it this test fails rather than skips.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from model.sampling import (
    SETTINGS,
    SamplingSettings,
    choose,
    run_pipeline,
    sampling_order,
    schema,
    stage_order,
)
from testkit.sampling_cases import LetterVocab, random_case
from ui.chart import rank_of, removed_at, removed_by

DRIVER = Path(__file__).parent / "js" / "pipeline_cases.js"


def node() -> str:
    path = shutil.which("node")
    assert path, "Node.js is needed to check the page's pipeline: apt-get install nodejs"
    return path


def pipeline_of(case) -> object:
    settings = SamplingSettings.from_dict(case["settings"])
    logits = torch.tensor(case["logits"], dtype=torch.float64)
    return run_pipeline(logits, settings, case["context"], seed=case["seed"],
                        vocab=LetterVocab(len(case["logits"])), mu=case["mu"])


def run_node(cases, clamps, tmp_path) -> dict:
    path = tmp_path / "cases.json"
    path.write_text(json.dumps({"schema": schema(), "cases": cases, "clamps": clamps}))
    result = subprocess.run([node(), str(DRIVER), str(path)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def parity(tmp_path_factory):
    rng = random.Random(20261201)
    cases = [random_case(rng, vocab) for vocab in (37, 2048) for _ in range(300)]
    clamps = []
    for name, x in SETTINGS.items():
        if x.kind not in ("float", "int"):  # bools are checkboxes; list settings have no control
            continue
        lo, hi, step = x.control
        for raw in (lo - 5, hi + 5, lo, hi, (lo + hi) / 2, lo + step / 3, "abc", "", " 7 ",
                    hi * 10, -1e9, 3.7, "1e3", rng.uniform(lo, hi), "1,5", "0,25", "1,2,3"):
            clamps.append((name, raw))
    return cases, clamps, run_node(cases, clamps, tmp_path_factory.mktemp("node"))


def test_defaults_and_stage_orders_come_from_the_table(parity):
    _, _, out = parity
    # JSON has no tuples: the list settings' defaults arrive as lists.
    assert out["defaults"] == json.loads(json.dumps({name: x.default for name, x in SETTINGS.items()}))
    for flag in (False, True):
        expected = [st.name for st in stage_order(SamplingSettings(temperature_last=flag))]
        assert out["orders"][str(flag).lower()] == expected


def test_final_probabilities_kept_sets_and_blame_equal_run_pipeline(parity):
    cases, _, out = parity
    assert len(cases) >= 500
    compared = 0
    for case, got in zip(cases, out["cases"]):
        settings = SamplingSettings.from_dict(case["settings"])
        try:
            pipe = pipeline_of(case)
        except ValueError:  # e.g. an n-gram ban on everything: the page says so instead
            assert sum(p > 0 for p in got["probs"]) == 0, case["settings"]
            continue
        where = f"settings {case['settings']}, vocab {len(case['logits'])}"
        assert got["stages"] == [[st.name, st.active] for st in pipe.stages], where
        probs = torch.tensor(got["probs"], dtype=torch.float64)
        assert torch.equal(probs > 0, pipe.probs > 0), f"final kept set differs: {where}"
        assert torch.allclose(probs, pipe.probs, rtol=1e-9, atol=1e-15), f"probabilities differ: {where}"
        blamed = torch.tensor(got["removedBy"])
        assert torch.equal(blamed, removed_by(pipe)), f"removed_by differs: {where}"
        # The API's summary asks about a few tokens only, from the stages' survivors.
        every = torch.arange(pipe.raw.numel())
        assert torch.equal(removed_at(pipe, every), blamed), f"removed_at differs: {where}"
        order = sampling_order(pipe.probs).tolist()
        for token in order[::max(1, len(order) // 24)] + order[-3:]:  # the ties among removed ones too
            assert rank_of(pipe.probs, token) == order.index(token) + 1, where
        for i, stage in enumerate(pipe.stages):  # every stage's kept set
            kept_js = (blamed < 0) | (blamed > i)
            assert torch.equal(kept_js, stage.kept), f"kept set after {stage.name} differs: {where}"
        token, _, _ = choose(pipe, settings, 0, 0) if settings.greedy else (None, None, None)
        if settings.greedy:
            assert got["pick"] == token, where
        else:
            from model.sampling import pick_token
            assert got["pick"] == pick_token(pipe.probs, case["u"]), where
        p = pipe.probs[pipe.probs > 0]
        assert math.isclose(got["entropy"], float(-(p * p.log2()).sum()), rel_tol=1e-9, abs_tol=1e-12)
        check_traces(got["traces"], pipe, where)
        compared += 1
    assert compared >= 500


def check_traces(traces, pipe, where):
    """What the chain's cards draw: each active stage's live count before and after, and the
    probabilities of its input's top tokens entering and leaving it, as the engine has them."""
    before = pipe.raw
    for trace, stage in zip(traces, pipe.stages):
        if not stage.active:
            assert trace is None, where
            continue
        n_in, n_out, top, p_in, p_out = trace
        assert n_in == int(torch.isfinite(before).sum()) and n_out == int(stage.kept.sum()), (stage.name, where)
        entering, leaving = before.softmax(-1), stage.probs
        assert top == sorted(top, key=lambda t: (-float(before[t]), t))[:len(top)], (stage.name, where)
        assert len(top) == min(16, n_in), (stage.name, where)
        assert torch.allclose(torch.tensor(p_in, dtype=torch.float64), entering[top], rtol=1e-9, atol=1e-15), where
        assert torch.allclose(torch.tensor(p_out, dtype=torch.float64), leaving[top], rtol=1e-9, atol=1e-15), where
        before = stage.logits


def test_every_value_a_control_produces_is_accepted_by_the_engine_unchanged(parity):
    _, clamps, out = parity
    for (name, raw), got in zip(clamps, out["clamps"]):
        x = SETTINGS[name]
        lo, hi, _ = x.control
        value = got["value"]
        assert lo <= value <= hi, (name, raw, got)
        settings = SamplingSettings.from_dict({name: value})
        assert getattr(settings, name) == value, (name, raw, got)
        try:  # a decimal comma reads as a point: "1,5" is 1.5
            typed = float(raw.replace(",", ".") if isinstance(raw, str) and raw.count(",") == 1 else raw)
        except ValueError:  # not a number at all: the control keeps its value and says so
            said = "No number typed" if str(raw).strip() == "" else "is not a number"
            assert value == x.default and said in got["message"], (name, raw, got)
            continue
        # A message exactly when the value had to change, never silently.
        assert bool(got["message"]) == (value != typed), (name, raw, got)


def test_list_settings_from_a_link_are_read_or_kept_with_a_message(tmp_path):
    """A link carries the chain, DRY's breakers and logit biases as JSON (or the chain as
    letters or a preset): the page reads them as the engine does, or keeps its value and says
    why, so a bad link never breaks the page's pipeline."""
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(schema()))
    static = DRIVER.parent.parent.parent / "ui" / "static"
    script = (f"require({json.dumps(str(static / 'pipeline.js'))});"
              f"require({json.dumps(str(static / 'llama_stages.js'))});"
              "const PL = globalThis.DPPipeline;"
              f"PL.useSchema(JSON.parse(require('fs').readFileSync({json.dumps(str(path))}, 'utf8')));"
              "const cases = JSON.parse(process.argv[1]);"
              "const out = cases.map(([n, raw]) => { const r = PL.clampToControl(n, raw);"
              " return [PL.normalise({[n]: r.value})[n], r.message]; });"
              "process.stdout.write(JSON.stringify(out));")
    cases = [("samplers", "edskypmxt"), ("samplers", '["top_k","temp","top_k"]'), ("samplers", "hf"),
             ("samplers", "kqz"), ("logit_bias", '{"3": -1, "4": false}'),
             ("logit_bias", '[["hello", 1]]'), ("dry_sequence_breakers", '["\\n"]'),
             ("dry_sequence_breakers", "not json")]
    result = subprocess.run([node(), "-e", script, json.dumps(cases)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    for (name, raw), (value, message) in zip(cases, out):
        try:
            engine = SamplingSettings.from_dict({name: json.loads(raw) if raw[:1] in "[{" else raw})
            if "hello" in raw:  # text needs the tokenizer: the engine takes it, the page keeps its own
                raise ValueError("text bias")
        except ValueError:
            assert "kept as it was" in message and value == json.loads(json.dumps(SETTINGS[name].default))
            continue
        if name == "samplers":
            assert value == list(engine.samplers) and message == "", (raw, value)
        elif name == "logit_bias":
            assert [tuple(p) for p in value] == list(engine.logit_bias)
        else:
            assert value == list(engine.dry_sequence_breakers)
    assert "kept as it was" in out[-1][1]

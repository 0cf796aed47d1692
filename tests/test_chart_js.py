"""The chart's drawing (ui/static/chart.js on bar_canvas.js) under Node, on a canvas that records
what it is asked to paint: every bar the chart says it drew (div.drawn, what the browser tests
and the hit layer read) is painted there, at the height its probability gives on the drawn
axis, in its colour; the probabilities are model/sampling.py's; an overlay (one more value per
token) is outlined over its bars and named in the key; two charts drawn as a pair are alike.

Node is required (CI installs it): without it this test fails rather than skips.
"""

from __future__ import annotations

import json
import math
import random
import subprocess
from pathlib import Path

import pytest
import torch

from model.sampling import SamplingSettings, run_pipeline, schema
from tests.test_pipeline_js import node

DRIVER = Path(__file__).parent / "js" / "chart_cases.js"
SETTINGS = {"temperature": 0.8, "top_k": 12, "top_p": 0.9}


def logits_of(seed: int, vocab: int) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(0, 2.5) for _ in range(vocab)]


def case(seed: int, vocab: int = 300, **kw) -> dict:
    return {"logits": logits_of(seed, vocab), "context": [1, 2, 3], "draws": {"xtc": 0.5}, "u": 0.37,
            "settings": dict(SETTINGS), "log": False, "width": 800} | kw


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    overlay = {"label": "sampled 50 times", "values": {}}
    cases = [case(1), case(2, log=True), case(3, width=390), case(4, pair=case(5, vocab=280, settings={}),
                                                                   sameScale=True, width=500)]
    ranked = sorted(range(300), key=lambda i: -cases[0]["logits"][i])
    # The overlay's tokens: three of the chart's bars and two far down the ranking (the rest).
    for rank, share in ((0, 0.5), (1, 0.2), (5, 0.1), (200, 0.12), (250, 0.08)):
        overlay["values"][str(ranked[rank])] = share
    cases[0]["overlay"] = overlay
    path = tmp_path_factory.mktemp("chart") / "cases.json"
    path.write_text(json.dumps({"schema": schema(), "cases": cases}))
    result = subprocess.run([node(), str(DRIVER), str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return cases, json.loads(result.stdout)


def check_painted(seen: dict) -> None:
    """Every bar of div.drawn is on the canvas where and as the record says."""
    d, painted = seen["drawn"], seen["painted"]
    fills = [p for p in painted if p["op"] == "fill"]
    bottom, top, high = d["plot"]["bottom"], d["plot"]["top"], d["yaxis"]["range"][1]
    assert seen["backing"] == [2 * d["width"], 2 * d["height"]]  # sharp at a device pixel ratio of 2
    assert len(d["ticks"]) == len(d["bars"])
    for bar, tick in zip(d["bars"], d["ticks"]):
        assert bar["x0"] < tick["x"] < bar["x1"] and tick["text"]
        for value, y, colour in ((bar["final"], bar["finalTop"], bar["finalColour"]),
                                 (bar["raw"], bar["rawTop"], bar["rawColour"])):
            if value <= 0:
                continue
            if d["yaxis"]["type"] == "linear":
                assert math.isclose(y, bottom - (bottom - top) * value / high, abs_tol=1e-9)
            rects = [f for f in fills if f["colour"] == colour and math.isclose(f["y"], y)
                     and math.isclose(f["y"] + f["h"], bottom) and bar["x0"] <= f["x"] < f["x"] + f["w"] <= bar["x1"]]
            assert len(rects) == 1, (bar, colour)


def test_every_bar_the_chart_reports_is_painted_at_its_probability_with_the_engines_numbers(drawn):
    cases, out = drawn
    for c, seen in zip(cases[:3], out[:3]):
        check_painted(seen)
        d = seen["drawn"]
        pipe = run_pipeline(torch.tensor(c["logits"], dtype=torch.float64), SamplingSettings(**c["settings"]),
                            c["context"], seed=0)
        probs, raw = pipe.probs.tolist(), torch.softmax(torch.tensor(c["logits"], dtype=torch.float64), -1).tolist()
        named, rest = d["bars"][:-1], d["bars"][-1]
        assert [b["id"] for b in named] == d["meta"]["ids"] and rest["id"] is None
        for bar in named:
            assert math.isclose(bar["final"], probs[bar["id"]], rel_tol=1e-12, abs_tol=1e-300)
            assert math.isclose(bar["raw"], raw[bar["id"]], rel_tol=1e-12)
        assert math.isclose(rest["final"] + sum(b["final"] for b in named), 1.0, abs_tol=1e-12)
        assert d["meta"]["kept"] == int((pipe.probs > 0).sum())
        assert d["lines"]["cumulative"][-1] == 1
    assert out[1]["drawn"]["yaxis"]["type"] == "log"
    assert len(out[2]["drawn"]["bars"]) < len(out[0]["drawn"]["bars"])  # a phone draws fewer bars


def test_an_overlay_is_outlined_over_its_bars_and_named_in_the_key(drawn):
    cases, out = drawn
    seen, values = out[0], {int(k): v for k, v in cases[0]["overlay"]["values"].items()}
    d = seen["drawn"]
    assert d["overlay"]["label"] == "sampled 50 times" and "sampled 50 times" in seen["key"]
    shown = {b["id"] for b in d["bars"]}
    outlines = [p for p in seen["painted"] if p["op"] == "stroke" and p["colour"] == d["overlay"]["colour"]]
    for bar in d["bars"]:
        want = values.get(bar["id"], 0.0) if bar["id"] is not None else sum(
            v for k, v in values.items() if k not in shown)
        assert math.isclose(bar["overlay"], want), bar
        hits = [o for o in outlines if math.isclose(o["y"], bar["overlayTop"]) and bar["x0"] <= o["x"] < bar["x1"]]
        assert len(hits) == (1 if want > 0 else 0), bar
    assert math.isclose(d["bars"][-1]["overlay"], 0.2)  # the two tokens beyond the bars
    assert "sampled" not in out[1]["key"] and out[1]["drawn"]["overlay"] is None


def test_two_charts_drawn_as_a_pair_are_alike_and_share_one_scale(drawn):
    _, out = drawn
    a, b = out[3]["pair"]
    for seen in (a, b):
        check_painted(seen)
    da, db = a["drawn"], b["drawn"]
    assert da["height"] == db["height"] and len(da["bars"]) == len(db["bars"])
    assert da["yaxis"]["range"] == db["yaxis"]["range"] and da["plot"] == db["plot"]
    assert da["meta"]["ids"] != db["meta"]["ids"]  # two different distributions
    tallest = max(max(x["final"], x["raw"]) for x in da["bars"] + db["bars"])
    assert da["yaxis"]["range"][1] >= tallest
    assert out[3]["kept"][1] == 280  # B's settings are the defaults: nothing removed

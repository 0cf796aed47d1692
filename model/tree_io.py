"""The tree of generations as plain data (JSON), and back, checked.

    tree_to_dict(tree, current) -> {"format": FORMAT, "current": 3, "nodes": [...]}
    tree_from_dict(data, vocab_size=..., block_size=..., prompt_len=..., max_nodes=...) -> (Tree, current)

A node is {"id", "parent", "window", "mu_after", "record"} (the root's record is null); the
record is a StepRecord's fields without its logits. Reading back refuses anything a session
could not stand on, with a message naming the node and the field: ids out of order, a parent
that does not exist, a token outside the vocabulary, a position that does not follow its
parent's, a window the model could not see, settings the sampler refuses. Nothing is kept of
a refused tree.
"""

from __future__ import annotations

import dataclasses
import math

from .sampling import SamplingSettings
from .tree import ROOT, Tree

FORMAT = "decoding-playground-tree/1"
HOWS = ("sampled", "greedy", "picked")
OPTIONAL_FIELDS = {"entropy", "raw_entropy"}  # absent from trees saved before records had them


def tree_to_dict(tree: Tree, current: int) -> dict:
    return {"format": FORMAT, "current": current, "nodes": [
        {"id": n.id, "parent": n.parent, "window": n.window, "mu_after": n.mu_after,
         "record": None if n.record is None else n.record.to_dict()} for n in tree.nodes]}


def _int(value, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be a whole number from {lo:,} to {hi:,}, but is {value!r:.80}")
    return value


def _number(value, name: str, allow_none: bool = False, lo: float = -math.inf, hi: float = math.inf):
    """A finite number in [lo, hi] (None where allowed); an integer too large for a float
    is refused like any other bad value."""
    if value is None and allow_none:
        return None
    try:
        number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    except OverflowError:
        number = None
    if number is None or not math.isfinite(number) or not lo <= number <= hi:
        raise ValueError(f"{name} must be a finite number from {lo} to {hi}, but is {value!r:.80}")
    return number


def _record(data, where: str, position: int, vocab_size: int, piece):
    """A StepRecord from its fields, each checked; `where` names the node in messages."""
    from .session import StepRecord  # the session imports this module

    if not isinstance(data, dict):
        raise ValueError(f"{where}: its record must be an object, but is {type(data).__name__}")
    # Every field a record exports (StepRecord.to_dict); the entropies may be absent, as in
    # trees saved before records carried them.
    expected = {f.name for f in dataclasses.fields(StepRecord)} - {"logits"}
    missing, extra = expected - data.keys() - OPTIONAL_FIELDS, data.keys() - expected
    if missing or extra:
        raise ValueError(f"{where}: its record lacks {sorted(missing)} / has unknown fields {sorted(extra)[:5]}")
    _int(data["position"], f"{where}: position", position, position)
    token = _int(data["token"], f"{where}: token", 0, vocab_size - 1)
    if data["how"] not in HOWS:
        raise ValueError(f"{where}: how must be one of {HOWS}, but is {data['how']!r:.40}")
    u = _number(data["u"], f"{where}: u", allow_none=True, lo=0, hi=1)
    prob = _number(data["prob"], f"{where}: prob", lo=0, hi=1)
    raw = _number(data["raw_prob"], f"{where}: raw_prob", lo=0, hi=1)
    if not isinstance(data["settings"], dict):
        raise ValueError(f"{where}: settings must be an object")
    try:
        settings = SamplingSettings.from_dict(data["settings"]).to_dict()
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    candidates = data["candidates"]
    if not isinstance(candidates, dict) or len(candidates) > 64:
        raise ValueError(f"{where}: candidates must be an object of at most 64 stages")
    checked = {}
    for stage, pairs in candidates.items():
        if not isinstance(pairs, list) or len(pairs) > 64:
            raise ValueError(f"{where}: candidates of {stage!r:.40} must be a list of at most 64 pairs")
        out = []
        for pair in pairs:
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise ValueError(f"{where}: a candidate of {stage!r:.40} must be [token, probability]")
            out.append((_int(pair[0], f"{where}: candidate token", 0, vocab_size - 1),
                        _number(pair[1], f"{where}: candidate probability", lo=0, hi=1)))
        checked[str(stage)] = out
    draws = data["draws"]
    if not isinstance(draws, dict) or len(draws) > 8:
        raise ValueError(f"{where}: draws must be an object of at most 8 numbers")
    draws = {str(k): _number(v, f"{where}: draw {k!r:.20}", lo=0, hi=1) for k, v in draws.items()}
    return StepRecord(position=position, token=token, piece=piece(token), how=data["how"], u=u,
                      prob=prob, raw_prob=raw, settings=settings, candidates=checked,
                      mu=_number(data["mu"], f"{where}: mu", allow_none=True), draws=draws,
                      entropy=_number(data.get("entropy"), f"{where}: entropy", allow_none=True, lo=0),
                      raw_entropy=_number(data.get("raw_entropy"), f"{where}: raw_entropy", allow_none=True, lo=0))


def tree_from_dict(data, *, vocab_size: int, block_size: int, prompt_len: int, max_nodes: int,
                   max_depth: int, piece, measure=lambda record: 0) -> tuple[Tree, int]:
    """A Tree from tree_to_dict's form, checked against the model that will stand on it.
    Raises ValueError naming what is wrong; the tree returned is new (nothing is shared)."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"this is not a tree of generations: its format must be {FORMAT!r}, "
                         f"but is {data.get('format') if isinstance(data, dict) else type(data).__name__!r:.60}")
    nodes = data.get("nodes")
    if not isinstance(nodes, list) or not nodes:
        raise ValueError("the tree's nodes must be a non-empty list, starting with the prompt's")
    if len(nodes) > max_nodes:
        raise ValueError(f"the tree has {len(nodes):,} nodes; at most {max_nodes:,} are allowed")
    tree = Tree()
    for i, raw in enumerate(nodes):
        where = f"node {i}"
        if not isinstance(raw, dict):
            raise ValueError(f"{where} must be an object, but is {type(raw).__name__}")
        if raw.get("id") != i:
            raise ValueError(f"{where}: ids must count up from 0 in order, but it says {raw.get('id')!r:.40}")
        if i == ROOT:
            if raw.get("parent") is not None or raw.get("record") is not None:
                raise ValueError("node 0 is the prompt: it has no parent and no record")
            continue
        parent = _int(raw.get("parent"), f"{where}: parent", 0, i - 1)
        depth = tree.nodes[parent].depth + 1
        if depth > max_depth:
            raise ValueError(f"{where} is {depth} steps deep; at most {max_depth} are allowed")
        position = prompt_len + depth - 1
        window = _int(raw.get("window"), f"{where}: window", max(0, position - block_size), position - 1)
        record = _record(raw.get("record"), where, position, vocab_size, piece)
        if tree.child(parent, record.token) is not None:
            raise ValueError(f"{where}: its parent {parent} already has a child of token {record.token}")
        mu_after = _number(raw.get("mu_after"), f"{where}: mu_after", allow_none=True)
        tree.add(parent, record, window, mu_after, measure(record))
    current = _int(data.get("current"), "current", 0, len(tree) - 1)
    return tree, current

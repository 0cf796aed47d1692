"""The tree of generations as the page and the API are sent it (model/tree.py holds it).

    {"current": 7, "path": [1, 2, 7],             the node stood at, and the nodes to it
     "nodes": [[-1, -1, 1.0], [0, 464, 0.31], ...]}   per node id: [parent, token, probability]

The root (node 0, the prompt) has parent and token -1. The page turns token ids into labels
with the model's label table it already holds; the API adds the labels itself.
"""

from __future__ import annotations

from .tokens import token_label


def tree_payload(session, labels: bool = False) -> dict:
    nodes = []
    for n in session.tree.nodes:
        if n.record is None:
            nodes.append([-1, -1, 1.0])
        else:
            nodes.append([n.parent, n.token, round(n.record.prob, 4)])
    out = {"current": session.node, "path": session.path_nodes, "nodes": nodes}
    if labels:
        out["labels"] = [None if t < 0 else token_label(session.tokenizer, t) for _, t, _ in nodes]
    return out

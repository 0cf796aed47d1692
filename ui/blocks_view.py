"""An expansion of probability blocks as plain data, the same for the page (static/blocks.js)
and the API:

    {"settings": {"depth": 3, "top": 4, "threshold": 0.01, "nodes": 200, "from": []},
     "base": [ids],                   the generated tokens the blocks continue (the text so far)
     "after": "...",                  the text's last characters, to say where the blocks start
     "budget_hit": false,             the node budget left out blocks that passed the threshold
     "forwards": 2,                   forwards run: one per level (batched), one per token of "from"
     "nodes": [{"id", "parent", "token", "label", "p", "raw_p", "path_p", "depth",
                "children", "other", "ends", "path"}, ...]}   node 0: the text, or the block at "from"

p: the token's probability under the settings after its parent; path_p: the product of p from
the text (the block's height); other: the path probability of the tokens not shown below an
expanded node (null where it was not expanded); path: the tokens after the text; depth: their
number. A block opens as the text with /open_continuation and the ids base + path.
"""

from __future__ import annotations

from .tokens import token_label

AFTER_CHARS = 40


def blocks_summary(session, result, base: list[int], settings: dict) -> dict:
    labels: dict[int, str] = {}

    def label(t: int) -> str:
        if t < 0:
            return ""
        if t not in labels:
            labels[t] = token_label(session.tokenizer, t)
        return labels[t]

    paths: list[list[int]] = []
    nodes = []
    for n in result.nodes:  # parents come before their children
        paths.append(list(result.prefix) if n.parent < 0 else paths[n.parent] + [n.token])
        nodes.append({"id": n.id, "parent": n.parent, "token": n.token, "label": label(n.token),
                      "p": n.p, "raw_p": n.raw_p, "path_p": n.path_p, "depth": n.depth,
                      "children": n.children, "other": n.other, "ends": n.ends, "path": paths[-1]})
    return {"settings": settings, "base": base, "after": session.text[-AFTER_CHARS:],
            "budget_hit": result.budget_hit, "forwards": result.forwards, "nodes": nodes}

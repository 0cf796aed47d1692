"""The tree of generations: every step a session has made, on every branch.

A DecodingSession holds one path (its history, its KV cache); the tree holds every step it
made on any path, so that Undo, Rewind and a new token leave the old path standing as a
branch. Node 0 is the prompt; every other node is one step, a child of the step before it.
Two steps of the same token after the same node are one node: the newer record replaces the
older (it says how the token was chosen last).

A node keeps what going back to it needs besides the tokens (which give the penalties'
history): its StepRecord as it was made (settings, u, mirostat's μ before the step), the
window of the context its logits were computed over, and mirostat's μ after it. It knows
nothing of any user interface; the session moves between nodes (DecodingSession.goto).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

ROOT = 0
# A node's own Python objects besides its record: the dataclass, its children list, the ints.
_NODE_BYTES = 56 + 6 * 32 + sys.getsizeof([])


@dataclass
class Node:
    id: int
    parent: int | None  # None for the root (the prompt)
    depth: int  # steps from the prompt: the root is 0
    record: object = None  # the StepRecord (None for the root)
    window: int = 0  # where the context of this step's logits started (session.window)
    mu_after: float | None = None  # mirostat's μ for the step after this one
    record_bytes: int = 0  # the record's Python objects, measured once (memory budget)
    children: list[int] = field(default_factory=list)  # in the order they were made

    @property
    def token(self) -> int | None:
        return None if self.record is None else self.record.token


class Tree:
    """Nodes by id, ids in the order they were made (a parent's id is below its children's)."""

    def __init__(self):
        self.nodes: list[Node] = [Node(ROOT, None, 0)]
        self.record_bytes = 0  # the sum of every node's record_bytes

    def __len__(self) -> int:
        return len(self.nodes)

    def node(self, node_id) -> Node:
        if isinstance(node_id, bool) or not isinstance(node_id, int) or not 0 <= node_id < len(self.nodes):
            raise ValueError(f"node must be a node id from 0 to {len(self.nodes) - 1}, but is {node_id!r:.80}")
        return self.nodes[node_id]

    def child(self, parent: int, token: int) -> Node | None:
        """The child of `parent` whose step chose `token`, if there is one."""
        for c in self.nodes[parent].children:
            if self.nodes[c].token == token:
                return self.nodes[c]
        return None

    def add(self, parent: int, record, window: int, mu_after, record_bytes: int) -> Node:
        """The node for `record` after `parent`: a new child, or the one already there for the
        same token, its record replaced."""
        node = self.child(parent, record.token)
        if node is None:
            node = Node(len(self.nodes), parent, self.nodes[parent].depth + 1)
            self.nodes.append(node)
            self.nodes[parent].children.append(node.id)
        self.record_bytes += record_bytes - node.record_bytes
        node.record, node.window, node.mu_after, node.record_bytes = record, window, mu_after, record_bytes
        return node

    def path(self, node_id: int) -> list[int]:
        """The node ids from the first step to `node_id` (the root excluded; [] for the root)."""
        out = []
        node = self.node(node_id)
        while node.parent is not None:
            out.append(node.id)
            node = self.nodes[node.parent]
        return out[::-1]

    def find(self, tokens: list[int], start: int = ROOT) -> list[int]:
        """The longest chain of existing nodes after `start` that spells tokens' beginning."""
        out, at = [], start
        for t in tokens:
            node = self.child(at, t)
            if node is None:
                break
            out.append(node.id)
            at = node.id
        return out

    def remove_leaf_chain(self, node_id: int, keep: set[int]) -> int:
        """Remove `node_id` and its ancestors up to the first one that has other children or
        is in `keep`, provided `node_id` is a leaf made last (ids stay dense). Returns how many
        nodes went."""
        removed = 0
        while (node_id not in keep and node_id == len(self.nodes) - 1
               and not self.nodes[node_id].children and node_id != ROOT):
            node = self.nodes.pop()
            self.nodes[node.parent].children.remove(node.id)
            self.record_bytes -= node.record_bytes
            node_id, removed = node.parent, removed + 1
        return removed

    def memory_bytes(self) -> int:
        """The tree's own Python objects and its records (records on the current path too)."""
        return (sys.getsizeof(self.nodes) + len(self.nodes) * _NODE_BYTES
                + sum(8 * len(n.children) for n in self.nodes) + self.record_bytes)

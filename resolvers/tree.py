"""A conversation's messages as a tree: pure functions over stored rows (no database).

Each stored message has a `position` (unique in its conversation, larger than its parent's)
and a `parent_position` (null for a first message). The *active path* is one root-to-leaf
path, marked `active` in storage: what every linear shape shows. Siblings are messages with
the same parent: the alternatives an edit or a regenerate made.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass(slots=True)
class StoredMessage:
    """A stored message as the faces read it, with its place in the tree."""

    conversation_pk: str
    position: int
    parent_position: int | None
    active: bool
    id: str
    role: str
    content: str
    timestamp: int
    tokens: int | None
    model: str | None
    status: str | None
    parent_id: str | None = None
    # Its alternatives, itself included, oldest first (shared by siblings: read only).
    sibling_ids: list[str] = field(default_factory=list)


@dataclass(slots=True, frozen=True)
class Node:
    """The shape of one message in the tree, without its body."""

    position: int
    parent_position: int | None
    id: str
    active: bool = True


def link(rows: Sequence[StoredMessage]) -> None:
    """Fill `parent_id` and `sibling_ids` of one conversation's rows."""
    ids = {row.position: row.id for row in rows}
    children: dict[int | None, list[str]] = defaultdict(list)
    for row in rows:
        children[row.parent_position].append(row.id)
    for row in rows:
        parent = row.parent_position
        row.parent_id = ids.get(parent) if parent is not None else None
        row.sibling_ids = children[parent]


def path_to(nodes: Iterable[Node], leaf: int) -> list[int]:
    """Positions from the first message down to `leaf`."""
    parents = {node.position: node.parent_position for node in nodes}
    path: list[int] = []
    current: int | None = leaf
    while current is not None and current in parents and len(path) <= len(parents):
        path.append(current)
        current = parents[current]
    path.reverse()
    return path


def newest_leaf(nodes: Iterable[Node], start: int) -> int:
    """The leaf reached from `start` by always taking the newest child (switching to a
    branch shows its latest state)."""
    newest: dict[int | None, int] = {}
    for node in nodes:
        if node.parent_position not in newest or node.position > newest[node.parent_position]:
            newest[node.parent_position] = node.position
    current = start
    for _ in range(len(newest) + 1):
        child = newest.get(current)
        if child is None:
            break
        current = child
    return current


def find(nodes: Iterable[Node], message_id: str) -> Node | None:
    """The message with this id; when ids repeat (legacy data), the active one, else the
    newest."""
    best: Node | None = None
    for node in nodes:
        if node.id != message_id:
            continue
        if best is None or (node.active, node.position) > (best.active, best.position):
            best = node
    return best


def surviving_parent(parents: dict[int, int | None], position: int | None,
                     kept: dict[int, int]) -> int | None:
    """The new position of the nearest ancestor of `position` (itself included) that is in
    `kept` (old position → new position); None when none is."""
    seen = 0
    while position is not None and seen <= len(parents):
        if position in kept:
            return kept[position]
        position = parents.get(position)
        seen += 1
    return None

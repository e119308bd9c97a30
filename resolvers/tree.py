"""A conversation's messages as a tree: pure functions over stored rows (no database).

Each stored message has a `position` (unique in its conversation, larger than its parent's)
and a `parent_position` (null for a first message). The *active path* is one root-to-leaf
path, marked `active` in storage: what every linear shape shows. Siblings are messages with
the same parent: the alternatives an edit or a regenerate made.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple


class StoredMessage(NamedTuple):
    """A stored message as the faces read it, with its place in the tree.

    A named tuple, built from a result row in one C-level call: a chat list reads thousands
    of these, and a class with an `__init__` tripled its CPU time (measured, README).
    """

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
    citations: list[dict[str, Any]] | None  # a reply's sources (issue 16)
    parent_id: str | None = None
    # Its alternatives, itself included, oldest first (shared by siblings: read only).
    sibling_ids: tuple[str, ...] = ()


@dataclass(slots=True, frozen=True)
class Node:
    """The shape of one message in the tree, without its body."""

    position: int
    parent_position: int | None
    id: str
    active: bool = True


def views(rows: Sequence[Sequence[Any]], *, whole_tree: bool) -> list[StoredMessage]:
    """One conversation's result rows (the StoredMessage columns up to `citations`, in position
    order) as messages with parent and siblings: every one, or only the active path."""
    ids = {row[1]: row[4] for row in rows}
    grouping: dict[int | None, list[str]] = defaultdict(list)
    for row in rows:
        grouping[row[2]].append(row[4])
    # Tuples, not lists: one per sibling group, and cheap for the garbage collector.
    groups = {parent: tuple(members) for parent, members in grouping.items()}
    new = tuple.__new__
    return [new(StoredMessage, (*row, ids.get(row[2]) if row[2] is not None else None,
                                groups[row[2]]))
            for row in rows if whole_tree or row[3]]


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

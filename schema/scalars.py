"""Custom scalars. GraphQL's Int is 32-bit, too small for epoch milliseconds."""

from __future__ import annotations

from typing import NewType

import strawberry
from strawberry.types.scalar import ScalarDefinition

Timestamp = NewType("Timestamp", int)


def _parse_timestamp(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise ValueError("Timestamp must be an integer number of epoch milliseconds")
    return int(value)


SCALAR_MAP: dict[object, ScalarDefinition] = {
    Timestamp: strawberry.scalar(
        name="Timestamp",
        description="Epoch milliseconds (integer), as in the REST contract",
        serialize=int,
        parse_value=_parse_timestamp,
    )
}

"""Citations: the passages of a user's files a reply was given (issue 16)."""

from __future__ import annotations

from typing import Any

import strawberry


@strawberry.type(description="A source a reply was given: a passage of one of your files.")
class Citation:
    file_id: strawberry.ID
    filename: str
    snippet: str
    score: float


def citations_of(sources: list[dict[str, Any]] | None) -> list[Citation]:
    return [Citation(file_id=strawberry.ID(s["file_id"]), filename=s["filename"],
                     snippet=s["snippet"], score=float(s["score"])) for s in sources or []]

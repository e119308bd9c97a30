"""Which models a user may use: every model, or the `allowed_models` an admin set.

The one rule behind `GET /api/models`, GraphQL `models`, chat on every face and the
OpenAI-compatible `/v1` gateway: they all call `permitted()` / `check()` here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeVar

from models import User
from resolvers.kit.errors import BadInput


class HasId(Protocol):
    @property
    def id(self) -> str: ...


M = TypeVar("M", bound=HasId)


def allows(user: User, model: str) -> bool:
    return user.allowed_models is None or model in user.allowed_models


def permitted(user: User, models: Iterable[M]) -> list[M]:
    """The models of `models` (anything with an `id`) that `user` may use, in order."""
    return [m for m in models if allows(user, m.id)]


def check(user: User, model: str, available: Iterable[str] = ()) -> None:
    """BadInput (the unknown-model answer, listing what the user may use) unless `user` may
    use `model`; a model they may not use looks exactly like one that does not exist."""
    if allows(user, model):
        return
    names = [name for name in available if allows(user, name)]
    raise BadInput(f"Unknown model {model!r}. Available models: {', '.join(names) or 'none'}",
                   field="model", available=names)

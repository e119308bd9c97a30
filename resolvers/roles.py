"""Roles and what they allow: `admin` manages users and reads the audit log; `user` does not.

Every admin operation calls `require_admin` first, whichever face (REST, GraphQL, CLI) it
was reached through.
"""

from __future__ import annotations

from models import User
from resolvers.kit.errors import Forbidden

ADMIN = "admin"
USER = "user"
ROLES = (ADMIN, USER)


def is_admin(user: User) -> bool:
    return user.role == ADMIN and user.active


def require_admin(actor: User) -> None:
    """Forbidden unless `actor` is an active admin."""
    if not is_admin(actor):
        raise Forbidden("Administrators only")

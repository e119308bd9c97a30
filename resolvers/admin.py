"""Administration: users (role, active, allowed models), invites, and the first admin.

Every operation here starts with `roles.require_admin(actor)` (except `promote`, which is the
command line's: whoever runs it already owns the server and its database), and writes its
audit record in the same transaction as the change.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import Invite, RefreshToken, User
from resolvers import audit, auth, roles
from resolvers.kit import usercache
from resolvers.kit.broker import Broker
from resolvers.kit.clock import now_ms
from resolvers.kit.errors import BadInput, Conflict, NotFound, ValidationFailed

PAGE_MAX = 200
MODEL_ID_MAX = 128


class UserNotFound(NotFound):
    default_message = "User not found"


@dataclass(slots=True)
class UserPage:
    items: list[User]
    next_cursor: str | None


@dataclass(slots=True)
class UserChanges:
    """What an admin changes on a user; fields left as `...` are not touched."""

    role: Any = ...
    active: Any = ...
    allowed_models: Any = ...


async def list_users(session: AsyncSession, actor: User, *, q: str | None = None,
                     limit: int = 50, cursor: str | None = None) -> UserPage:
    """Users by username; `q` matches a part of the username or email (case-insensitive)."""
    roles.require_admin(actor)
    limit = max(1, min(limit, PAGE_MAX))
    statement = select(User)
    if q:
        pattern = "%" + q.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace(
            "_", "\\_")[:100] + "%"
        statement = statement.where(or_(col(User.username_key).like(pattern, escape="\\"),
                                        func.lower(col(User.email)).like(pattern, escape="\\")))
    if cursor:
        statement = statement.where(col(User.username_key) > cursor)
    rows = list((await session.exec(
        statement.order_by(col(User.username_key)).limit(limit + 1))).all())
    more = len(rows) > limit
    rows = rows[:limit]
    return UserPage(items=rows, next_cursor=rows[-1].username_key if more and rows else None)


def _check(changes: UserChanges) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if changes.role is not ...:
        if changes.role not in roles.ROLES:
            raise ValidationFailed(f"role must be one of {', '.join(roles.ROLES)}",
                                   field="role")
        values["role"] = changes.role
    if changes.active is not ...:
        if not isinstance(changes.active, bool):
            raise ValidationFailed("active must be true or false", field="active")
        values["active"] = changes.active
    if changes.allowed_models is not ...:
        models = changes.allowed_models
        if models is not None:
            if not isinstance(models, list) or not all(
                    isinstance(m, str) and 0 < len(m) <= MODEL_ID_MAX for m in models):
                raise ValidationFailed("allowed_models must be null or a list of model ids",
                                       field="allowed_models")
            models = list(dict.fromkeys(models))
        values["allowed_models"] = models
    return values


async def update_user(session: AsyncSession, actor: User, *, user_id: str,
                      changes: UserChanges, broker: Broker | None = None,
                      address: str | None = None) -> User:
    """Change a user's role, active flag or allowed models. Deactivating revokes every token
    of theirs at once (and, with `broker`, closes their sockets and stops their replies on
    every worker). Admins cannot demote or deactivate themselves (no lock-out)."""
    roles.require_admin(actor)
    values = _check(changes)
    user = await session.get(User, user_id)
    if user is None:
        raise UserNotFound()
    if user.id == actor.id and (values.get("role", roles.ADMIN) != roles.ADMIN
                                or values.get("active", True) is False):
        raise Conflict("You cannot demote or deactivate yourself")
    deactivating = values.get("active") is False and user.active
    before = {name: getattr(user, name) for name in values}
    if deactivating:
        values["token_generation"] = user.token_generation + 1
        await session.exec(
            update(RefreshToken)
            .where(col(RefreshToken.user_id) == user.id, col(RefreshToken.revoked_at).is_(None))
            .values(revoked_at=now_ms()))
    changed = {name: {"from": before[name], "to": values[name]} for name in before
               if before[name] != values[name]}
    if not changed:
        return user
    await session.exec(update(User).where(col(User.id) == user.id).values(**values))
    audit.record(session, audit.ADMIN_USER_UPDATED, actor_id=actor.id, target_id=user.id,
                 ip=address, detail={"changes": changed})
    await session.commit()
    await usercache.changed(user.id)  # role, active, models: the next request sees them
    await session.refresh(user)
    if deactivating and broker is not None:
        await auth.publish_revocation(broker, user.id, "deactivated")
    return user


async def create_invite(session: AsyncSession, actor: User, *,
                        address: str | None = None) -> str:
    """A new single-use sign-up code (for SIGNUP=invite); only its hash is kept."""
    roles.require_admin(actor)
    code = auth.new_code(groups=4)
    invite = Invite(id=str(uuid.uuid4()), code_hash=auth.hash_code(code), created_by=actor.id,
                    created_at=now_ms())
    session.add(invite)
    audit.record(session, audit.ADMIN_INVITE_CREATED, actor_id=actor.id, target_id=invite.id,
                 ip=address)
    await session.commit()
    return code


async def promote(session: AsyncSession, *, username: str) -> User:
    """Make `username` an admin (the command line's `chat-studio admin promote`)."""
    key = username.strip().lower()
    if not key:
        raise BadInput("Give a username", field="username")
    user = (await session.exec(select(User).where(User.username_key == key))).first()
    if user is None:
        raise UserNotFound(f"No user named {username!r}")
    if user.role != roles.ADMIN:
        await session.exec(update(User).where(col(User.id) == user.id)
                           .values(role=roles.ADMIN))
        audit.record(session, audit.ADMIN_PROMOTED, target_id=user.id,
                     detail={"username": user.username, "via": "command line"})
        await session.commit()
        await usercache.changed(user.id)  # a server in this process (none from the CLI)
        await session.refresh(user)
    return user

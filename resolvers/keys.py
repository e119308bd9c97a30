"""API keys: long-lived credentials for scripts and OpenAI SDKs.

A key is `cs-` + 43 random URL-safe characters (256 bits). Only its SHA-256 is stored (a
random secret of that size needs no slow hash); its first characters (`prefix`) are kept to
recognise it in a list. The secret is returned once, by `create`.

A key acts for its owner within its scopes — `chat` (chat and /v1), `read` (reads and
queries), `write` (changes) — and never for the account itself: managing keys, the password,
2FA, logging out or deleting the account need a signed-in session (scope `account`, which no
key can hold). Revoking or expiry refuses the key at once, and revoking closes the sockets it
opened (announced on the owner's revocation channel, like logout-everywhere).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, cast

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import ApiKey, User
from resolvers import auth, validation
from resolvers.kit.clock import now_ms
from resolvers.kit.errors import Forbidden, NotFound, Unauthenticated, ValidationFailed

if TYPE_CHECKING:
    from resolvers.kit.broker import Broker
    from resolvers.kit.security import Security
    from resolvers.kit.usercache import UserCache

Scope = Literal["chat", "read", "write", "account"]
KEY_SCOPES: tuple[Scope, ...] = ("chat", "read", "write")  # what a key may hold
ACCOUNT: Scope = "account"  # never held by a key
PREFIX = "cs-"
PREFIX_SHOWN = 11  # "cs-" + 8 characters
NAME_MAX = 100
EXPIRES_DAYS_MAX = 3650
BUDGET_USD_MAX = 1_000_000  # a key's budget, at most (µ$ fit a 64-bit column many times)
# last_used_at is written at most this often per key: not one write per request.
LAST_USED_RESOLUTION_MS = 60_000


class KeyNotAllowed(Forbidden):
    default_message = "API keys cannot do this; sign in with your password"


@dataclass(frozen=True, slots=True)
class CreatedKey:
    row: ApiKey
    secret: str  # shown this once


def looks_like_key(token: str | None) -> bool:
    return bool(token) and str(token).startswith(PREFIX)


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()


def scopes_of(row: ApiKey) -> tuple[Scope, ...]:
    return tuple(cast(Scope, s) for s in row.scopes.split(",") if s)


def require(key: ApiKey | None, scopes: Iterable[Scope]) -> None:
    """Forbidden unless the caller is a session (no key) or the key holds one of `scopes`."""
    if key is None:
        return
    wanted = set(scopes)
    if ACCOUNT in wanted and len(wanted) == 1:
        raise KeyNotAllowed()
    if not wanted & set(scopes_of(key)):
        raise Forbidden(f"this API key lacks the scope for this ({' or '.join(sorted(wanted))})")


def _valid(row: ApiKey | None, now: int) -> ApiKey:
    # One message for unknown, revoked and expired: the answer tells a guesser nothing.
    if row is None or row.revoked_at is not None or (
            row.expires_at is not None and row.expires_at <= now):
        raise Unauthenticated("Invalid API key")
    return row


async def find_valid(session: AsyncSession, secret: str) -> ApiKey:
    """The live key `secret` stands for; Unauthenticated when unknown, revoked or expired.
    Marks it used (at most once a minute)."""
    now = now_ms()
    row = _valid((await session.exec(
        select(ApiKey).where(ApiKey.key_hash == hash_key(secret)))).first(), now)
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION_MS:
        await session.exec(update(ApiKey).where(col(ApiKey.id) == row.id)
                           .values(last_used_at=now))
        await session.commit()
        row.last_used_at = now
    return row


async def still_valid(session: AsyncSession, key_id: str) -> ApiKey:
    """Re-check a key by id (the socket watcher); Unauthenticated when it no longer works."""
    return _valid(await session.get(ApiKey, key_id), now_ms())


def _scopes(scopes: list[str] | None) -> str:
    chosen = list(KEY_SCOPES) if scopes is None else scopes
    if not chosen:
        raise ValidationFailed("scopes must name at least one of chat, read, write",
                               field="scopes")
    for scope in chosen:
        if scope not in KEY_SCOPES:
            raise ValidationFailed(f"unknown scope {scope!r}: use chat, read or write",
                                   field="scopes")
    return ",".join(s for s in KEY_SCOPES if s in chosen)


async def create(session: AsyncSession, actor: User, *, key: ApiKey | None, name: str,
                 scopes: list[str] | None = None, expires_in_days: int | None = None,
                 budget_micros: int | None = None) -> CreatedKey:
    """A new key for the caller (`key`: the key the caller used, if any — refused: a key
    never makes keys). Default scopes: chat, read and write; no expiry; no budget."""
    require(key, [ACCOUNT])
    name = validation.bounded_text(name.strip(), field="name", limit=NAME_MAX)
    if not name:
        raise ValidationFailed("name must not be blank", field="name")
    if expires_in_days is not None and not 1 <= expires_in_days <= EXPIRES_DAYS_MAX:
        raise ValidationFailed(f"expires_in_days must be between 1 and {EXPIRES_DAYS_MAX}",
                               field="expires_in_days")
    if budget_micros is not None and not 0 <= budget_micros <= BUDGET_USD_MAX * 1_000_000:
        raise ValidationFailed(f"budget_usd must be between 0 and {BUDGET_USD_MAX}",
                               field="budget_usd")
    secret = PREFIX + secrets.token_urlsafe(32)
    now = now_ms()
    row = ApiKey(
        id=f"key_{uuid.uuid4().hex[:16]}", user_id=actor.id, name=name,
        prefix=secret[:PREFIX_SHOWN], key_hash=hash_key(secret), scopes=_scopes(scopes),
        created_at=now,
        expires_at=now + expires_in_days * 86_400_000 if expires_in_days else None,
        budget_micros=budget_micros,
    )
    session.add(row)
    await session.commit()
    return CreatedKey(row=row, secret=secret)


async def list_for(session: AsyncSession, actor: User, *, key: ApiKey | None) -> list[ApiKey]:
    """The caller's keys that still work or expired, newest first (revoked ones are gone)."""
    require(key, [ACCOUNT])
    rows = await session.exec(
        select(ApiKey).where(ApiKey.user_id == actor.id, col(ApiKey.revoked_at).is_(None))
        .order_by(col(ApiKey.created_at).desc(), col(ApiKey.id)))
    return list(rows.all())


async def revoke(session: AsyncSession, actor: User, *, key: ApiKey | None, key_id: str,
                 broker: Broker | None = None) -> None:
    """Revoke one of the caller's keys: refused from then on, its sockets close. Another
    user's key, or an unknown one, is NotFound."""
    require(key, [ACCOUNT])
    result = await session.exec(
        update(ApiKey)
        .where(col(ApiKey.id) == key_id, col(ApiKey.user_id) == actor.id,
               col(ApiKey.revoked_at).is_(None))
        .values(revoked_at=now_ms()))
    if result.rowcount != 1:
        raise NotFound("API key not found")
    await session.commit()
    if broker is not None:
        await auth.publish_revocation(broker, actor.id, "key_revoked", key_id=key_id)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking: the user, and the API key they used (None: a signed-in session)."""

    user: User
    key: ApiKey | None = None

    @property
    def key_id(self) -> str | None:
        return self.key.id if self.key is not None else None


async def authenticate(session: AsyncSession, security: Security, token: str | None, *,
                       scopes: Iterable[Scope], cache: UserCache | None = None) -> Caller:
    """The caller behind a Bearer token — an access token or an API key — allowed to do
    something that needs one of `scopes`. Unauthenticated for a bad, revoked or expired
    token or key; Forbidden (403) for a key without the scope (always, for ACCOUNT)."""
    if looks_like_key(token):
        assert token is not None
        row = await find_valid(session, token)
        require(row, scopes)
        user = await session.get(User, row.user_id)
        if user is None:
            raise auth.UserGone()
        return Caller(user=user, key=row)
    return Caller(user=await auth.authenticate(session, security, token, cache=cache))

"""Auth operations: register, login, refresh, logout, and resolving a token to its user."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import Invite, RefreshToken, User
from resolvers import audit, validation
from resolvers.kit.clock import now_ms, utcnow
from resolvers.kit.errors import (
    AppError,
    Forbidden,
    InvalidCredentials,
    NotFound,
    Unauthenticated,
    UsernameTaken,
)
from resolvers.kit.ratelimit import RateLimiter, enforce
from resolvers.kit.security import Security
from resolvers.kit.usercache import UserCache, changed

if TYPE_CHECKING:
    from resolvers.kit.broker import Broker


log = logging.getLogger("chat_studio.auth")


def revocation_channel(user_id: str) -> str:
    return f"user-revoked:{user_id}"


async def publish_revocation(
    broker: Broker, user_id: str, reason: str, *, below_generation: int | None = None,
    key_id: str | None = None,
) -> None:
    """Tell every worker to close `user_id`'s sockets. Call only after the commit.

    `below_generation`: only tokens of an older generation are revoked (logout everywhere
    bumps it; a session signed in afterwards stays open). None revokes every token (deletion).
    `key_id`: only the sockets that API key opened (the key was revoked).
    Never raises: the change is committed either way, and sockets still close at token expiry.
    """
    message: dict[str, Any] = {"reason": reason}
    if below_generation is not None:
        message["below_generation"] = below_generation
    if key_id is not None:
        message["key_id"] = key_id
    try:
        await broker.publish(revocation_channel(user_id), message)
    except Exception:
        log.exception("could not publish the revocation of %s", user_id)


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int  # seconds until the access token expires
    user: User
    token_type: str = "bearer"


class UserGone(NotFound):
    default_message = "User not found"


# The password hash of an account made by single sign-on: never a valid hash, so password
# sign-in (and anything else that asks for the password) fails for it.
NO_PASSWORD = "!sso"


def has_password(user: User) -> bool:
    return user.password_hash != NO_PASSWORD


class Deactivated(Unauthenticated):
    default_message = "This account is deactivated"


@dataclass(frozen=True, slots=True)
class MfaChallenge:
    """A correct password for an account with 2FA: no tokens yet, only the short-lived
    `mfa_token` that `twofactor.verify` exchanges for them with a code."""

    mfa_token: str
    user: User


class MfaRequired(AppError):
    """GraphQL's answer to a password sign-in of a 2FA account (`extensions.mfaToken`)."""

    code = "MFA_REQUIRED"
    http_status = 401
    default_message = "Two-factor authentication required: call verifyTwoFactor"


def hash_code(code: str) -> str:
    """Invite and recovery codes are random; a plain sha256 of the normalised code is kept."""
    normal = "".join(code.split()).replace("-", "").lower()
    return hashlib.sha256(normal.encode()).hexdigest()


def new_code(groups: int = 3) -> str:
    """A human-typable random code such as `k3x9-2mqa-7hzt` (~62 bits with 3 groups)."""
    alphabet = "23456789abcdefghjkmnpqrstuvwxyz"
    return "-".join("".join(secrets.choice(alphabet) for _ in range(4)) for _ in range(groups))


async def issue(
    session: AsyncSession, security: Security, user: User, *, family_id: str | None = None
) -> TokenPair:
    """Sign `user` in: a new access token and refresh token (commits the session)."""
    return await _issue(session, security, user, family_id=family_id)


async def _issue(
    session: AsyncSession, security: Security, user: User, *, family_id: str | None = None
) -> TokenPair:
    access, expires_in = security.create_access_token(user.id, user.token_generation)
    refresh = security.new_refresh_token()
    now = now_ms()
    session.add(
        RefreshToken(
            id=str(uuid.uuid4()),
            user_id=user.id,
            family_id=family_id or str(uuid.uuid4()),
            token_hash=security.hash_refresh_token(refresh),
            created_at=now,
            expires_at=now + security.settings.refresh_token_expire_days * 86_400_000,
        )
    )
    await session.commit()
    return TokenPair(access_token=access, refresh_token=refresh, expires_in=expires_in, user=user)


async def _limit_attempt(security: Security, limiter: RateLimiter | None, *, action: str,
                         address: str | None, username: str) -> None:
    """Brute-force guard, counted before any password work: attempts per client address and
    per username (a success resets the username's count; see login)."""
    settings = security.settings
    if address:
        await enforce(limiter, f"auth:address:{address}",
                      limit=settings.rate_limit_auth_per_address,
                      window=settings.rate_limit_auth_per_address_window,
                      scope="auth_address", message="Too many attempts from your address")
    await enforce(limiter, _username_key(action, username),
                  limit=settings.rate_limit_auth_per_username,
                  window=settings.rate_limit_auth_per_username_window,
                  scope="auth_username", message="Too many attempts for this username")


def _username_key(action: str, username: str) -> str:
    return f"auth:{action}:{username.strip().lower()[:64]}"


class SignupClosed(Forbidden):
    default_message = "Sign-up is closed on this server"


async def _take_invite(session: AsyncSession, invite_code: str | None, user_id: str) -> str:
    """Use an invite code (SIGNUP=invite): once, by a guarded update. Returns its id."""
    if not invite_code:
        raise SignupClosed("Sign-up needs an invite code on this server")
    row = (await session.exec(
        select(Invite).where(Invite.code_hash == hash_code(invite_code)))).first()
    if row is None or row.used_at is not None:
        raise SignupClosed("This invite code is not valid (unknown or already used)")
    taken = await session.exec(
        update(Invite).where(col(Invite.id) == row.id, col(Invite.used_at).is_(None))
        .values(used_at=now_ms(), used_by=user_id))
    if taken.rowcount != 1:
        raise SignupClosed("This invite code is not valid (unknown or already used)")
    return row.id


async def register(
    session: AsyncSession, security: Security, *, username: str, email: str, password: str,
    limiter: RateLimiter | None = None, address: str | None = None,
    invite_code: str | None = None,
) -> TokenPair:
    """Create an account and sign it in. Username and email are unique (case-insensitive).
    With `limiter`, attempts are limited per client `address` and per username.
    SIGNUP=closed refuses (403); SIGNUP=invite needs an unused `invite_code`."""
    policy = security.settings.signup
    if policy == "closed":
        raise SignupClosed()
    if policy == "invite" and not invite_code:
        raise SignupClosed("Sign-up needs an invite code on this server")
    await _limit_attempt(security, limiter, action="register", address=address,
                         username=username)
    username = validation.username(username)
    email = validation.email(email)
    password = validation.password(password)
    taken = await session.exec(
        select(User.username_key, User.email).where(
            (User.username_key == username.lower()) | (User.email == email)
        )
    )
    for row_username, _ in taken.all():
        if row_username == username.lower():
            raise UsernameTaken("Username already registered")
        raise UsernameTaken("Email already registered")
    # End the read transaction: its pooled connection must not wait out the hashing.
    await session.commit()
    password_hash = await asyncio.to_thread(security.hash_password, password)
    user = User(
        id=f"user_{uuid.uuid4().hex[:16]}",
        username=username,
        username_key=username.lower(),
        email=email,
        password_hash=password_hash,
        created_at=utcnow(),
    )
    session.add(user)
    try:
        await session.flush()
    except IntegrityError as exc:  # lost a race with a concurrent registration
        await session.rollback()
        raise UsernameTaken("Username or email already registered") from exc
    detail: dict[str, Any] = {"username": user.username}
    if policy == "invite":
        try:
            detail["invite_id"] = await _take_invite(session, invite_code, user.id)
        except SignupClosed:
            await session.rollback()
            raise
    audit.record(session, audit.REGISTER, actor_id=user.id, target_id=user.id, ip=address,
                 detail=detail)
    return await _issue(session, security, user)


async def login(
    session: AsyncSession, security: Security, *, username: str, password: str,
    limiter: RateLimiter | None = None, address: str | None = None,
) -> TokenPair | MfaChallenge:
    """Same answer, in about the same time, for an unknown user and a wrong password.
    With `limiter`, attempts are limited per client `address` and per username; a
    successful sign-in clears the username's count. An account with 2FA gets an
    MfaChallenge instead of tokens."""
    validation.text(username, field="username")
    validation.text(password, field="password")
    await _limit_attempt(security, limiter, action="login", address=address, username=username)
    key = username.strip().lower()
    user = None
    # A key that cannot be a username is not looked up (PostgreSQL refuses NUL in text), but
    # still costs the dummy verification below.
    if validation.USERNAME_RE.fullmatch(key):
        user = (await session.exec(select(User).where(User.username_key == key))).first()
        # Release the connection before ~100 ms of argon2 (objects stay loaded: the sessions
        # do not expire on commit).
        await session.commit()
    ok = await asyncio.to_thread(
        security.verify_password, password[: validation.PASSWORD_MAX * 4],
        user.password_hash if user else None,
    )
    if user is None or not ok:
        # An unknown name is not kept: it is often a password typed into the wrong field.
        audit.record(session, audit.LOGIN_FAILED, target_id=user.id if user else None,
                     ip=address, detail={"username": user.username} if user else
                     {"unknown_user": True})
        await session.commit()
        raise InvalidCredentials()
    if not user.active:
        audit.record(session, audit.LOGIN_FAILED, target_id=user.id, ip=address,
                     detail={"username": user.username, "reason": "deactivated"})
        await session.commit()
        raise Deactivated()
    if limiter is not None:
        await limiter.reset(_username_key("login", username))
    if user.totp_enabled:
        return MfaChallenge(mfa_token=security.create_mfa_token(user.id, user.token_generation),
                            user=user)
    audit.record(session, audit.LOGIN_OK, actor_id=user.id, target_id=user.id, ip=address,
                 detail={"method": "password"})
    return await _issue(session, security, user)


async def authenticate(session: AsyncSession, security: Security, token: str | None, *,
                       cache: UserCache | None = None) -> User:
    """The user an access token belongs to; raises Unauthenticated or UserGone.

    With `cache`, the user row is read from the database only when this process does not
    hold it (resolvers/kit/usercache.py: every change to a user drops it at once, on every
    worker); the generation and active checks run on every request either way."""
    if not token:
        raise Unauthenticated("Not authenticated")
    if not validation.is_text(token):
        raise Unauthenticated("Invalid token")
    claims = security.decode_access_token(token)
    user: User | None = cache.get(claims.user_id) if cache is not None else None
    if user is None:
        epoch = cache.epoch if cache is not None else 0
        user = await session.get(User, claims.user_id)
        if user is None:
            raise UserGone()
        if cache is not None:
            # Out of the session first: its rollback (an error later in this request) would
            # expire the shared object's attributes, and a detached one cannot reload them.
            session.expunge(user)
            cache.put(user.id, user, epoch=epoch)
    if claims.generation != user.token_generation:
        raise Unauthenticated("Token has been revoked")
    if not user.active:
        raise Deactivated()
    return user


async def _revoke_family(session: AsyncSession, family_id: str, now: int) -> None:
    await session.exec(
        update(RefreshToken)
        .where(col(RefreshToken.family_id) == family_id, col(RefreshToken.revoked_at).is_(None))
        .values(revoked_at=now)
    )


async def refresh(session: AsyncSession, security: Security, *, refresh_token: str) -> TokenPair:
    """Rotate a refresh token. Presenting one that was already rotated revokes its family:
    somebody holds a copy, and we cannot tell which holder is legitimate."""
    if not validation.is_text(refresh_token):
        raise Unauthenticated("Invalid refresh token")
    token_hash = security.hash_refresh_token(refresh_token)
    row = (
        await session.exec(select(RefreshToken).where(RefreshToken.token_hash == token_hash))
    ).first()
    now = now_ms()
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        raise Unauthenticated("Invalid refresh token")
    if row.rotated_at is not None:
        await _revoke_family(session, row.family_id, now)
        await session.commit()
        raise Unauthenticated("Refresh token reuse detected; please sign in again")
    # Guarded update: of two concurrent uses of one token, exactly one wins.
    result = await session.exec(
        update(RefreshToken)
        .where(col(RefreshToken.id) == row.id, col(RefreshToken.rotated_at).is_(None))
        .values(rotated_at=now)
    )
    if result.rowcount != 1:
        await session.rollback()
        raise Unauthenticated("Invalid refresh token")
    user = await session.get(User, row.user_id)
    if user is None:
        raise UserGone()
    if not user.active:
        await session.rollback()
        raise Deactivated()
    return await _issue(session, security, user, family_id=row.family_id)


async def logout(
    session: AsyncSession,
    security: Security,
    actor: User,
    *,
    refresh_token: str | None = None,
    everywhere: bool = False,
    broker: Broker | None = None,
) -> None:
    """Revoke one refresh token's family, or (everywhere) all the user's tokens, access
    tokens included: they carry a generation that no longer matches. With `broker`, live
    sockets signed in with those tokens are closed on every worker too."""
    now = now_ms()
    if everywhere:
        await session.exec(
            update(RefreshToken)
            .where(col(RefreshToken.user_id) == actor.id, col(RefreshToken.revoked_at).is_(None))
            .values(revoked_at=now)
        )
        await session.exec(
            update(User)
            .where(col(User.id) == actor.id)
            .values(token_generation=User.token_generation + 1)
        )
    elif refresh_token:
        row = (
            await session.exec(
                select(RefreshToken).where(
                    RefreshToken.token_hash == security.hash_refresh_token(refresh_token),
                    RefreshToken.user_id == actor.id,
                )
            )
        ).first()
        if row is not None:
            await _revoke_family(session, row.family_id, now)
    audit.record(session, audit.LOGOUT, actor_id=actor.id, target_id=actor.id,
                 detail={"everywhere": everywhere})
    await session.commit()
    if everywhere:
        await changed(actor.id)  # the token check must see the new generation at once
    if everywhere and broker is not None:
        generation = (
            await session.exec(select(User.token_generation).where(col(User.id) == actor.id))
        ).one()
        await publish_revocation(broker, actor.id, "logout",
                                            below_generation=generation)


async def delete_account(
    session: AsyncSession,
    security: Security,
    actor: User,
    *,
    password: str,
    broker: Broker | None = None,
) -> None:
    """Delete the caller's account and everything it owns (conversations, messages, tokens,
    usage). Needs the password again. With `broker`, the user's live sockets close."""
    validation.text(password, field="password")
    ok = await asyncio.to_thread(
        security.verify_password, password[: validation.PASSWORD_MAX * 4], actor.password_hash
    )
    if not ok:
        raise InvalidCredentials("Incorrect password")
    # The database cascades to every row that belongs to the user.
    await session.exec(delete(User).where(col(User.id) == actor.id))
    audit.record(session, audit.ACCOUNT_DELETED, actor_id=actor.id, target_id=actor.id,
                 detail={"username": actor.username})
    await session.commit()
    await changed(actor.id)
    if broker is not None:
        await publish_revocation(broker, actor.id, "deleted")


async def count_users(session: AsyncSession) -> int:
    return int((await session.exec(select(func.count()).select_from(User))).one())

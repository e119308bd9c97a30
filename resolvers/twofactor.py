"""Two-factor sign-in with TOTP (RFC 6238; pyotp), recovery codes, and the second step of a
password sign-in.

    setup   → a new secret (kept encrypted), its otpauth:// URI and a QR code as SVG
    enable  → a correct code turns 2FA on and answers ten single-use recovery codes
    verify  → mfa_token (from login) + a code or a recovery code → the usual tokens
    disable → password + a code (or a recovery code) turn it off

Every code attempt is rate-limited per user and per client address (the login limits), and
an accepted code is accepted once: its time step is remembered, so a code seen over someone's
shoulder cannot be replayed within its 30 seconds.
"""

from __future__ import annotations

import asyncio
import hmac
import io
import time
import uuid
from dataclasses import dataclass

import pyotp
import segno
from sqlalchemy import delete, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import RecoveryCode, User
from resolvers import audit, auth, validation
from resolvers.kit import usercache
from resolvers.kit.clock import now_ms
from resolvers.kit.errors import BadInput, Conflict, InvalidCredentials, Unauthenticated
from resolvers.kit.ratelimit import RateLimiter, enforce
from resolvers.kit.security import Security

RECOVERY_CODES = 10
STEP_SECONDS = 30
# One step either side: a phone clock a little off, or a code typed as it rolls over.
VALID_WINDOW = 1


@dataclass(frozen=True, slots=True)
class Setup:
    secret: str
    otpauth_uri: str
    qr_svg: str


class WrongCode(InvalidCredentials):
    default_message = "Incorrect code"


async def _limit(security: Security, limiter: RateLimiter | None, user_id: str,
                 address: str | None) -> None:
    settings = security.settings
    if address:
        await enforce(limiter, f"auth:address:{address}",
                      limit=settings.rate_limit_auth_per_address,
                      window=settings.rate_limit_auth_per_address_window,
                      scope="auth_address", message="Too many attempts from your address")
    await enforce(limiter, f"auth:2fa:{user_id}", limit=settings.rate_limit_auth_per_username,
                  window=settings.rate_limit_auth_per_username_window,
                  scope="auth_2fa", message="Too many 2FA attempts")


def _matching_step(secret: str, code: str, at: float) -> int | None:
    """The time step whose code is `code` (within the window), or None."""
    code = "".join(code.split())
    if not code.isdigit() or len(code) != 6:
        return None
    totp = pyotp.TOTP(secret)
    now_step = int(at) // STEP_SECONDS
    for step in range(now_step - VALID_WINDOW, now_step + VALID_WINDOW + 1):
        if hmac.compare_digest(totp.at(step * STEP_SECONDS), code):
            return step
    return None


async def _accept_code(session: AsyncSession, security: Security, user: User,
                       code: str) -> bool:
    """True when `code` is the user's current TOTP code and was not used before (a guarded
    update records its step, so two concurrent uses of one code cannot both pass)."""
    if user.totp_secret is None:
        return False
    step = _matching_step(security.unseal(user.totp_secret), code, time.time())
    if step is None:
        return False
    last = col(User.totp_last_step)
    result = await session.exec(
        update(User).where(col(User.id) == user.id,
                           last.is_(None) | (last < step)).values(totp_last_step=step))
    return bool(result.rowcount == 1)


async def _use_recovery_code(session: AsyncSession, user: User, code: str) -> bool:
    result = await session.exec(
        update(RecoveryCode)
        .where(col(RecoveryCode.user_id) == user.id,
               col(RecoveryCode.code_hash) == auth.hash_code(code[:64]),
               col(RecoveryCode.used_at).is_(None))
        .values(used_at=now_ms()))
    return bool(result.rowcount == 1)


def _qr_svg(uri: str) -> str:
    # A standalone SVG (with its namespace): usable inline and as an <img> data: URI.
    buffer = io.BytesIO()
    segno.make(uri, error="m").save(buffer, kind="svg", scale=4, xmldecl=False,
                                    title="2FA QR code")
    return buffer.getvalue().decode()


async def setup(session: AsyncSession, security: Security, actor: User) -> Setup:
    """Start enrolling: a new secret replaces any earlier unconfirmed one. 2FA is not on
    until `enable` gets a correct code. Conflict when 2FA is already on."""
    # The row, not the caller's object: that may come from the token check's cache.
    fresh = await session.get(User, actor.id)
    if fresh is None:
        raise auth.UserGone()
    if fresh.totp_enabled:
        raise Conflict("Two-factor authentication is already enabled; disable it first")
    secret = pyotp.random_base32()
    await session.exec(update(User).where(col(User.id) == actor.id)
                       .values(totp_secret=security.seal(secret), totp_last_step=None))
    audit.record(session, audit.TWOFA_SETUP, actor_id=actor.id, target_id=actor.id)
    await session.commit()
    uri = pyotp.TOTP(secret).provisioning_uri(name=actor.username,
                                              issuer_name=security.settings.totp_issuer)
    return Setup(secret=secret, otpauth_uri=uri, qr_svg=_qr_svg(uri))


async def enable(session: AsyncSession, security: Security, actor: User, *, code: str,
                 limiter: RateLimiter | None = None, address: str | None = None) -> list[str]:
    """Turn 2FA on with a code from the authenticator; returns the recovery codes (shown
    this once, stored hashed)."""
    await _limit(security, limiter, actor.id, address)
    user = await session.get(User, actor.id)
    if user is None:
        raise auth.UserGone()
    if user.totp_enabled:
        raise Conflict("Two-factor authentication is already enabled")
    if user.totp_secret is None:
        raise BadInput("Call 2fa/setup first", field="code")
    if not await _accept_code(session, security, user, code):
        await session.rollback()
        raise WrongCode()
    codes = [auth.new_code() for _ in range(RECOVERY_CODES)]
    await session.exec(delete(RecoveryCode).where(col(RecoveryCode.user_id) == user.id))
    for item in codes:
        session.add(RecoveryCode(id=str(uuid.uuid4()), user_id=user.id,
                                 code_hash=auth.hash_code(item)))
    await session.exec(update(User).where(col(User.id) == user.id).values(totp_enabled=True))
    audit.record(session, audit.TWOFA_ENABLED, actor_id=user.id, target_id=user.id, ip=address)
    await session.commit()
    await usercache.changed(user.id)
    if limiter is not None:
        await limiter.reset(f"auth:2fa:{user.id}")
    return codes


async def _second_factor(session: AsyncSession, security: Security, user: User, *,
                         code: str | None, recovery_code: str | None,
                         address: str | None) -> None:
    """Check a TOTP code or a recovery code (used up); WrongCode after auditing the miss."""
    user_id = user.id  # a rollback expires `user`
    if code:
        ok, method = await _accept_code(session, security, user, code), "totp"
    elif recovery_code:
        ok, method = await _use_recovery_code(session, user, recovery_code), "recovery_code"
    else:
        raise BadInput("Give `code` or `recovery_code`", field="code")
    if not ok:
        await session.rollback()
        audit.record(session, audit.TWOFA_FAILED, target_id=user_id, ip=address,
                     detail={"method": method})
        await session.commit()
        raise WrongCode()
    if method == "recovery_code":
        left = len((await session.exec(select(RecoveryCode.id).where(
            RecoveryCode.user_id == user.id, col(RecoveryCode.used_at).is_(None)))).all())
        audit.record(session, audit.TWOFA_RECOVERY_USED, actor_id=user.id, target_id=user.id,
                     ip=address, detail={"remaining": left})


async def verify(session: AsyncSession, security: Security, *, mfa_token: str,
                 code: str | None = None, recovery_code: str | None = None,
                 limiter: RateLimiter | None = None,
                 address: str | None = None) -> auth.TokenPair:
    """The second step of a sign-in: the `mfa_token` from login plus a code → tokens."""
    claims = security.decode_mfa_token(mfa_token)
    await _limit(security, limiter, claims.user_id, address)
    user = await session.get(User, claims.user_id)
    if user is None or user.token_generation != claims.generation:
        raise Unauthenticated("The sign-in is no longer valid; sign in again")
    if not user.active:
        raise auth.Deactivated()
    if not user.totp_enabled:
        raise Unauthenticated("The sign-in is no longer valid; sign in again")
    await _second_factor(session, security, user, code=code, recovery_code=recovery_code,
                         address=address)
    audit.record(session, audit.LOGIN_OK, actor_id=user.id, target_id=user.id, ip=address,
                 detail={"method": "password+2fa"})
    if limiter is not None:
        await limiter.reset(f"auth:2fa:{user.id}")
    return await auth.issue(session, security, user)


async def disable(session: AsyncSession, security: Security, actor: User, *, password: str,
                  code: str | None = None, recovery_code: str | None = None,
                  limiter: RateLimiter | None = None, address: str | None = None) -> None:
    """Turn 2FA off: needs the password and a code (or a recovery code). An account made by
    single sign-on has no password: the code alone (with its access token) does."""
    await _limit(security, limiter, actor.id, address)
    if auth.has_password(actor):
        ok = await asyncio.to_thread(security.verify_password,
                                     password[: validation.PASSWORD_MAX * 4],
                                     actor.password_hash)
        if not ok:
            raise InvalidCredentials("Incorrect password")
    user = await session.get(User, actor.id)
    if user is None:
        raise auth.UserGone()
    if not user.totp_enabled:
        raise Conflict("Two-factor authentication is not enabled")
    await _second_factor(session, security, user, code=code, recovery_code=recovery_code,
                         address=address)
    await session.exec(delete(RecoveryCode).where(col(RecoveryCode.user_id) == user.id))
    await session.exec(update(User).where(col(User.id) == user.id)
                       .values(totp_enabled=False, totp_secret=None, totp_last_step=None))
    audit.record(session, audit.TWOFA_DISABLED, actor_id=user.id, target_id=user.id,
                 ip=address)
    await session.commit()
    await usercache.changed(user.id)


async def status(session: AsyncSession, actor: User) -> tuple[bool, int]:
    """Whether 2FA is on, and how many recovery codes are left."""
    left = len((await session.exec(select(RecoveryCode.id).where(
        RecoveryCode.user_id == actor.id, col(RecoveryCode.used_at).is_(None)))).all())
    enabled = (await session.exec(select(User.totp_enabled).where(User.id == actor.id))).first()
    return bool(enabled), left

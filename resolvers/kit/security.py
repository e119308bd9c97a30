"""Password hashing (argon2 via libpass) and tokens (JWT access, opaque refresh)."""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import jwt
from cryptography.fernet import Fernet, InvalidToken
from passlib.context import CryptContext

from resolvers.kit.clock import utcnow
from resolvers.kit.errors import Unauthenticated
from resolvers.kit.settings import Settings


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: str
    generation: int
    jti: str
    expires_at: int  # epoch seconds


class Security:
    """Hashing and token primitives configured from Settings; built once per process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._key = settings.signing_key()
        self._passwords = CryptContext(
            schemes=["argon2"],
            argon2__time_cost=settings.argon2_time_cost,
            argon2__memory_cost=settings.argon2_memory_kib,
            argon2__parallelism=settings.argon2_parallelism,
        )
        # Verifying against this when the user does not exist makes an unknown username cost
        # the same time as a wrong password, so login timing reveals nothing.
        self._dummy_hash = self._passwords.hash(secrets.token_urlsafe(16))

    # --- passwords (CPU-bound: callers run these in a thread) ---
    def hash_password(self, password: str) -> str:
        hashed: str = self._passwords.hash(password)
        return hashed

    def verify_password(self, password: str, password_hash: str | None) -> bool:
        if password_hash is None:
            self._passwords.verify(password, self._dummy_hash)
            return False
        try:
            return bool(self._passwords.verify(password, password_hash))
        except ValueError:  # a malformed stored hash is a failed login, not a 500
            return False

    # --- access tokens ---
    def create_access_token(self, user_id: str, generation: int) -> tuple[str, int]:
        now = utcnow()
        ttl = timedelta(minutes=self.settings.access_token_expire_minutes)
        expires = now + ttl
        claims: dict[str, Any] = {
            "sub": user_id,
            "iat": now,
            "exp": expires,
            "jti": uuid.uuid4().hex,
            "gen": generation,
            "typ": "access",
        }
        token = jwt.encode(claims, self._key, algorithm=self.settings.algorithm)
        return token, int(ttl.total_seconds())

    def decode_access_token(self, token: str) -> AccessClaims:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[self.settings.algorithm],
                options={"require": ["sub", "exp", "iat", "jti"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("Token has expired") from exc
        except jwt.PyJWTError as exc:
            raise Unauthenticated("Invalid token") from exc
        if claims.get("typ", "access") != "access" or not isinstance(claims.get("sub"), str):
            raise Unauthenticated("Invalid token")
        return AccessClaims(
            user_id=claims["sub"],
            generation=int(claims.get("gen", 0)),
            jti=str(claims["jti"]),
            expires_at=int(claims["exp"]),
        )

    # --- the second step of a 2FA sign-in: proves the password, is no access token ---
    def create_mfa_token(self, user_id: str, generation: int) -> str:
        now = utcnow()
        claims: dict[str, Any] = {
            "sub": user_id, "iat": now,
            "exp": now + timedelta(seconds=self.settings.mfa_token_expire_seconds),
            "jti": uuid.uuid4().hex, "gen": generation, "typ": "mfa",
        }
        return jwt.encode(claims, self._key, algorithm=self.settings.algorithm)

    def decode_mfa_token(self, token: str) -> AccessClaims:
        try:
            claims = jwt.decode(token, self._key, algorithms=[self.settings.algorithm],
                                options={"require": ["sub", "exp", "iat", "jti"]})
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("The sign-in expired; sign in again") from exc
        except jwt.PyJWTError as exc:
            raise Unauthenticated("Invalid mfa_token") from exc
        if claims.get("typ") != "mfa" or not isinstance(claims.get("sub"), str):
            raise Unauthenticated("Invalid mfa_token")
        return AccessClaims(user_id=claims["sub"], generation=int(claims.get("gen", 0)),
                            jti=str(claims["jti"]), expires_at=int(claims["exp"]))

    # --- secrets kept at rest (TOTP secrets): Fernet with a key derived from SECRET_KEY ---
    def _fernet(self) -> Fernet:
        digest = hashlib.sha256(b"chat-studio totp at rest:" + self._key.encode()).digest()
        return Fernet(base64.urlsafe_b64encode(digest))

    def seal(self, value: str) -> str:
        return self._fernet().encrypt(value.encode()).decode()

    def unseal(self, value: str) -> str:
        try:
            return self._fernet().decrypt(value.encode()).decode()
        except InvalidToken as exc:  # SECRET_KEY changed since it was sealed
            raise Unauthenticated("This 2FA secret cannot be read (the server key changed)"
                                  ) from exc

    # --- refresh tokens: opaque, stored only as a hash ---
    @staticmethod
    def new_refresh_token() -> str:
        return secrets.token_urlsafe(32)

    @staticmethod
    def hash_refresh_token(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()


def bearer_token(value: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` value (the scheme is case-insensitive)."""
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()

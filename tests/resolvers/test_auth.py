"""Auth operations called directly (no transport), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from sqlmodel import select

from models import RefreshToken, User
from resolvers import auth
from resolvers.kit.errors import (
    InvalidCredentials,
    Unauthenticated,
    UsernameTaken,
    ValidationFailed,
)
from resolvers.kit.security import Security
from resolvers.kit.settings import Settings
from resolvers.services import Services
from tests.conftest import make_settings

PASSWORD = "correct horse battery"


async def _register(services: Services, username: str = "alice", email: str | None = None,
                    password: str = PASSWORD) -> auth.TokenPair:
    async with services.db.session() as session:
        return await auth.register(session, services.security, username=username,
                                   email=email or f"{username}@example.com", password=password)


async def _login(services: Services, username: str, password: str = PASSWORD) -> auth.TokenPair:
    async with services.db.session() as session:
        pair = await auth.login(session, services.security, username=username,
                                password=password)
    assert isinstance(pair, auth.TokenPair)  # no 2FA here
    return pair


async def _refresh(services: Services, token: str) -> auth.TokenPair:
    async with services.db.session() as session:
        return await auth.refresh(session, services.security, refresh_token=token)


async def _whoami(services: Services, token: str | None) -> User:
    async with services.db.session() as session:
        return await auth.authenticate(session, services.security, token)


# ---------------------------------------------------------------- register


async def test_register_signs_the_new_user_in(services: Services) -> None:
    pair = await _register(services, "Alice", "Alice@Example.com")
    assert pair.token_type == "bearer"
    assert pair.user.username == "Alice"  # spelling kept for display
    assert pair.user.email == "alice@example.com"
    assert pair.user.id.startswith("user_")
    assert pair.expires_in == services.settings.access_token_expire_minutes * 60
    user = await _whoami(services, pair.access_token)
    assert user.id == pair.user.id
    # The password is stored hashed, never as sent.
    assert PASSWORD not in user.password_hash and user.password_hash.startswith("$argon2")


@pytest.mark.parametrize(
    ("username", "email", "password", "field", "message"),
    [
        ("al", "al@example.com", PASSWORD, "username", "Username must be 3-32 characters"),
        ("a" * 33, "a@example.com", PASSWORD, "username", "Username must be 3-32 characters"),
        ("bad name", "b@example.com", PASSWORD, "username", "letters, digits"),
        ("<script>", "c@example.com", PASSWORD, "username", "letters, digits"),
        ("bob", "not-an-email", PASSWORD, "email", "Invalid email address"),
        ("bob", "bob@", PASSWORD, "email", "Invalid email address"),
        ("bob", "bob@example.com", "short", "password", "Password must be 8-128 characters"),
        ("bob", "bob@example.com", "x" * 129, "password", "Password must be 8-128 characters"),
        ("bob", "bob@example.com", " " * 10, "password", "Password must not be blank"),
    ],
)
async def test_register_rejects_invalid_input_with_a_clear_message(
    services: Services, username: str, email: str, password: str, field: str, message: str
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        await _register(services, username, email, password)
    assert message in caught.value.message
    assert caught.value.extra["field"] == field
    async with services.db.session() as session:
        assert await auth.count_users(session) == 0


async def test_username_is_unique_case_insensitively(services: Services) -> None:
    await _register(services, "Alice", "alice@example.com")
    with pytest.raises(UsernameTaken, match="Username already registered"):
        await _register(services, "aLICE", "other@example.com")


async def test_email_is_unique_case_insensitively(services: Services) -> None:
    await _register(services, "alice", "alice@example.com")
    with pytest.raises(UsernameTaken, match="Email already registered"):
        await _register(services, "bob", "ALICE@example.com")
    async with services.db.session() as session:
        assert await auth.count_users(session) == 1


# ---------------------------------------------------------------- login


async def test_login_is_case_insensitive_on_the_username(services: Services) -> None:
    registered = await _register(services, "Alice")
    pair = await _login(services, "  alice ")
    assert pair.user.id == registered.user.id
    assert (await _whoami(services, pair.access_token)).id == registered.user.id


async def test_wrong_password_and_unknown_user_get_the_same_answer(services: Services) -> None:
    await _register(services, "alice")
    with pytest.raises(InvalidCredentials) as wrong_password:
        await _login(services, "alice", "wrong password!")
    with pytest.raises(InvalidCredentials) as unknown_user:
        await _login(services, "nobody", "wrong password!")
    assert wrong_password.value.message == unknown_user.value.message
    assert wrong_password.value.message == "Incorrect username or password"
    assert wrong_password.value.code == unknown_user.value.code == "UNAUTHENTICATED"


@pytest.mark.parametrize("username", ["nul\x00", "x" * 300, "", "a b"])
async def test_login_with_an_impossible_username_is_just_a_failed_login(
    services: Services, username: str
) -> None:
    await _register(services, "alice")
    with pytest.raises(InvalidCredentials, match="Incorrect username or password"):
        await _login(services, username)


async def test_login_takes_about_as_long_for_an_unknown_user(
    services: Services, tmp_path: Path, database_url: str
) -> None:
    # Argon2 costly enough that hashing dominates the database round trip: skipping the
    # dummy verification for unknown users would make their answers several times faster.
    security = Security(make_settings(tmp_path, database_url=database_url,
                                      argon2_time_cost=2, argon2_memory_kib=16384))
    slow = dataclasses.replace(services, settings=security.settings, security=security)
    await _register(slow, "alice")

    async def timed(username: str) -> float:
        started = time.perf_counter()
        with pytest.raises(InvalidCredentials):
            await _login(slow, username, "wrong password!")
        return time.perf_counter() - started

    await timed("alice"), await timed("nobody")  # warm up connections and caches
    wrong, unknown = [], []
    for _ in range(7):
        wrong.append(await timed("alice"))
        unknown.append(await timed("nobody"))
    ratio = statistics.median(wrong) / statistics.median(unknown)
    print(f"login timing: wrong password / unknown user median ratio = {ratio:.2f}")
    assert 1 / 3 < ratio < 3, (wrong, unknown)


# ---------------------------------------------------------------- access tokens


async def test_access_token_carries_the_standard_claims(services: Services) -> None:
    pair = await _register(services)
    claims = jwt.decode(pair.access_token, services.settings.secret_key, algorithms=["HS256"])
    assert claims["sub"] == pair.user.id
    assert {"sub", "exp", "iat", "jti"} <= claims.keys()
    assert claims["exp"] - claims["iat"] == services.settings.access_token_expire_minutes * 60
    assert abs(claims["iat"] - time.time()) < 60
    other = await _login(services, "alice")
    assert jwt.decode(other.access_token, options={"verify_signature": False})["jti"] != claims[
        "jti"]


async def test_expired_token_is_refused(services: Services) -> None:
    pair = await _register(services)
    past = datetime.now(UTC) - timedelta(hours=1)
    expired = jwt.encode(
        {"sub": pair.user.id, "iat": past, "exp": past + timedelta(minutes=5), "jti": "j1",
         "gen": 0, "typ": "access"},
        services.settings.secret_key, algorithm="HS256",
    )
    with pytest.raises(Unauthenticated, match="Token has expired"):
        await _whoami(services, expired)


@pytest.mark.parametrize(
    "token", [None, "", "not-a-jwt", "a.b.c"], ids=["none", "empty", "garbage", "dots"]
)
async def test_missing_or_malformed_token_is_refused(services: Services, token: str | None) -> None:
    await _register(services)
    with pytest.raises(Unauthenticated):
        await _whoami(services, token)


async def test_token_signed_with_another_key_is_refused(services: Services) -> None:
    pair = await _register(services)
    claims = jwt.decode(pair.access_token, services.settings.secret_key, algorithms=["HS256"])
    forged = jwt.encode(claims, "another-key-" + "y" * 40, algorithm="HS256")
    with pytest.raises(Unauthenticated, match="Invalid token"):
        await _whoami(services, forged)


async def test_deleted_user_is_gone(services: Services) -> None:
    pair = await _register(services)
    async with services.db.session() as session:
        user = await session.get(User, pair.user.id)
        await session.delete(user)
        await session.commit()
    with pytest.raises(auth.UserGone) as caught:
        await _whoami(services, pair.access_token)
    assert caught.value.code == "NOT_FOUND"
    assert caught.value.http_status == 404


# ---------------------------------------------------------------- refresh and logout


async def test_refresh_rotates_and_a_used_token_stops_working(services: Services) -> None:
    first = await _register(services)
    second = await _refresh(services, first.refresh_token)
    assert second.refresh_token != first.refresh_token
    assert second.user.id == first.user.id
    assert (await _whoami(services, second.access_token)).id == first.user.id
    with pytest.raises(Unauthenticated):
        await _refresh(services, first.refresh_token)


async def test_replaying_a_rotated_token_revokes_the_whole_family(services: Services) -> None:
    first = await _register(services)
    second = await _refresh(services, first.refresh_token)
    third = await _refresh(services, second.refresh_token)
    # Another device's login is a different family and must survive.
    elsewhere = await _login(services, "alice")
    with pytest.raises(Unauthenticated, match="reuse"):
        await _refresh(services, first.refresh_token)  # a stolen copy shows up
    with pytest.raises(Unauthenticated):
        await _refresh(services, third.refresh_token)  # the newest one is revoked too
    assert (await _refresh(services, elsewhere.refresh_token)).user.id == first.user.id


async def test_garbage_refresh_token_is_refused(services: Services) -> None:
    await _register(services)
    with pytest.raises(Unauthenticated, match="Invalid refresh token"):
        await _refresh(services, "made-up-token")


async def test_expired_refresh_token_is_refused(services: Services) -> None:
    pair = await _register(services)
    async with services.db.session() as session:
        row = (await session.exec(select(RefreshToken))).one()
        row.expires_at = row.created_at - 1
        session.add(row)
        await session.commit()
    with pytest.raises(Unauthenticated, match="Invalid refresh token"):
        await _refresh(services, pair.refresh_token)


async def test_logout_revokes_the_refresh_token(services: Services) -> None:
    pair = await _register(services)
    other_device = await _login(services, "alice")
    async with services.db.session() as session:
        actor = await auth.authenticate(session, services.security, pair.access_token)
        await auth.logout(session, services.security, actor, refresh_token=pair.refresh_token)
    with pytest.raises(Unauthenticated):
        await _refresh(services, pair.refresh_token)
    # Only that session ends: the other device keeps working.
    assert (await _refresh(services, other_device.refresh_token)).user.id == pair.user.id


async def test_logout_ignores_another_users_refresh_token(services: Services) -> None:
    alice = await _register(services, "alice")
    bob = await _register(services, "bob")
    async with services.db.session() as session:
        actor = await auth.authenticate(session, services.security, alice.access_token)
        await auth.logout(session, services.security, actor, refresh_token=bob.refresh_token)
    assert (await _refresh(services, bob.refresh_token)).user.id == bob.user.id


async def test_logout_everywhere_invalidates_existing_access_tokens(services: Services) -> None:
    pair = await _register(services)
    other_device = await _login(services, "alice")
    bob = await _register(services, "bob")
    async with services.db.session() as session:
        actor = await auth.authenticate(session, services.security, pair.access_token)
        await auth.logout(session, services.security, actor, everywhere=True)
    for token in (pair.access_token, other_device.access_token):
        with pytest.raises(Unauthenticated, match="revoked"):
            await _whoami(services, token)
    for refresh_token in (pair.refresh_token, other_device.refresh_token):
        with pytest.raises(Unauthenticated):
            await _refresh(services, refresh_token)
    # Signing in again works, and other users were not touched.
    fresh = await _login(services, "alice")
    assert (await _whoami(services, fresh.access_token)).id == pair.user.id
    assert (await _whoami(services, bob.access_token)).id == bob.user.id


def test_security_built_twice_from_one_settings_verifies_the_same_tokens(
    settings: Settings,
) -> None:
    token, _ = Security(settings).create_access_token("user_x", 3)
    claims = Security(settings).decode_access_token(token)
    assert (claims.user_id, claims.generation) == ("user_x", 3)


async def test_concurrent_registrations_of_one_name_make_one_account(
    services: Services,
) -> None:
    results = await asyncio.gather(
        *(_register(services, "alice", f"alice{i}@example.com") for i in range(4)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, auth.TokenPair) for r in results) == 1, results
    assert all(isinstance(r, UsernameTaken) for r in results if not isinstance(
        r, auth.TokenPair)), results
    async with services.db.session() as session:
        assert await auth.count_users(session) == 1


async def test_concurrent_uses_of_one_refresh_token_rotate_it_once(services: Services) -> None:
    pair = await _register(services)
    results = await asyncio.gather(*(_refresh(services, pair.refresh_token) for _ in range(3)),
                                   return_exceptions=True)
    winners = [r for r in results if isinstance(r, auth.TokenPair)]
    assert len(winners) == 1, results
    assert all(isinstance(r, Unauthenticated) for r in results if r not in winners), results

"""REST auth endpoints over real HTTP, exactly as the integration guide's clients call them."""

from __future__ import annotations

import base64
import json
from datetime import datetime

import httpx
import pytest
from sqlalchemy import delete
from sqlmodel import col

from models import User
from resolvers.kit.db import Database
from resolvers.kit.settings import Settings
from tests.conftest import LiveServer, bearer, register


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert isinstance(response.json()["detail"], str)


async def test_register_answers_with_tokens(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/auth/register", json={
        "username": "alice", "email": "alice@example.com", "password": "correct horse"})
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert isinstance(body["access_token"], str) and body["access_token"].count(".") == 2
    assert isinstance(body["refresh_token"], str) and body["refresh_token"]
    assert isinstance(body["expires_in"], int) and body["expires_in"] > 0
    assert set(body) == {"access_token", "token_type", "refresh_token", "expires_in"}


async def test_taken_username_or_email_is_400(client: httpx.AsyncClient) -> None:
    await register(client, "alice")
    taken_name = await client.post("/api/auth/register", json={
        "username": "ALICE", "email": "new@example.com", "password": "correct horse"})
    assert taken_name.status_code == 400
    assert taken_name.json() == {"detail": "Username already registered"}
    taken_email = await client.post("/api/auth/register", json={
        "username": "carol", "email": "alice@example.com", "password": "correct horse"})
    assert taken_email.status_code == 400
    assert taken_email.json() == {"detail": "Email already registered"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": "al", "email": "al@example.com", "password": "correct horse"}, "username"),
        ({"username": "alice", "email": "nope", "password": "correct horse"}, "email"),
        ({"username": "alice", "email": "alice@example.com", "password": "short"}, "password"),
        ({"username": "alice", "email": "alice@example.com"}, "password"),
        ({"username": 5, "email": "alice@example.com", "password": "correct horse"}, "username"),
    ],
    ids=["short-username", "bad-email", "short-password", "missing-password", "wrong-type"],
)
async def test_invalid_registration_is_422_in_fastapis_shape(
    client: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    response = await client.post("/api/auth/register", json=body)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail
    assert detail[0]["loc"][-1] == field
    assert isinstance(detail[0]["msg"], str)


async def test_login_and_me(client: httpx.AsyncClient) -> None:
    await register(client, "Alice")
    response = await client.post("/api/auth/login",
                                 json={"username": "alice", "password": "correct horse battery"})
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer" and body["access_token"]
    me = await client.get("/api/auth/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    user = me.json()
    # CONTRACT-2 §5 adds `role` (and we add `totp_enabled`) to the guide's fields.
    assert set(user) == {"id", "username", "email", "created_at", "role", "totp_enabled"}
    assert (user["role"], user["totp_enabled"]) == ("user", False)
    assert user["id"].startswith("user_")
    assert (user["username"], user["email"]) == ("Alice", "alice@example.com")
    created = datetime.fromisoformat(user["created_at"].replace("Z", "+00:00"))
    assert created.tzinfo is not None


async def test_wrong_password_and_unknown_user_answer_alike(client: httpx.AsyncClient) -> None:
    await register(client, "alice")
    wrong = await client.post("/api/auth/login",
                              json={"username": "alice", "password": "not the password"})
    unknown = await client.post("/api/auth/login",
                                json={"username": "nobody", "password": "not the password"})
    assert_unauthorized(wrong)
    assert_unauthorized(unknown)
    assert wrong.json() == unknown.json() == {"detail": "Incorrect username or password"}


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nonsense"}, {"Authorization": "Basic YWxpY2U6cHc="},
     {"Authorization": "Bearer"}],
    ids=["missing", "garbage", "basic", "empty-bearer"],
)
async def test_me_without_a_valid_token_is_401(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    assert_unauthorized(await client.get("/api/auth/me", headers=headers))


async def test_expired_token_is_401(live_server: LiveServer, client: httpx.AsyncClient) -> None:
    import jwt

    user = await register(client, "alice")
    claims = jwt.decode(user["access_token"], options={"verify_signature": False})
    claims["iat"], claims["exp"] = claims["iat"] - 7200, claims["iat"] - 3600
    key = live_server.app.state.services.settings.secret_key
    expired = jwt.encode(claims, key, algorithm="HS256")
    response = await client.get("/api/auth/me", headers=bearer(expired))
    assert_unauthorized(response)
    assert response.json() == {"detail": "Token has expired"}


async def test_me_for_a_deleted_user_is_404(
    settings: Settings, client: httpx.AsyncClient
) -> None:
    user = await register(client, "alice")
    # The id from the token itself: a request would put the user in the server's token cache,
    # which a change made by hand reaches only after USER_CACHE_SECONDS (README; deletion
    # through the API is seen at once: tests/identity/test_token_cache.py).
    payload = user["access_token"].split(".")[1]
    user_id = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"]
    # Remove the row the way an operator would (the server's engine lives on its own loop).
    db = Database(settings.effective_database_url)
    try:
        async with db.engine.begin() as conn:
            await conn.execute(delete(User).where(col(User.id) == user_id))
    finally:
        await db.dispose()
    response = await client.get("/api/auth/me", headers=bearer(user["access_token"]))
    assert response.status_code == 404
    assert response.json() == {"detail": "User not found"}


async def test_refresh_rotates_and_replay_revokes(client: httpx.AsyncClient) -> None:
    user = await register(client, "alice")
    first = await client.post("/api/auth/refresh", json={"refresh_token": user["refresh_token"]})
    assert first.status_code == 200
    rotated = first.json()
    assert rotated["refresh_token"] != user["refresh_token"]
    me = await client.get("/api/auth/me", headers=bearer(rotated["access_token"]))
    assert me.status_code == 200
    replay = await client.post("/api/auth/refresh",
                               json={"refresh_token": user["refresh_token"]})
    assert_unauthorized(replay)
    newest = await client.post("/api/auth/refresh",
                               json={"refresh_token": rotated["refresh_token"]})
    assert_unauthorized(newest)


async def test_logout_everywhere_ends_every_session(client: httpx.AsyncClient) -> None:
    user = await register(client, "alice")
    headers = bearer(user["access_token"])
    response = await client.post("/api/auth/logout", json={"everywhere": True}, headers=headers)
    assert response.status_code == 200
    assert isinstance(response.json()["message"], str)
    assert_unauthorized(await client.get("/api/auth/me", headers=headers))
    assert_unauthorized(await client.post("/api/auth/refresh",
                                          json={"refresh_token": user["refresh_token"]}))


async def test_logout_one_refresh_token(client: httpx.AsyncClient) -> None:
    user = await register(client, "alice")
    response = await client.post("/api/auth/logout", json={
        "refresh_token": user["refresh_token"]}, headers=bearer(user["access_token"]))
    assert response.status_code == 200
    assert_unauthorized(await client.post("/api/auth/refresh",
                                          json={"refresh_token": user["refresh_token"]}))
    assert_unauthorized(await client.post("/api/auth/logout", json={}))

"""GraphQL auth mutations and `me` over real HTTP."""

from __future__ import annotations

from datetime import datetime

import httpx
import jwt
import pytest

from tests.conftest import LiveServer
from tests.graphql.helpers import REGISTER, code_of, data_of, error_of, gql, register

LOGIN = """
mutation Login($input: LoginInput!) {
  login(input: $input) { accessToken refreshToken tokenType expiresIn user { id username } }
}
"""
REFRESH = """
mutation Refresh($token: String!) {
  refreshToken(refreshToken: $token) { accessToken refreshToken user { id } }
}
"""
ME = "{ me { id username email createdAt } }"


async def test_register_returns_tokens_and_the_user(client: httpx.AsyncClient) -> None:
    payload = await register(client, "Alice")
    assert payload["tokenType"] == "bearer"
    assert payload["accessToken"].count(".") == 2 and payload["refreshToken"]
    assert isinstance(payload["expiresIn"], int) and payload["expiresIn"] > 0
    user = payload["user"]
    assert (user["username"], user["email"]) == ("Alice", "alice@example.com")
    assert user["id"].startswith("user_")
    assert datetime.fromisoformat(user["createdAt"]).tzinfo is not None
    me = (await data_of(client, ME, token=payload["accessToken"]))["me"]
    assert me == user


async def test_register_errors(client: httpx.AsyncClient) -> None:
    await register(client, "alice")
    taken = await gql(client, REGISTER, {"input": {
        "username": "ALICE", "email": "x@example.com", "password": "correct horse"}})
    assert code_of(taken) == "CONFLICT"
    assert error_of(taken)["message"] == "Username already registered"
    invalid = await gql(client, REGISTER, {"input": {
        "username": "a", "email": "x@example.com", "password": "correct horse"}})
    assert code_of(invalid) == "BAD_USER_INPUT"
    assert error_of(invalid)["extensions"]["field"] == "username"
    assert "3-32 characters" in error_of(invalid)["message"]
    assert invalid["data"] is None


async def test_login_answers_alike_for_wrong_password_and_unknown_user(
    client: httpx.AsyncClient,
) -> None:
    registered = await register(client, "alice")
    ok = (await data_of(client, LOGIN, {"input": {"username": "ALICE",
                                                  "password": "correct horse battery"}}))
    assert ok["login"]["user"]["id"] == registered["user"]["id"]
    wrong = await gql(client, LOGIN, {"input": {"username": "alice", "password": "nope nope"}})
    unknown = await gql(client, LOGIN, {"input": {"username": "nobody", "password": "nope"}})
    for body in (wrong, unknown):
        assert code_of(body) == "UNAUTHENTICATED"
        assert body["data"] is None
    assert error_of(wrong)["message"] == error_of(unknown)["message"] == (
        "Incorrect username or password")


async def test_me_needs_a_valid_token(live_server: LiveServer, client: httpx.AsyncClient) -> None:
    assert code_of(await gql(client, ME)) == "UNAUTHENTICATED"
    assert code_of(await gql(client, ME, token="garbage")) == "UNAUTHENTICATED"
    payload = await register(client, "alice")
    claims = jwt.decode(payload["accessToken"], options={"verify_signature": False})
    claims["iat"], claims["exp"] = claims["iat"] - 7200, claims["iat"] - 3600
    expired = jwt.encode(claims, live_server.app.state.services.settings.secret_key,
                         algorithm="HS256")
    body = await gql(client, ME, token=expired)
    assert code_of(body) == "UNAUTHENTICATED"
    assert error_of(body)["message"] == "Token has expired"


async def test_refresh_token_rotation_and_replay(client: httpx.AsyncClient) -> None:
    payload = await register(client, "alice")
    rotated = (await data_of(client, REFRESH, {"token": payload["refreshToken"]}))["refreshToken"]
    assert rotated["refreshToken"] != payload["refreshToken"]
    assert rotated["user"]["id"] == payload["user"]["id"]
    assert (await data_of(client, ME, token=rotated["accessToken"]))["me"]["id"] == (
        payload["user"]["id"])
    replay = await gql(client, REFRESH, {"token": payload["refreshToken"]})
    assert code_of(replay) == "UNAUTHENTICATED"
    assert "reuse" in error_of(replay)["message"]
    assert code_of(await gql(client, REFRESH, {"token": rotated["refreshToken"]})) == (
        "UNAUTHENTICATED")


@pytest.mark.parametrize("everywhere", [False, True])
async def test_logout(client: httpx.AsyncClient, everywhere: bool) -> None:
    payload = await register(client, "alice")
    done = await data_of(
        client, "mutation($r: String, $e: Boolean!) { logout(refreshToken: $r, everywhere: $e) }",
        {"r": payload["refreshToken"], "e": everywhere}, token=payload["accessToken"])
    assert done == {"logout": True}
    assert code_of(await gql(client, REFRESH, {"token": payload["refreshToken"]})) == (
        "UNAUTHENTICATED")
    me = await gql(client, ME, token=payload["accessToken"])
    if everywhere:
        assert code_of(me) == "UNAUTHENTICATED"
    else:  # the access token lives until it expires; only the refresh token is gone
        assert me["data"]["me"]["id"] == payload["user"]["id"]
    assert code_of(await gql(client, "mutation { logout }")) == "UNAUTHENTICATED"

"""The access-token check keeps signed-in users per process (issue 11), and every change to a
user made through the server is still seen by the very next request, on REST and GraphQL:
logout everywhere, deletion, role changes both ways, allowed models, 2FA. Each test warms the
cache first (the same token used twice), so the change must drop what is held."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pyotp
import pytest

import cli_admin
from resolvers.kit.settings import Settings
from tests.conftest import LiveServer, bearer, make_settings, register
from tests.graphql.helpers import code_of, gql

PASSWORD = "correct horse battery"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url=database_url, rate_limit_auth_per_address=0,
                         rate_limit_auth_per_username=0)


@pytest.fixture
def server(settings: Settings) -> Iterator[LiveServer]:
    with LiveServer.running(settings) as live:
        yield live


@pytest.fixture
async def http(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client


async def warm(http: httpx.AsyncClient, token: str) -> dict[str, object]:
    """Two authenticated requests on each face: the user is now held by the cache."""
    for _ in range(2):
        me = await http.get("/api/auth/me", headers=bearer(token))
        assert me.status_code == 200
        body = await gql(http, "{ me { id role } }", token=token)
        assert "errors" not in body, body
    data: dict[str, object] = me.json()
    return data


async def make_admin(http: httpx.AsyncClient, settings: Settings) -> str:
    account = await register(http)
    status = await asyncio.to_thread(cli_admin.promote,
                                     argparse.Namespace(username=account["username"]), settings)
    assert status == 0
    return account["access_token"]


async def test_logout_everywhere_is_seen_by_the_next_request(http: httpx.AsyncClient) -> None:
    user = await register(http)
    token = user["access_token"]
    await warm(http, token)
    out = await http.post("/api/auth/logout", json={"everywhere": True}, headers=bearer(token))
    assert out.status_code == 200
    assert (await http.get("/api/auth/me", headers=bearer(token))).status_code == 401
    assert (await http.get("/api/conversations", headers=bearer(token))).status_code == 401
    assert code_of(await gql(http, "{ me { id } }", token=token)) == "UNAUTHENTICATED"
    # A new sign-in works at once (the new generation is read, not the held one).
    login = await http.post("/api/auth/login", json={"username": user["username"],
                                                     "password": PASSWORD})
    fresh = login.json()["access_token"]
    assert (await http.get("/api/auth/me", headers=bearer(fresh))).status_code == 200


async def test_a_deleted_account_is_refused_at_once(http: httpx.AsyncClient) -> None:
    user = await register(http)
    token = user["access_token"]
    await warm(http, token)
    gone = await http.request("DELETE", "/api/auth/me", json={"password": PASSWORD},
                              headers=bearer(token))
    assert gone.status_code == 200, gone.text
    me = await http.get("/api/auth/me", headers=bearer(token))
    assert me.status_code == 404 and me.json() == {"detail": "User not found"}
    assert code_of(await gql(http, "{ me { id } }", token=token)) in ("NOT_FOUND",
                                                                       "UNAUTHENTICATED")


async def test_role_changes_are_seen_at_once_both_ways(http: httpx.AsyncClient,
                                                       settings: Settings) -> None:
    boss = await make_admin(http, settings)
    other = await register(http)
    token = other["access_token"]
    uid = str((await warm(http, token))["id"])
    assert (await http.get("/api/admin/users", headers=bearer(token))).status_code == 403
    up = await http.patch(f"/api/admin/users/{uid}", json={"role": "admin"},
                          headers=bearer(boss))
    assert up.status_code == 200
    assert (await http.get("/api/admin/users", headers=bearer(token))).status_code == 200
    assert (await http.get("/api/auth/me", headers=bearer(token))).json()["role"] == "admin"
    assert "errors" not in await gql(http, "{ adminUsers { users { id } } }", token=token)
    down = await http.patch(f"/api/admin/users/{uid}", json={"role": "user"},
                            headers=bearer(boss))
    assert down.status_code == 200
    assert (await http.get("/api/admin/users", headers=bearer(token))).status_code == 403
    assert code_of(await gql(http, "{ adminUsers { users { id } } }", token=token)
                   ) == "FORBIDDEN"


async def test_allowed_models_are_seen_at_once(http: httpx.AsyncClient,
                                               settings: Settings) -> None:
    boss = await make_admin(http, settings)
    user = await register(http)
    token = user["access_token"]
    uid = str((await warm(http, token))["id"])
    changed = await http.patch(f"/api/admin/users/{uid}", json={"allowed_models": ["none-x"]},
                               headers=bearer(boss))
    assert changed.status_code == 200
    me = await gql(http, "{ me { allowedModels } }", token=token)
    assert me["data"]["me"]["allowedModels"] == ["none-x"]


async def test_two_factor_changes_are_seen_at_once(http: httpx.AsyncClient) -> None:
    user = await register(http)
    token = user["access_token"]
    await warm(http, token)
    setup = await http.post("/api/auth/2fa/setup", headers=bearer(token))
    assert setup.status_code == 200, setup.text
    code = pyotp.TOTP(setup.json()["secret"]).now()
    enabled = await http.post("/api/auth/2fa/enable", json={"code": code},
                              headers=bearer(token))
    assert enabled.status_code == 200, enabled.text
    assert (await http.get("/api/auth/me", headers=bearer(token))).json()["totp_enabled"] is True
    # Setting up again is refused: the row is read, not the token check's copy.
    again = await http.post("/api/auth/2fa/setup", headers=bearer(token))
    assert again.status_code == 409

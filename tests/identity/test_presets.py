"""The GitHub and Google presets: listed, and GitHub's authorization request is the code flow
with PKCE and a state (no network: GitHub's endpoints are fixed, Google's come from its
discovery document only when someone signs in)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.conftest import LiveServer, make_settings


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    settings = make_settings(tmp_path, database_url=f"sqlite+aiosqlite:///{tmp_path / 'c.db'}",
                             github_client_id="gh-id", github_client_secret="gh-secret",
                             google_client_id="g-id", google_client_secret="g-secret",
                             public_url="https://chat.example")
    with LiveServer.running(settings) as live:
        yield live


async def test_presets(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        listed = (await http.get("/api/auth/providers")).json()
        assert [(p["id"], p["name"]) for p in listed] == [("google", "Google"),
                                                         ("github", "GitHub")]
        response = await http.get("/api/auth/oauth/github/authorize")
        assert response.status_code == 302
        url = urlsplit(response.headers["location"])
        assert (url.scheme, url.netloc, url.path) == ("https", "github.com",
                                                      "/login/oauth/authorize")
        query = parse_qs(url.query)
        assert query["client_id"] == ["gh-id"] and query["response_type"] == ["code"]
        assert query["redirect_uri"] == ["https://chat.example/api/auth/oauth/github/callback"]
        assert query["scope"] == ["read:user user:email"]
        assert query["code_challenge_method"] == ["S256"] and "state" in query
        assert "nonce" not in query and "gh-secret" not in response.headers["location"]
        # A callback with a state we never issued signs nobody in.
        forged = await http.get("/api/auth/oauth/github/callback",
                                params={"code": "x", "state": "forged"})
        assert forged.status_code == 401
        assert (await http.get("/api/auth/oauth/oidc/authorize")).status_code == 404

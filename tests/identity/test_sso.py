"""Single sign-on against a real OpenID provider (oidc-provider under node): discovery, the
code flow with PKCE, the issuer's JWKS, and every way a sign-in must fail — a tampered
`state`, a replayed code, a wrong `nonce`, an unverified email claiming a local account."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pyotp
import pytest

from tests.conftest import bearer, register
from tests.identity.conftest import SsoServer, sso_server
from tests.identity.test_admin import promote

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sso(request: pytest.FixtureRequest, oidc_node_modules: Path,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[SsoServer]:
    tmp = tmp_path_factory.mktemp("sso")
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp / 'chat.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
    with sso_server(oidc_node_modules, tmp, url) as running:
        yield running


@pytest.fixture
async def http(sso: SsoServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sso.url, timeout=30) as client:
        yield client


def person(name: str | None = None, *, email: str | None = None,
           verified: bool = True) -> str:
    """The provider's login_hint: who signs in at the provider (see oidc_provider.mjs)."""
    name = name or f"p{uuid.uuid4().hex[:8]}"
    return f"{name}|{email or name + '@idp.example'}|{1 if verified else 0}"


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


async def authorize(http: httpx.AsyncClient) -> str:
    """Our /authorize: the provider's authorization URL it redirects to."""
    response = await http.get("/api/auth/oauth/oidc/authorize")
    assert response.status_code == 302, response.text
    return response.headers["location"]


async def through_provider(sso: SsoServer, url: str, hint: str) -> str:
    """Play the browser at the provider (a cookie jar of its own) until it sends us back:
    returns our callback URL with its code and state."""
    callback = f"{sso.url}/api/auth/oauth/oidc/callback"
    async with httpx.AsyncClient(timeout=30) as browser:
        url = with_query(url, login_hint=hint)
        for _ in range(10):
            response = await browser.get(url)
            assert response.status_code in (302, 303), response.text
            url = str(response.url.join(response.headers["location"]))
            if url.startswith(callback):
                return url
    raise AssertionError("the provider never sent the browser back")


async def sign_in(sso: SsoServer, http: httpx.AsyncClient, hint: str) -> httpx.Response:
    return await http.get(await through_provider(sso, await authorize(http), hint))


async def me(http: httpx.AsyncClient, token: str) -> dict[str, str]:
    response = await http.get("/api/auth/me", headers=bearer(token))
    assert response.status_code == 200, response.text
    data: dict[str, str] = response.json()
    return data


async def test_providers_and_the_authorization_request(sso: SsoServer,
                                                       http: httpx.AsyncClient) -> None:
    listed = await http.get("/api/auth/providers")
    assert listed.json() == [{"id": "oidc", "name": "Test IdP",
                              "authorize_url": "/api/auth/oauth/oidc/authorize"}]
    url = await authorize(http)
    discovery = (await http.get(
        f"{sso.provider.issuer}/.well-known/openid-configuration")).json()
    assert url.startswith(discovery["authorization_endpoint"] + "?")
    query = parse_qs(urlsplit(url).query)
    assert query["response_type"] == ["code"]
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) >= 43
    assert len(query["state"][0]) >= 32 and len(query["nonce"][0]) >= 32
    assert query["redirect_uri"] == [f"{sso.url}/api/auth/oauth/oidc/callback"]
    assert "openid" in query["scope"][0].split()
    graphql = await http.post("/graphql", json={"query": "{ authProviders { id name } }"})
    assert graphql.json()["data"]["authProviders"] == [{"id": "oidc", "name": "Test IdP"}]


async def test_first_sign_in_creates_the_account_and_the_next_finds_it(
        sso: SsoServer, http: httpx.AsyncClient) -> None:
    hint = person()
    first = await sign_in(sso, http, hint)
    assert first.status_code == 200, first.text
    tokens = first.json()
    assert set(tokens) == {"access_token", "refresh_token", "token_type", "expires_in"}
    user = await me(http, tokens["access_token"])
    assert user["email"] == hint.split("|")[1] and user["role"] == "user"
    assert user["username"] == hint.split("|")[0]
    again = await sign_in(sso, http, hint)
    assert (await me(http, again.json()["access_token"]))["id"] == user["id"]
    # The refresh token works like a password sign-in's.
    refreshed = await http.post("/api/auth/refresh",
                                json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200
    # No password was ever set: password sign-in fails for this account.
    login = await http.post("/api/auth/login",
                            json={"username": user["username"], "password": "!sso"})
    assert login.status_code == 401


async def test_a_verified_email_links_the_local_account(sso: SsoServer,
                                                        http: httpx.AsyncClient) -> None:
    local = await register(http)
    local_id = (await me(http, local["access_token"]))["id"]
    response = await sign_in(sso, http, person(email=f"{local['username']}@example.com"))
    assert response.status_code == 200, response.text
    assert (await me(http, response.json()["access_token"]))["id"] == local_id
    # The audit log shows the link and the sign-in (read by an admin).
    await promote(sso.settings, local["username"])
    events = (await http.get("/api/admin/audit", params={"limit": 200},
                             headers=bearer(local["access_token"]))).json()["events"]
    mine = [(e["type"], e["detail"]) for e in events if e["target_id"] == local_id]
    assert mine[1:3] == [("sso.login", {"provider": "oidc"}), ("sso.link", {"provider": "oidc"})]


async def test_an_unverified_email_never_opens_a_local_account(
        sso: SsoServer, http: httpx.AsyncClient) -> None:
    local = await register(http)
    victim = f"{local['username']}@example.com"
    response = await sign_in(sso, http, person(email=victim.upper(), verified=False))
    assert response.status_code == 409
    assert "access_token" not in response.text and "verified" in response.json()["detail"]
    # No link was made either: the same provider account, still unverified, is refused again.
    hint = person(email=victim, verified=False)
    assert (await sign_in(sso, http, hint)).status_code == 409


async def test_a_tampered_state_is_refused_and_the_real_one_still_works(
        sso: SsoServer, http: httpx.AsyncClient) -> None:
    callback = await through_provider(sso, await authorize(http), person())
    state = parse_qs(urlsplit(callback).query)["state"][0]
    tampered = await http.get(with_query(callback, state=state[:-2] + "xy"))
    assert tampered.status_code == 401 and "access_token" not in tampered.text
    missing = await http.get(with_query(callback, state=""))
    assert missing.status_code == 401
    assert (await http.get(callback)).status_code == 200


async def test_a_replayed_code_is_refused(sso: SsoServer, http: httpx.AsyncClient) -> None:
    callback = await through_provider(sso, await authorize(http), person())
    assert (await http.get(callback)).status_code == 200
    # The same callback again: its state was used up.
    replay = await http.get(callback)
    assert replay.status_code == 401 and "access_token" not in replay.text
    # The same code under a fresh state of ours: the provider refuses the used code.
    fresh_state = parse_qs(urlsplit(await authorize(http)).query)["state"][0]
    replay = await http.get(with_query(callback, state=fresh_state))
    assert replay.status_code == 401
    assert "refused the authorization code" in replay.json()["detail"]


async def test_a_wrong_nonce_is_refused(sso: SsoServer, http: httpx.AsyncClient) -> None:
    """An ID token minted for another authorization request (its nonce is not ours)."""
    url = with_query(await authorize(http), nonce="n-" + uuid.uuid4().hex)
    response = await http.get(await through_provider(sso, url, person()))
    assert response.status_code == 401
    assert response.json()["detail"] == "The provider's ID token is not valid"


async def test_an_unknown_provider_and_a_provider_error(sso: SsoServer,
                                                        http: httpx.AsyncClient) -> None:
    assert (await http.get("/api/auth/oauth/nope/authorize")).status_code == 404
    state = parse_qs(urlsplit(await authorize(http)).query)["state"][0]
    denied = await http.get("/api/auth/oauth/oidc/callback",
                            params={"state": state, "error": "access_denied"})
    assert denied.status_code == 401 and "access_denied" in denied.json()["detail"]


async def test_tokens_in_the_fragment_of_oauth_redirect_url(sso: SsoServer,
                                                            http: httpx.AsyncClient) -> None:
    sso.settings.oauth_redirect_url = "http://app.example/signed-in"
    try:
        callback = await through_provider(sso, await authorize(http), person())
        response = await http.get(callback)
        assert response.status_code == 302
        location = urlsplit(response.headers["location"])
        assert (location.netloc, location.path, location.query) == (
            "app.example", "/signed-in", "")
        fragment = parse_qs(location.fragment)
        assert (await me(http, fragment["access_token"][0]))["role"] == "user"
        failed = await http.get(callback)  # replayed: the app page gets the error
        assert parse_qs(urlsplit(failed.headers["location"]).fragment)["error"] == [
            "unauthenticated"]
    finally:
        sso.settings.oauth_redirect_url = ""


async def test_sso_never_skips_our_second_factor(sso: SsoServer,
                                                 http: httpx.AsyncClient) -> None:
    hint = person()
    token = (await sign_in(sso, http, hint)).json()["access_token"]
    setup = (await http.post("/api/auth/2fa/setup", headers=bearer(token))).json()
    totp = pyotp.TOTP(setup["secret"])
    enabled = await http.post("/api/auth/2fa/enable", headers=bearer(token),
                              json={"code": totp.now()})
    assert enabled.status_code == 200
    again = await sign_in(sso, http, hint)
    assert again.status_code == 200
    assert set(again.json()) == {"mfa_required", "mfa_token"}
    codes = enabled.json()["recovery_codes"]
    verified = await http.post("/api/auth/2fa/verify", json={
        "mfa_token": again.json()["mfa_token"], "recovery_code": codes[0]})
    assert verified.status_code == 200
    assert (await me(http, verified.json()["access_token"]))["totp_enabled"]
    # No password to give: the account's own code turns 2FA off again.
    off = await http.post("/api/auth/2fa/disable", headers=bearer(token),
                          json={"password": "", "code": totp.at(time.time() + 30)})
    assert off.status_code == 200, off.text
    assert "access_token" in (await sign_in(sso, http, hint)).json()


"""TOTP 2FA over real HTTP, REST and GraphQL, on SQLite and PostgreSQL: enrol with a real
authenticator code (pyotp), then no token without the second factor on any face; recovery
codes work once; codes are not replayable; wrong codes are rate-limited; disable."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest

from resolvers.kit.settings import Settings
from tests.conftest import bearer, make_settings, register
from tests.graphql.helpers import code_of, data_of, gql

PASSWORD = "correct horse battery"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    # Three wrong codes per account per window: the fourth attempt is refused.
    return make_settings(tmp_path, database_url=database_url, rate_limit_auth_per_username=3)


def code(totp: pyotp.TOTP, steps_ahead: int = 0) -> str:
    """The authenticator's code, or the one of a coming 30-second step (accepted within the
    window), so that a test never waits for the clock: each code is accepted only once."""
    return totp.at(time.time() + 30 * steps_ahead)


async def enrol(http: httpx.AsyncClient, token: str,
                used: list[str] | None = None) -> tuple[pyotp.TOTP, list[str]]:
    """Set up and enable 2FA; the code that enabled it is appended to `used`."""
    setup = await http.post("/api/auth/2fa/setup", headers=bearer(token))
    assert setup.status_code == 200, setup.text
    body = setup.json()
    assert set(body) == {"secret", "otpauth_uri", "qr_svg"}
    assert body["otpauth_uri"].startswith("otpauth://totp/AI%20Chat%20Studio:")
    assert f"secret={body['secret']}" in body["otpauth_uri"]
    assert body["qr_svg"].startswith("<svg") and "http://www.w3.org/2000/svg" in body["qr_svg"]
    totp = pyotp.parse_uri(body["otpauth_uri"])
    assert isinstance(totp, pyotp.TOTP)
    enabling = code(totp)
    if used is not None:
        used.append(enabling)
    enabled = await http.post("/api/auth/2fa/enable", headers=bearer(token),
                              json={"code": enabling})
    assert enabled.status_code == 200, enabled.text
    codes: list[str] = enabled.json()["recovery_codes"]
    return totp, codes


async def login(http: httpx.AsyncClient, username: str) -> httpx.Response:
    return await http.post("/api/auth/login", json={"username": username,
                                                    "password": PASSWORD})


async def test_enrol_then_no_token_without_the_code(client: httpx.AsyncClient) -> None:
    account = await register(client)
    setup = (await client.post("/api/auth/2fa/setup", headers=bearer(account["access_token"])))
    wrong = await client.post("/api/auth/2fa/enable", headers=bearer(account["access_token"]),
                              json={"code": "000000"})
    assert wrong.status_code == 401
    # Not on yet: a password sign-in still gets tokens.
    assert "access_token" in (await login(client, account["username"])).json()
    assert setup.status_code == 200
    totp, codes = await enrol(client, account["access_token"])
    assert len(codes) == 10 and len(set(codes)) == 10
    me = await client.get("/api/auth/me", headers=bearer(account["access_token"]))
    assert me.json()["totp_enabled"] is True

    first = await login(client, account["username"])
    assert first.status_code == 200
    assert set(first.json()) == {"mfa_required", "mfa_token"}
    mfa_token = first.json()["mfa_token"]
    # The mfa_token is no access token anywhere.
    assert (await client.get("/api/auth/me", headers=bearer(mfa_token))).status_code == 401
    body = await gql(client, "{ me { id } }", token=mfa_token)
    assert code_of(body) == "UNAUTHENTICATED"
    wrong = await client.post("/api/auth/2fa/verify", json={"mfa_token": mfa_token,
                                                           "code": "123456"})
    assert wrong.status_code == 401
    next_code = code(totp, 1)
    ok = await client.post("/api/auth/2fa/verify", json={"mfa_token": mfa_token,
                                                        "code": next_code})
    assert ok.status_code == 200, ok.text
    assert set(ok.json()) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert (await client.get("/api/auth/me",
                             headers=bearer(ok.json()["access_token"]))).status_code == 200
    # The same code once more (seen over a shoulder): refused, it was used.
    again = await client.post("/api/auth/2fa/verify", json={"mfa_token": mfa_token,
                                                           "code": next_code})
    assert again.status_code == 401


async def test_the_enabling_code_cannot_sign_in(client: httpx.AsyncClient) -> None:
    account = await register(client)
    used: list[str] = []
    await enrol(client, account["access_token"], used)
    mfa_token = (await login(client, account["username"])).json()["mfa_token"]
    replay = await client.post("/api/auth/2fa/verify", json={"mfa_token": mfa_token,
                                                            "code": used[0]})
    assert replay.status_code == 401


async def test_a_recovery_code_works_once(client: httpx.AsyncClient) -> None:
    account = await register(client)
    _totp, codes = await enrol(client, account["access_token"])

    async def verify(recovery: str) -> httpx.Response:
        mfa_token = (await login(client, account["username"])).json()["mfa_token"]
        return await client.post("/api/auth/2fa/verify", json={"mfa_token": mfa_token,
                                                               "recovery_code": recovery})

    assert (await verify(codes[3].upper())).status_code == 200  # typed in capitals: fine
    assert (await verify(codes[3])).status_code == 401
    assert (await verify(codes[4])).status_code == 200


async def test_disable_needs_password_and_code(client: httpx.AsyncClient) -> None:
    account = await register(client)
    totp, _codes = await enrol(client, account["access_token"])
    headers = bearer(account["access_token"])
    wrong = await client.post("/api/auth/2fa/disable", headers=headers,
                              json={"password": "not it", "code": code(totp, 1)})
    assert wrong.status_code == 401
    no_code = await client.post("/api/auth/2fa/disable", headers=headers,
                                json={"password": PASSWORD, "code": "000000"})
    assert no_code.status_code == 401
    assert "mfa_token" in (await login(client, account["username"])).json()
    off = await client.post("/api/auth/2fa/disable", headers=headers,
                            json={"password": PASSWORD, "code": code(totp, 1)})
    assert off.status_code == 200, off.text
    assert "access_token" in (await login(client, account["username"])).json()


async def test_wrong_codes_are_rate_limited(client: httpx.AsyncClient) -> None:
    account = await register(client)
    totp, _codes = await enrol(client, account["access_token"])
    mfa_token = (await login(client, account["username"])).json()["mfa_token"]
    statuses = []
    for _ in range(3):
        response = await client.post("/api/auth/2fa/verify",
                                     json={"mfa_token": mfa_token, "code": "000000"})
        statuses.append(response.status_code)
    assert statuses == [401, 401, 401]
    blocked = await client.post("/api/auth/2fa/verify",
                                json={"mfa_token": mfa_token, "code": code(totp, 1)})
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) >= 1


TWOFA_SETUP = "mutation { setupTwoFactor { secret otpauthUri qrSvg } }"
ENABLE = "mutation($code: String!) { enableTwoFactor(code: $code) }"
LOGIN = """mutation($u: String!, $p: String!) {
  login(input: {username: $u, password: $p}) { accessToken user { id } } }"""
VERIFY = """mutation($t: String!, $c: String, $r: String) {
  verifyTwoFactor(mfaToken: $t, code: $c, recoveryCode: $r) {
    accessToken user { id totpEnabled } } }"""
DISABLE = """mutation($p: String!, $c: String) { disableTwoFactor(password: $p, code: $c) }"""


async def test_the_same_flow_in_graphql(client: httpx.AsyncClient) -> None:
    account = await register(client)
    token = account["access_token"]
    setup: dict[str, Any] = (await data_of(client, TWOFA_SETUP, token=token))["setupTwoFactor"]
    totp = pyotp.TOTP(setup["secret"])
    assert setup["qrSvg"].startswith("<svg")
    wrong = await gql(client, ENABLE, {"code": "000000"}, token=token)
    assert code_of(wrong) == "UNAUTHENTICATED"
    codes = (await data_of(client, ENABLE, {"code": code(totp)}, token=token))[
        "enableTwoFactor"]
    assert len(codes) == 10

    body = await gql(client, LOGIN, {"u": account["username"], "p": PASSWORD})
    assert body["data"] is None and code_of(body) == "MFA_REQUIRED"
    mfa_token = body["errors"][0]["extensions"]["mfaToken"]
    assert "accessToken" not in str(body)
    verified = await data_of(client, VERIFY, {"t": mfa_token, "c": code(totp, 1)})
    assert verified["verifyTwoFactor"]["user"]["totpEnabled"] is True
    # REST sees the same account state.
    assert "mfa_token" in (await login(client, account["username"])).json()
    used = await gql(client, VERIFY, {"t": mfa_token, "r": codes[0]})
    assert "errors" not in used
    reused = await gql(client, VERIFY, {"t": mfa_token, "r": codes[0]})
    assert code_of(reused) == "UNAUTHENTICATED"
    off = await gql(client, DISABLE, {"p": PASSWORD, "c": "000000"}, token=token)
    assert code_of(off) == "UNAUTHENTICATED"


async def test_setup_twice_and_enable_without_setup(client: httpx.AsyncClient) -> None:
    account = await register(client)
    headers = bearer(account["access_token"])
    early = await client.post("/api/auth/2fa/enable", headers=headers, json={"code": "123456"})
    assert early.status_code == 400
    await enrol(client, account["access_token"])
    again = await client.post("/api/auth/2fa/setup", headers=headers)
    assert again.status_code == 409  # on: a new secret would silently replace the old


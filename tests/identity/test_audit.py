"""The audit log: every event type this issue writes, as an admin reads it over REST and
GraphQL, with the request's id and address and never a secret; a record commits (or not)
with the change it describes."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pyotp
import pytest
from sqlmodel import col, select

from models import AuditEvent, User
from resolvers import admin, audit, auth
from resolvers.kit.settings import Settings
from resolvers.services import Services
from tests.conftest import bearer, register
from tests.graphql.helpers import data_of
from tests.identity.test_admin import promote

PASSWORD = "correct horse battery"


async def test_every_event_is_recorded_without_secrets(client: httpx.AsyncClient,
                                                       settings: Settings) -> None:
    secrets: list[str] = [PASSWORD]
    boss = await register(client)
    await promote(settings, boss["username"])
    secrets += [boss["access_token"], boss["refresh_token"]]
    user = await register(client)
    secrets += [user["access_token"], user["refresh_token"]]
    uid = (await client.get("/api/auth/me", headers=bearer(user["access_token"]))).json()["id"]
    request_id = f"req-{uuid.uuid4().hex[:12]}"
    failed = await client.post("/api/auth/login", headers={"X-Request-ID": request_id},
                               json={"username": user["username"], "password": "wrong one"})
    assert failed.status_code == 401
    secrets.append("wrong one")
    # A password typed into the username field is not kept either.
    typo = await client.post("/api/auth/login", json={"username": "hunter2-my-password",
                                                      "password": "x"})
    assert typo.status_code == 401
    secrets.append("hunter2-my-password")
    ok = await client.post("/api/auth/login", json={"username": user["username"],
                                                    "password": PASSWORD})
    token = ok.json()["access_token"]
    secrets += [token, ok.json()["refresh_token"]]
    await client.post("/api/auth/logout", headers=bearer(token),
                      json={"refresh_token": ok.json()["refresh_token"]})
    setup = (await client.post("/api/auth/2fa/setup", headers=bearer(token))).json()
    secrets += [setup["secret"], setup["otpauth_uri"]]
    totp = pyotp.TOTP(setup["secret"])
    codes = (await client.post("/api/auth/2fa/enable", headers=bearer(token),
                               json={"code": totp.now()})).json()["recovery_codes"]
    secrets += codes
    mfa = (await client.post("/api/auth/login", json={"username": user["username"],
                                                      "password": PASSWORD})).json()
    secrets.append(mfa["mfa_token"])
    await client.post("/api/auth/2fa/verify", json={"mfa_token": mfa["mfa_token"],
                                                   "code": "000000"})
    verified = await client.post("/api/auth/2fa/verify", json={
        "mfa_token": mfa["mfa_token"], "recovery_code": codes[0]})
    secrets += [verified.json()["access_token"], verified.json()["refresh_token"]]
    off = await client.post("/api/auth/2fa/disable", headers=bearer(token),
                            json={"password": PASSWORD, "recovery_code": codes[1]})
    assert off.status_code == 200
    invite = await client.post("/api/admin/invites", headers=bearer(boss["access_token"]))
    secrets.append(invite.json()["code"])
    await client.patch(f"/api/admin/users/{uid}", headers=bearer(boss["access_token"]),
                       json={"allowed_models": ["gpt-4o"], "active": False})
    doomed = await register(client)
    await client.request("DELETE", "/api/auth/me", headers=bearer(doomed["access_token"]),
                         json={"password": PASSWORD})

    response = await client.get("/api/admin/audit", params={"limit": 200},
                                headers=bearer(boss["access_token"]))
    assert response.status_code == 200
    events: list[dict[str, Any]] = response.json()["events"]
    assert {e["type"] for e in events} == {
        "register", "admin.promoted", "login.failed", "login.ok", "logout", "2fa.setup",
        "2fa.enabled", "2fa.failed", "2fa.recovery_used", "2fa.disabled",
        "admin.invite_created", "admin.user_updated", "account.deleted"}
    assert set(events[0]) == {"id", "at", "type", "actor_id", "target_id", "ip", "request_id",
                              "detail"}
    assert [e["id"] for e in events] == sorted((e["id"] for e in events), reverse=True)
    text = json.dumps(response.json())
    for secret in secrets:
        assert secret not in text, "a secret reached the audit log"
    failure = next(e for e in events if e["type"] == "login.failed" and e["target_id"])
    assert {"unknown_user": True} in [e["detail"] for e in events if e["type"] == "login.failed"]
    assert (failure["request_id"], failure["ip"], failure["target_id"]) == (
        request_id, "127.0.0.1", uid)
    update = next(e for e in events if e["type"] == "admin.user_updated")
    boss_id = (await client.get("/api/auth/me",
                                headers=bearer(boss["access_token"]))).json()["id"]
    assert (update["actor_id"], update["target_id"]) == (boss_id, uid)
    assert update["detail"]["changes"] == {"active": {"from": True, "to": False},
                                           "allowed_models": {"from": None, "to": ["gpt-4o"]}}
    # Newest first: the code used to disable, then the one used to sign in.
    assert [e["detail"] for e in events if e["type"] == "2fa.recovery_used"] == [
        {"remaining": 8}, {"remaining": 9}]

    # Filter by type, page with the cursor, and GraphQL reads the same log.
    only = await client.get("/api/admin/audit", params={"type": "2fa.setup"},
                            headers=bearer(boss["access_token"]))
    assert [e["type"] for e in only.json()["events"]] == ["2fa.setup"]
    first = (await client.get("/api/admin/audit", params={"limit": 5},
                              headers=bearer(boss["access_token"]))).json()
    second = (await client.get("/api/admin/audit",
                               params={"limit": 5, "cursor": first["next_cursor"]},
                               headers=bearer(boss["access_token"]))).json()
    assert [e["id"] for e in first["events"] + second["events"]] == [
        e["id"] for e in events[:10]]
    graphql = await data_of(client, "{ auditLog(limit: 200) { events { id type detail } } }",
                            token=boss["access_token"])
    assert [int(e["id"]) for e in graphql["auditLog"]["events"]] == [e["id"] for e in events]


async def test_the_record_commits_with_its_change_or_not_at_all(services: Services) -> None:
    async with services.db.session() as session:
        boss = await auth.register(session, services.security, username="boss",
                                   email="boss@example.com", password=PASSWORD)
    async with services.db.session() as session:
        await admin.promote(session, username="boss")
        boss_user = await session.get(User, boss.user.id)
        assert boss_user is not None
    async with services.db.session() as session:
        target = await auth.register(session, services.security, username="target",
                                     email="target@example.com", password=PASSWORD)

    async with services.db.session() as session:

        async def failing_commit() -> None:
            await session.flush()  # the change and its record both reached the database
            raise RuntimeError("the disk is full")

        session.commit = failing_commit  # type: ignore[method-assign]
        with pytest.raises(RuntimeError):
            await admin.update_user(session, boss_user, user_id=target.user.id,
                                    changes=admin.UserChanges(active=False))
        await session.rollback()

    async with services.db.session() as session:
        user = await session.get(User, target.user.id)
        assert user is not None and user.active
        records = (await session.exec(select(AuditEvent).where(
            col(AuditEvent.type) == audit.ADMIN_USER_UPDATED))).all()
        assert records == []

    async with services.db.session() as session:
        await admin.update_user(session, boss_user, user_id=target.user.id,
                                changes=admin.UserChanges(active=False))
    async with services.db.session() as session:
        records = (await session.exec(select(AuditEvent).where(
            col(AuditEvent.type) == audit.ADMIN_USER_UPDATED))).all()
        assert len(records) == 1 and records[0].target_id == target.user.id


async def test_a_secret_cannot_be_written(services: Services) -> None:
    async with services.db.session() as session:
        for detail in ({"password": "x"}, {"refresh_token": "x"}, {"totp_secret": "x"},
                       {"api_key": "x"}, {"recovery_code": "x"}):
            with pytest.raises(ValueError, match="may hold a secret"):
                audit.record(session, audit.LOGIN_OK, detail=detail)
        with pytest.raises(ValueError, match="unknown audit event type"):
            audit.record(session, "made.up")
        audit.record(session, audit.KEY_CREATED, detail={"key_id": "k1", "name": "ci"})
        await session.commit()

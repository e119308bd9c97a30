"""The issue's "done when", across two real uvicorn workers sharing a database and Redis: an
admin made with the real `cli_admin.py promote` command deactivates, on worker A, a user whose
/ws on worker B closes within a second, whose reply on B stops, and whose next request on
either worker gets 401; the audit log shows it, with no secret in it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.conftest import bearer, register
from tests.fakes import FakeOpenAI
from tests.realtime.clients import close_code, recv_json, user_id
from tests.realtime.test_multiworker import ROOT, Worker, redis_url, start_worker

pytestmark = [pytest.mark.redis, pytest.mark.slow]
__all__ = ["redis_url"]  # the fixture, used by name

MODEL = "gpt-4o-mini"


@pytest.fixture
async def slow_llm() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(chunks=[f"w{i} " for i in range(20)], completion_tokens=20,
                          chunk_delay=0.2) as fake:
        yield fake


@pytest.fixture
def env(tmp_path: Path, redis_url: str, slow_llm: FakeOpenAI) -> dict[str, str]:
    return {
        **os.environ,
        "ENVIRONMENT": "test",
        "SECRET_KEY": "identity-secret-" + uuid.uuid4().hex,
        "DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}",
        "REDIS_URL": redis_url,
        "EMBEDDED_MODEL_ENABLED": "false",
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_BASE_URL": slow_llm.api_base,
        "OPENAI_MODELS": MODEL,
        "DEFAULT_MODEL": MODEL,
        "ARGON2_TIME_COST": "1",
        "ARGON2_MEMORY_KIB": "1024",
        "ARGON2_PARALLELISM": "1",
        "LOG_LEVEL": "WARNING",
    }


@pytest.fixture
def workers(tmp_path: Path, env: dict[str, str]) -> Iterator[list[Worker]]:
    started: list[Worker] = []
    try:
        for name in ("a", "b"):  # one after the other: the first migrates
            started.append(start_worker(name, env, tmp_path))
        yield started
    finally:
        for worker in started:
            worker.process.terminate()
        for worker in started:
            try:
                worker.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()


async def test_an_admin_from_the_command_line_deactivates_a_user_on_another_worker(
        workers: list[Worker], env: dict[str, str]) -> None:
    a, b = workers
    async with (httpx.AsyncClient(base_url=a.url, timeout=30) as http_a,
                httpx.AsyncClient(base_url=b.url, timeout=30) as http_b):
        boss = await register(http_a, f"boss{uuid.uuid4().hex[:6]}")
        promoted = await asyncio.to_thread(
            subprocess.run, [sys.executable, "cli_admin.py", "promote", boss["username"]],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert promoted.returncode == 0, promoted.stderr
        user = await register(http_b)
        token = user["access_token"]
        uid = await user_id(http_b, token)
        created = await http_b.post("/api/conversations", headers=bearer(token), json={
            "id": "c1", "title": "t", "messages": [], "model": MODEL})
        assert created.status_code == 200
        async with connect(f"{b.ws_url}/ws/{uid}?token={token}") as ws:
            await ws.send(json.dumps({"type": "chat", "content": "hi", "request_id": "r",
                                      "conversation_id": "c1"}))
            while (await recv_json(ws))["type"] != "chat_chunk":
                pass
            started = time.monotonic()
            patched = await http_a.patch(f"/api/admin/users/{uid}", json={"active": False},
                                         headers=bearer(boss["access_token"]))
            assert patched.status_code == 200, patched.text
            assert await close_code(ws, 1.0) == 4401
            assert time.monotonic() - started < 1.0
        for http in (http_a, http_b):
            assert (await http.get("/api/auth/me", headers=bearer(token))).status_code == 401
        # The reply on worker B stopped: it is kept as "stopped", not run to its end (~4 s).
        database = env["DATABASE_URL"].removeprefix("sqlite+aiosqlite:///")

        def reply_row() -> tuple[str, str] | None:
            with contextlib.closing(sqlite3.connect(database)) as db:
                row = db.execute("SELECT status, content FROM messages "
                                 "WHERE role = 'assistant'").fetchone()
            return (row[0], row[1]) if row else None

        deadline = time.monotonic() + 2
        while (row := await asyncio.to_thread(reply_row)) is None:
            assert time.monotonic() < deadline, "the reply was never stored"
            await asyncio.sleep(0.05)
        status, content = row
        assert status == "stopped" and 0 < content.count("w") < 20
        audit = (await http_b.get("/api/admin/audit", params={"limit": 200},
                                  headers=bearer(boss["access_token"]))).json()["events"]
        types = [e["type"] for e in audit]
        assert types[0] == "admin.user_updated" and "admin.promoted" in types
        text = json.dumps(audit)
        for secret in (token, user["refresh_token"], boss["access_token"],
                       "correct horse battery"):
            assert secret not in text

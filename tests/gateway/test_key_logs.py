"""API keys never reach the server's logs — not even uvicorn's access log, which prints the
WebSocket URL with its `?token=` (a real uvicorn process at log level INFO)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from resolvers.kit.logging import redact
from tests.conftest import bearer, free_port, register
from tests.realtime.clients import recv_json, user_id

ROOT = Path(__file__).resolve().parents[2]


def test_redact_hides_query_tokens_keys_and_bearer_values() -> None:
    key = "cs-" + "A1b2_C3d4-" * 4
    line = (f'127.0.0.1 - "WebSocket /ws/u1?token={key}&x=1" [accepted] '
            f"Authorization: Bearer eyJhbGciOi.J9.x {key}")
    cleaned = redact(line)
    assert key not in cleaned and "eyJhbGciOi" not in cleaned
    assert "/ws/u1?token=***&x=1" in cleaned and "Bearer ***" in cleaned
    assert redact("nothing secret here: cs- and ?q=1") == "nothing secret here: cs- and ?q=1"


@pytest.fixture
def logged_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real uvicorn process logging everything (DEBUG, access log on) to a file."""
    port = free_port()
    log_path = tmp_path / "server.log"
    env = {**os.environ, "ENVIRONMENT": "test", "SECRET_KEY": "logs-" + uuid.uuid4().hex * 2,
           "DATA_DIR": str(tmp_path / "data"),
           "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}",
           "EMBEDDED_MODEL_ENABLED": "false", "ARGON2_TIME_COST": "1",
           "ARGON2_MEMORY_KIB": "1024", "ARGON2_PARALLELISM": "1", "LOG_LEVEL": "DEBUG"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "server:create_app", "--factory", "--host",
             "127.0.0.1", "--port", str(port), "--log-level", "debug"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and process.poll() is None, log_path.read_text()
            time.sleep(0.1)
        yield url, log_path
    finally:
        process.terminate()
        process.wait(timeout=15)


@pytest.mark.slow
async def test_a_key_used_on_every_face_never_appears_in_the_server_log(
        logged_server: tuple[str, Path]) -> None:
    url, log_path = logged_server
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        tokens = await register(http)
        key = (await http.post("/api/keys", json={"name": "k"},
                               headers=bearer(tokens["access_token"]))).json()["key"]
        uid = await user_id(http, tokens["access_token"])
        await http.get("/api/conversations", headers=bearer(key))
        await http.get("/v1/models", headers=bearer(key))
        await http.get("/api/conversations", headers=bearer(key[:-3] + "xyz"))
        await http.post("/graphql", headers=bearer(key), json={"query": "{ me { id } }"})
        async with connect(f"{url.replace('http', 'ws')}/ws/{uid}?token={key}") as ws:
            await ws.send(json.dumps({"type": "ping"}))
            assert (await recv_json(ws))["type"] == "pong"
    await asyncio.sleep(0.2)  # the access log line of the socket's close
    logged = log_path.read_text()
    assert "WebSocket /ws/" in logged  # the access log did run, and redacted the token
    assert key not in logged and key[3:19] not in logged
    assert tokens["access_token"] not in logged

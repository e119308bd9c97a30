"""Fixtures for the gateway tests: live servers whose providers are the local fakes, with a
price file (MODEL_PRICES) so that replies cost something, and helpers for keys."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.chat.conftest import provider_settings
from tests.chat.support import FakeThread, User, new_user
from tests.conftest import LiveServer

# USD per million tokens, chosen so that the fakes' default reply (21 prompt + 4 completion
# tokens) costs a round 21×1000 + 4×2000 = 29 000 µ$ = $0.029.
PRICES = {"gpt-4o-mini": {"input": 1000, "output": 2000},
          "claude-3-5-haiku-20241022": {"input": 100, "output": 200},
          "gemini-2.0-flash": {"input": 10, "output": 20}}
REPLY_MICROS = {"gpt-4o-mini": 29_000, "claude-3-5-haiku-20241022": 2_900,
                "gemini-2.0-flash": 290}


def price_file(tmp: Path, prices: dict[str, Any] | None = None) -> str:
    path = tmp / "prices.json"
    path.write_text(json.dumps(prices or PRICES))
    return str(path)


@pytest.fixture(scope="session")
def fake_thread() -> Iterator[FakeThread]:
    fakes = FakeThread()
    fakes.start()
    try:
        yield fakes
    finally:
        fakes.stop()


@pytest.fixture
def fakes(fake_thread: FakeThread) -> FakeThread:
    fake_thread.reset()
    return fake_thread


@pytest.fixture(scope="session")
def gateway_servers(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                    fake_thread: FakeThread) -> Iterator[dict[str, LiveServer]]:
    servers: dict[str, LiveServer] = {}
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def gateway(request: pytest.FixtureRequest, gateway_servers: dict[str, LiveServer],
            tmp_path_factory: pytest.TempPathFactory, fakes: FakeThread) -> LiveServer:
    """A live server per database (kept for the session) pricing the fakes' models."""
    kind = request.param
    if kind not in gateway_servers:
        tmp = tmp_path_factory.mktemp(f"gateway-{kind}")
        url = (f"sqlite+aiosqlite:///{tmp / 'chat.db'}" if kind == "sqlite"
               else request.getfixturevalue("postgres_database"))
        server = LiveServer(provider_settings(tmp, fakes, url, model_prices=price_file(tmp),
                                              metrics_enabled=True))
        server.start()
        gateway_servers[kind] = server
    return gateway_servers[kind]


@dataclass
class KeyUser(User):
    """A signed-in user who can make API keys."""

    async def make_key(self, **fields: Any) -> dict[str, Any]:
        response = await self.http.post("/api/keys", json={"name": "test", **fields},
                                        headers=self.headers)
        assert response.status_code == 201, response.text
        data: dict[str, Any] = response.json()
        return data


async def key_user(http: httpx.AsyncClient) -> KeyUser:
    user = await new_user(http)
    return KeyUser(http=user.http, headers=user.headers, username=user.username)


@pytest.fixture
async def user(gateway: LiveServer) -> AsyncIterator[KeyUser]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        yield await key_user(http)

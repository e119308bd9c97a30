"""Fixtures for the real-time suite: a live server whose chat talks to a fake OpenAI upstream
(real HTTP, OpenAI's streaming wire format), with a 1-second /ws authentication timeout."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from resolvers.kit.settings import Settings
from tests.conftest import LiveServer, make_settings
from tests.fakes import FakeOpenAI

MODEL = "gpt-4o-mini"
CHUNKS = [f"word{i} " for i in range(8)]


@pytest.fixture
async def fake_llm() -> AsyncIterator[FakeOpenAI]:
    """Eight chunks, 20 ms apart. Tests slow it down (`chunk_delay`) to catch a reply
    mid-flight."""
    async with FakeOpenAI(chunks=list(CHUNKS), completion_tokens=len(CHUNKS),
                          chunk_delay=0.02) as fake:
        yield fake


def realtime_settings(tmp_path: Path, fake: FakeOpenAI, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}",
        "openai_api_key": "sk-test",
        "openai_base_url": fake.api_base,
        "openai_models": [MODEL],
        "default_model": MODEL,
        "ws_auth_timeout_seconds": 1.0,
    }
    values.update(overrides)
    return make_settings(tmp_path, **values)


@pytest.fixture
def rt_settings(tmp_path: Path, fake_llm: FakeOpenAI) -> Settings:
    return realtime_settings(tmp_path, fake_llm)


@pytest.fixture
def rt_server(rt_settings: Settings) -> Iterator[LiveServer]:
    with LiveServer.running(rt_settings) as server:
        yield server


@pytest.fixture
async def http(rt_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=rt_server.url, timeout=30) as client:
        yield client

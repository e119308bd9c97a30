"""Production-readiness fixtures: a real server on SQLite with settings chosen per test.

`serve(**settings)` starts the app under uvicorn (a thread, real port) and returns an httpx
client bound to it; servers and clients are closed after the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.chat.support import FakeThread
from tests.conftest import LiveServer, make_settings

Serve = Callable[..., LiveServer]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    servers: list[LiveServer] = []

    def start(**overrides: Any) -> LiveServer:
        overrides.setdefault("database_url", f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}")
        server = LiveServer(make_settings(tmp_path, **overrides))
        server.start()
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
async def http(serve: Serve) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a server with the default (production) limits."""
    server = serve()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
def provider_fakes() -> Iterator[FakeThread]:
    """Fake OpenAI/Anthropic/Gemini servers speaking the real wire formats."""
    fakes = FakeThread()
    fakes.start()
    try:
        yield fakes
    finally:
        fakes.stop()


def fake_openai_settings(fakes: FakeThread) -> dict[str, Any]:
    fakes.reset()
    return {"openai_base_url": fakes.openai.api_base, "openai_api_key": "sk-test",
            "default_model": "gpt-4o-mini"}

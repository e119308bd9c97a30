"""Fixtures for the end-to-end chat tests: the real server and the real provider code talking
over HTTP to local fakes of OpenAI, Anthropic and Gemini.

The fakes run on their own event loop in a thread for the whole session, so they answer
whenever the server (itself on its own thread) calls them, between tests too. Servers are
started once per session and database (SQLite, PostgreSQL): every test registers its own
user, and everything a test checks (conversations, stats) is scoped to that user.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.chat.support import (
    ANTHROPIC_KEY,
    CONNECT_TIMEOUT,
    GEMINI_KEY,
    NO_RATE_LIMITS,
    OPENAI_KEY,
    STALL_TIMEOUT,
    FakeThread,
    User,
    new_user,
)
from tests.conftest import LiveServer, make_settings


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
    """The provider fakes, reset to their default script for this test."""
    fake_thread.reset()
    return fake_thread


def provider_settings(tmp_path: Path, fakes: FakeThread, database_url: str,
                      **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "database_url": database_url,
        "openai_base_url": fakes.openai.api_base,
        "openai_api_key": OPENAI_KEY,
        "anthropic_base_url": fakes.anthropic.base_url,
        "anthropic_api_key": ANTHROPIC_KEY,
        "gemini_base_url": fakes.gemini.base_url,
        "gemini_api_key": GEMINI_KEY,
        "default_model": "gpt-4o-mini",
        "provider_connect_timeout": CONNECT_TIMEOUT,
        "provider_stall_timeout": STALL_TIMEOUT,
        **NO_RATE_LIMITS,
    }
    values.update(overrides)
    return make_settings(tmp_path, **values)


class ServerPool:
    """One live server per database kind, started on first use and kept for the session."""

    def __init__(self, request: pytest.FixtureRequest, factory: pytest.TempPathFactory,
                 fakes: FakeThread) -> None:
        self.request = request
        self.factory = factory
        self.fakes = fakes
        self.servers: dict[str, LiveServer] = {}

    def get(self, kind: str) -> LiveServer:
        if kind not in self.servers:
            tmp = self.factory.mktemp(f"chat-{kind}")
            if kind == "sqlite":
                url = f"sqlite+aiosqlite:///{tmp / 'chat.db'}"
            else:
                url = self.request.getfixturevalue("postgres_database")
            server = LiveServer(provider_settings(tmp, self.fakes, url))
            server.start()
            self.servers[kind] = server
        return self.servers[kind]

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()


@pytest.fixture(scope="session")
def server_pool(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                fake_thread: FakeThread) -> Iterator[ServerPool]:
    pool = ServerPool(request, tmp_path_factory, fake_thread)
    try:
        yield pool
    finally:
        pool.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def chat_server(request: pytest.FixtureRequest, server_pool: ServerPool,
                fakes: FakeThread) -> LiveServer:
    """The live server with every provider pointed at the fakes, on SQLite and PostgreSQL."""
    return server_pool.get(request.param)


@pytest.fixture
def sqlite_server(server_pool: ServerPool, fakes: FakeThread) -> LiveServer:
    """The live server on SQLite only (for tests of the provider path, not of storage)."""
    return server_pool.get("sqlite")


@pytest.fixture
async def user(chat_server: LiveServer) -> AsyncIterator[User]:
    """A fresh user of the live server (SQLite and PostgreSQL)."""
    async with httpx.AsyncClient(base_url=chat_server.url, timeout=15) as http:
        yield await new_user(http)


@pytest.fixture
async def sqlite_user(sqlite_server: LiveServer) -> AsyncIterator[User]:
    """A fresh user of the SQLite live server."""
    async with httpx.AsyncClient(base_url=sqlite_server.url, timeout=15) as http:
        yield await new_user(http)

"""Shared fixtures: one test body over SQLite and PostgreSQL, real HTTP via uvicorn.

PostgreSQL: TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test). With CI set
the PostgreSQL variants must run: an unreachable server fails the run instead of skipping.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, NoReturn

import asyncpg
import httpx
import pytest
import uvicorn
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from resolvers.assembly import running_services
from resolvers.kit.db import Database
from resolvers.kit.migrate import upgrade
from resolvers.kit.settings import Settings
from resolvers.services import Services

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = bool(os.environ.get("CI"))
TABLES = ["token_usage", "refresh_tokens", "messages", "conversations", "audit_log", "invites",
          "oauth_logins", "oauth_identities", "recovery_codes", "users"]


def _unreachable(kind: str, error: BaseException) -> NoReturn:
    message = f"{kind} is not reachable ({error})"
    if IN_CI:
        pytest.fail(f"{message}; CI must run the {kind} suites (.ci/run starts it)")
    pytest.skip(f"{message}; start it to run these tests")


@contextlib.contextmanager
def scratch_postgres(prefix: str = "chatstudio_test", *,
                     admin_url: str = POSTGRES_URL) -> Iterator[str]:
    """An empty PostgreSQL database of its own (its async URL), dropped afterwards; fails in CI
    and skips elsewhere when PostgreSQL is not reachable. `admin_url`: another server (e.g.
    `pgvector_server`'s)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(admin_url, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        _unreachable("PostgreSQL", exc)
    url = make_url(admin_url).set(drivername="postgresql+asyncpg", database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def pgvector_server() -> Iterator[str]:
    """A PostgreSQL 16 with the pgvector extension, of this test session only: PyPI's
    `pgserver` (a dev dependency; Debian bookworm has no pgvector for its PostgreSQL 15) in a
    temporary directory, reached by a Unix socket there (no port to collide with). Its admin
    URL; stopped and deleted at the end. As root, pgserver runs it as a system user of its
    own (`pgserver`, created with useradd)."""
    directory = tempfile.mkdtemp(prefix="pgvector-")
    with warnings.catch_warnings():  # platformdirs: "XDG_RUNTIME_DIR is not set" (a daemon)
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
        try:
            import pgserver

            server = pgserver.get_server(directory, cleanup_mode="delete")
        except Exception as exc:
            _unreachable("pgserver (PostgreSQL with pgvector)", exc)
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh database for this test session, migrated once; dropped at the end."""
    with scratch_postgres() as url:

        async def migrate() -> None:
            db = Database(url)
            await upgrade(db.engine)
            await db.dispose()

        asyncio.run(migrate())
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}"
    url: str = request.getfixturevalue("postgres_database")

    async def truncate() -> None:
        db = Database(url)
        async with db.engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
        await db.dispose()

    asyncio.run(truncate())
    return url


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "data_dir": tmp_path / "data",
        "secret_key": "test-secret-key-" + "x" * 32,
        # Cheap argon2 so a test registering users stays fast; production keeps the defaults.
        "argon2_time_cost": 1,
        "argon2_memory_kib": 1024,
        "argon2_parallelism": 1,
        "embedded_model_enabled": False,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url=database_url)


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    """The service container without any transport: for tests of resolvers/."""
    async with running_services(settings) as built:
        yield built


def wait_until_serving(process: subprocess.Popen[bytes], url: str, log_path: Path, *,
                       name: str, seconds: float = 60) -> None:
    """Until a server process we started answers `url`/health with 200; fails with its log
    when it exits first or never answers."""
    deadline = time.monotonic() + seconds
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"worker {name} exited: {log_path.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"worker {name} did not start")
        time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LiveServer:
    """The real app under uvicorn on a real port, in a thread with its own event loop."""

    def __init__(self, settings: Settings) -> None:
        from server import create_app

        self.settings = settings
        self.port = free_port()
        self.app = create_app(settings)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="on", ws_max_size=4 * 1024 * 1024)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)

    @classmethod
    @contextlib.contextmanager
    def running(cls, settings: Settings) -> Iterator[LiveServer]:
        server = cls(settings)
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def live_server(settings: Settings) -> Iterator[LiveServer]:
    with LiveServer.running(settings) as server:
        yield server


@pytest.fixture
async def client(live_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http:
        yield http


async def register(http: httpx.AsyncClient, username: str | None = None,
                   password: str = "correct horse battery") -> dict[str, str]:
    """Register a fresh user over REST; returns the token response plus username/headers."""
    username = username or f"user{uuid.uuid4().hex[:8]}"
    response = await http.post("/api/auth/register", json={
        "username": username, "email": f"{username}@example.com", "password": password})
    assert response.status_code == 200, response.text
    data: dict[str, str] = response.json()
    data["username"] = username
    return data


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextlib.contextmanager
def count_statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """Every SQL statement the engine sends inside the block, from any thread (an executemany
    is one)."""
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)

"""Fault-injection fixtures: a Redis and a PostgreSQL of the test's own (own ports, own data
directories, loopback only) that a test can kill and start again, and the shared Redis for
tests that only need one.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.chat.support import FakeThread
from tests.conftest import IN_CI, free_port, scratch_postgres

SHARED_REDIS_URL = os.environ.get("TEST_REDIS_URL_FAULTS", "redis://127.0.0.1:6379/12")


def _missing(what: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} is needed by the fault-injection suite")
    pytest.skip(f"{what} is not available")


@pytest.fixture(scope="module")
def redis_url() -> str:
    try:
        redis.Redis.from_url(SHARED_REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        _missing(f"Redis at {SHARED_REDIS_URL} ({exc})")
    return SHARED_REDIS_URL


class OwnRedis:
    """redis-server on a free loopback port, no persistence; stop() kills it (SIGKILL)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                # Closed at once: a leaked socket's ResourceWarning fails whichever test
                # the garbage collector happens to run in.
                with redis.Redis(port=self.port, socket_connect_timeout=0.5) as client:
                    client.ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    if shutil.which("redis-server") is None:
        _missing("redis-server")
    server = OwnRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


class OwnPostgres:
    """A PostgreSQL cluster in its own data directory on a free loopback port. initdb and
    pg_ctl refuse to run as root, so they run as the `postgres` user when we are root."""

    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="chatstudio-pg-"))
        self.data = self.root / "data"
        self.pg_ctl = _pg_bin("pg_ctl")
        self.initdb = _pg_bin("initdb")
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            entry = pwd.getpwnam("postgres")
            os.chown(self.root, entry.pw_uid, entry.pw_gid)

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60) -> None:
        if self._as_postgres:
            entry = pwd.getpwnam("postgres")
            subprocess.run(args, check=True, timeout=timeout, user=entry.pw_uid,
                           group=entry.pw_gid, cwd=self.root, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        else:
            subprocess.run(args, check=True, timeout=timeout, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)

    def init(self) -> None:
        assert self.initdb is not None
        self._run(self.initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--no-sync", "-E", "UTF8")

    def start(self) -> None:
        assert self.pg_ctl is not None
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 "
                   f"-c unix_socket_directories={self.root} -c fsync=off")
        self._run(self.pg_ctl, "-D", str(self.data), "-o", options, "-w", "-t", "30",
                  "-l", str(self.root / "log"), "start")

    def kill(self) -> None:
        """Stop at once, as a crash would (`immediate`: no shutdown checkpoint)."""
        assert self.pg_ctl is not None
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run(self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def remove(self) -> None:
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    server = OwnPostgres()
    if server.pg_ctl is None or server.initdb is None:
        _missing("PostgreSQL server binaries (initdb, pg_ctl)")
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture(scope="session")
def provider_fakes() -> Iterator[FakeThread]:
    """Fake OpenAI/Anthropic/Gemini servers speaking the real wire formats."""
    fakes = FakeThread()
    fakes.start()
    try:
        yield fakes
    finally:
        fakes.stop()


@pytest.fixture
def fresh_postgres_url() -> Iterator[str]:
    """An empty PostgreSQL database (not migrated), dropped afterwards."""
    with scratch_postgres("chatstudio_fresh") as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
    url: str = request.getfixturevalue("fresh_postgres_url")
    return url

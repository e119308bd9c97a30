"""One migration at start: many processes starting at once on a fresh database all succeed.

Real processes (spawned, not forked) call `upgrade()` at the same instant; then a real
`uvicorn --workers 4` on a fresh database must start every time and stay up.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from resolvers.kit.db import Database
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = 6


def _upgrade_in_process(url: str, barrier: multiprocessing.synchronize.Barrier,
                        results: multiprocessing.Queue[str]) -> None:
    from resolvers.kit.migrate import upgrade

    async def run() -> None:
        db = Database(url)
        try:
            await upgrade(db.engine)
        finally:
            await db.dispose()

    barrier.wait()  # every process starts migrating at the same instant
    try:
        asyncio.run(run())
        results.put("ok")
    except BaseException as exc:
        results.put(f"{type(exc).__name__}: {exc}")


async def _tables(url: str) -> tuple[set[str], list[str]]:
    db = Database(url)
    try:
        async with db.engine.connect() as conn:
            if db.dialect == "sqlite":
                rows = await conn.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))
            else:
                rows = await conn.execute(text(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
            tables = {row[0] for row in rows}
            versions = [row[0] for row in await conn.execute(
                text("SELECT version_num FROM alembic_version"))]
        return tables, versions
    finally:
        await db.dispose()


@pytest.mark.slow
def test_simultaneous_upgrades_on_a_fresh_database_all_succeed(fresh_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    results: multiprocessing.Queue[str] = context.Queue()
    processes = [context.Process(target=_upgrade_in_process, args=(fresh_url, barrier, results))
                 for _ in range(PROCESSES)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    assert outcomes == ["ok"] * PROCESSES, outcomes
    tables, versions = asyncio.run(_tables(fresh_url))
    assert {"users", "conversations", "messages", "refresh_tokens", "token_usage"} <= tables
    assert len(versions) == 1, versions  # one row: nobody migrated twice


def _start_server(env: dict[str, str], port: int, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "server:create_app", "--factory",
             "--host", "127.0.0.1", "--port", str(port), "--workers", "4"],
            cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
            start_new_session=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.parametrize("attempt", range(5))
def test_four_workers_start_on_a_fresh_database(attempt: int, tmp_path: Path,
                                                redis_url: str) -> None:
    """WORKERS=4 on a fresh SQLite database: all four workers come up, /health says 200,
    and the server is still serving after every worker is ready (the bug: one worker's
    migration failed and uvicorn stopped the server seconds after /health said 200)."""
    port = free_port()
    env = {**os.environ, "ENVIRONMENT": "test", "DATA_DIR": str(tmp_path / "data"),
           "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}",
           "REDIS_URL": redis_url, "WORKERS": "4", "SECRET_KEY": "k" * 40,
           "EMBEDDED_MODEL_ENABLED": "false", "LOG_FORMAT": "text", "LOG_LEVEL": "INFO"}
    log_path = tmp_path / "server.log"
    process = _start_server(env, port, log_path)
    try:
        deadline = time.monotonic() + 60
        while log_path.read_text(errors="replace").count("ready in") < 4:
            assert process.poll() is None, log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")
            time.sleep(0.1)
        time.sleep(0.5)  # the failure mode took a moment to bring the server down
        for _ in range(8):  # several answers: different workers
            response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10)
            assert response.status_code == 200, response.text
        assert process.poll() is None, log_path.read_text(errors="replace")
        output = log_path.read_text(errors="replace")
        assert "Traceback" not in output, output
        assert output.count("database migrated") == 1, output
    finally:
        _stop(process)

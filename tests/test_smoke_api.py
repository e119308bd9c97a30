"""The integration guide's smoke client (test_api.py) against a real server: uvicorn in its own
process, as an operator starts it, with the embedded model answering chats for real."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def uvicorn_server(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "ENVIRONMENT": "development",
        "DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": "",
        "REDIS_URL": "",
        "EMBEDDED_MODEL_ENABLED": "true",
        "ARGON2_TIME_COST": "1",
        "ARGON2_MEMORY_KIB": "1024",
        "ARGON2_PARALLELISM": "1",
        "LOG_FORMAT": "json",
    }
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "server:create_app", "--factory",
         "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)}, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # loads the embedded model before serving
        while True:
            if process.poll() is not None:
                raise RuntimeError("the server exited:\n" + (tmp_path / "server.log").read_text())
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start in 120 s")
            time.sleep(0.25)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.mark.slow
def test_guide_smoke_client_passes(uvicorn_server: str) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "test_api.py"), "--base-url", uvicorn_server,
         "--timeout", "60"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert " 0 failed" in output, output

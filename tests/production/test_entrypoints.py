"""The ways people start the server, each as a real process: `uvicorn server:app` (and the
guide's `uvicorn main:app`), `python -m chat_studio_cli serve|migrate`, and the installed
`chat-studio` command."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def app_env(tmp_path: Path) -> dict[str, str]:
    """A quick, isolated configuration (no .env is read from tmp_path)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env.update({
        "ENVIRONMENT": "test",
        "DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'chat.db'}",
        "SECRET_KEY": "entrypoint-test-" + "k" * 32,
        "EMBEDDED_MODEL_ENABLED": "false",
        "ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "1024", "ARGON2_PARALLELISM": "1",
        "LOG_LEVEL": "WARNING",
    })
    return env


class Process:
    def __init__(self, args: list[str], *, cwd: Path, env: dict[str, str], log: Path) -> None:
        self.log = log
        self.handle = log.open("w")
        self.proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=self.handle,
                                     stderr=subprocess.STDOUT)

    def wait_healthy(self, url: str, timeout: float = 40) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                response = httpx.get(f"{url}/health", timeout=2)
                if response.status_code == 200:
                    body: dict[str, object] = response.json()
                    return body
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"no healthy server at {url}:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.handle.close()


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:
        process.stop()


def start(processes: list[Process], args: list[str], *, cwd: Path, env: dict[str, str],
          log: Path) -> Process:
    process = Process(args, cwd=cwd, env=env, log=log)
    processes.append(process)
    return process


def register_and_me(url: str) -> None:
    """What a new user of the guide does first: register, then ask who they are."""
    name = f"u{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=url, timeout=20) as http:
        response = http.post("/api/auth/register", json={
            "username": name, "email": f"{name}@example.com", "password": "password123"})
        assert response.status_code == 200, response.text
        token = response.json()["access_token"]
        me = http.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200 and me.json()["username"] == name


@pytest.mark.parametrize("target", ["server:app", "main:app"])
def test_uvicorn_module_app_serves_the_api(target: str, tmp_path: Path,
                                           processes: list[Process]) -> None:
    port = free_port()
    process = start(processes, [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1",
                                "--port", str(port)],
                    cwd=ROOT, env=app_env(tmp_path), log=tmp_path / "uvicorn.log")
    url = f"http://127.0.0.1:{port}"
    health = process.wait_healthy(url)
    assert health["status"] == "healthy" and health["database"] == "up"
    register_and_me(url)


def test_importing_server_builds_no_app(tmp_path: Path) -> None:
    # Tests and create_app(settings) callers must not get an app made from the environment.
    code = ("import server, resolvers, schema; "
            "assert 'app' not in vars(server), 'built at import'; "
            "print(type(server.app).__name__)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=app_env(tmp_path),
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "FastAPI"


def tables(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_cli_module_migrates_then_serves_from_anywhere(tmp_path: Path,
                                                       processes: list[Process]) -> None:
    """`python -m chat_studio_cli` called from another folder runs this repository."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = app_env(tmp_path) | {"PYTHONPATH": str(ROOT)}
    migrate = subprocess.run([sys.executable, "-m", "chat_studio_cli", "migrate"], cwd=elsewhere,
                             env=env, capture_output=True, text=True, timeout=120, check=False)
    assert migrate.returncode == 0, migrate.stderr
    assert {"users", "conversations", "alembic_version"} <= tables(tmp_path / "chat.db")

    port = free_port()
    process = start(processes, [sys.executable, "-m", "chat_studio_cli", "serve", "--host",
                                "127.0.0.1", "--port", str(port)],
                    cwd=elsewhere, env=env, log=tmp_path / "serve.log")
    process.wait_healthy(f"http://127.0.0.1:{port}")
    register_and_me(f"http://127.0.0.1:{port}")
    assert not (elsewhere / "data").exists()


def test_cli_refuses_a_folder_without_the_app(tmp_path: Path) -> None:
    env = app_env(tmp_path) | {"PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "chat_studio_cli", "--app-dir", str(tmp_path),
                             "migrate"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode != 0
    assert "no server.py in" in result.stderr


def installed_script() -> Path:
    script = Path(sys.executable).parent / "chat-studio"
    if not script.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{script} is missing: `pip install -e .` must install the console "
                        "script (pyproject [project.scripts])")
        pytest.skip(f"{script} is not installed yet (`make install` re-installs the project)")
    return script


def test_installed_chat_studio_command(tmp_path: Path, processes: list[Process]) -> None:
    script = installed_script()
    env = app_env(tmp_path)
    migrate = subprocess.run([str(script), "migrate"], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=120, check=False)
    assert migrate.returncode == 0, migrate.stderr
    assert "users" in tables(tmp_path / "chat.db")
    port = free_port()
    process = start(processes, [str(script), "serve", "--host", "127.0.0.1", "--port", str(port)],
                    cwd=ROOT, env=env, log=tmp_path / "serve.log")
    process.wait_healthy(f"http://127.0.0.1:{port}")

"""Processes of a run: the server under test, the floors, the fake upstream, the load generator.

Each is a real process pinned with `taskset`: what is measured on CPU 0 (our server, or a floor
in its place), the load generator and the fake upstream on CPU 1.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Where the server under test is imported from: the work tree, or a `git archive` snapshot.
SERVER_ROOT = ROOT
PY = sys.executable
SERVER_CORE, LOAD_CORE = 0, 1


def cores() -> int:
    return len(os.sched_getaffinity(0))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def raise_fd_limit() -> int:
    """Children inherit it: the server and the load generator both hold thousands of sockets."""
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def pinned(cmd: list[str], core: int) -> list[str]:
    if shutil.which("taskset") and cores() > core:
        return ["taskset", "-c", str(core), *cmd]
    return cmd


class Proc:
    """A child process with its log in a file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, name: str, cmd: list[str], *, env: dict[str, str] | None = None,
                 core: int, logdir: Path, cwd: Path = ROOT) -> None:
        self.name = name
        self.log_path = logdir / f"{name}.log"
        self._log = self.log_path.open("ab")
        self.popen = subprocess.Popen(pinned(cmd, core), cwd=cwd,
                                      env={**os.environ, **(env or {})}, stdout=self._log,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.popen.pid  # taskset execs the command: same pid

    def wait_http(self, url: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.popen.returncode}); "
                                   f"see {self.log_path}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2):
                    return
            except urllib.error.HTTPError:
                return  # it answers
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer {url} in {timeout:.0f}s:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()


def snapshot(rev: str, into: Path) -> Path:
    """The tree of a commit, extracted read-only from git (the work tree is not touched)."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", rev], cwd=ROOT, check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def start_uvicorn(name: str, app: str, *, env: dict[str, str], logdir: Path,
                  factory: bool = False, health: str = "/") -> tuple[Proc, str]:
    port = free_port()
    cmd = [PY, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
           "--no-access-log", "--log-level", "warning", "--backlog", "4096"]
    if factory:
        cmd.insert(4, "--factory")
    if app.startswith("server:"):  # our server: from SERVER_ROOT, first on the path
        env = {**env, "PYTHONPATH": str(SERVER_ROOT)}
    proc = Proc(name, cmd, env=env, core=SERVER_CORE, logdir=logdir,
                cwd=SERVER_ROOT if app.startswith("server:") else ROOT)
    base = f"http://127.0.0.1:{port}"
    proc.wait_http(base + health, timeout=120)
    return proc, base


def server_env(data_dir: Path, database_url: str, upstream: str, *,
               embedded: bool) -> dict[str, str]:
    """Production settings, one worker, chat pointed at the fake upstream."""
    return {
        "ENVIRONMENT": "production",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "DATA_DIR": str(data_dir),
        "DATABASE_URL": database_url,
        "REDIS_URL": "",
        "WORKERS": "1",
        "LOG_LEVEL": "WARNING",
        "OPENAI_BASE_URL": upstream,
        "OPENAI_API_KEY": "sk-bench",
        "OPENAI_MODELS": "bench-0ms,bench-5ms",
        "DEFAULT_MODEL": "bench-0ms",
        "EMBEDDED_MODEL_ENABLED": "true" if embedded else "false",
        # The abuse limits answer 429 by design long before a benchmark's load: off, so the
        # figures measure the work, not the limiter (RATE_LIMIT_*=0 is "disabled").
        "RATE_LIMIT_AUTH_PER_ADDRESS": "0",
        "RATE_LIMIT_AUTH_PER_USERNAME": "0",
        "RATE_LIMIT_CHAT_PER_MINUTE": "0",
        "DAILY_TOKEN_QUOTA": "0",
    }


class Load:
    """The load generator process: one JSON spec in, one JSON result out."""

    def __init__(self, logdir: Path) -> None:
        self._err = (logdir / "load.log").open("ab")
        self.popen = subprocess.Popen(pinned([PY, "-m", "bench.load"], LOAD_CORE), cwd=ROOT,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=self._err, text=True, start_new_session=True)

    def run(self, spec: dict[str, Any]) -> dict[str, Any]:
        assert self.popen.stdin and self.popen.stdout
        spec = {"load_core": LOAD_CORE, "server_core": SERVER_CORE, **spec}
        self.popen.stdin.write(json.dumps(spec) + "\n")
        self.popen.stdin.flush()
        line = self.popen.stdout.readline()
        if not line:
            raise RuntimeError("the load generator died (see load.log)")
        result: dict[str, Any] = json.loads(line)
        return result

    def stop(self) -> None:
        if self.popen.stdin:
            self.popen.stdin.close()
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        self._err.close()


# ---------------------------------------------------------------- PostgreSQL


PG_ADMIN = os.environ.get("BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")


def _pg(sql: str) -> None:
    import asyncio

    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(PG_ADMIN, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def pg_create() -> str:
    """A throwaway database; returns its URL."""
    name = f"bench_{os.getpid()}_{secrets.token_hex(3)}"
    _pg(f'CREATE DATABASE "{name}"')
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


def pg_drop(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    _pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_available() -> bool:
    try:
        _pg("SELECT 1")
        return True
    except Exception:
        return False


def call(method: str, url: str, body: Any = None, token: str | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=60) as resp:
        return json.loads(resp.read() or b"null")

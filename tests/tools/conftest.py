"""Fixtures for the tool tests: live servers whose providers are the local fakes, an admin,
and the test MCP server (tests/tools/mcp_server.py, built with the official SDK) over stdio
and over Streamable HTTP on 127.0.0.1."""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import cli_admin
from tests.chat.conftest import provider_settings
from tests.chat.support import FakeThread, User, new_user
from tests.conftest import LiveServer, bearer, free_port, register

MCP_SERVER = str(Path(__file__).with_name("mcp_server.py"))
TOOL_TIMEOUT = 2.0


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
def tool_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, LiveServer]]:
    servers: dict[str, LiveServer] = {}
    yield servers
    for server in servers.values():
        server.stop()


def _server(request: pytest.FixtureRequest, servers: dict[str, LiveServer],
            factory: pytest.TempPathFactory, fakes: FakeThread, kind: str,
            **overrides: Any) -> LiveServer:
    key = f"{kind}-{sorted(overrides.items())}"
    if key not in servers:
        tmp = factory.mktemp(f"tools-{kind}")
        url = (f"sqlite+aiosqlite:///{tmp / 'chat.db'}" if kind == "sqlite"
               else request.getfixturevalue("postgres_database"))
        server = LiveServer(provider_settings(tmp, fakes, url, tool_timeout=TOOL_TIMEOUT,
                                              **overrides))
        server.start()
        servers[key] = server
    return servers[key]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def tools_server(request: pytest.FixtureRequest, tool_servers: dict[str, LiveServer],
                 tmp_path_factory: pytest.TempPathFactory, fakes: FakeThread) -> LiveServer:
    """No addresses allow-listed: the outbound guard refuses 127.0.0.1."""
    return _server(request, tool_servers, tmp_path_factory, fakes, request.param)


@pytest.fixture
def allowing_server(request: pytest.FixtureRequest, tool_servers: dict[str, LiveServer],
                    tmp_path_factory: pytest.TempPathFactory, fakes: FakeThread) -> LiveServer:
    """The admin allow-listed loopback (OUTBOUND_ALLOW=127.0.0.0/8)."""
    return _server(request, tool_servers, tmp_path_factory, fakes, "sqlite",
                   outbound_allow=["127.0.0.0/8"])


@dataclass
class Admin(User):
    async def add_server(self, **body: Any) -> httpx.Response:
        return await self.http.post("/api/admin/mcp-servers", json=body,
                                    headers=self.headers)

    async def add_stdio(self, name: str = "t", **fields: Any) -> dict[str, Any]:
        response = await self.add_server(name=name, transport="stdio", command=sys.executable,
                                         args=[MCP_SERVER], **fields)
        assert response.status_code == 201, response.text
        data: dict[str, Any] = response.json()
        return data


async def make_admin(http: httpx.AsyncClient, server: LiveServer) -> Admin:
    tokens = await register(http)
    status = await asyncio.to_thread(cli_admin.promote,
                                     argparse.Namespace(username=tokens["username"]),
                                     server.settings)
    assert status == 0
    return Admin(http=http, headers=bearer(tokens["access_token"]),
                 username=tokens["username"])


@dataclass
class Pair:
    admin: Admin
    user: User
    server: LiveServer


@pytest.fixture
async def pair(tools_server: LiveServer) -> AsyncIterator[Pair]:
    async with httpx.AsyncClient(base_url=tools_server.url, timeout=30) as http:
        admin = await make_admin(http, tools_server)
        user = await new_user(http)
        yield Pair(admin, user, tools_server)
        # Leave no server registered for the next test on this live server.
        listed = await http.get("/api/admin/mcp-servers", headers=admin.headers)
        for row in listed.json():
            await http.delete(f"/api/admin/mcp-servers/{row['id']}", headers=admin.headers)


@pytest.fixture
def http_mcp() -> Iterator[str]:
    """The test MCP server over Streamable HTTP at http://127.0.0.1:PORT/mcp."""
    port = free_port()
    process = subprocess.Popen([sys.executable, MCP_SERVER, "--http", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the HTTP MCP server did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

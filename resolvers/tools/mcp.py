"""MCP client connections (the official `mcp` SDK): one per registered server, kept open.

A connection runs in a task of its own that holds the SDK's transport and `ClientSession`
open (stdio: the server's process; Streamable HTTP: an httpx2 client whose transport is the
outbound guard's). Its tools are listed once when it connects and cached. A call that outlives
its timeout, or a server that dies (the process exits, the HTTP server goes away), ends as an
error *result* — never a hung reply — and the next use starts the connection again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from dataclasses import dataclass, field
from typing import Any

import httpx2
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from resolvers.kit.outbound import Outbound

log = logging.getLogger("chat_studio.mcp")

CONNECT_TIMEOUT = 15.0


@dataclass(frozen=True, slots=True)
class ServerSpec:
    name: str
    transport: str  # "stdio" | "http"
    command: str | None = None
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    url: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class McpTool:
    server: str
    name: str  # the server's own name for it
    description: str
    input_schema: dict[str, Any]

    @property
    def qualified(self) -> str:
        return f"{self.server}.{self.name}"


@dataclass(frozen=True, slots=True)
class Outcome:
    content: str
    is_error: bool


class ServerDown(Exception):
    """The server could not be reached or started; the message says why."""


@dataclass
class Connection:
    spec: ServerSpec
    outbound: Outbound
    tools: list[McpTool] = field(default_factory=list)
    error: str | None = None  # why the last connection failed or ended
    _session: ClientSession | None = None
    _task: asyncio.Task[None] | None = None
    _ready: asyncio.Event = field(default_factory=asyncio.Event)
    _close: asyncio.Event = field(default_factory=asyncio.Event)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def healthy(self) -> bool:
        return self._task is not None and not self._task.done() and self._session is not None

    async def ensure(self) -> ClientSession:
        """The open session, connecting (again) when there is none."""
        async with self._lock:
            if self.healthy:
                assert self._session is not None
                return self._session
            if self._task is not None and not self._task.done():
                self._close.set()
                await asyncio.wait([self._task], timeout=5)
            self._ready, self._close = asyncio.Event(), asyncio.Event()
            self._session, self.error = None, None
            self._task = asyncio.create_task(self._run(), name=f"mcp {self.spec.name}")
            ready = asyncio.create_task(self._ready.wait())
            done, _ = await asyncio.wait([ready, self._task], timeout=CONNECT_TIMEOUT,
                                         return_when=asyncio.FIRST_COMPLETED)
            ready.cancel()
            if self._session is None:
                if not done:
                    self.error = "timed out connecting"
                    self._close.set()
                    self._task.cancel()
                raise ServerDown(f"MCP server {self.spec.name!r} is unavailable: "
                                 f"{self.error or 'it did not start'}")
            return self._session

    async def _run(self) -> None:
        try:
            async with contextlib.AsyncExitStack() as stack:
                if self.spec.transport == "stdio":
                    params = StdioServerParameters(
                        command=self.spec.command or sys.executable, args=list(self.spec.args),
                        env=dict(self.spec.env) or None)
                    read, write = await stack.enter_async_context(stdio_client(params))
                else:
                    assert self.spec.url is not None
                    await self.outbound.check_url(self.spec.url)
                    client = await stack.enter_async_context(httpx2.AsyncClient(
                        transport=self.outbound.transport(), headers=dict(self.spec.headers),
                        timeout=httpx2.Timeout(30.0, read=300.0)))
                    read, write = await stack.enter_async_context(
                        streamable_http_client(self.spec.url, http_client=client))
                session = await stack.enter_async_context(ClientSession(read, write))
                await session.initialize()
                listed = await session.list_tools()
                self.tools = [McpTool(server=self.spec.name, name=tool.name,
                                      description=tool.description or "",
                                      input_schema=dict(tool.input_schema))
                              for tool in listed.tools]
                self._session = session
                self._ready.set()
                await self._close.wait()
        except Exception as exc:  # the server died or never came up: reported, not raised
            self.error = _describe(exc)
            log.warning("MCP server %s: %s", self.spec.name, self.error)
        finally:
            self._session = None

    async def call(self, name: str, arguments: str, *,
                   timeout: float) -> Outcome:  # noqa: ASYNC109 (a per-call budget)
        try:
            parsed = json.loads(arguments or "{}")
        except ValueError:
            return Outcome("The arguments are not valid JSON", True)
        if not isinstance(parsed, dict):
            return Outcome("The arguments must be a JSON object", True)
        try:
            async with asyncio.timeout(timeout):
                session = await self.ensure()
                assert self._task is not None
                call = asyncio.create_task(session.call_tool(name, parsed))
                # The server dying mid-call ends the connection task: never wait past it.
                await asyncio.wait([call, self._task], return_when=asyncio.FIRST_COMPLETED)
                if not call.done():
                    call.cancel()
                    with contextlib.suppress(BaseException):
                        await call
                    self._give_up()
                    return Outcome(f"The MCP server {self.spec.name!r} stopped during the "
                                   f"call: {self.error or 'it exited'}", True)
                result = call.result()
        except TimeoutError:
            return Outcome(f"The tool {name!r} timed out after {timeout:g} s", True)
        except ServerDown as exc:
            return Outcome(str(exc), True)
        except Exception as exc:
            # The connection broke (the server exited, the HTTP session ended): the next
            # use connects again.
            self._give_up()
            return Outcome(f"The tool {name!r} failed: {_describe(exc)}", True)
        texts = [getattr(block, "text", None) for block in result.content]
        text = "\n".join(t for t in texts if isinstance(t, str))
        if not text and result.structured_content is not None:
            text = json.dumps(result.structured_content)
        return Outcome(text, bool(result.is_error))

    def _give_up(self) -> None:
        self._session = None
        self._close.set()

    async def aclose(self) -> None:
        self._close.set()
        if self._task is not None:
            _, pending = await asyncio.wait([self._task], timeout=5)
            for task in pending:
                task.cancel()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        return _describe(exc.exceptions[0])
    return str(exc) or type(exc).__name__


@dataclass
class Pool:
    """The connections of this process, by server name."""

    outbound: Outbound
    connections: dict[str, Connection] = field(default_factory=dict)

    def get(self, spec: ServerSpec) -> Connection:
        connection = self.connections.get(spec.name)
        if connection is None or connection.spec != spec:
            if connection is not None:
                stale = connection
                asyncio.get_running_loop().create_task(stale.aclose())
            connection = Connection(spec, self.outbound)
            self.connections[spec.name] = connection
        return connection

    async def drop(self, name: str) -> None:
        connection = self.connections.pop(name, None)
        if connection is not None:
            await connection.aclose()

    async def aclose(self) -> None:
        for name in list(self.connections):
            await self.drop(name)

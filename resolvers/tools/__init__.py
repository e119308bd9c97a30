"""Tools: MCP servers that admins register, and the tools each user may use (issue 15).

Operations (every face calls these): `register`, `servers`, `remove` (admins only),
`available` (the caller's tools: visible servers, or all of them for admins) and `resolve`
(what a chat request's `tools` names). The model ↔ tool loop itself is in chat
(resolvers/chat/__init__.py); it calls `run` for each call.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import McpServer, User
from resolvers import audit, roles
from resolvers.kit.clock import now_ms
from resolvers.kit.db import Database
from resolvers.kit.errors import BadInput, Conflict, NotFound, ValidationFailed
from resolvers.kit.outbound import Outbound
from resolvers.llm.base import Tool
from resolvers.tools.mcp import Connection, McpTool, Outcome, Pool, ServerDown, ServerSpec

__all__ = ["McpTool", "Outcome", "ServerStatus", "Tools", "model_name"]

NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
TRANSPORTS = ("stdio", "http")
ALL = "*"


@dataclass(slots=True)
class ServerStatus:
    server: McpServer
    healthy: bool
    error: str | None
    tools: list[McpTool]


def model_name(tool: McpTool) -> str:
    """The name the model sees: `<server>__<tool>` (providers refuse dots in names)."""
    return f"{tool.server}__{tool.name}"[:64]


def spec_of(row: McpServer) -> ServerSpec:
    return ServerSpec(name=row.name, transport=row.transport, command=row.command,
                      args=tuple(json.loads(row.args)),
                      env=tuple(sorted(json.loads(row.env).items())), url=row.url,
                      headers=tuple(sorted(json.loads(row.headers).items())))


def _strings(value: Any, *, field: str, mapping: bool) -> Any:
    if value is None:
        return {} if mapping else []
    if mapping:
        if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise ValidationFailed(f"{field} must be an object of strings", field=field)
    elif not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationFailed(f"{field} must be a list of strings", field=field)
    return value


@dataclass
class Tools:
    db: Database
    outbound: Outbound = field(default_factory=Outbound)
    max_steps: int = 8
    timeout: float = 30.0
    pool: Pool = field(init=False)

    def __post_init__(self) -> None:
        self.pool = Pool(self.outbound)

    # --- admin -----------------------------------------------------------------------------
    async def register(self, session: AsyncSession, actor: User, *, name: str, transport: str,
                       command: str | None = None, args: Any = None, env: Any = None,
                       url: str | None = None, headers: Any = None,
                       visible: bool = True) -> McpServer:
        """Add an MCP server. HTTP URLs pass the outbound guard first (OUTBOUND_ALLOW)."""
        roles.require_admin(actor)
        if not NAME_RE.fullmatch(name or ""):
            raise ValidationFailed("name is 1-32 letters, digits, '_' or '-'", field="name")
        if transport not in TRANSPORTS:
            raise ValidationFailed("transport must be stdio or http", field="transport")
        args = _strings(args, field="args", mapping=False)
        env = _strings(env, field="env", mapping=True)
        headers = _strings(headers, field="headers", mapping=True)
        if transport == "stdio":
            if not command:
                raise ValidationFailed("a stdio server needs a command", field="command")
            url = None
        else:
            if not url:
                raise ValidationFailed("an http server needs a url", field="url")
            await self.outbound.check_url(url)
            command = None
        taken = (await session.exec(select(McpServer).where(col(McpServer.name) == name))).first()
        if taken is not None:
            raise Conflict(f"An MCP server named {name!r} exists already")
        row = McpServer(id=str(uuid.uuid4()), name=name, transport=transport, command=command,
                        args=json.dumps(args), env=json.dumps(env), url=url,
                        headers=json.dumps(headers), visible=visible, created_at=now_ms())
        session.add(row)
        # Names only: env and headers may hold credentials.
        audit.record(session, audit.MCP_SERVER_ADDED, actor_id=actor.id, target_id=row.id,
                     detail={"name": name, "transport": transport})
        await session.commit()
        await session.refresh(row)
        return row

    async def servers(self, session: AsyncSession, actor: User) -> list[ServerStatus]:
        """Every registered server with its tools and health (connecting to each)."""
        roles.require_admin(actor)
        rows = list((await session.exec(select(McpServer).order_by(col(McpServer.name)))).all())
        connections = [self.pool.get(spec_of(row)) for row in rows]
        await asyncio.gather(*(self._connect(c) for c in connections))
        return [ServerStatus(server=row, healthy=c.healthy, error=c.error,
                             tools=list(c.tools) if c.healthy else [])
                for row, c in zip(rows, connections, strict=True)]

    async def remove(self, session: AsyncSession, actor: User, *, server_id: str) -> None:
        roles.require_admin(actor)
        row = await session.get(McpServer, server_id)
        if row is None:
            raise NotFound("MCP server not found")
        name = row.name
        await session.delete(row)
        audit.record(session, audit.MCP_SERVER_REMOVED, actor_id=actor.id, target_id=server_id,
                     detail={"name": name})
        await session.commit()
        await self.pool.drop(name)

    # --- users ------------------------------------------------------------------------------
    async def available(self, actor: User) -> list[McpTool]:
        """The tools `actor` may use: those of the servers admins made visible (admins: all)
        that answer right now."""
        async with self.db.session() as session:
            statement = select(McpServer).order_by(col(McpServer.name))
            if not roles.is_admin(actor):
                statement = statement.where(col(McpServer.visible).is_(True))
            rows = list((await session.exec(statement)).all())
        connections = [self.pool.get(spec_of(row)) for row in rows]
        await asyncio.gather(*(self._connect(c) for c in connections))
        return [tool for c in connections if c.healthy for tool in c.tools]

    async def resolve(self, actor: User, names: tuple[str, ...]) -> list[McpTool]:
        """The tools a chat request names (`<server>.<tool>`, or "*" for all of them)."""
        if not names:
            return []
        tools = await self.available(actor)
        if ALL in names:
            return tools
        by_name = {tool.qualified: tool for tool in tools}
        unknown = [name for name in names if name not in by_name]
        if unknown:
            raise BadInput(f"Unknown or unavailable tool {unknown[0]!r}", field="tools",
                           available=sorted(by_name))
        return [by_name[name] for name in dict.fromkeys(names)]

    async def run(self, tool: McpTool, arguments: str) -> Outcome:
        """One call; failures and timeouts are error results, never exceptions."""
        connection = self.pool.connections.get(tool.server)
        if connection is None:
            return Outcome(f"The MCP server {tool.server!r} was removed", True)
        return await connection.call(tool.name, arguments, timeout=self.timeout)

    @staticmethod
    def as_model_tools(tools: list[McpTool]) -> tuple[Tool, ...]:
        return tuple(Tool(name=model_name(t), description=t.description or t.qualified,
                          parameters=t.input_schema) for t in tools)

    @staticmethod
    async def _connect(connection: Connection) -> None:
        try:
            await connection.ensure()
        except ServerDown:
            pass  # reported through connection.error

    async def aclose(self) -> None:
        await self.pool.aclose()

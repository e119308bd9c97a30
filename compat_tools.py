"""REST face of tools and MCP servers (CONTRACT-2 §6): /api/admin/mcp-servers, /api/tools.

Thin like compat_rest.py, whose dependencies it reuses: parse, call resolvers/tools, shape.
Who may do what (admins register servers; users see the tools of visible servers) is
decided there.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Response
from pydantic import BaseModel, Field

from compat_rest import ServicesDep, SessionDep, UserDep
from resolvers.kit.errors import AppError
from resolvers.tools import McpTool, ServerStatus, Tools


class McpServerIn(BaseModel):
    name: str = Field(max_length=32)
    transport: Literal["stdio", "http"]
    command: str | None = Field(default=None, max_length=4096)
    args: list[str] | None = Field(default=None, max_length=64)
    env: dict[str, str] | None = None
    url: str | None = Field(default=None, max_length=2048)
    headers: dict[str, str] | None = None
    visible: bool = Field(True, description="Users see its tools (admins always do)")


class ToolOut(BaseModel):
    name: str = Field(description="<server>.<tool>: what a chat request's tools names")
    description: str
    input_schema: dict[str, Any]


class McpServerOut(BaseModel):
    id: str
    name: str
    transport: str
    command: str | None
    args: list[str]
    url: str | None
    visible: bool
    healthy: bool
    error: str | None
    tools: list[ToolOut]
    created_at: int


def tool_json(tool: McpTool) -> dict[str, Any]:
    return {"name": tool.qualified, "description": tool.description,
            "input_schema": tool.input_schema}


def server_json(status: ServerStatus) -> dict[str, Any]:
    row = status.server
    return {"id": row.id, "name": row.name, "transport": row.transport, "command": row.command,
            "args": json.loads(row.args), "url": row.url, "visible": row.visible,
            "healthy": status.healthy, "error": status.error,
            "tools": [tool_json(t) for t in status.tools], "created_at": row.created_at}


def _tools(services: ServicesDep) -> Tools:
    if services.chat.tools is None:
        raise AppError("Tools are not available on this server")
    return services.chat.tools


router = APIRouter(tags=["tools"])


@router.post("/api/admin/mcp-servers", status_code=201, response_model=McpServerOut)
async def register_server(body: McpServerIn, services: ServicesDep, session: SessionDep,
                          user: UserDep) -> dict[str, Any]:
    tools = _tools(services)
    row = await tools.register(session, user, name=body.name, transport=body.transport,
                               command=body.command, args=body.args, env=body.env,
                               url=body.url, headers=body.headers, visible=body.visible)
    status = next(s for s in await tools.servers(session, user) if s.server.id == row.id)
    return server_json(status)


@router.get("/api/admin/mcp-servers", response_model=list[McpServerOut])
async def list_servers(services: ServicesDep, session: SessionDep,
                       user: UserDep) -> list[dict[str, Any]]:
    return [server_json(s) for s in await _tools(services).servers(session, user)]


@router.delete("/api/admin/mcp-servers/{server_id}", status_code=204)
async def remove_server(server_id: str, services: ServicesDep, session: SessionDep,
                        user: UserDep) -> Response:
    await _tools(services).remove(session, user, server_id=server_id)
    return Response(status_code=204)


@router.get("/api/tools", response_model=list[ToolOut])
async def list_tools(services: ServicesDep, user: UserDep) -> list[dict[str, Any]]:
    return [tool_json(t) for t in await _tools(services).available(user)]


def install(app: FastAPI) -> None:
    app.include_router(router)

"""GraphQL face of tools and MCP servers (CONTRACT-2 §6): `tools`, `adminMcpServers`,
`adminAddMcpServer`, `adminRemoveMcpServer` — the operations of resolvers/tools, as REST's
/api/tools and /api/admin/mcp-servers call them."""

from __future__ import annotations

import json

import strawberry
from strawberry.scalars import JSON

from resolvers.kit.errors import AppError
from resolvers.tools import McpTool, ServerStatus, Tools
from schema.context import Context
from schema.scalars import Timestamp


def ctx(info: strawberry.Info) -> Context:
    context: Context = info.context
    return context


def _tools(context: Context) -> Tools:
    if context.services.chat.tools is None:
        raise AppError("Tools are not available on this server")
    return context.services.chat.tools


@strawberry.type(description="A tool the server runs for the model.")
class ToolInfo:
    name: str = strawberry.field(description="<server>.<tool>: what ChatInput.tools names")
    description: str
    input_schema: JSON

    @classmethod
    def from_data(cls, tool: McpTool) -> ToolInfo:
        return cls(name=tool.qualified, description=tool.description,
                   input_schema=JSON(tool.input_schema))


@strawberry.type(description="An MCP server an admin registered, with its tools and health.")
class McpServer:
    id: strawberry.ID
    name: str
    transport: str
    command: str | None
    args: list[str]
    url: str | None
    visible: bool
    healthy: bool
    error: str | None
    tools: list[ToolInfo]
    created_at: Timestamp

    @classmethod
    def from_data(cls, status: ServerStatus) -> McpServer:
        row = status.server
        return cls(id=strawberry.ID(row.id), name=row.name, transport=row.transport,
                   command=row.command, args=json.loads(row.args), url=row.url,
                   visible=row.visible, healthy=status.healthy, error=status.error,
                   tools=[ToolInfo.from_data(t) for t in status.tools],
                   created_at=Timestamp(row.created_at))


@strawberry.input
class McpServerInput:
    name: str
    transport: str = strawberry.field(description="stdio | http")
    command: str | None = None
    args: list[str] | None = None
    env: JSON | None = None
    url: str | None = None
    headers: JSON | None = None
    visible: bool = True


@strawberry.type
class ToolsQuery:
    @strawberry.field(description="The tools you may use (GET /api/tools).")
    async def tools(self, info: strawberry.Info) -> list[ToolInfo]:
        context = ctx(info)
        actor = await context.actor("read")
        return [ToolInfo.from_data(t) for t in await _tools(context).available(actor)]

    @strawberry.field(description="Admins: every MCP server with its tools and health.")
    async def admin_mcp_servers(self, info: strawberry.Info) -> list[McpServer]:
        context = ctx(info)
        actor = await context.actor("read")
        async with context.session() as session:
            statuses = await _tools(context).servers(session, actor)
        return [McpServer.from_data(s) for s in statuses]


@strawberry.type
class ToolsMutation:
    @strawberry.mutation(description="Admins: register an MCP server (stdio or Streamable "
                         "HTTP; HTTP URLs pass the outbound guard).")
    async def admin_add_mcp_server(self, info: strawberry.Info,
                                   input: McpServerInput) -> McpServer:
        context = ctx(info)
        actor = await context.actor("write")
        tools = _tools(context)
        async with context.session() as session:
            row = await tools.register(
                session, actor, name=input.name, transport=input.transport,
                command=input.command, args=input.args, env=input.env, url=input.url,
                headers=input.headers, visible=input.visible)
            statuses = await tools.servers(session, actor)
        return McpServer.from_data(next(s for s in statuses if s.server.id == row.id))

    @strawberry.mutation(description="Admins: remove an MCP server.")
    async def admin_remove_mcp_server(self, info: strawberry.Info, id: strawberry.ID) -> bool:
        context = ctx(info)
        actor = await context.actor("write")
        async with context.session() as session:
            await _tools(context).remove(session, actor, server_id=str(id))
        return True

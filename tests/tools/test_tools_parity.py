"""MCP server admin and tool listing: REST and GraphQL call the same operations and agree —
what an admin registers, what a user may see, and who is refused (SQLite and PostgreSQL)."""

from __future__ import annotations

import sys
from typing import Any

from tests.graphql.helpers import data_of, gql
from tests.tools.conftest import MCP_SERVER, Pair

SERVERS = """{ adminMcpServers { id name transport command args url visible healthy error
                                 tools { name description inputSchema } } }"""
ADD = """mutation($input: McpServerInput!) { adminAddMcpServer(input: $input) {
           id name healthy tools { name } } }"""
TOOLS = "{ tools { name description inputSchema } }"


def token(headers: dict[str, str]) -> str:
    return headers["Authorization"].split()[1]


def rest_tool(tool: dict[str, Any]) -> dict[str, Any]:
    return {"name": tool["name"], "description": tool["description"],
            "inputSchema": tool["input_schema"]}


async def test_rest_and_graphql_agree_on_servers_and_tools(pair: Pair) -> None:
    http, admin, user = pair.admin.http, token(pair.admin.headers), token(pair.user.headers)
    # Registered on GraphQL, listed on REST; registered on REST, listed on GraphQL.
    added = (await data_of(http, ADD, {"input": {
        "name": "g", "transport": "stdio", "command": sys.executable, "args": [MCP_SERVER],
        "visible": False}}, admin))["adminAddMcpServer"]
    assert added["healthy"] and {t["name"] for t in added["tools"]} >= {"g.weather"}
    await pair.admin.add_stdio("r")
    rest = (await http.get("/api/admin/mcp-servers", headers=pair.admin.headers)).json()
    graph = (await data_of(http, SERVERS, None, admin))["adminMcpServers"]
    assert [s["name"] for s in rest] == [s["name"] for s in graph] == ["g", "r"]
    for r, g in zip(rest, graph, strict=True):
        assert (r["id"], r["transport"], r["visible"], r["healthy"]) == \
            (g["id"], g["transport"], g["visible"], g["healthy"])
        assert [rest_tool(t) for t in r["tools"]] == g["tools"]
    # A user sees the visible server's tools only, the same on both faces.
    rest_tools = (await http.get("/api/tools", headers=pair.user.headers)).json()
    graph_tools = (await data_of(http, TOOLS, None, user))["tools"]
    assert [rest_tool(t) for t in rest_tools] == graph_tools
    assert {t["name"].split(".")[0] for t in graph_tools} == {"r"}
    # Plain users are refused on both faces.
    refused = await gql(http, SERVERS, None, user)
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert (await http.get("/api/admin/mcp-servers",
                           headers=pair.user.headers)).status_code == 403
    # Removal on GraphQL is seen on REST.
    removed = await data_of(http, "mutation($id: ID!) { adminRemoveMcpServer(id: $id) }",
                            {"id": added["id"]}, admin)
    assert removed == {"adminRemoveMcpServer": True}
    left = (await http.get("/api/admin/mcp-servers", headers=pair.admin.headers)).json()
    assert [s["name"] for s in left] == ["r"]
    gone = await http.delete(f"/api/admin/mcp-servers/{added['id']}", headers=pair.admin.headers)
    assert gone.status_code == 404
    # Both changes are in the audit log, without the servers' env or headers.
    audit = (await http.get("/api/admin/audit", headers=pair.admin.headers)).json()
    kinds = [(e["type"], e["target_id"]) for e in audit["events"]]
    assert ("admin.mcp_server_added", added["id"]) in kinds
    assert ("admin.mcp_server_removed", added["id"]) in kinds


async def test_refusals_agree(pair: Pair) -> None:
    http, admin = pair.admin.http, token(pair.admin.headers)
    cases = [{"name": "web", "transport": "http", "url": "http://127.0.0.1:9/mcp"},
             {"name": "bad name!", "transport": "stdio", "command": "x"},
             {"name": "nocmd", "transport": "stdio"}]
    for case in cases:
        rest = await pair.admin.add_server(**case)
        graph = await gql(http, ADD, {"input": case}, admin)
        assert rest.status_code in (400, 422), rest.text
        assert graph["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", graph
    await pair.admin.add_stdio("dup")
    again = await pair.admin.add_server(name="dup", transport="stdio", command="x")
    graph = await gql(http, ADD, {"input": {"name": "dup", "transport": "stdio",
                                            "command": "x"}}, admin)
    assert again.status_code == 409 and graph["errors"][0]["extensions"]["code"] == "CONFLICT"

"""A small MCP server built with the official SDK, for the tests: stdio by default,
Streamable HTTP on 127.0.0.1 with `--http PORT`."""

from __future__ import annotations

import asyncio
import os
import sys

from mcp.server import MCPServer

server = MCPServer("test-tools")


@server.tool()
def weather(city: str) -> str:
    """Current weather in a city."""
    return f"Sunny, 21 C in {city}"


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
async def hang() -> str:
    """Never answers in time."""
    await asyncio.sleep(120)
    return "too late"


@server.tool()
def crash() -> str:
    """Kills the server process."""
    os._exit(3)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()

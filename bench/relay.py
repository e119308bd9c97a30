"""Floor: the least a chat relay can do - Starlette in, aiohttp out, bytes piped through.

    python -m uvicorn bench.relay:app --host 127.0.0.1 --port P   (UPSTREAM=http://host:port/v1)

No auth, no parsing, no storage: what any relay pays just to proxy one streamed reply.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

UPSTREAM = os.environ.get("UPSTREAM", "http://127.0.0.1:9000/v1")
state: dict[str, aiohttp.ClientSession] = {}


async def relay(request: Request) -> StreamingResponse:
    body = await request.body()
    resp = await state["client"].post(f"{UPSTREAM}/chat/completions", data=body,
                                      headers={"Content-Type": "application/json"})

    async def pipe() -> AsyncIterator[bytes]:
        async with resp:
            async for chunk in resp.content.iter_any():
                yield chunk

    return StreamingResponse(pipe(), media_type="text/event-stream")


@asynccontextmanager
async def lifespan(_app: Starlette) -> AsyncIterator[None]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as client:
        state["client"] = client
        yield


app = Starlette(routes=[Route("/v1/chat/completions", relay, methods=["POST"])],
                lifespan=lifespan)

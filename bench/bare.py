"""Floor: "list conversations" with nothing in between - Starlette plus raw SQL.

    python -m uvicorn bench.bare:app --host 127.0.0.1 --port P
    (BARE_DATABASE=/path/chat.db for SQLite, or postgresql://... for PostgreSQL)

`GET /conversations` with `X-User-Id: user_…` answers the very JSON that REST
`GET /api/conversations` answers, read from the same tables with the same two queries (the
conversations, then all their messages at once) - but no token check, no ORM, no validation.
`GET /titles?first=N` answers what the GraphQL titles-only list answers (id, title,
updatedAt of the newest N), from one query.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

DATABASE = os.environ.get("BARE_DATABASE", "data/chat.db")
POOL = 4
CONVERSATIONS = ("SELECT pk, id, title, model, system_prompt, created_at, updated_at, user_id "
                 "FROM conversations WHERE user_id = {0} ORDER BY updated_at DESC, pk DESC")
TITLES = ("SELECT id, title, updated_at FROM conversations WHERE user_id = {0} "
          "ORDER BY updated_at DESC, pk DESC LIMIT {1}")
MESSAGES = ("SELECT conversation_pk, id, content, role, timestamp, tokens, model, status "
            "FROM messages WHERE conversation_pk IN ({0}) ORDER BY conversation_pk, position")


def shape(conversations: list[Any], messages: list[Any]) -> list[dict[str, Any]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for cpk, mid, content, role, timestamp, tokens, model, status in messages:
        m: dict[str, Any] = {"id": mid, "content": content, "role": role, "timestamp": timestamp}
        if tokens is not None:
            m["tokens"] = tokens
        if model is not None:
            m["model"] = model
        if status is not None:
            m["status"] = status
        grouped.setdefault(cpk, []).append(m)
    out = []
    for pk, cid, title, model, system_prompt, created_at, updated_at, user_id in conversations:
        c: dict[str, Any] = {"id": cid, "title": title, "messages": grouped.get(pk, []),
                             "createdAt": created_at, "updatedAt": updated_at, "model": model,
                             "userId": user_id}
        if system_prompt is not None:
            c["systemPrompt"] = system_prompt
        out.append(c)
    return out


class SQLite:
    def __init__(self) -> None:
        self.free: asyncio.Queue[Any] = asyncio.Queue()

    async def open(self) -> None:
        import aiosqlite

        for _ in range(POOL):
            self.free.put_nowait(await aiosqlite.connect(DATABASE))

    async def fetch(self, user_id: str) -> tuple[list[Any], list[Any]]:
        db = await self.free.get()
        try:
            convs = list(await db.execute_fetchall(CONVERSATIONS.format("?"), (user_id,)))
            pks = [row[0] for row in convs]
            msgs = list(await db.execute_fetchall(
                MESSAGES.format(",".join("?" * len(pks))), pks)) if pks else []
            return convs, msgs
        finally:
            self.free.put_nowait(db)

    async def titles(self, user_id: str, first: int) -> list[Any]:
        db = await self.free.get()
        try:
            return list(await db.execute_fetchall(TITLES.format("?", "?"), (user_id, first)))
        finally:
            self.free.put_nowait(db)

    async def close(self) -> None:
        while not self.free.empty():
            await self.free.get_nowait().close()


class Postgres:
    async def open(self) -> None:
        import asyncpg

        self.pool = await asyncpg.create_pool(DATABASE, min_size=POOL, max_size=POOL)

    async def fetch(self, user_id: str) -> tuple[list[Any], list[Any]]:
        async with self.pool.acquire() as db:
            convs = await db.fetch(CONVERSATIONS.format("$1"), user_id)
            pks = [row[0] for row in convs]
            msgs = await db.fetch(MESSAGES.format("SELECT unnest($1::text[])"), pks)
            return [tuple(r) for r in convs], [tuple(r) for r in msgs]

    async def titles(self, user_id: str, first: int) -> list[Any]:
        async with self.pool.acquire() as db:
            return [tuple(r) for r in await db.fetch(TITLES.format("$1", "$2"), user_id, first)]

    async def close(self) -> None:
        await self.pool.close()


store: SQLite | Postgres = Postgres() if DATABASE.startswith("postgres") else SQLite()


async def titles(request: Request) -> Response:
    """GraphQL `conversations(first: N) { edges { node { id title updatedAt } } }`'s answer
    (`?first=N`, default 50), from the same conversations query: the titles-only floor."""
    first = int(request.query_params.get("first", "50"))
    convs = await store.titles(request.headers["x-user-id"], first)
    edges = [{"node": {"id": cid, "title": title, "updatedAt": updated_at}}
             for cid, title, updated_at in convs]
    body = json.dumps({"data": {"conversations": {"edges": edges}}}, ensure_ascii=False,
                      separators=(",", ":"))
    return Response(body, media_type="application/json")


async def conversations(request: Request) -> Response:
    convs, msgs = await store.fetch(request.headers["x-user-id"])
    body = json.dumps(shape(convs, msgs), ensure_ascii=False, separators=(",", ":"))
    return Response(body, media_type="application/json")


@asynccontextmanager
async def lifespan(_app: Starlette) -> AsyncIterator[None]:
    await store.open()
    yield
    await store.close()


app = Starlette(routes=[Route("/conversations", conversations), Route("/titles", titles)],
                lifespan=lifespan)

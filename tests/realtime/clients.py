"""Minimal real clients for the tests: /ws/{user_id} helpers and both GraphQL WebSocket
subprotocols (graphql-transport-ws and the legacy graphql-ws), over `websockets`."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import httpx
import jwt
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from resolvers.kit.settings import Settings

TIMEOUT = 10.0


async def recv_json(ws: ClientConnection, wait: float = TIMEOUT) -> dict[str, Any]:
    raw = await asyncio.wait_for(ws.recv(), wait)
    message: dict[str, Any] = json.loads(raw)
    return message


async def recv_until(ws: ClientConnection, kind: str,
                     wait: float = TIMEOUT) -> dict[str, Any]:
    """The next message of type `kind` (others are skipped)."""
    deadline = time.monotonic() + wait
    while True:
        message = await recv_json(ws, max(deadline - time.monotonic(), 0.01))
        if message.get("type") == kind:
            return message


async def nothing_within(ws: ClientConnection, seconds: float,
                         kind: str | None = None) -> list[dict[str, Any]]:
    """Messages (of `kind`, if given) that arrive within `seconds`; usually expected empty."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            message = await recv_json(ws, remaining)
        except TimeoutError:
            break
        if kind is None or message.get("type") == kind:
            seen.append(message)
    return seen


async def close_code(ws: ClientConnection, wait: float = TIMEOUT) -> int | None:
    """Read until the server closes the connection; its close code."""
    try:
        async with asyncio.timeout(wait):
            while True:
                await ws.recv()
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None


async def reply(ws: ClientConnection, request_id: str,
                wait: float = TIMEOUT) -> list[dict[str, Any]]:
    """Every event of one reply on a /ws socket, through its terminal event."""
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + wait
    while True:
        message = await recv_json(ws, max(deadline - time.monotonic(), 0.01))
        if message.get("request_id") != request_id:
            continue
        events.append(message)
        if message["type"] in ("chat_complete", "error"):
            return events


async def user_id(http: httpx.AsyncClient, token: str) -> str:
    response = await http.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    uid: str = response.json()["id"]
    return uid


def short_lived_token(settings: Settings, uid: str, *, seconds: float,
                      generation: int = 0) -> str:
    """An access token that expires in `seconds` (the setting cannot go below a minute)."""
    now = time.time()
    claims = {"sub": uid, "iat": int(now), "exp": now + seconds, "jti": uuid.uuid4().hex,
              "gen": generation, "typ": "access"}
    return jwt.encode(claims, settings.secret_key, algorithm=settings.algorithm)


class GraphQLWS:
    """One GraphQL WebSocket connection speaking `protocol`."""

    def __init__(self, ws: ClientConnection, protocol: str) -> None:
        self.ws = ws
        self.protocol = protocol
        self.legacy = protocol == "graphql-ws"

    @classmethod
    def connect(cls, ws_url: str, protocol: str) -> _Connect:
        return _Connect(ws_url, protocol)

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def init(self, payload: dict[str, Any] | None) -> dict[str, Any]:
        await self.send({"type": "connection_init", "payload": payload or {}})
        return await self.recv()

    async def recv(self, wait: float = TIMEOUT) -> dict[str, Any]:
        while True:
            message = await recv_json(self.ws, wait)
            if message.get("type") == "ping":
                await self.send({"type": "pong"})
                continue
            if message.get("type") == "ka":
                continue
            return message

    async def subscribe(self, op_id: str, query: str,
                        variables: dict[str, Any] | None = None) -> None:
        await self.send({"id": op_id, "type": "start" if self.legacy else "subscribe",
                         "payload": {"query": query, "variables": variables or {}}})

    async def stop(self, op_id: str) -> None:
        await self.send({"id": op_id, "type": "stop" if self.legacy else "complete"})

    async def next(self, op_id: str, wait: float = TIMEOUT) -> dict[str, Any] | None:
        """The next result payload of `op_id`; None when the operation completed.
        Errors (the `error` message) raise AssertionError with their payload."""
        while True:
            message = await self.recv(wait)
            if message.get("id") != op_id:
                continue
            kind = message["type"]
            if kind in ("next", "data"):
                payload: dict[str, Any] = message["payload"]
                return payload
            if kind == "complete":
                return None
            raise AssertionError(f"{kind}: {message.get('payload')}")

    async def collect(self, op_id: str, field: str,
                      wait: float = TIMEOUT) -> list[dict[str, Any]]:
        """Every value of a subscription field until the operation completes."""
        values = []
        while (payload := await self.next(op_id, wait)) is not None:
            assert not payload.get("errors"), payload
            values.append(payload["data"][field])
        return values


class _Connect:
    def __init__(self, ws_url: str, protocol: str) -> None:
        self._cm = connect(f"{ws_url}/graphql", subprotocols=[protocol],  # type: ignore[list-item]
                           open_timeout=TIMEOUT)
        self.protocol = protocol

    async def __aenter__(self) -> GraphQLWS:
        ws = await self._cm.__aenter__()
        return GraphQLWS(ws, self.protocol)

    async def __aexit__(self, *exc: Any) -> None:
        await self._cm.__aexit__(*exc)

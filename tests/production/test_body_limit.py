"""Request bodies are capped (MAX_BODY_BYTES): 413 `{"detail": ...}` whether the size is
declared (Content-Length) or only discovered while streaming (chunked); never a 500, and the
server keeps serving."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.conftest import bearer, register
from tests.production.conftest import Serve

LIMIT = 64 * 1024


async def chunks(total: int, size: int = 8192) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        piece = b" " * min(size, total - sent)
        sent += len(piece)
        yield piece


@pytest.mark.parametrize("path", ["/api/conversations", "/graphql", "/api/auth/login",
                                  "/api/chat", "/nowhere"])
async def test_declared_length_over_limit(serve: Serve, path: str) -> None:
    server = serve(max_body_bytes=LIMIT)
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.post(path, content=b"x" * (LIMIT + 1),
                                   headers={"Content-Type": "application/json"})
        assert response.status_code == 413
        assert response.json() == {"detail": f"Request body too large (limit {LIMIT} bytes)"}
        assert (await http.get("/health")).status_code == 200


@pytest.mark.parametrize("path", ["/api/conversations", "/graphql"])
async def test_streamed_body_over_limit(serve: Serve, path: str) -> None:
    server = serve(max_body_bytes=LIMIT)
    async with httpx.AsyncClient(base_url=server.url) as http:
        user = await register(http)
        response = await http.post(path, content=chunks(LIMIT * 4), headers={
            "Content-Type": "application/json", **bearer(user["access_token"])})
        assert "content-length" not in response.request.headers  # really chunked
        assert response.status_code == 413
        assert "too large" in response.json()["detail"]
        assert (await http.get("/health")).status_code == 200


async def test_body_at_the_limit_is_read(serve: Serve) -> None:
    server = serve(max_body_bytes=LIMIT)
    async with httpx.AsyncClient(base_url=server.url) as http:
        user = await register(http)
        body = {"title": "t", "model": "m", "messages": [
            {"role": "user", "content": "a" * (LIMIT - 200)}]}
        raw = json.dumps(body).encode()
        assert len(raw) <= LIMIT
        response = await http.post("/api/conversations", content=raw,
                                   headers={"Content-Type": "application/json",
                                            **bearer(user["access_token"])})
        assert response.status_code == 200, response.text


async def test_default_limit_matches_nginx(http: httpx.AsyncClient) -> None:
    # deploy/nginx.conf: client_max_body_size 1m.
    response = await http.post("/api/auth/login", content=b" " * (1024 * 1024 + 1),
                               headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    response = await http.post("/api/auth/login", content=b" " * (1024 * 1024 - 100) + b"{}",
                               headers={"Content-Type": "application/json"})
    assert response.status_code == 422


async def test_many_oversized_uploads_at_once(serve: Serve) -> None:
    server = serve(max_body_bytes=LIMIT)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        responses = await asyncio.gather(*[
            http.post("/api/conversations", content=chunks(LIMIT * 3),
                      headers={"Content-Type": "application/json"}) for _ in range(20)])
        assert {r.status_code for r in responses} == {413}
        assert (await http.get("/")).json()["status"] == "running"

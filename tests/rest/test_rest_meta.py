"""The REST layer's meta routes over real HTTP: /, /health, docs, CORS."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from resolvers.kit.db import Database
from tests.conftest import LiveServer, bearer, register


async def test_root_describes_the_api(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    body = response.json()
    assert (body["name"], body["version"], body["status"]) == (
        "AI Chat Studio API", "2.0.0", "running")
    assert body["endpoints"] | {
        "auth": "/api/auth", "chat": "/api/chat", "conversations": "/api/conversations",
        "websocket": "/ws", "docs": "/docs", "graphql": "/graphql",
    } == body["endpoints"]


async def test_health_reports_counters(client: httpx.AsyncClient) -> None:
    empty = await client.get("/health")
    assert empty.status_code == 200
    body = empty.json()
    assert body["status"] == "healthy"
    assert {"timestamp", "active_connections", "total_users", "total_conversations"} <= body.keys()
    moment = datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00"))
    assert abs((datetime.now(UTC) - moment).total_seconds()) < 60
    assert type(body["active_connections"]) is int
    assert (body["total_users"], body["total_conversations"]) == (0, 0)

    alice = await register(client, "alice")
    await register(client, "bob")
    for id in ("a", "b"):
        await client.post("/api/conversations", headers=bearer(alice["access_token"]),
                          json={"id": id, "title": "t", "model": "m", "messages": []})
    counted = (await client.get("/health")).json()
    assert (counted["total_users"], counted["total_conversations"]) == (2, 2)
    assert counted["database"] == "up"


async def test_health_is_503_when_the_database_is_down(
    live_server: LiveServer, client: httpx.AsyncClient
) -> None:
    services = live_server.app.state.services
    working = services.db
    services.db = Database("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    try:
        response = await client.get("/health")
    finally:
        services.db = working
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert body["database"] == "down"
    assert "127.0.0.1:1" not in response.text  # no connection details for the public
    assert (await client.get("/health")).status_code == 200


async def test_docs_and_redoc_serve_html(client: httpx.AsyncClient) -> None:
    for path, marker in (("/docs", "swagger"), ("/redoc", "redoc")):
        response = await client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("text/html")
        assert marker in response.text.lower()
        assert "/openapi.json" in response.text


async def test_openapi_lists_the_rest_routes(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    expected = {
        "/": {"get"}, "/health": {"get"}, "/api/auth/register": {"post"},
        "/api/auth/login": {"post"}, "/api/auth/me": {"get"},
        "/api/conversations": {"get", "post"},
        "/api/conversations/{conversation_id}": {"get", "put", "delete"},
        "/api/stats": {"get"},
    }
    for path, methods in expected.items():
        assert path in paths, path
        assert methods <= paths[path].keys(), path
    assert spec["info"]["version"] == "2.0.0"


async def test_cors_preflight_from_an_allowed_origin(client: httpx.AsyncClient) -> None:
    headers = {"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST",
               "Access-Control-Request-Headers": "authorization,content-type"}
    allowed = await client.options("/api/conversations", headers=headers)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()

    evil = await client.options("/api/conversations",
                                headers={**headers, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in evil.headers
    simple = await client.get("/", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in simple.headers
    ok = await client.get("/", headers={"Origin": "http://localhost:3000"})
    assert ok.headers["access-control-allow-origin"] == "http://localhost:3000"


async def test_unknown_route_is_404_json(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/nothing-here")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}

"""What an operator sees: /metrics, request ids in headers and logs, JSON logs, Sentry
scrubbing, and /health answering 503 while the database is gone."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from middleware import RequestContext
from resolvers.kit.logging import configure_logging, log_format, scrub_event
from tests.chat.support import FakeThread
from tests.conftest import POSTGRES_URL, _unreachable, bearer, make_settings, register
from tests.production.conftest import Serve, fake_openai_settings


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, frozenset(labels.items())), 0.0)


async def test_metrics_http_graphql_and_chat(serve: Serve, provider_fakes: FakeThread) -> None:
    server = serve(**fake_openai_settings(provider_fakes))
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        before = (await http.get("/metrics")).text
        user = await register(http)
        headers = bearer(user["access_token"])
        await http.get("/api/conversations/conv_1", headers=headers)  # 404
        await http.post("/graphql", headers=headers,
                        json={"query": "query MyConversations { conversations { totalCount } }"})
        await http.post("/graphql", json={"query": "{ nope }"})
        reply = await http.post("/api/chat", headers=headers,
                                json={"messages": [{"role": "user", "content": "hi"}]})
        assert reply.status_code == 200
        response = await http.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        after = response.text

    def grew(name: str, by: float = 1, **labels: str) -> bool:
        return value(after, name, **labels) - value(before, name, **labels) >= by

    # Route templates, never raw paths (bounded labels).
    assert grew("http_requests_total", method="GET",
                route="/api/conversations/{conversation_id}", status="404")
    assert grew("http_requests_total", method="POST", route="/api/auth/register", status="200")
    assert "conv_1" not in after
    assert grew("http_request_duration_seconds_count", method="POST", route="/graphql", by=2)
    assert grew("graphql_operations_total", operation="MyConversations", type="query",
                outcome="ok")
    assert grew("graphql_operations_total", operation="anonymous", type="unknown",
                outcome="rejected") or grew("graphql_operations_total", operation="anonymous",
                                            type="query", outcome="rejected")
    assert grew("chat_requests_total", model="gpt-4o-mini")
    assert grew("chat_time_to_first_token_seconds_count", model="gpt-4o-mini")
    assert grew("chat_tokens_per_second_count", model="gpt-4o-mini")
    assert grew("chat_tokens_total", model="gpt-4o-mini", kind="prompt", by=21)
    assert grew("chat_tokens_total", model="gpt-4o-mini", kind="completion", by=4)
    assert ("websocket_connections", frozenset()) in samples(after)


async def test_metrics_count_chat_errors(serve: Serve, provider_fakes: FakeThread) -> None:
    from tests.fakes.providers import Failure

    server = serve(**fake_openai_settings(provider_fakes))
    provider_fakes.openai.fail = Failure(status=500)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        before = (await http.get("/metrics")).text
        user = await register(http)
        reply = await http.post("/api/chat", headers=bearer(user["access_token"]),
                                json={"messages": [{"role": "user", "content": "hi"}]})
        assert reply.status_code == 502
        after = (await http.get("/metrics")).text
    assert (value(after, "chat_errors_total", model="gpt-4o-mini", code="provider_error")
            - value(before, "chat_errors_total", model="gpt-4o-mini", code="provider_error")) == 1


async def test_metrics_can_be_switched_off(serve: Serve) -> None:
    server = serve(metrics_enabled=False)
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.get("/metrics")).status_code == 404


def test_metrics_multiprocess_mode(tmp_path: Path) -> None:
    """With PROMETHEUS_MULTIPROC_DIR, a scrape of one worker shows every worker's counts."""
    script = (
        "from resolvers.kit import metrics\n"
        "metrics.HTTP_REQUESTS.labels(method='GET', route='/x', status='200').inc()\n"
        "import sys\n"
        "if sys.argv[1] == 'render':\n"
        "    print(metrics.render(3)[0].decode())\n"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    root = Path(__file__).resolve().parents[2]
    for _ in range(2):  # two "workers" that counted one request each
        subprocess.run([sys.executable, "-c", script, "count"], env=env, cwd=root, check=True)
    out = subprocess.run([sys.executable, "-c", script, "render"], env=env, cwd=root,
                         check=True, capture_output=True, text=True).stdout
    assert value(out, "http_requests_total", method="GET", route="/x", status="200") == 3
    assert value(out, "websocket_connections") == 3


async def test_request_id_header(http: httpx.AsyncClient) -> None:
    generated = await http.get("/")
    assert len(generated.headers["x-request-id"]) == 32
    echoed = await http.get("/health", headers={"X-Request-ID": "trace-abc.123"})
    assert echoed.headers["x-request-id"] == "trace-abc.123"
    forged = await http.get("/", headers={"X-Request-ID": "evil x"})
    assert forged.headers["x-request-id"] != "evil x"
    assert len(forged.headers["x-request-id"]) == 32
    error = await http.get("/api/auth/me")  # errors carry it too
    assert error.status_code == 401 and error.headers["x-request-id"]


async def test_every_log_line_of_a_request_has_its_id() -> None:
    stream = io.StringIO()
    handler = configure_logging(make_settings(Path("/tmp"), log_format="json"), stream=stream)
    log = logging.getLogger("chat_studio.test")

    async def app(scope: dict, receive: object, send: object) -> None:
        log.info("inside the request")

        async def later() -> None:  # a task started by the request inherits its id
            log.warning("from a task")

        await asyncio.create_task(later())
        await send({"type": "http.response.start", "status": 204, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b""})  # type: ignore[operator]

    try:
        transport = httpx.ASGITransport(app=RequestContext(app))  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            response = await http.get("/", headers={"X-Request-ID": "req-42"})
        log.info("outside any request")
    finally:
        logging.getLogger().removeHandler(handler)
    assert response.headers["x-request-id"] == "req-42"
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    mine = [line for line in lines if line["logger"] == "chat_studio.test"]
    assert [(line["message"], line["request_id"]) for line in mine] == [
        ("inside the request", "req-42"), ("from a task", "req-42"),
        ("outside any request", "-")]
    assert {"time", "level", "logger", "message", "request_id"} <= set(mine[0])


def test_log_format_auto() -> None:
    assert log_format(make_settings(Path("/tmp"))) == "text"
    assert log_format(make_settings(Path("/tmp"), environment="production")) == "json"
    assert log_format(make_settings(Path("/tmp"), environment="production",
                                    log_format="text")) == "text"


def test_sentry_events_carry_no_personal_data() -> None:
    event = {
        "request": {"url": "http://x/api/auth/login", "method": "POST",
                    "data": {"username": "alice", "password": "hunter22"},
                    "cookies": {"session": "s"}, "query_string": "token=abc",
                    "headers": {"Authorization": "Bearer abc", "Cookie": "c=1",
                                "X-Forwarded-For": "1.2.3.4", "User-Agent": "ua"}},
        "user": {"ip_address": "1.2.3.4"},
        "exception": {"values": [{"type": "RuntimeError"}]},
    }
    scrubbed = scrub_event(event)
    text = json.dumps(scrubbed)
    for secret in ("hunter22", "alice", "Bearer abc", "1.2.3.4", "c=1", "token=abc"):
        assert secret not in text
    assert scrubbed["request"]["headers"] == {"User-Agent": "ua"}
    assert scrubbed["exception"]["values"][0]["type"] == "RuntimeError"


# ---------------------------------------------------------------- /health while the DB is gone


@pytest.mark.postgres
async def test_health_is_503_while_the_database_is_gone(serve: Serve) -> None:
    name = f"chatstudio_gone_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        await admin(f'CREATE DATABASE "{name}"')
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        _unreachable("PostgreSQL", exc)
    base, _, _ = POSTGRES_URL.rpartition("/")
    try:
        server = serve(database_url=f"{base}/{name}")
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            healthy = await http.get("/health")
            assert healthy.status_code == 200 and healthy.json()["database"] == "up"
            await admin(f'DROP DATABASE "{name}" WITH (FORCE)')
            for _ in range(2):  # pooled connections were killed; new ones are refused
                gone = await http.get("/health")
                assert gone.status_code == 503
                body = gone.json()
                assert body["status"] == "unhealthy" and body["database"] == "down"
                assert "timestamp" in body
            # The server keeps answering everything that needs no database.
            assert (await http.get("/")).json()["status"] == "running"
            graphql = await http.post("/graphql", json={"query": "{ health { status } }"})
            assert graphql.json()["data"]["health"]["status"] == "unhealthy"
            # ...and what needs it fails cleanly.
            login = await http.post("/api/auth/login",
                                    json={"username": "someone", "password": "whatever!"})
            assert login.status_code == 500
            assert login.json() == {"detail": "Internal server error"}
            assert login.headers["x-request-id"]
    finally:
        await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

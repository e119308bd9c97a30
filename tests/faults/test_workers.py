"""Fault injection with real processes: two workers (`python -m server`, as deployed) on one
Redis and one PostgreSQL, a fake model that streams slowly, and the worker generating the
replies killed (SIGKILL) or stopped (SIGTERM) mid-reply. Each test asserts what the clients
saw and what is stored.

Redis: TEST_REDIS_URL (default redis://127.0.0.1:6379/11); PostgreSQL: the session database
of tests/conftest.py. With CI set, both must be there.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.chat.support import SSE, sse_events
from tests.conftest import IN_CI, bearer, free_port, register, wait_until_serving
from tests.fakes import FakeOpenAI
from tests.realtime.clients import GraphQLWS, recv_json

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.slow]

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/11")
ROOT = Path(__file__).resolve().parents[2]
MODEL = "gpt-4o-mini"
CHUNKS = [f"w{i} " for i in range(40)]
CHUNK_DELAY = 0.3  # twelve seconds per reply: still running when the worker goes
DRAIN_SECONDS = 3.0

CHAT_STREAM = """
subscription Chat($input: ChatInput!) {
  chatStream(input: $input) {
    __typename
    ... on ChatChunk { content seq requestId }
    ... on ChatComplete { tokens model requestId finishReason messageId seq }
    ... on ChatError { code message requestId }
  }
}
"""


@pytest.fixture(scope="module")
def redis_url() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        if IN_CI:
            pytest.fail(f"Redis is not reachable at {REDIS_URL} ({exc}); CI must run this")
        pytest.skip(f"Redis is not reachable at {REDIS_URL} ({exc})")
    return REDIS_URL


@dataclass
class Worker:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def wait_exit(self, within: float) -> float:
        """Seconds until the process exits (fails the test after `within`)."""
        started = time.monotonic()
        try:
            self.process.wait(timeout=within)
        except subprocess.TimeoutExpired:
            pytest.fail(f"worker {self.name} still running {within}s after the signal:\n"
                        f"{self.log.read_text()[-3000:]}")
        return time.monotonic() - started


def start_worker(name: str, env: dict[str, str], log_dir: Path) -> Worker:
    port = free_port()
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:  # the child keeps its own copy
        # As deployed: server.main() runs uvicorn with the shutdown options.
        process = subprocess.Popen([sys.executable, "-m", "server"], cwd=ROOT,
                                   env={**env, "PORT": str(port)}, stdout=log,
                                   stderr=subprocess.STDOUT)
    worker = Worker(name, port, process, log_path)
    wait_until_serving(process, worker.url, log_path, name=name)
    return worker


@pytest.fixture
async def slow_llm() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(chunks=list(CHUNKS), completion_tokens=len(CHUNKS),
                          chunk_delay=CHUNK_DELAY) as fake:
        yield fake


@pytest.fixture
def workers(tmp_path: Path, redis_url: str, postgres_database: str,
            slow_llm: FakeOpenAI) -> Iterator[list[Worker]]:
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "HOST": "127.0.0.1",
        "SECRET_KEY": "faults-secret-" + uuid.uuid4().hex,
        "DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": postgres_database,
        "REDIS_URL": redis_url,
        "EMBEDDED_MODEL_ENABLED": "false",
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_BASE_URL": slow_llm.api_base,
        "OPENAI_MODELS": MODEL,
        "DEFAULT_MODEL": MODEL,
        "SHUTDOWN_DRAIN_SECONDS": str(DRAIN_SECONDS),
        "RATE_LIMIT_CHAT_PER_MINUTE": "0",
        "RATE_LIMIT_AUTH_PER_ADDRESS": "0",
        "ARGON2_TIME_COST": "1",
        "ARGON2_MEMORY_KIB": "1024",
        "ARGON2_PARALLELISM": "1",
        "LOG_LEVEL": "INFO",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    started: list[Worker] = []
    try:
        for name in ("a", "b"):
            started.append(start_worker(name, env, tmp_path))
        yield started
    finally:
        for worker in started:
            if worker.process.poll() is None:
                worker.process.kill()
            worker.process.wait()


@dataclass
class Client:
    http: httpx.AsyncClient
    token: str
    uid: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.token)

    async def conversation(self) -> str:
        conversation_id = f"conv_{uuid.uuid4().hex[:10]}"
        response = await self.http.post("/api/conversations", headers=self.headers, json={
            "id": conversation_id, "title": "Faults", "model": MODEL, "messages": []})
        assert response.status_code == 200, response.text
        return conversation_id

    async def messages(self, base_url: str, conversation_id: str) -> list[tuple[Any, ...]]:
        response = await self.http.get(f"{base_url}/api/conversations/{conversation_id}",
                                       headers=self.headers)
        assert response.status_code == 200, response.text
        return [(m["role"], m["content"], m.get("status"))
                for m in response.json()["messages"]]


async def client_of(worker: Worker, http: httpx.AsyncClient) -> Client:
    token = (await register(http))["access_token"]
    me = await http.get("/api/auth/me", headers=bearer(token))
    return Client(http=http, token=token, uid=me.json()["id"])


def chat_body(conversation_id: str, request_id: str, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": f"Tell me {request_id}"}],
            "conversation_id": conversation_id, "request_id": request_id, **extra}


async def within(seconds: float, awaitable: Any) -> Any:
    async with asyncio.timeout(seconds):
        return await awaitable


async def test_sigkill_of_the_generating_worker_ends_readers_elsewhere_and_keeps_the_text(
        workers: list[Worker]) -> None:
    a, b = workers
    async with httpx.AsyncClient(base_url=a.url, timeout=30) as http:
        client = await client_of(a, http)
        conversation_id = await client.conversation()
        seen: list[SSE] = []
        async with http.stream("POST", "/api/chat", headers=client.headers,
                               json=chat_body(conversation_id, "k1", stream=True)) as response:
            events = sse_events(response)
            while len(seen) < 3:
                seen.append(await within(10, anext(events)))

            # The user's other tab (and a reconnecting EventSource) read it on worker B.
            async def sse_on_b() -> list[SSE]:
                async with http.stream("GET", f"{b.url}/api/chat/k1/events",
                                       headers={**client.headers, "Last-Event-ID": "3"}) as r:
                    assert r.status_code == 200
                    return [event async for event in sse_events(r)]

            async def ws_on_b() -> list[dict[str, Any]]:
                async with connect(f"{b.ws_url}/ws/{client.uid}?token={client.token}") as ws:
                    await ws.send(json.dumps({"type": "resume", "request_id": "k1",
                                              "after": 0}))
                    got: list[dict[str, Any]] = []
                    while not got or got[-1]["type"] not in ("chat_complete", "error"):
                        got.append(await recv_json(ws, 20))
                    return got

            readers = asyncio.gather(sse_on_b(), ws_on_b())
            await asyncio.sleep(1.0)
            a.process.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            sse_b, ws_b = await within(20, readers)
            waited = time.monotonic() - killed
    print(f"SIGKILL: readers on the other worker got `interrupted` after {waited:.1f}s")
    assert waited < 10, f"the readers on B learnt of the death after {waited:.1f}s"
    for last in (sse_b[-1].data, ws_b[-1]):
        assert (last["type"], last["code"]) == ("error", "interrupted"), last
    text = "".join(str(e.get("content", "")) for e in ws_b[:-1])
    assert text.startswith("".join(str(e.data["content"]) for e in seen))
    assert "".join(CHUNKS).startswith(text) and text != "".join(CHUNKS)
    async with httpx.AsyncClient(timeout=30) as http_b:
        client.http = http_b
        assert await client.messages(b.url, conversation_id) == [
            ("user", "Tell me k1", None), ("assistant", text, "interrupted")]


async def test_a_reply_with_files_keeps_its_citations_when_its_worker_is_killed(
        workers: list[Worker]) -> None:
    """SIGKILL mid-reply of a request with `files`: worker B closes the reply as interrupted
    and the stored partial reply keeps the citations the client was sent first."""
    a, b = workers
    async with httpx.AsyncClient(base_url=a.url, timeout=30) as http:
        client = await client_of(a, http)
        conversation_id = await client.conversation()
        uploaded = await http.post("/api/files", headers=client.headers, files={"file": (
            "garden.md", b"# Garden\n\nTomatoes need six hours of sun a day.\n",
            "text/markdown")})
        assert uploaded.status_code == 201, uploaded.text
        file_id = uploaded.json()["id"]
        async with asyncio.timeout(20):
            while True:  # polling the file's status, as a client does
                status = (await http.get(f"/api/files/{file_id}",
                                         headers=client.headers)).json()["status"]
                if status != "processing":
                    break
                await asyncio.sleep(0.1)
        assert status == "ready"
        seen: list[SSE] = []
        body = {"messages": [{"role": "user", "content": "How much sun do tomatoes need?"}],
                "conversation_id": conversation_id, "request_id": "c1", "stream": True,
                "files": [file_id]}
        async with http.stream("POST", "/api/chat", headers=client.headers,
                               json=body) as response:
            events = sse_events(response)
            while len(seen) < 3:
                seen.append(await within(10, anext(events)))
            a.process.send_signal(signal.SIGKILL)
    sources = seen[0].data["sources"]
    assert seen[0].data["type"] == "citations" and sources[0]["filename"] == "garden.md"
    async with httpx.AsyncClient(base_url=b.url, timeout=30) as http_b:
        # A reader on B finds the lease lapsed and closes the reply.
        async with http_b.stream("GET", "/api/chat/c1/events",
                                 headers={**client.headers, "Last-Event-ID": "3"}) as r:
            rest = [event async for event in sse_events(r)]
        assert (rest[-1].data["type"], rest[-1].data["code"]) == ("error", "interrupted")
        stored = await http_b.get(f"/api/conversations/{conversation_id}",
                                  headers=client.headers)
        reply = stored.json()["messages"][-1]
    assert (reply["role"], reply["status"]) == ("assistant", "interrupted")
    assert reply["content"] and "".join(CHUNKS).startswith(reply["content"])
    assert reply["citations"] == sources


async def test_sigterm_during_five_replies_stores_all_and_every_client_sees_an_end(
        workers: list[Worker]) -> None:
    a, b = workers
    async with httpx.AsyncClient(base_url=a.url, timeout=30) as http:
        client = await client_of(a, http)
        conversations = [await client.conversation() for _ in range(5)]
        started = [asyncio.Event() for _ in range(5)]

        async def sse(i: int) -> dict[str, Any]:
            async with http.stream("POST", "/api/chat", headers=client.headers,
                                   json=chat_body(conversations[i], f"t{i}", stream=True)) as r:
                assert r.status_code == 200
                last: dict[str, Any] = {}
                async for event in sse_events(r):
                    started[i].set()
                    last = event.data
                return last

        async def ws(i: int) -> dict[str, Any]:
            async with connect(f"{a.ws_url}/ws/{client.uid}?token={client.token}") as socket:
                await socket.send(json.dumps({"type": "chat", "content": f"Tell me t{i}",
                                              "conversation_id": conversations[i],
                                              "request_id": f"t{i}"}))
                last: dict[str, Any] = {}
                try:
                    while True:
                        last = await recv_json(socket, 30)
                        started[i].set()
                        if last.get("type") in ("chat_complete", "error"):
                            return last
                except ConnectionClosed:
                    return {"closed_before_end": last}

        async def graphql(i: int) -> dict[str, Any]:
            async with GraphQLWS.connect(a.ws_url, "graphql-transport-ws") as gql:
                assert (await gql.init({"token": client.token}))["type"] == "connection_ack"
                await gql.subscribe("1", CHAT_STREAM, {"input": {
                    "messages": [{"role": "user", "content": f"Tell me t{i}"}],
                    "conversationId": conversations[i], "requestId": f"t{i}"}})
                last: dict[str, Any] = {}
                try:
                    while (payload := await gql.next("1", 30)) is not None:
                        started[i].set()
                        last = payload["data"]["chatStream"]
                except ConnectionClosed:
                    return {"closed_before_end": last}
                return last

        faces: list[Callable[[int], Any]] = [sse, sse, ws, ws, graphql]
        clients = asyncio.gather(*(face(i) for i, face in enumerate(faces)))
        await within(15, asyncio.gather(*(event.wait() for event in started)))
        a.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        # Draining: new replies are refused with 503 (and Retry-After), not accepted and cut.
        refused = await http.post("/api/chat", headers=client.headers, json={
            "messages": [{"role": "user", "content": "one more"}]})
        assert refused.status_code == 503 and refused.headers.get("retry-after")
        ends = await within(DRAIN_SECONDS + 15, clients)
        exit_after = a.wait_exit(15)
    for i, end in enumerate(ends[:4]):
        assert (end.get("type"), end.get("code")) == ("error", "interrupted"), (i, end)
    assert ends[4]["__typename"] == "ChatError" and ends[4]["code"] == "INTERRUPTED", ends[4]
    print(f"SIGTERM: exited {exit_after:.1f}s after the end events (drain {DRAIN_SECONDS}s)")
    assert exit_after < DRAIN_SECONDS + 10
    async with httpx.AsyncClient(timeout=30) as http_b:
        client.http = http_b
        for i, conversation_id in enumerate(conversations):
            stored = await client.messages(b.url, conversation_id)
            assert stored[0] == ("user", f"Tell me t{i}", None)
            role, content, status = stored[1]
            assert (role, status) == ("assistant", "interrupted") and content, stored
            assert "".join(CHUNKS).startswith(content)
    log = a.log.read_text()
    assert "Traceback" not in log, log[-3000:]


async def test_a_duplicate_graphql_subscription_id_cannot_hold_up_shutdown(
        workers: list[Worker]) -> None:
    a, _b = workers
    async with httpx.AsyncClient(base_url=a.url, timeout=30) as http:
        client = await client_of(a, http)
        async with GraphQLWS.connect(a.ws_url, "graphql-transport-ws") as gql:
            assert (await gql.init({"token": client.token}))["type"] == "connection_ack"
            query = {"input": {"messages": [{"role": "user", "content": "Hi"}]}}
            await gql.subscribe("dup", CHAT_STREAM, query)
            assert (await gql.next("dup", 10)) is not None
            await gql.subscribe("dup", CHAT_STREAM, query)
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await gql.recv(10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4409
    a.process.send_signal(signal.SIGTERM)
    exit_after = a.wait_exit(DRAIN_SECONDS + 12)
    print(f"duplicate subscription id: exited {exit_after:.1f}s after SIGTERM")
    assert exit_after < DRAIN_SECONDS + 10
    # Not by running into uvicorn's last-resort timeout: nothing was left hanging.
    assert "timeout graceful shutdown exceeded" not in a.log.read_text()

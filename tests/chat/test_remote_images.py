"""Remote image URLs in messages, end to end over real HTTP: the server fetches them through
the outbound guard from a real HTTP server on 127.0.0.1 — which the admin allow-listed
(OUTBOUND_ALLOW=127.0.0.0/8, as the tools tests do) — stores them as the sender's files and
hands them to the model in its own vision format, on REST, /ws, GraphQL and /v1. What cannot
be used is a 400 before anything is generated: unreachable, too large (declared, or counted
while it streams), not an image, too slow, a redirect to the metadata address. Without the
allow-list the guard still refuses loopback and the metadata address, and never connects."""

from __future__ import annotations

import base64
import gzip
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.chat.conftest import provider_settings
from tests.chat.support import MODELS, FakeThread, User, new_user
from tests.chat.test_files import metric
from tests.chat.test_images import EXPECTED, received_image
from tests.conftest import LiveServer
from tests.fakes import documents
from tests.realtime.clients import recv_until, user_id

PNG = documents.png()
PNG_B64 = base64.b64encode(PNG).decode()
FETCH_MAX_MB = 1
FETCH_TIMEOUT = 1.0
ENDLESS = 64 * 1024 * 1024  # what /endless.png would send if nobody stopped reading


@dataclass
class ImageHost:
    """A real HTTP server on 127.0.0.1 serving images and everything that is not one."""

    server: ThreadingHTTPServer
    paths: list[str] = field(default_factory=list)  # every request it received
    cookies: list[str | None] = field(default_factory=list)  # their Cookie headers
    endless_sent: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


def _handler(host: list[ImageHost]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes, content_type: str,
                  **headers: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            state = host[0]
            state.paths.append(self.path)
            state.cookies.append(self.headers.get("Cookie"))
            if self.path == "/red.png":  # the declared type is wrong: the bytes decide
                self._send(200, PNG, "text/plain", **{"Set-Cookie": "seen=1; Path=/"})
            elif self.path == "/gzipped.png":
                self._send(200, gzip.compress(PNG), "image/png",
                           **{"Content-Encoding": "gzip"})
            elif self.path == "/photos/red":
                self._send(302, b"", "text/plain", Location="/red.png")
            elif self.path == "/to-metadata":
                self._send(302, b"", "text/plain",
                           Location="http://169.254.169.254/latest/meta-data/")
            elif self.path == "/page.html":
                self._send(200, b"<!doctype html><p>not an image</p>" * 10, "image/png")
            elif self.path == "/big.png":
                self._send(200, PNG + b"\0" * (FETCH_MAX_MB * 1024 * 1024), "image/png")
            elif self.path == "/endless.png":  # no Content-Length: counted while read
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Connection", "close")
                self.end_headers()
                piece = b"\0" * 65536
                try:
                    self.wfile.write(PNG)
                    while state.endless_sent < ENDLESS:
                        self.wfile.write(piece)
                        state.endless_sent += len(piece)
                except OSError:
                    pass  # the reader hung up
                self.close_connection = True
            elif self.path == "/slow.png":
                time.sleep(FETCH_TIMEOUT * 3)
                self._send(200, PNG, "image/png")
            else:
                self._send(404, b"not found", "text/plain")

    return Handler


@pytest.fixture(scope="session")
def image_host_session() -> Iterator[ImageHost]:
    holder: list[ImageHost] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(holder))
    server.daemon_threads = True
    holder.append(ImageHost(server))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder[0]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def image_host(image_host_session: ImageHost) -> ImageHost:
    image_host_session.paths.clear()
    image_host_session.cookies.clear()
    image_host_session.endless_sent = 0
    return image_host_session


@pytest.fixture(scope="session")
def allowing_servers() -> Iterator[dict[str, LiveServer]]:
    servers: dict[str, LiveServer] = {}
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def allowing_server(request: pytest.FixtureRequest, allowing_servers: dict[str, LiveServer],
                    tmp_path_factory: pytest.TempPathFactory, fakes: FakeThread) -> LiveServer:
    """The admin allow-listed loopback (OUTBOUND_ALLOW=127.0.0.0/8), with small fetch limits."""
    kind = request.param
    if kind not in allowing_servers:
        tmp = tmp_path_factory.mktemp(f"remote-images-{kind}")
        url = (f"sqlite+aiosqlite:///{tmp / 'chat.db'}" if kind == "sqlite"
               else request.getfixturevalue("postgres_database"))
        server = LiveServer(provider_settings(
            tmp, fakes, url, outbound_allow=["127.0.0.0/8"], image_fetch_max_mb=FETCH_MAX_MB,
            image_fetch_timeout=FETCH_TIMEOUT))
        server.start()
        allowing_servers[kind] = server
    return allowing_servers[kind]


@pytest.fixture
async def user(allowing_server: LiveServer) -> AsyncIterator[User]:
    async with httpx.AsyncClient(base_url=allowing_server.url, timeout=15) as http:
        yield await new_user(http)


def parts(url: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": "What colour is this?"},
            {"type": "image_url", "image_url": {"url": url}}]


async def files_of(user: User) -> list[tuple[str, str, int]]:
    listed = (await user.http.get("/api/files", headers=user.headers)).json()
    return [(f["filename"], f["content_type"], f["size"]) for f in listed]


async def test_every_face_fetches_a_remote_image(user: User, fakes: FakeThread,
                                                 image_host: ImageHost) -> None:
    url = f"{image_host.url}/red.png"
    # REST /api/chat: fetched, kept as the sender's file, shown to the model.
    response = await user.post_chat(model=MODELS["anthropic"],
                                    messages=[{"role": "user", "content": parts(url)}])
    assert response.status_code == 200, response.text
    assert received_image("anthropic", fakes) == (EXPECTED["anthropic"],
                                                  "What colour is this?")
    assert await files_of(user) == [("red.png", "image/png", len(PNG))]
    # /ws: a redirect is followed (and checked again by the guard).
    token = user.headers["Authorization"].removeprefix("Bearer ")
    uid = await user_id(user.http, token)
    ws_url = str(user.http.base_url).replace("http", "ws", 1)
    async with connect(f"{ws_url}/ws/{uid}?token={token}") as ws:
        await ws.send(json.dumps({"type": "chat", "request_id": uuid.uuid4().hex, "messages": [
            {"role": "user", "content": parts(f"{image_host.url}/photos/red")}]}))
        await recv_until(ws, "chat_complete")
    assert received_image("openai", fakes) == (EXPECTED["openai"], "What colour is this?")
    # GraphQL: ChatImageInput.url.
    data = await user.graphql(
        "mutation($i: ChatInput!) { chat(input: $i) { content } }",
        i={"model": MODELS["gemini"], "messages": [{"role": "user", "content":
           "What colour is this?", "images": [{"url": url}]}]})
    assert "errors" not in data, data
    assert received_image("gemini", fakes) == (EXPECTED["gemini"], "What colour is this?")
    # /v1: OpenAI's own image_url parts, through the gateway.
    response = await user.http.post("/v1/chat/completions", headers=user.headers, json={
        "model": MODELS["openai"], "messages": [{"role": "user", "content": parts(url)}]})
    assert response.status_code == 200, response.text
    assert received_image("openai", fakes) == (EXPECTED["openai"], "What colour is this?")
    assert image_host.paths == ["/red.png", "/photos/red", "/red.png", "/red.png", "/red.png"]
    # The server set a cookie each time; no fetch (for this user or any other) sends it back.
    assert image_host.cookies == [None] * 5
    assert len(await files_of(user)) == 4


FAILURES = [
    ("/missing.png", "answered HTTP 404"),
    ("/page.html", "is not a PNG, JPEG, GIF or WEBP image"),
    ("/big.png", "is larger than the limit of 1048576 bytes"),
    ("/endless.png", "is larger than the limit of 1048576 bytes"),
    ("/slow.png", "did not arrive within 1 seconds"),
    ("/to-metadata", "resolves to a cloud metadata address"),
    ("/gzipped.png", "was sent compressed (Content-Encoding: gzip)"),
]


@pytest.mark.parametrize(("path", "reason"), FAILURES)
async def test_an_image_that_cannot_be_used_is_a_400_before_generation(
        user: User, fakes: FakeThread, image_host: ImageHost, path: str, reason: str) -> None:
    fakes.openai.requests.clear()
    response = await user.post_chat(messages=[{"role": "user",
                                               "content": parts(image_host.url + path)}])
    assert response.status_code == 400, response.text
    assert reason in response.json()["detail"]
    data = await user.graphql(
        "mutation($i: ChatInput!) { chat(input: $i) { content } }",
        i={"messages": [{"role": "user", "content": "colour?",
                         "images": [{"url": image_host.url + path}]}]})
    assert data["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert reason in data["errors"][0]["message"]
    # Nothing generated, nothing kept.
    assert [r for r in fakes.openai.requests if r.method == "POST"] == []
    assert await files_of(user) == []
    if path == "/endless.png":  # the reader hung up long before the end
        assert image_host.endless_sent < ENDLESS // 2


async def test_without_the_allow_list_the_guard_still_refuses(
        sqlite_user: User, fakes: FakeThread, image_host: ImageHost) -> None:
    """The default server (no OUTBOUND_ALLOW): loopback and the metadata address are refused
    and never connected to."""
    fakes.openai.requests.clear()
    for url, reason in [(f"{image_host.url}/red.png", "resolves to a loopback address"),
                        ("http://169.254.169.254/latest/meta-data/",
                         "resolves to a cloud metadata address"),
                        ("http://localhost/red.png", "a local or metadata name")]:
        response = await sqlite_user.post_chat(messages=[{"role": "user",
                                                          "content": parts(url)}])
        assert response.status_code == 400, response.text
        assert reason in response.json()["detail"]
        gateway = await sqlite_user.http.post(
            "/v1/chat/completions", headers=sqlite_user.headers,
            json={"model": MODELS["openai"], "messages": [{"role": "user",
                                                           "content": parts(url)}]})
        assert gateway.status_code == 400
        assert gateway.json()["error"]["type"] == "invalid_request_error"
    assert image_host.paths == []
    assert [r for r in fakes.openai.requests if r.method == "POST"] == []
    assert await files_of(sqlite_user) == []


async def test_metrics_count_image_fetches(user: User, image_host: ImageHost) -> None:
    before = (await user.http.get("/metrics")).text
    ok = await user.post_chat(messages=[{"role": "user",
                                         "content": parts(f"{image_host.url}/red.png")}])
    assert ok.status_code == 200, ok.text
    refused = await user.post_chat(messages=[{"role": "user", "content": parts(
        f"{image_host.url}/page.html")}])
    assert refused.status_code == 400
    after = (await user.http.get("/metrics")).text
    for outcome in ("fetched", "not_image"):
        name = f'image_fetches_total{{outcome="{outcome}"}}'
        assert metric(after, name) > metric(before, name), outcome

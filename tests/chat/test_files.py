"""Files end to end, over real HTTP and WebSockets with the provider fakes, on SQLite and
PostgreSQL: upload a PDF and a Markdown file, see them become ready, ask with `files` and get
a `citations` event naming the right file first and a prompt holding its passage — on REST
(SSE and whole), /ws and GraphQL; the stored reply keeps its citations. Another user gets 404
(GraphQL: null / NOT_FOUND) for those ids on every face and the provider is never called. A
too-large upload is refused while it streams."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.chat.conftest import provider_settings
from tests.chat.support import FakeThread, User, new_user, read_all
from tests.conftest import LiveServer
from tests.fakes import documents
from tests.realtime.clients import GraphQLWS, recv_until, user_id

LIMIT = 30
PDF_LINES = ["Acme Robotics annual report.", "The heron robot was recalled in June",
             "because its gripper overheated above forty degrees."]
MARKDOWN = b"# Garden notes\n\nTomatoes need six hours of sun a day.\n\nWater basil daily.\n"
QUESTION = "Why was the heron robot recalled?"


async def upload(user: User, name: str, data: bytes, content_type: str = "text/plain"
                 ) -> dict[str, Any]:
    response = await user.http.post("/api/files", headers=user.headers,
                                    files={"file": (name, data, content_type)})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def until_settled(user: User, file_id: str) -> dict[str, Any]:
    async with asyncio.timeout(LIMIT):
        while True:
            response = await user.http.get(f"/api/files/{file_id}", headers=user.headers)
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            if body["status"] != "processing":
                return body
            await asyncio.sleep(0.05)


async def two_files(user: User) -> tuple[str, str]:
    pdf = await upload(user, "report.pdf", documents.pdf_with_text(PDF_LINES),
                       "application/octet-stream")  # the client's type is not trusted
    md = await upload(user, "garden.md", MARKDOWN)
    assert pdf["status"] == md["status"] == "processing"
    assert pdf["content_type"] == "application/pdf"
    for file_id in (pdf["id"], md["id"]):
        assert (await until_settled(user, file_id))["status"] == "ready"
    return pdf["id"], md["id"]


def system_text(fakes: FakeThread) -> str:
    body = fakes.openai.last.json
    return "\n".join(m["content"] for m in body["messages"] if m["role"] == "system")


async def test_a_question_with_files_is_answered_from_them_with_citations(
        user: User, fakes: FakeThread) -> None:
    pdf_id, md_id = await two_files(user)
    listed = (await user.http.get("/api/files", headers=user.headers)).json()
    assert {f["id"] for f in listed} == {pdf_id, md_id}
    conversation_id = await user.new_conversation()
    async with asyncio.timeout(LIMIT):
        async with user.http.stream("POST", "/api/chat", headers=user.headers, json={
                "messages": [{"role": "user", "content": QUESTION}], "stream": True,
                "files": [md_id, pdf_id], "conversation_id": conversation_id}) as response:
            assert response.status_code == 200
            events = await read_all(response)
    types = [e.type for e in events]
    assert types[0] == "citations" and types.count("citations") == 1  # first, once
    sources = events[0].data["sources"]
    assert sources[0]["file_id"] == pdf_id and sources[0]["filename"] == "report.pdf"
    assert "heron robot was recalled" in sources[0]["snippet"]
    assert all(s["file_id"] != md_id for s in sources)  # nothing about robots in the garden
    assert events[-1].type == "chat_complete"
    # The model was given the passage, numbered to be cited.
    assert "[1] report.pdf" in system_text(fakes)
    assert "gripper overheated" in system_text(fakes)
    stored = await user.conversation(conversation_id)
    reply = stored["messages"][-1]
    assert reply["role"] == "assistant" and reply["citations"] == sources

    # The same on /ws, and on GraphQL (the whole reply, and the stored message).
    token = user.headers["Authorization"].removeprefix("Bearer ")
    uid = await user_id(user.http, token)
    ws_url = str(user.http.base_url).replace("http", "ws", 1)
    async with connect(f"{ws_url}/ws/{uid}?token={token}") as ws:
        await ws.send(json.dumps({"type": "chat", "content": QUESTION, "files": [pdf_id],
                                  "request_id": uuid.uuid4().hex}))
        frame = await recv_until(ws, "citations")
        assert frame["sources"][0]["file_id"] == pdf_id
        await recv_until(ws, "chat_complete")
    data = await user.graphql(
        """mutation($input: ChatInput!) { chat(input: $input) {
             content citations { fileId filename snippet score } } }""",
        input={"messages": [{"role": "user", "content": QUESTION}], "files": [pdf_id]})
    assert data["data"]["chat"]["citations"][0]["fileId"] == pdf_id
    data = await user.graphql(
        """query($id: ID!) { conversation(id: $id) { messages { role citations { fileId } } } }""",
        id=conversation_id)
    assert data["data"]["conversation"]["messages"][-1]["citations"][0]["fileId"] == pdf_id


async def test_another_users_files_are_missing_on_every_face(
        user: User, fakes: FakeThread) -> None:
    pdf_id, _md_id = await two_files(user)
    other = await new_user(user.http)
    for method, path in [("GET", f"/api/files/{pdf_id}"), ("GET", f"/api/files/{pdf_id}/content"),
                         ("DELETE", f"/api/files/{pdf_id}")]:
        response = await other.http.request(method, path, headers=other.headers)
        assert response.status_code == 404, (method, path)
    assert (await other.http.get("/api/files", headers=other.headers)).json() == []
    fakes.openai.requests.clear()
    response = await other.post_chat(messages=[{"role": "user", "content": QUESTION}],
                                     files=[pdf_id])
    assert response.status_code == 404
    async with other.http.stream("POST", "/api/chat", headers=other.headers, json={
            "messages": [{"role": "user", "content": QUESTION}], "stream": True,
            "files": [pdf_id]}) as streamed:
        assert streamed.status_code == 404
    data = await other.graphql("query($id: ID!) { file(id: $id) { id } }", id=pdf_id)
    assert data["data"]["file"] is None
    data = await other.graphql("mutation($id: ID!) { deleteFile(id: $id) }", id=pdf_id)
    assert data["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    data = await other.graphql(
        "mutation($input: ChatInput!) { chat(input: $input) { content } }",
        input={"messages": [{"role": "user", "content": QUESTION}], "files": [pdf_id]})
    assert data["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    # Nothing was generated (the model list may have been read; no completion was asked).
    assert [r.path for r in fakes.openai.requests if r.method == "POST"] == []
    # The owner still has it, and can download it as uploaded.
    content = await user.http.get(f"/api/files/{pdf_id}/content", headers=user.headers)
    assert content.status_code == 200
    assert content.content == documents.pdf_with_text(PDF_LINES)
    assert content.headers["content-type"] == "application/pdf"


async def test_graphql_multipart_upload_list_and_delete(user: User) -> None:
    operations = {"query": "mutation($f: Upload!) { uploadFile(file: $f) { id filename "
                           "contentType status } }", "variables": {"f": None}}
    response = await user.http.post("/graphql", headers=user.headers, data={
        "operations": json.dumps(operations), "map": json.dumps({"0": ["variables.f"]})},
        files={"0": ("memo.docx", documents.docx_with(["Budget meeting moved to Friday."]),
                     "text/plain")})
    assert response.status_code == 200, response.text
    uploaded = response.json()["data"]["uploadFile"]
    assert uploaded["filename"] == "memo.docx"
    assert uploaded["contentType"].endswith("wordprocessingml.document")
    settled = await until_settled(user, uploaded["id"])
    assert settled["status"] == "ready" and settled["chunks"] == 1
    data = await user.graphql("{ files { id status error chunks } }")
    assert data["data"]["files"] == [{"id": uploaded["id"], "status": "ready", "error": None,
                                      "chunks": 1}]
    scan = await upload(user, "scan.pdf", documents.scanned_pdf())
    failed = await until_settled(user, scan["id"])
    assert failed["status"] == "error" and "OCR" in failed["error"]
    response = await user.post_chat(messages=[{"role": "user", "content": "hi"}],
                                    files=[scan["id"]])
    assert response.status_code == 400 and "could not be read" in response.json()["detail"]
    data = await user.graphql("mutation($id: ID!) { deleteFile(id: $id) }", id=uploaded["id"])
    assert data["data"]["deleteFile"] is True
    gone = await user.http.get(f"/api/files/{uploaded['id']}", headers=user.headers)
    assert gone.status_code == 404


GRAPHQL_UPLOAD: dict[str, Any] = {
    "query": "mutation($f: Upload!) { uploadFile(file: $f) { id filename contentType size "
             "status } }", "variables": {"f": None}}


async def test_a_large_file_uploads_over_graphql_multipart(user: User) -> None:
    """Beyond the 1 MiB GraphQL body limit, up to MAX_UPLOAD_MB: the same operation as REST
    (type sniffed, bytes kept as sent). A JSON GraphQL request keeps the 1 MiB limit, and a
    multipart request's `operations` field is not a way around it."""
    image = documents.png() + b"\0" * (3 * 1024 * 1024)
    response = await user.http.post("/graphql", headers=user.headers, data={
        "operations": json.dumps(GRAPHQL_UPLOAD), "map": json.dumps({"0": ["variables.f"]})},
        files={"0": ("scan.png", image, "application/octet-stream")})
    assert response.status_code == 200, response.text
    uploaded = response.json()["data"]["uploadFile"]
    assert (uploaded["filename"], uploaded["contentType"], uploaded["size"],
            uploaded["status"]) == ("scan.png", "image/png", len(image), "ready")
    content = await user.http.get(f"/api/files/{uploaded['id']}/content", headers=user.headers)
    assert content.content == image
    padding = " " * (2 * 1024 * 1024)
    big_json = await user.http.post("/graphql", headers=user.headers, json={
        "query": "{ files { id } }" + padding})
    assert big_json.status_code == 413
    big_operations = await user.http.post("/graphql", headers=user.headers, data={
        "operations": json.dumps({**GRAPHQL_UPLOAD, "query": GRAPHQL_UPLOAD["query"] + padding}),
        "map": json.dumps({"0": ["variables.f"]})},
        files={"0": ("small.png", documents.png(), "image/png")})
    assert big_operations.status_code == 400, big_operations.text
    assert "maximum size" in big_operations.text
    listed = (await user.http.get("/api/files", headers=user.headers)).json()
    assert [f["id"] for f in listed] == [uploaded["id"]]


@pytest.fixture
def small_limit_server(tmp_path: Path, fakes: FakeThread) -> Iterator[LiveServer]:
    settings = provider_settings(tmp_path, fakes, "", max_upload_mb=1)
    with LiveServer.running(settings) as server:
        yield server


@pytest.mark.slow
async def test_a_huge_upload_is_refused_while_it_streams(small_limit_server: LiveServer,
                                                         tmp_path: Path) -> None:
    """A client offers 1 GB (chunked, no length): the 413 arrives while it is still sending,
    and nothing of it stays on the server."""
    async with httpx.AsyncClient(base_url=small_limit_server.url, timeout=LIMIT) as http:
        owner = await new_user(http)
    reader, writer = await asyncio.open_connection("127.0.0.1", small_limit_server.port)
    writer.write(("POST /api/files HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  f"Authorization: {owner.headers['Authorization']}\r\n"
                  "Content-Type: multipart/form-data; boundary=BOUND\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n").encode())

    def chunk(data: bytes) -> bytes:
        return f"{len(data):x}\r\n".encode() + data + b"\r\n"

    writer.write(chunk(b'--BOUND\r\nContent-Disposition: form-data; name="file"; '
                       b'filename="big.txt"\r\nContent-Type: text/plain\r\n\r\n'))
    answer = asyncio.ensure_future(reader.readline())
    sent, piece = 0, b"a" * (256 * 1024)
    try:
        async with asyncio.timeout(LIMIT):
            while not answer.done() and sent < 1024 ** 3:
                writer.write(chunk(piece))
                await writer.drain()
                sent += len(piece)
                # drain() does not yield while the transport is not paused: without this the
                # answer already received would wait, unread, while we keep sending.
                await asyncio.sleep(0)
            status_line = await answer
    except (ConnectionError, OSError):
        status_line = await asyncio.wait_for(answer, LIMIT)
    finally:
        writer.close()
    assert status_line.startswith(b"HTTP/1.1 413"), status_line
    assert sent < 16 * 1024 * 1024  # refused a few hundred kilobytes past the 1 MB limit
    # Declared too large: refused before a byte of the body is sent.
    reader, writer = await asyncio.open_connection("127.0.0.1", small_limit_server.port)
    writer.write(("POST /api/files HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  f"Authorization: {owner.headers['Authorization']}\r\n"
                  "Content-Type: multipart/form-data; boundary=BOUND\r\n"
                  f"Content-Length: {1024 ** 3}\r\n\r\n").encode())
    try:
        assert (await asyncio.wait_for(reader.readline(), LIMIT)).startswith(b"HTTP/1.1 413")
    finally:
        writer.close()
    async with httpx.AsyncClient(base_url=small_limit_server.url, timeout=LIMIT) as http:
        assert (await http.get("/api/files", headers=owner.headers)).json() == []
    files_dir = tmp_path / "data" / "files"
    assert not files_dir.exists() or list(files_dir.iterdir()) == []


@pytest.mark.slow
async def test_a_huge_graphql_upload_is_refused_while_it_streams(
        small_limit_server: LiveServer, tmp_path: Path) -> None:
    """The GraphQL multipart request spec, 1 GB offered (chunked, no length): 413 while it is
    still sending, nothing kept."""
    async with httpx.AsyncClient(base_url=small_limit_server.url, timeout=LIMIT) as http:
        owner = await new_user(http)
    reader, writer = await asyncio.open_connection("127.0.0.1", small_limit_server.port)
    writer.write(("POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  f"Authorization: {owner.headers['Authorization']}\r\n"
                  "Content-Type: multipart/form-data; boundary=BOUND\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n").encode())

    def chunk(data: bytes) -> bytes:
        return f"{len(data):x}\r\n".encode() + data + b"\r\n"

    form = ('--BOUND\r\nContent-Disposition: form-data; name="operations"\r\n\r\n'
            f'{json.dumps(GRAPHQL_UPLOAD)}\r\n'
            '--BOUND\r\nContent-Disposition: form-data; name="map"\r\n\r\n'
            '{"0": ["variables.f"]}\r\n'
            '--BOUND\r\nContent-Disposition: form-data; name="0"; filename="big.txt"\r\n'
            'Content-Type: text/plain\r\n\r\n')
    writer.write(chunk(form.encode()))
    answer = asyncio.ensure_future(reader.readline())
    sent, piece = 0, b"a" * (256 * 1024)
    try:
        async with asyncio.timeout(LIMIT):
            while not answer.done() and sent < 1024 ** 3:
                writer.write(chunk(piece))
                await writer.drain()
                sent += len(piece)
                await asyncio.sleep(0)  # let the answer be read (see the REST test)
            status_line = await answer
    except (ConnectionError, OSError):
        status_line = await asyncio.wait_for(answer, LIMIT)
    finally:
        writer.close()
    assert status_line.startswith(b"HTTP/1.1 413"), status_line
    assert sent < 16 * 1024 * 1024
    async with httpx.AsyncClient(base_url=small_limit_server.url, timeout=LIMIT) as http:
        assert (await http.get("/api/files", headers=owner.headers)).json() == []
    files_dir = tmp_path / "data" / "files"
    assert not files_dir.exists() or list(files_dir.iterdir()) == []


CITATIONS_STREAM = """subscription($i: ChatInput!) { chatStream(input: $i) {
  __typename
  ... on ChatCitations { sources { fileId filename snippet score } }
  ... on ChatComplete { finishReason } } }"""


def camel(sources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"file_id": s["fileId"], "filename": s["filename"], "snippet": s["snippet"],
             "score": s["score"]} for s in sources]


async def test_every_face_gives_the_same_citations(user: User, fakes: FakeThread) -> None:
    pdf_id, md_id = await two_files(user)
    question = {"messages": [{"role": "user", "content": "How much sun do tomatoes need?"}],
                "files": [pdf_id, md_id]}
    seen: dict[str, Any] = {}
    prompts: dict[str, str] = {}
    whole = await user.post_chat(**question)
    seen["rest"], prompts["rest"] = whole.json()["citations"], system_text(fakes)
    async with user.http.stream("POST", "/api/chat", headers=user.headers,
                                json={**question, "stream": True}) as response:
        seen["rest_sse"] = (await read_all(response))[0].data["sources"]
    prompts["rest_sse"] = system_text(fakes)
    token = user.headers["Authorization"].removeprefix("Bearer ")
    uid = await user_id(user.http, token)
    ws_url = str(user.http.base_url).replace("http", "ws", 1)
    async with connect(f"{ws_url}/ws/{uid}?token={token}") as ws:
        await ws.send(json.dumps({"type": "chat", "request_id": uuid.uuid4().hex, **question}))
        seen["ws"] = (await recv_until(ws, "citations"))["sources"]
        await recv_until(ws, "chat_complete")
    prompts["ws"] = system_text(fakes)
    data = await user.graphql("""mutation($i: ChatInput!) { chat(input: $i) {
        citations { fileId filename snippet score } } }""", i=question)
    seen["graphql"], prompts["graphql"] = camel(data["data"]["chat"]["citations"]), \
        system_text(fakes)
    async with GraphQLWS.connect(ws_url, "graphql-transport-ws") as client:
        assert (await client.init({"token": token}))["type"] == "connection_ack"
        await client.subscribe("1", CITATIONS_STREAM, {"i": question})
        first, *_rest = await client.collect("1", "chatStream")
    assert first["__typename"] == "ChatCitations"
    seen["graphql_ws"], prompts["graphql_ws"] = camel(first["sources"]), system_text(fakes)
    for face in seen:
        assert seen[face] == seen["rest"], face
        assert prompts[face] == prompts["rest"], face
    assert seen["rest"][0]["filename"] == "garden.md"
    assert "six hours of sun" in prompts["rest"]


def metric(text: str, name: str) -> float:
    """The sum of a metric's samples in a Prometheus exposition."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


async def test_metrics_count_uploads_failures_and_retrieval(user: User) -> None:
    before = (await user.http.get("/metrics")).text
    scan = await upload(user, "scan.pdf", documents.scanned_pdf())
    notes = await upload(user, "notes.md", MARKDOWN)
    refused = await user.http.post("/api/files", headers=user.headers,
                                   files={"file": ("x.bin", b"\x00\x01" * 50, "text/plain")})
    assert refused.status_code == 415
    await until_settled(user, scan["id"])
    await until_settled(user, notes["id"])
    response = await user.post_chat(messages=[{"role": "user", "content": "basil water"}],
                                    files=[notes["id"]])
    assert response.status_code == 200
    after = (await user.http.get("/metrics")).text
    # Servers of this test session share one registry: compare increments.
    assert metric(after, 'file_uploads_total{outcome="stored"}') \
        - metric(before, 'file_uploads_total{outcome="stored"}') >= 2
    assert metric(after, 'file_uploads_total{outcome="unsupported"}') \
        > metric(before, 'file_uploads_total{outcome="unsupported"}')
    assert metric(after, 'file_extraction_failures_total{kind="pdf"}') \
        > metric(before, 'file_extraction_failures_total{kind="pdf"}')
    assert metric(after, "retrieval_seconds_count") > metric(before, "retrieval_seconds_count")

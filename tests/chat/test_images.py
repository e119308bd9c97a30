"""Images in messages, end to end over real HTTP with the provider fakes: content parts on
REST, /ws, GraphQL and /v1 reach OpenAI, Anthropic and Gemini in each one's own vision format;
an image is kept as a file of its sender; a model that cannot see is refused (400) before
anything is generated; what is not an image, a metadata URL, or another user's file is
refused."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.chat.conftest import provider_settings
from tests.chat.support import MODELS, FakeThread, User, new_user
from tests.chat.test_files import upload
from tests.conftest import LiveServer
from tests.fakes import documents
from tests.realtime.clients import recv_until, user_id

PNG = documents.png()
PNG_B64 = base64.b64encode(PNG).decode()
# The declared type is not trusted: the bytes are a PNG, so a PNG is what the model gets.
DATA_URL = f"data:image/jpeg;base64,{PNG_B64}"
PARTS = [{"type": "text", "text": "What colour is this?"},
         {"type": "image_url", "image_url": {"url": DATA_URL}}]


def received_image(provider: str, fakes: FakeThread) -> tuple[Any, str]:
    """The image and the text of the newest user turn, as the provider received them."""
    body = fakes.all[provider].last.json
    if provider == "openai":
        content = body["messages"][-1]["content"]
        assert [p["type"] for p in content] == ["text", "image_url"]
        return content[1]["image_url"]["url"], content[0]["text"]
    if provider == "anthropic":
        blocks = body["messages"][-1]["content"]
        assert [b["type"] for b in blocks] == ["image", "text"]
        source = blocks[0]["source"]
        return (source["type"], source["media_type"], source["data"]), blocks[1]["text"]
    parts = body["contents"][-1]["parts"]
    assert list(parts[0]) == ["inlineData"] and list(parts[1]) == ["text"]
    return (parts[0]["inlineData"]["mimeType"], parts[0]["inlineData"]["data"]), \
        parts[1]["text"]


EXPECTED = {"openai": f"data:image/png;base64,{PNG_B64}",
            "anthropic": ("base64", "image/png", PNG_B64),
            "gemini": ("image/png", PNG_B64)}


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
async def test_an_image_reaches_each_provider_in_its_own_format(
        sqlite_user: User, fakes: FakeThread, provider: str) -> None:
    response = await sqlite_user.post_chat(model=MODELS[provider],
                                           messages=[{"role": "user", "content": PARTS}])
    assert response.status_code == 200, response.text
    assert received_image(provider, fakes) == (EXPECTED[provider], "What colour is this?")
    # The image is kept as one of the sender's files.
    listed = (await sqlite_user.http.get("/api/files", headers=sqlite_user.headers)).json()
    assert [(f["content_type"], f["size"], f["status"]) for f in listed] == [
        ("image/png", len(PNG), "ready")]


async def test_every_face_sends_images(user: User, fakes: FakeThread) -> None:
    image = await upload(user, "red.png", PNG, "application/octet-stream")
    assert image["content_type"] == "image/png" and image["status"] == "ready"
    # /ws: a file part naming the uploaded image.
    token = user.headers["Authorization"].removeprefix("Bearer ")
    uid = await user_id(user.http, token)
    ws_url = str(user.http.base_url).replace("http", "ws", 1)
    async with connect(f"{ws_url}/ws/{uid}?token={token}") as ws:
        await ws.send(json.dumps({"type": "chat", "request_id": uuid.uuid4().hex, "messages": [
            {"role": "user", "content": [{"type": "text", "text": "What colour is this?"},
                                         {"type": "file", "file_id": image["id"]}]}]}))
        await recv_until(ws, "chat_complete")
    assert received_image("openai", fakes) == (EXPECTED["openai"], "What colour is this?")
    # GraphQL: typed image inputs.
    data = await user.graphql(
        "mutation($i: ChatInput!) { chat(input: $i) { content } }",
        i={"model": MODELS["gemini"], "messages": [{"role": "user", "content":
           "What colour is this?", "images": [{"fileId": image["id"]}]}]})
    assert "errors" not in data, data
    assert received_image("gemini", fakes) == (EXPECTED["gemini"], "What colour is this?")
    # /v1: OpenAI's own content parts, through the gateway.
    response = await user.http.post("/v1/chat/completions", headers=user.headers, json={
        "model": MODELS["anthropic"], "messages": [{"role": "user", "content": PARTS}]})
    assert response.status_code == 200, response.text
    assert received_image("anthropic", fakes) == (EXPECTED["anthropic"],
                                                  "What colour is this?")


@pytest.fixture
async def sqlite_user_with_text_model(tmp_path: Path, fakes: FakeThread
                                      ) -> AsyncIterator[User]:
    """A user of a fresh server whose OpenAI also lists gpt-3.5-turbo (text only)."""
    listed = list(fakes.openai.models)
    fakes.openai.models = [*listed, "gpt-3.5-turbo"]
    try:
        with LiveServer.running(provider_settings(tmp_path, fakes, "")) as server:
            async with httpx.AsyncClient(base_url=server.url, timeout=15) as http:
                yield await new_user(http)
    finally:
        fakes.openai.models = listed


async def test_what_cannot_be_shown_is_refused_before_generation(
        sqlite_user_with_text_model: User, fakes: FakeThread) -> None:
    sqlite_user = sqlite_user_with_text_model
    fakes.openai.requests.clear()
    blind = await sqlite_user.post_chat(model="gpt-3.5-turbo",
                                        messages=[{"role": "user", "content": PARTS}])
    assert blind.status_code == 400 and "cannot see images" in blind.json()["detail"]
    not_image = await sqlite_user.post_chat(messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,"
                                            + base64.b64encode(b"%PDF-1.4 x").decode()}}]}])
    assert not_image.status_code == 400 and "not a PNG" in not_image.json()["detail"]
    remote = await sqlite_user.post_chat(messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://169.254.169.254/latest/"}}]}])
    assert remote.status_code == 400  # the outbound guard (tests/chat/test_remote_images.py)
    assert "cloud metadata address" in remote.json()["detail"]
    other = await new_user(sqlite_user.http)
    theirs = await upload(other, "theirs.png", PNG)
    stolen = await sqlite_user.post_chat(messages=[{"role": "user", "content": [
        {"type": "text", "text": "describe"}, {"type": "file", "file_id": theirs["id"]}]}])
    assert stolen.status_code == 404
    gateway = await sqlite_user.http.post("/v1/chat/completions", headers=sqlite_user.headers,
                                          json={"model": "gpt-3.5-turbo",
                                                "messages": [{"role": "user",
                                                              "content": PARTS}]})
    assert gateway.status_code == 400
    assert gateway.json()["error"]["type"] == "invalid_request_error"
    assert [r for r in fakes.openai.requests if r.method == "POST"] == []

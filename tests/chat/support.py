"""Helpers for the end-to-end chat tests: provider fakes on their own thread, a REST/GraphQL
user, and an SSE reader."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from tests.conftest import bearer, register
from tests.fakes.providers import FakeAnthropic, FakeGemini, FakeOpenAI, FakeProvider

# Upstream keys the server is configured with; no answer to a client may ever contain them.
OPENAI_KEY = "sk-test-0penai-SECRET-7f3a"
ANTHROPIC_KEY = "sk-ant-SECRET-2b9c"
GEMINI_KEY = "AIzaSECRET-gemini-91d"
SECRET_KEYS = (OPENAI_KEY, ANTHROPIC_KEY, GEMINI_KEY)

# Small so that timeout paths take about a second; still far above a healthy fake's gaps.
STALL_TIMEOUT = 1.0
CONNECT_TIMEOUT = 1.0

# Every test registers its own users from 127.0.0.1 and chats in quick succession: the abuse
# limits (tested on their own elsewhere) would turn that into 429s.
NO_RATE_LIMITS = {"rate_limit_auth_per_address": 0, "rate_limit_auth_per_username": 0,
                  "rate_limit_chat_per_minute": 0}

DEFAULT_CHUNKS = ["Hello", ",", " world", "!"]
# A model id of each provider (the fakes' model lists).
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-3-5-haiku-20241022",
          "gemini": "gemini-2.0-flash"}


class FakeThread:
    """The three provider fakes served by one event loop on a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                       name="provider-fakes")
        self.openai = FakeOpenAI()
        self.anthropic = FakeAnthropic()
        self.gemini = FakeGemini()

    @property
    def all(self) -> dict[str, FakeProvider]:
        return {"openai": self.openai, "anthropic": self.anthropic, "gemini": self.gemini}

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=15)

    def start(self) -> None:
        self.thread.start()
        for fake in self.all.values():
            self._call(fake.start())

    def stop(self) -> None:
        for fake in self.all.values():
            self._call(fake.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

    def reset(self) -> None:
        for fake in self.all.values():
            fake.chunks = list(DEFAULT_CHUNKS)
            fake.prompt_tokens = 21
            fake.completion_tokens = 4
            fake.finish = "stop"
            fake.chunk_delay = 0.0
            fake.first_chunk_delay = 0.0
            fake.fail = None
            fake.tool_calls = []
            fake.answer_tool_results = False
            fake.split_frames = False
            fake.requests.clear()
        self.openai.embeddings_fail = None


@dataclass
class User:
    http: httpx.AsyncClient
    headers: dict[str, str]
    username: str

    async def post_chat(self, **body: Any) -> httpx.Response:
        return await self.http.post("/api/chat", json=body, headers=self.headers)

    async def new_conversation(self, **fields: Any) -> str:
        conversation_id = f"conv_{uuid.uuid4().hex[:10]}"
        body = {"id": conversation_id, "title": "Test", "model": "gpt-4o-mini",
                "messages": [], **fields}
        response = await self.http.post("/api/conversations", json=body, headers=self.headers)
        assert response.status_code == 200, response.text
        return conversation_id

    async def conversation(self, conversation_id: str) -> dict[str, Any]:
        response = await self.http.get(f"/api/conversations/{conversation_id}",
                                       headers=self.headers)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    async def graphql(self, query: str, **variables: Any) -> dict[str, Any]:
        response = await self.http.post("/graphql", json={"query": query,
                                                          "variables": variables},
                                        headers=self.headers)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data


async def new_user(http: httpx.AsyncClient) -> User:
    tokens = await register(http)
    return User(http=http, headers=bearer(tokens["access_token"]), username=tokens["username"])


@dataclass
class SSE:
    id: int | None
    data: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.data.get("type"))


async def sse_events(response: httpx.Response) -> AsyncIterator[SSE]:
    """The events of a `text/event-stream` answer as they arrive."""
    event_id: int | None = None
    data: list[str] = []
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield SSE(event_id, json.loads("\n".join(data)))
            event_id, data = None, []
        elif line.startswith("id:"):
            event_id = int(line[3:].strip())
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))


async def read_all(response: httpx.Response) -> list[SSE]:
    return [event async for event in sse_events(response)]


def assert_no_secrets(text: str) -> None:
    for key in SECRET_KEYS:
        assert key not in text
    assert "Traceback" not in text


@dataclass
class Sent:
    """What one chat request put on the wire, in provider-neutral terms."""

    model: str
    system: str | None
    messages: list[tuple[str, str]]  # (role, content), roles as the provider spells them
    temperature: float
    max_tokens: int
    headers: dict[str, str]


def sent(provider: str, fake: FakeProvider) -> Sent:
    """Decode the last request `fake` received (the provider's own wire format)."""
    rec = fake.last
    body = rec.json
    if provider == "openai":
        system = [m["content"] for m in body["messages"] if m["role"] == "system"]
        return Sent(model=body["model"], system=system[0] if system else None,
                    messages=[(m["role"], m["content"]) for m in body["messages"]
                              if m["role"] != "system"],
                    temperature=body["temperature"], max_tokens=body["max_tokens"],
                    headers=rec.headers)
    if provider == "anthropic":
        return Sent(model=body["model"], system=body.get("system"),
                    messages=[(m["role"], m["content"]) for m in body["messages"]],
                    temperature=body["temperature"], max_tokens=body["max_tokens"],
                    headers=rec.headers)
    assert provider == "gemini"
    instruction = body.get("systemInstruction")
    model = rec.path.removeprefix("/v1beta/models/").removesuffix(":streamGenerateContent")
    return Sent(model=model,
                system=instruction["parts"][0]["text"] if instruction else None,
                messages=[(c["role"], "\n\n".join(p["text"] for p in c["parts"]))
                          for c in body["contents"]],
                temperature=body["generationConfig"]["temperature"],
                max_tokens=body["generationConfig"]["maxOutputTokens"], headers=rec.headers)

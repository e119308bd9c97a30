"""Every way a provider can fail, through each face that runs a chat: REST JSON, REST SSE and
GraphQL `chat`, for each provider's real client code against its fake.

These run on SQLite only: they exercise the provider path and the error mapping; what they
store goes through the same conversation operations that tests/chat/test_chat_rest.py runs on
both SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from tests.chat.support import (
    DEFAULT_CHUNKS,
    MODELS,
    SECRET_KEYS,
    FakeThread,
    User,
    assert_no_secrets,
    read_all,
)
from tests.fakes.providers import Failure

LIMIT = 15  # seconds; the timeouts under test are ~1 s, so a hang fails the test instead

KEYS = dict(zip(MODELS, SECRET_KEYS, strict=True))

CHAT = """
mutation Chat($input: ChatInput!) {
  chat(input: $input) { content tokens model requestId finishReason }
}
"""


@dataclass(frozen=True)
class Case:
    failure: str
    early: bool  # fails before the first chunk (REST then answers a plain status)
    timeout: bool  # REST 504 / SSE code provider_timeout

    def make(self, provider: str) -> Failure:
        after = 2  # text chunks that get out before a mid-stream failure
        if self.failure == "bad_key":
            # The upstream echoes the key it got: it must never reach the client.
            return Failure(status=401, message=f"Incorrect API key provided: {KEYS[provider]}")
        if self.failure == "server_error":
            return Failure(status=500)
        if self.failure == "hang":
            return Failure(hang_before_headers=True)
        failure = Failure()
        setattr(failure, f"{self.failure}_after", after)
        return failure

    def expected_text(self, provider: str, fakes: FakeThread) -> str:
        """A part of the provider's own message that must reach the client."""
        fake = fakes.all[provider]
        if self.failure == "bad_key":
            return "Incorrect API key provided"
        if self.failure == "server_error":
            message: str = fake.error_json(500, None)["error"]["message"]
            return message
        if self.failure == "stream_error":
            return {"openai": "model crashed while generating", "anthropic": "Overloaded",
                    "gemini": "The model is overloaded"}[provider]
        return ""


CASES = {
    "bad_key": Case("bad_key", early=True, timeout=False),
    "server_error": Case("server_error", early=True, timeout=False),
    "hang": Case("hang", early=True, timeout=True),
    "stall": Case("stall", early=False, timeout=True),
    "malformed": Case("malformed", early=False, timeout=False),
    "drop": Case("drop", early=False, timeout=False),
    "truncate": Case("truncate", early=False, timeout=False),
    "stream_error": Case("stream_error", early=False, timeout=False),
}

pytestmark = pytest.mark.parametrize("provider", list(MODELS))
cases = pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))


def arm(fakes: FakeThread, provider: str, case: Case) -> None:
    fake = fakes.all[provider]
    fake.fail = case.make(provider)
    # Paced, so that the chunks before a mid-stream failure reach the server before it (a
    # dropped connection discards what the client has not read yet).
    fake.chunk_delay = 0.05


def body(provider: str, conversation_id: str, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": "Tell me a story"}],
            "model": MODELS[provider], "conversation_id": conversation_id, **extra}


async def assert_kept(user: User, conversation_id: str, case: Case) -> None:
    """The user's message is kept; so is the reply as far as it got, marked as an error."""
    messages: list[dict[str, Any]] = []
    while len(messages) < 2:
        messages = (await user.conversation(conversation_id))["messages"]
        await asyncio.sleep(0.02)
    assert len(messages) == 2
    question, reply = messages
    assert (question["role"], question["content"]) == ("user", "Tell me a story")
    assert reply["role"] == "assistant"
    assert reply["status"] == "error"
    assert reply["content"] == ("" if case.early else "".join(DEFAULT_CHUNKS[:2]))


@cases
async def test_rest_json(sqlite_user: User, fakes: FakeThread, provider: str,
                         case: Case) -> None:
    user = sqlite_user
    arm(fakes, provider, case)
    conversation_id = await user.new_conversation()
    async with asyncio.timeout(LIMIT):
        response = await user.post_chat(**body(provider, conversation_id))
        assert response.status_code == (504 if case.timeout else 502), response.text
        detail = response.json()["detail"]
        assert isinstance(detail, str) and detail
        assert case.expected_text(provider, fakes) in detail
        assert_no_secrets(response.text)
        await assert_kept(user, conversation_id, case)


@cases
async def test_rest_sse(sqlite_user: User, fakes: FakeThread, provider: str,
                        case: Case) -> None:
    user = sqlite_user
    arm(fakes, provider, case)
    conversation_id = await user.new_conversation()
    async with asyncio.timeout(LIMIT):
        async with user.http.stream("POST", "/api/chat", headers=user.headers,
                                    json=body(provider, conversation_id, stream=True)) as resp:
            if case.early:
                # Nothing was streamed yet: the failure is told by the status code.
                await resp.aread()
                assert resp.status_code == (504 if case.timeout else 502), resp.text
                assert resp.headers["content-type"].startswith("application/json")
                assert case.expected_text(provider, fakes) in resp.json()["detail"]
                assert_no_secrets(resp.text)
            else:
                assert resp.status_code == 200
                events = await read_all(resp)
                # The two chunks before the failure, however they were grouped.
                assert {e.type for e in events[:-1]} == {"chat_chunk"}
                assert events[-1].type == "error"
                assert "".join(e.data["content"] for e in events[:-1]) == \
                    "".join(DEFAULT_CHUNKS[:2])
                error = events[-1].data
                assert error["code"] == ("provider_timeout" if case.timeout
                                         else "provider_error")
                assert error["message"]
                assert case.expected_text(provider, fakes) in error["message"]
                assert events[-1].id == 3
                for event in events:
                    assert_no_secrets(str(event.data))
        await assert_kept(user, conversation_id, case)


@cases
async def test_graphql_chat(sqlite_user: User, fakes: FakeThread, provider: str,
                            case: Case) -> None:
    user = sqlite_user
    arm(fakes, provider, case)
    conversation_id = await user.new_conversation()
    async with asyncio.timeout(LIMIT):
        answer = await user.graphql(CHAT, input={
            "messages": [{"role": "user", "content": "Tell me a story"}],
            "model": MODELS[provider], "conversationId": conversation_id})
        assert answer["data"] is None
        [error] = answer["errors"]
        assert error["extensions"]["code"] == "PROVIDER_ERROR"
        assert case.expected_text(provider, fakes) in error["message"]
        assert_no_secrets(str(answer))
        await assert_kept(user, conversation_id, case)

"""The issue's "done when", for real: on a server with only the built-in model (no external
key), the official openai SDK with a key made by POST /api/keys lists models, completes and
streams with usage; the calls show in /api/usage at cost 0; revoking the key refuses it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.chat.support import NO_RATE_LIMITS
from tests.conftest import LiveServer, make_settings
from tests.gateway.conftest import key_user

pytestmark = pytest.mark.slow
MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def embedded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp: Path = tmp_path_factory.mktemp("embedded-v1")
    with LiveServer.running(make_settings(
            tmp, database_url=f"sqlite+aiosqlite:///{tmp / 'chat.db'}",
            embedded_model_enabled=True, **NO_RATE_LIMITS)) as server:
        yield server


async def test_the_openai_sdk_uses_the_embedded_model_with_a_key(
        embedded_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=embedded_server.url, timeout=60) as http:
        owner = await key_user(http)
        key = await owner.make_key(name="sdk")
        async with openai.AsyncOpenAI(base_url=f"{embedded_server.url}/v1",
                                      api_key=key["key"], max_retries=0, timeout=60) as sdk:
            assert MODEL in [m.id async for m in sdk.models.list()]
            answer = await sdk.chat.completions.create(
                model=MODEL, max_tokens=12, temperature=0,
                messages=[{"role": "user", "content": "What colour is the sky?"}])
            assert answer.choices[0].message.content
            assert answer.usage is not None and answer.usage.completion_tokens > 0
            assert answer.usage.prompt_tokens > 0
            stream = await sdk.chat.completions.create(
                model=MODEL, max_tokens=12, stream=True,
                stream_options={"include_usage": True},
                messages=[{"role": "user", "content": "Say hello."}])
            chunks = [chunk async for chunk in stream]
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert text.strip()
            assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
            # A 135M model has no function calling: refused before generation, not billed.
            with pytest.raises(openai.BadRequestError) as refused:
                await sdk.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": "hi"}],
                    tools=[{"type": "function", "function": {"name": "f"}}])
            assert refused.value.param == "tools"
        usage = (await http.get("/api/usage?group_by=key", headers=owner.headers)).json()
        assert usage["rows"] == [{"key_id": key["id"], "requests": 2,
                                  "prompt_tokens": usage["total"]["prompt_tokens"],
                                  "completion_tokens": usage["total"]["completion_tokens"],
                                  "cost_usd": 0.0}]
        assert (await http.delete(f"/api/keys/{key['id']}", headers=owner.headers)
                ).status_code == 204
        revoked = await http.get("/v1/models", headers={"Authorization": f"Bearer {key['key']}"})
        assert revoked.status_code == 401

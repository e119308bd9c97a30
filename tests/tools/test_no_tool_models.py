"""A model that cannot call tools (the embedded 135M model) is refused with 400 before any
generation when a chat names server tools — on REST and GraphQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.chat.support import NO_RATE_LIMITS, new_user
from tests.conftest import LiveServer, make_settings
from tests.graphql.helpers import gql
from tests.tools.conftest import make_admin

pytestmark = pytest.mark.slow
MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def embedded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp: Path = tmp_path_factory.mktemp("tools-embedded")
    with LiveServer.running(make_settings(
            tmp, database_url=f"sqlite+aiosqlite:///{tmp / 'chat.db'}",
            embedded_model_enabled=True, **NO_RATE_LIMITS)) as server:
        yield server


async def test_a_model_without_tools_is_refused_before_generation(
        embedded_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=embedded_server.url, timeout=60) as http:
        admin = await make_admin(http, embedded_server)
        await admin.add_stdio("t")
        user = await new_user(http)
        conversation_id = await user.new_conversation()
        refused = await user.post_chat(model=MODEL, tools=["t.weather"],
                                       conversation_id=conversation_id,
                                       messages=[{"role": "user", "content": "hi"}])
        assert refused.status_code == 400, refused.text
        assert "cannot use tools" in refused.text
        body = await gql(http, """mutation($input: ChatInput!) { chat(input: $input) {
            content } }""", {"input": {"model": MODEL, "tools": ["t.weather"], "messages": [
            {"role": "user", "content": "hi"}]}}, user.headers["Authorization"].split()[1])
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        # Nothing was stored: the refusal came before the user's message was kept.
        assert (await user.conversation(conversation_id))["messages"] == []

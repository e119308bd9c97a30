"""MODEL_ALIASES: the names a client sends (the guide's frontend asks for `gpt-3.5-turbo`)
answered by models this server serves, on REST and GraphQL; unknown names still 400."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from resolvers.kit.settings import Settings
from tests.chat.conftest import provider_settings
from tests.chat.support import FakeThread, User, new_user
from tests.conftest import LiveServer

ALIASES = {
    "gpt-3.5-turbo": "gpt-4o-mini",  # plain id of a served model
    "gpt-4": "anthropic/claude-3-5-haiku-20241022",  # provider-prefixed id
    "gpt-4-32k": "gpt-9-nowhere",  # an alias whose target nobody serves
}
CHAT = """
mutation Chat($input: ChatInput!) { chat(input: $input) { content model } }
"""


@pytest.fixture(scope="module")
def alias_server(tmp_path_factory: pytest.TempPathFactory,
                 fake_thread: FakeThread) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("aliases")
    settings = provider_settings(tmp, fake_thread, f"sqlite+aiosqlite:///{tmp / 'chat.db'}",
                                 model_aliases=ALIASES)
    with LiveServer.running(settings) as server:
        yield server


@pytest.fixture
async def alias_user(alias_server: LiveServer, fakes: FakeThread) -> AsyncIterator[User]:
    async with httpx.AsyncClient(base_url=alias_server.url, timeout=15) as http:
        yield await new_user(http)


def guide_chat(model: str) -> dict[str, object]:
    """The body the guide's `sendMessage` posts."""
    return {"messages": [{"id": "1", "content": "Hi", "role": "user",
                          "timestamp": 1697467200000}],
            "model": model, "temperature": 0.7, "max_tokens": 2048, "stream": False}


@pytest.mark.parametrize(("alias", "served"), [("gpt-3.5-turbo", "gpt-4o-mini"),
                                               ("gpt-4", "claude-3-5-haiku-20241022")])
async def test_rest_chat_with_an_alias_answers_with_the_real_model(
        alias_user: User, fakes: FakeThread, alias: str, served: str) -> None:
    fakes.openai.chunks = fakes.anthropic.chunks = ["Hello", " there"]
    response = await alias_user.post_chat(**guide_chat(alias))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["content"] == "Hello there"
    assert body["model"] == served
    provider = fakes.openai if served.startswith("gpt") else fakes.anthropic
    assert provider.requests[-1].json["model"] == served


async def test_graphql_chat_with_an_alias(alias_user: User, fakes: FakeThread) -> None:
    fakes.anthropic.chunks = ["Bonjour"]
    answer = await alias_user.graphql(CHAT, input={
        "messages": [{"role": "user", "content": "Hi"}], "model": "gpt-4"})
    assert "errors" not in answer, answer
    assert answer["data"]["chat"] == {"content": "Bonjour",
                                      "model": "claude-3-5-haiku-20241022"}


@pytest.mark.parametrize("model", ["gpt-5-unknown", "gpt-4-32k"])
async def test_unknown_names_and_dangling_aliases_are_refused(alias_user: User,
                                                              model: str) -> None:
    response = await alias_user.post_chat(**guide_chat(model))
    assert response.status_code == 400, response.text
    assert "gpt-4o-mini" in response.json()["available"]
    answer = await alias_user.graphql(CHAT, input={
        "messages": [{"role": "user", "content": "Hi"}], "model": model})
    assert answer["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert model in answer["errors"][0]["message"]


def test_model_aliases_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    monkeypatch.setenv("MODEL_ALIASES", " gpt-3.5-turbo = smollm2-135m-instruct ,"
                       "gpt-4=openai/gpt-4o,")
    settings = Settings(_env_file=None, data_dir=tmp_path)
    assert settings.model_aliases == {"gpt-3.5-turbo": "smollm2-135m-instruct",
                                      "gpt-4": "openai/gpt-4o"}
    monkeypatch.setenv("MODEL_ALIASES", "gpt-3.5-turbo")
    with pytest.raises(ValueError, match="is not name=model"):
        Settings(_env_file=None, data_dir=tmp_path)

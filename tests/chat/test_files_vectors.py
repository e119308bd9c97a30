"""Chat with files when EMBEDDING_MODEL is set, end to end over real HTTP: the live server, the
fake OpenAI server answering both the chat and `/v1/embeddings`, on SQLite (sqlite-vec) and
PostgreSQL with pgvector (pgserver). A question in other words than the document gets it
cited first (full-text alone finds nothing) on REST and GraphQL; with the embeddings service
down the reply still comes, from full-text, and /metrics counts the failure."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.chat.conftest import provider_settings
from tests.chat.support import FakeThread, new_user, read_all
from tests.chat.test_files import LIMIT, metric, system_text, until_settled, upload
from tests.conftest import LiveServer, scratch_postgres

GARAGE = b"# Garage log\n\nThe automobile was repaired in June after its brakes failed.\n"
GARDEN = b"# Garden\n\nTomatoes need six hours of sun a day. Water the basil daily.\n"
QUESTION = "When was the car fixed?"


@pytest.fixture(params=["sqlite", pytest.param("pgvector", marks=pytest.mark.postgres)])
def vector_server(request: pytest.FixtureRequest, tmp_path: Path,
                  fakes: FakeThread) -> Iterator[LiveServer]:
    def run(url: str) -> Iterator[LiveServer]:
        settings = provider_settings(tmp_path, fakes, url,
                                     embedding_model="text-embedding-3-small",
                                     embedding_retry_seconds=0)
        with LiveServer.running(settings) as server:
            yield server

    if request.param == "sqlite":
        yield from run(f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}")
        return
    with scratch_postgres("chatstudio_vecchat",
                          admin_url=request.getfixturevalue("pgvector_server")) as url:
        yield from run(url)


async def test_a_question_in_other_words_cites_the_file_and_an_outage_still_answers(
        vector_server: LiveServer, fakes: FakeThread) -> None:
    async with httpx.AsyncClient(base_url=vector_server.url, timeout=LIMIT) as http:
        user = await new_user(http)
        garage = await upload(user, "garage.md", GARAGE)
        garden = await upload(user, "garden.md", GARDEN)
        for file in (garage, garden):
            assert (await until_settled(user, file["id"]))["status"] == "ready"
        files = [garden["id"], garage["id"]]
        async with asyncio.timeout(LIMIT):
            async with user.http.stream("POST", "/api/chat", headers=user.headers, json={
                    "messages": [{"role": "user", "content": QUESTION}], "stream": True,
                    "files": files}) as response:
                assert response.status_code == 200
                events = await read_all(response)
        assert events[0].type == "citations" and events[-1].type == "chat_complete"
        sources = events[0].data["sources"]
        assert sources[0]["filename"] == "garage.md" and sources[0]["score"] > 0
        assert "automobile was repaired" in system_text(fakes)
        assert fakes.openai.embedded_texts[-1] == QUESTION
        data = await user.graphql(
            """mutation($input: ChatInput!) { chat(input: $input) {
                 content citations { fileId filename } } }""",
            input={"messages": [{"role": "user", "content": QUESTION}], "files": files})
        assert data["data"]["chat"]["citations"][0]["fileId"] == garage["id"]

        # The embeddings service goes down: the reply comes all the same, from full-text.
        before = (await http.get("/metrics")).text
        fakes.openai.embeddings_fail = 503
        response = await user.post_chat(
            messages=[{"role": "user", "content": "automobile brakes"}], files=files)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["citations"][0]["filename"] == "garage.md"
        assert body["content"]
        after = (await http.get("/metrics")).text
        assert metric(after, 'embedding_failures_total{stage="query"}') \
            == metric(before, 'embedding_failures_total{stage="query"}') + 1
        assert metric(after, 'retrieval_seconds_count{mode="fulltext"}') \
            > metric(before, 'retrieval_seconds_count{mode="fulltext"}')
        assert metric(after, 'retrieval_seconds_count{mode="hybrid"}') \
            + metric(after, 'retrieval_seconds_count{mode="vector"}') > 0

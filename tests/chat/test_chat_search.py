"""A chat reply kept by the server is searchable at once and shows in the sidebar summary
(real server, the OpenAI fake, SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio

from tests.chat.support import FakeThread, User
from tests.chat.test_chat_rest import wait_for_reply

LIMIT = 15


async def test_a_kept_reply_is_found_by_search_and_summarized(user: User,
                                                              fakes: FakeThread) -> None:
    fakes.openai.chunks = ["The ", "quokka ", "lives on ", "罗特内斯特岛", "."]
    conversation_id = await user.new_conversation()
    async with asyncio.timeout(LIMIT):
        response = await user.post_chat(
            messages=[{"role": "user", "content": "Which marsupial smiles?"}],
            model="gpt-4o-mini", conversation_id=conversation_id)
        assert response.status_code == 200, response.text
        await wait_for_reply(user, conversation_id)
    for query, snippet in (("quokk", "The <mark>quokka</mark> lives on 罗特内斯特岛."),
                           ("特岛", "The quokka lives on 罗特内斯<mark>特岛</mark>."),
                           ("marsupial", "Which <mark>marsupial</mark> smiles?")):
        body = (await user.http.get("/api/search", params={"q": query},
                                    headers=user.headers)).json()
        assert [(r["conversation_id"], r["snippet"]) for r in body["results"]] == [
            (conversation_id, snippet)], query
    summary = (await user.http.get("/api/conversations", params={"view": "summary"},
                                   headers=user.headers)).json()
    assert [(c["id"], c["messageCount"], c["lastMessagePreview"]) for c in summary] == [
        (conversation_id, 2, "The quokka lives on 罗特内斯特岛.")]

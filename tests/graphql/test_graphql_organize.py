"""GraphQL over real HTTP, on SQLite and PostgreSQL: search (connection-paged),
patchConversation, list filters, the list without messages reading no message, share links."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, count_statements
from tests.graphql.helpers import code_of, data_of, gql, register

CREATE = """mutation($input: ConversationInput!) { createConversation(input: $input) { id } }"""
SEARCH = """query($q: String!, $first: Int! = 20, $after: String) {
  search(query: $q, first: $first, after: $after) {
    edges { cursor node { conversationId title messageId role snippet timestamp } }
    pageInfo { hasNextPage endCursor }
  }
}"""
PATCH = """mutation($id: ID!, $input: ConversationPatchInput!) {
  patchConversation(id: $id, input: $input) {
    id title pinned archived tags messageCount lastMessagePreview systemPrompt updatedAt
  }
}"""


@pytest.fixture
async def alice(client: httpx.AsyncClient) -> str:
    token: str = (await register(client, "alice"))["accessToken"]
    return token


async def create(http: httpx.AsyncClient, token: str, conversation_id: str, title: str,
                 *contents: str) -> None:
    roles = ("user", "assistant")
    await data_of(http, CREATE, {"input": {
        "id": conversation_id, "title": title, "model": "m",
        "messages": [{"id": f"{conversation_id}-{i}", "role": roles[i % 2], "content": c}
                     for i, c in enumerate(contents)]}}, token)


async def test_search_is_a_connection(client: httpx.AsyncClient, alice: str) -> None:
    await create(client, alice, "c", "北京 trip", "去北京", "beijing trip notes", "北京烤鸭")
    seen: list[Any] = []
    after = None
    while True:
        page = (await data_of(client, SEARCH, {"q": "北京", "first": 2, "after": after},
                              alice))["search"]
        seen += [(e["node"]["messageId"], e["node"]["snippet"]) for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            assert page["pageInfo"]["endCursor"] is None
            break
        assert page["pageInfo"]["endCursor"] == page["edges"][-1]["cursor"]
        after = page["pageInfo"]["endCursor"]
    assert seen == [(None, "<mark>北京</mark> trip"), ("c-2", "<mark>北京</mark>烤鸭"),
                    ("c-0", "去<mark>北京</mark>")]
    bob = (await register(client, "bob"))["accessToken"]
    assert (await data_of(client, SEARCH, {"q": "北京"}, bob))["search"]["edges"] == []


@pytest.mark.parametrize(("variables", "code"), [
    ({"q": ""}, "BAD_USER_INPUT"), ({"q": "x" * 10_240}, "BAD_USER_INPUT"),
    ({"q": "a", "first": 0}, "BAD_USER_INPUT"), ({"q": "a", "after": "junk"}, "BAD_USER_INPUT"),
])
async def test_bad_searches(client: httpx.AsyncClient, alice: str, variables: dict[str, Any],
                            code: str) -> None:
    assert code_of(await gql(client, SEARCH, variables, alice)) == code


async def test_search_needs_authentication(client: httpx.AsyncClient) -> None:
    assert code_of(await gql(client, SEARCH, {"q": "a"})) == "UNAUTHENTICATED"


async def test_patch_filters_and_tags(client: httpx.AsyncClient, alice: str) -> None:
    for i in range(4):
        await create(client, alice, f"c{i}", f"Chat {i}", "hello", f"last {i}")
    patched = (await data_of(client, PATCH, {"id": "c1", "input": {
        "pinned": True, "tags": ["work", "work", "q3"]}}, alice))["patchConversation"]
    assert patched | {"updatedAt": 0} == {
        "id": "c1", "title": "Chat 1", "pinned": True, "archived": False,
        "tags": ["q3", "work"], "messageCount": 2, "lastMessagePreview": "last 1",
        "systemPrompt": None, "updatedAt": 0}
    await data_of(client, PATCH, {"id": "c2", "input": {"archived": True, "tags": ["q3"],
                                                        "systemPrompt": "Terse"}}, alice)
    cleared = (await data_of(client, PATCH, {"id": "c2", "input": {"systemPrompt": None}},
                             alice))["patchConversation"]
    assert cleared["systemPrompt"] is None and cleared["archived"] is True

    async def ids(arguments: str) -> list[str]:
        data = await data_of(client, f"{{ conversations({arguments}) {{ nodes {{ id tags }} }} }}",
                             None, alice)
        return [n["id"] for n in data["conversations"]["nodes"]]

    assert await ids("first: 10") == ["c2", "c3", "c1", "c0"]
    assert await ids("pinned: true") == ["c1"]
    assert await ids("archived: false") == ["c3", "c1", "c0"]
    assert await ids('tag: "q3"') == ["c2", "c1"]
    bob = (await register(client, "bob"))["accessToken"]
    assert code_of(await gql(client, PATCH, {"id": "c1", "input": {"pinned": False}},
                             bob)) == "NOT_FOUND"
    assert code_of(await gql(client, PATCH, {"id": "c1", "input": {"title": None}},
                             alice)) == "BAD_USER_INPUT"


async def test_the_list_without_messages_reads_no_message(
    live_server: LiveServer, client: httpx.AsyncClient, alice: str
) -> None:
    big = "y" * 50_000
    for i in range(20):
        await create(client, alice, f"c{i}", f"Chat {i}", big, big)
    engine = live_server.app.state.services.db.engine
    query = ("{ conversations(first: 20) { nodes { id title pinned archived tags messageCount "
             "lastMessagePreview updatedAt } totalCount } }")
    with count_statements(engine) as statements:
        data = await data_of(client, query, None, alice)
    nodes = data["conversations"]["nodes"]
    assert len(nodes) == 20 and nodes[0]["messageCount"] == 2
    assert nodes[0]["lastMessagePreview"] == "y" * 200
    assert len(statements) <= 4, statements  # user, page, count, tags (one batch)
    assert not [s for s in statements if re.search(r"\bmessages\b", s, re.I)], statements


SHARE = "mutation($id: ID!) { shareConversation(id: $id) { token url sharedAt } }"
SHARED = """query($token: String!) {
  sharedConversation(token: $token) { title sharedAt messages { role content timestamp } }
}"""


async def test_share_links(client: httpx.AsyncClient, alice: str) -> None:
    await create(client, alice, "c", "Shared chat", "question", "answer")
    link = (await data_of(client, SHARE, {"id": "c"}, alice))["shareConversation"]
    assert link["url"] == f"/api/shared/{link['token']}"
    public = (await data_of(client, SHARED, {"token": link["token"]}))["sharedConversation"]
    assert public["title"] == "Shared chat"
    assert [(m["role"], m["content"]) for m in public["messages"]] == [
        ("user", "question"), ("assistant", "answer")]
    rest = (await client.get(link["url"])).json()
    assert rest["messages"] == public["messages"] and rest["shared_at"] == public["sharedAt"]
    owned = await data_of(client, '{ shareLink(conversationId: "c") { token } }', None, alice)
    assert owned["shareLink"]["token"] == link["token"]
    bob = (await register(client, "bob"))["accessToken"]
    assert code_of(await gql(client, SHARE, {"id": "c"}, bob)) == "NOT_FOUND"
    assert code_of(await gql(client, 'mutation { revokeShare(id: "c") }', None,
                             bob)) == "NOT_FOUND"
    assert await data_of(client, 'mutation { revokeShare(id: "c") }', None, alice) == {
        "revokeShare": True}
    assert (await data_of(client, SHARED, {"token": link["token"]}))[
        "sharedConversation"] is None
    assert (await data_of(client, '{ shareLink(conversationId: "c") { token } }', None,
                          alice))["shareLink"] is None

"""GraphQL conversations, stats and the messages DataLoader over real HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, count_statements
from tests.graphql.helpers import code_of, data_of, error_of, gql, register

FIELDS = "id title model systemPrompt createdAt updatedAt userId messages { id role content " \
         "timestamp }"
CREATE = f"""
mutation Create($input: ConversationInput!) {{ createConversation(input: $input) {{ {FIELDS} }} }}
"""
UPDATE = f"""
mutation Update($id: ID!, $input: ConversationInput!) {{
  updateConversation(id: $id, input: $input) {{ {FIELDS} }}
}}
"""
DELETE = "mutation Delete($id: ID!) { deleteConversation(id: $id) }"
ONE = f"query One($id: ID!) {{ conversation(id: $id) {{ {FIELDS} }} }}"
PAGE = """
query Page($first: Int!, $after: String) {
  conversations(first: $first, after: $after) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node { id title } }
  }
}
"""
STATS = "{ stats { totalConversations totalMessages totalTokens averageMessagesPerConversation } }"


def conversation_input(id: str | None = "conv_123", title: str = "Hello",
                       messages: list[tuple[str, str]] | None = None,
                       **extra: Any) -> dict[str, Any]:
    pairs = messages if messages is not None else [("user", "Hi"), ("assistant", "Hello!")]
    value: dict[str, Any] = {
        "title": title, "model": "gpt-4o-mini",
        "messages": [{"role": role, "content": content} for role, content in pairs],
        **extra,
    }
    if id is not None:
        value["id"] = id
    return value


async def create(client: httpx.AsyncClient, token: str, **kwargs: Any) -> dict[str, Any]:
    data = await data_of(client, CREATE, {"input": conversation_input(**kwargs)}, token=token)
    created: dict[str, Any] = data["createConversation"]
    return created


@pytest.fixture
async def alice(client: httpx.AsyncClient) -> dict[str, Any]:
    return await register(client, "alice")


@pytest.fixture
async def bob(client: httpx.AsyncClient) -> dict[str, Any]:
    return await register(client, "bob")


async def test_create_get_update_delete(client: httpx.AsyncClient,
                                        alice: dict[str, Any]) -> None:
    token = alice["accessToken"]
    created = await create(client, token, createdAt=1_600_000_000_000,
                           systemPrompt="Be brief")
    assert created["id"] == "conv_123"
    assert created["userId"] == alice["user"]["id"]
    assert created["createdAt"] == 1_600_000_000_000
    assert created["updatedAt"] > created["createdAt"]  # a 64-bit Timestamp, not a 32-bit Int
    assert created["systemPrompt"] == "Be brief"
    assert [(m["role"], m["content"]) for m in created["messages"]] == [
        ("user", "Hi"), ("assistant", "Hello!")]
    assert all(isinstance(m["timestamp"], int) for m in created["messages"])

    fetched = (await data_of(client, ONE, {"id": "conv_123"}, token=token))["conversation"]
    assert fetched == created

    updated = (await data_of(client, UPDATE, {"id": "conv_123", "input": conversation_input(
        None, "Renamed", [("system", "s"), ("user", "u")], createdAt=5)},
        token=token))["updateConversation"]
    assert updated["title"] == "Renamed"
    assert updated["createdAt"] == 1_600_000_000_000
    assert updated["updatedAt"] > created["updatedAt"]
    assert [(m["role"], m["content"]) for m in updated["messages"]] == [
        ("system", "s"), ("user", "u")]

    assert await data_of(client, DELETE, {"id": "conv_123"}, token=token) == {
        "deleteConversation": True}
    assert (await data_of(client, ONE, {"id": "conv_123"}, token=token)) == {
        "conversation": None}
    gone = await gql(client, DELETE, {"id": "conv_123"}, token=token)
    assert code_of(gone) == "NOT_FOUND"


async def test_same_id_twice_is_a_conflict(client: httpx.AsyncClient,
                                           alice: dict[str, Any]) -> None:
    await create(client, alice["accessToken"])
    again = await gql(client, CREATE, {"input": conversation_input(title="x")},
                      token=alice["accessToken"])
    assert code_of(again) == "CONFLICT"


async def test_another_users_conversation_is_null_and_untouchable(
    client: httpx.AsyncClient, alice: dict[str, Any], bob: dict[str, Any]
) -> None:
    mine = await create(client, alice["accessToken"], title="Alice's")
    theirs = bob["accessToken"]
    assert await data_of(client, ONE, {"id": "conv_123"}, token=theirs) == {"conversation": None}
    update = await gql(client, UPDATE, {"id": "conv_123", "input": conversation_input(
        None, "hijacked")}, token=theirs)
    assert code_of(update) == "NOT_FOUND"
    assert code_of(await gql(client, DELETE, {"id": "conv_123"}, token=theirs)) == "NOT_FOUND"
    assert (await data_of(client, PAGE, {"first": 10}, token=theirs))["conversations"][
        "totalCount"] == 0
    # Bob may own a conv_123 of his own; Alice's stays as it was.
    bobs = await create(client, theirs, title="Bob's")
    assert bobs["id"] == "conv_123" and bobs["userId"] == bob["user"]["id"]
    kept = await data_of(client, ONE, {"id": "conv_123"}, token=alice["accessToken"])
    assert kept["conversation"] == mine


async def test_cursor_paging(client: httpx.AsyncClient, alice: dict[str, Any]) -> None:
    token = alice["accessToken"]
    for i in range(5):
        await create(client, token, id=f"c{i}", messages=[])
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        page = (await data_of(client, PAGE, {"first": 2, "after": after},
                              token=token))["conversations"]
        pages += 1
        assert page["totalCount"] == 5
        seen += [edge["node"]["id"] for edge in page["edges"]]
        assert page["pageInfo"]["endCursor"] == page["edges"][-1]["cursor"]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == ["c4", "c3", "c2", "c1", "c0"]
    assert pages == 3
    default = await data_of(client, "{ conversations { nodes { id } } }", token=token)
    assert [n["id"] for n in default["conversations"]["nodes"]] == seen


@pytest.mark.parametrize(
    ("variables", "field"),
    [({"first": 101}, "first"), ({"first": -1}, "first"),
     ({"first": 5, "after": "not a cursor"}, "after")],
)
async def test_paging_input_errors(client: httpx.AsyncClient, alice: dict[str, Any],
                                   variables: dict[str, Any], field: str) -> None:
    body = await gql(client, PAGE, variables, token=alice["accessToken"])
    assert code_of(body) == "BAD_USER_INPUT"
    assert error_of(body)["extensions"]["field"] == field


async def test_invalid_conversation_input(client: httpx.AsyncClient,
                                          alice: dict[str, Any]) -> None:
    token = alice["accessToken"]
    bad_id = await gql(client, CREATE, {"input": conversation_input("no spaces allowed")},
                       token=token)
    assert code_of(bad_id) == "BAD_USER_INPUT"
    long = await gql(client, CREATE, {"input": conversation_input(
        messages=[("user", "x" * 100_001)])}, token=token)
    assert code_of(long) == "BAD_USER_INPUT"
    assert "content is longer than" in error_of(long)["message"]
    bad_role = await gql(client, CREATE, {"input": conversation_input(
        messages=[("robot", "hi")])}, token=token)
    assert bad_role.get("data") is None
    assert bad_role["errors"] and "robot" in bad_role["errors"][0]["message"]
    bad_time = await gql(client, CREATE, {"input": conversation_input(createdAt="yesterday")},
                         token=token)
    assert bad_time.get("data") is None and bad_time["errors"]
    assert (await data_of(client, STATS, token=token))["stats"]["totalConversations"] == 0


async def test_stats_are_the_callers_own(client: httpx.AsyncClient, alice: dict[str, Any],
                                         bob: dict[str, Any]) -> None:
    await create(client, alice["accessToken"], id="a", messages=[("user", "1")])
    await create(client, alice["accessToken"], id="b",
                 messages=[("user", "1"), ("assistant", "2")])
    await create(client, bob["accessToken"], id="a",
                 messages=[("user", "x")] * 7)
    stats = (await data_of(client, STATS, token=alice["accessToken"]))["stats"]
    assert stats == {"totalConversations": 2, "totalMessages": 3, "totalTokens": 0,
                     "averageMessagesPerConversation": 1.5}
    assert code_of(await gql(client, STATS)) == "UNAUTHENTICATED"


async def test_unauthenticated_conversation_operations(client: httpx.AsyncClient) -> None:
    for query, variables in ((PAGE, {"first": 1}), (ONE, {"id": "x"}),
                             (CREATE, {"input": conversation_input()}),
                             (DELETE, {"id": "x"})):
        assert code_of(await gql(client, query, variables)) == "UNAUTHENTICATED"


async def test_several_root_fields_in_one_query(client: httpx.AsyncClient,
                                                alice: dict[str, Any]) -> None:
    await create(client, alice["accessToken"], id="a")
    query = ("{ me { id } stats { totalConversations } "
             "conversations { totalCount nodes { messages { id } } } }")
    for _ in range(30):  # the race is not certain on SQLite: try it often enough
        body = await gql(client, query, token=alice["accessToken"])
        assert "errors" not in body, body["errors"]
        assert body["data"]["me"]["id"] == alice["user"]["id"]
        assert body["data"]["stats"]["totalConversations"] == 1
        assert len(body["data"]["conversations"]["nodes"][0]["messages"]) == 2


# ---------------------------------------------------------------- DataLoader


LIST_WITH_MESSAGES = """
query List($first: Int!) { conversations(first: $first) { edges { node { id messages { id } } } } }
"""


async def test_messages_are_batched_into_one_query(
    live_server: LiveServer, client: httpx.AsyncClient, alice: dict[str, Any]
) -> None:
    token = alice["accessToken"]
    messages = [("user", f"m{i}") for i in range(20)]
    counts: dict[int, int] = {}
    made = 0
    engine = live_server.app.state.services.db.engine
    for size in (10, 50):
        while made < size:
            await create(client, token, id=f"c{made}", messages=messages)
            made += 1
        with count_statements(engine) as statements:
            data = await data_of(client, LIST_WITH_MESSAGES, {"first": size}, token=token)
        edges = data["conversations"]["edges"]
        assert len(edges) == size
        assert all(len(edge["node"]["messages"]) == 20 for edge in edges)
        counts[size] = len(statements)
    print(f"GraphQL conversations with messages: statements per request {counts}")
    assert counts[10] == counts[50] <= 6, counts

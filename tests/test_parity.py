"""One scenario through both faces: GraphQL and REST must give the same answers."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import bearer
from tests.graphql.helpers import data_of

CREATED_AT = 1_700_000_000_000
FIRST = [
    {"id": "m1", "role": "system", "content": "Be brief", "timestamp": CREATED_AT},
    {"id": "m2", "role": "user", "content": "Hi 你好", "timestamp": CREATED_AT + 1},
]
SECOND = [*FIRST, {"id": "m3", "role": "assistant", "content": "Hello!",
                   "timestamp": CREATED_AT + 2}]
CONVERSATION_FIELDS = ("id title model systemPrompt createdAt updatedAt userId "
                       "messages { id role content timestamp }")


def normalized(conversation: dict[str, Any], user_id: str) -> dict[str, Any]:
    """What must agree between the faces: everything except who owns it and server times."""
    assert conversation["userId"] == user_id
    assert conversation["updatedAt"] > conversation["createdAt"] == CREATED_AT
    return {
        "id": conversation["id"], "title": conversation["title"],
        "model": conversation["model"], "systemPrompt": conversation.get("systemPrompt"),
        "messages": [{key: message[key] for key in ("id", "role", "content", "timestamp")}
                     for message in conversation["messages"]],
    }


async def via_rest(http: httpx.AsyncClient) -> dict[str, Any]:
    token = (await http.post("/api/auth/register", json={
        "username": "rest_user", "email": "rest@example.com",
        "password": "correct horse"})).json()["access_token"]
    auth = bearer(token)
    user_id = (await http.get("/api/auth/me", headers=auth)).json()["id"]
    body = {"id": "conv_123", "title": "Plans", "model": "gpt-4o-mini", "messages": FIRST,
            "createdAt": CREATED_AT, "systemPrompt": "Be brief"}
    created = (await http.post("/api/conversations", json=body, headers=auth)).json()
    updated = (await http.put("/api/conversations/conv_123", headers=auth, json={
        **body, "title": "Plans v2", "messages": SECOND})).json()
    fetched = (await http.get("/api/conversations/conv_123", headers=auth)).json()
    listed = (await http.get("/api/conversations", headers=auth)).json()
    stats = (await http.get("/api/stats", headers=auth)).json()
    deleted = (await http.delete("/api/conversations/conv_123", headers=auth)).status_code
    after = (await http.get("/api/conversations", headers=auth)).json()
    return {
        "created": normalized(created, user_id),
        "updated": normalized(updated, user_id),
        "fetched": normalized(fetched, user_id),
        "listed": [normalized(item, user_id) for item in listed],
        "stats": stats,
        "deleted": deleted == 200,
        "after": [item["id"] for item in after],
    }


async def via_graphql(http: httpx.AsyncClient) -> dict[str, Any]:
    registered = (await data_of(http, """
        mutation { register(input: {username: "gql_user", email: "gql@example.com",
                                    password: "correct horse"}) { accessToken user { id } } }
    """))["register"]
    token, user_id = registered["accessToken"], registered["user"]["id"]
    value = {"id": "conv_123", "title": "Plans", "model": "gpt-4o-mini", "messages": [
        {key: message[key] for key in ("id", "role", "content", "timestamp")}
        for message in FIRST], "createdAt": CREATED_AT, "systemPrompt": "Be brief"}
    created = (await data_of(
        http, f"mutation($i: ConversationInput!) {{ createConversation(input: $i) "
              f"{{ {CONVERSATION_FIELDS} }} }}", {"i": value}, token))["createConversation"]
    updated = (await data_of(
        http, f"mutation($i: ConversationInput!) {{ updateConversation(id: \"conv_123\", "
              f"input: $i) {{ {CONVERSATION_FIELDS} }} }}",
        {"i": {**value, "id": None, "title": "Plans v2", "messages": SECOND}},
        token))["updateConversation"]
    one = f'{{ conversation(id: "conv_123") {{ {CONVERSATION_FIELDS} }} }}'
    fetched = (await data_of(http, one, token=token))["conversation"]
    listed = (await data_of(http, f"{{ conversations {{ nodes {{ {CONVERSATION_FIELDS} }} }} }}",
                            token=token))["conversations"]["nodes"]
    stats = (await data_of(http, "{ stats { totalConversations totalMessages totalTokens "
                                 "averageMessagesPerConversation } }", token=token))["stats"]
    deleted = (await data_of(http, 'mutation { deleteConversation(id: "conv_123") }',
                             token=token))["deleteConversation"]
    after = (await data_of(http, "{ conversations { nodes { id } } }",
                           token=token))["conversations"]["nodes"]
    return {
        "created": normalized(created, user_id),
        "updated": normalized(updated, user_id),
        "fetched": normalized(fetched, user_id),
        "listed": [normalized(item, user_id) for item in listed],
        "stats": {"total_conversations": stats["totalConversations"],
                  "total_messages": stats["totalMessages"],
                  "total_tokens": stats["totalTokens"],
                  "average_messages_per_conversation": stats["averageMessagesPerConversation"]},
        "deleted": deleted,
        "after": [item["id"] for item in after],
    }


async def test_rest_and_graphql_agree(client: httpx.AsyncClient) -> None:
    rest = await via_rest(client)
    graphql = await via_graphql(client)
    for key in rest:
        assert rest[key] == graphql[key], key
    # And the scenario itself did what a user expects.
    assert rest["updated"]["title"] == "Plans v2"
    assert [m["id"] for m in rest["fetched"]["messages"]] == ["m1", "m2", "m3"]
    assert rest["listed"] == [rest["fetched"]]
    assert rest["stats"] == {"total_conversations": 1, "total_messages": 3, "total_tokens": 0,
                             "average_messages_per_conversation": 3.0}
    assert rest["deleted"] is True and rest["after"] == []

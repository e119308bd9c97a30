"""Search, organize and share links through REST and GraphQL give the same answers: the same
results and snippets page by page, the same summaries and filters, the same public snapshot,
and the same refusal (with the matching code) for the same bad input or another user's id."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import bearer, register
from tests.graphql.helpers import gql

MESSAGES = [
    {"id": "m1", "role": "system", "content": "Private prompt", "timestamp": 1_700_000_000_000},
    {"id": "m2", "role": "user", "content": "我想去北京看看, <i>please</i> plan it",
     "timestamp": 1_700_000_000_001},
    {"id": "m3", "role": "assistant", "content": "Planning a 北京 trip: day one…",
     "timestamp": 1_700_000_000_002},
]


async def seed(http: httpx.AsyncClient, token: str) -> None:
    for i, title in enumerate(("北京 plans", "Groceries", "Planning notes")):
        response = await http.post("/api/conversations", headers=bearer(token), json={
            "id": f"c{i}", "title": title, "model": "m", "messages": MESSAGES,
            "createdAt": 1_700_000_000_000})
        assert response.status_code == 200, response.text


async def rest_scenario(http: httpx.AsyncClient, token: str) -> dict[str, Any]:
    auth = bearer(token)
    await http.patch("/api/conversations/c1", headers=auth, json={
        "pinned": True, "tags": ["home", "food"]})
    await http.patch("/api/conversations/c2", headers=auth, json={"archived": True})
    pages = []
    cursor = None
    while True:
        params: dict[str, Any] = {"q": "北京 plan", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        body = (await http.get("/api/search", params=params, headers=auth)).json()
        pages.append([{k: r[k] for k in ("conversation_id", "title", "message_id", "role",
                                          "snippet", "timestamp")} for r in body["results"]])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    summary = (await http.get("/api/conversations", params={"view": "summary"},
                              headers=auth)).json()
    pinned = (await http.get("/api/conversations", params={"pinned": "true", "view": "summary"},
                             headers=auth)).json()
    link = (await http.post("/api/conversations/c0/share", headers=auth)).json()
    shared = (await http.get(link["url"])).json()
    return {
        "pages": pages,
        "summary": [{"id": c["id"], "pinned": c["pinned"], "archived": c["archived"],
                     "tags": c["tags"], "messageCount": c["messageCount"],
                     "lastMessagePreview": c["lastMessagePreview"]} for c in summary],
        "pinned": [c["id"] for c in pinned],
        "shared": {"title": shared["title"], "messages": shared["messages"]},
    }


async def graphql(http: httpx.AsyncClient, query: str, variables: dict[str, Any],
                  token: str) -> dict[str, Any]:
    body = await gql(http, query, variables, token)
    assert "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


async def graphql_scenario(http: httpx.AsyncClient, token: str) -> dict[str, Any]:
    patch = ("mutation($id: ID!, $input: ConversationPatchInput!) { "
             "patchConversation(id: $id, input: $input) { id } }")
    await graphql(http, patch, {"id": "c1", "input": {"pinned": True, "tags": ["home", "food"]}},
                  token)
    await graphql(http, patch, {"id": "c2", "input": {"archived": True}}, token)
    pages = []
    after = None
    while True:
        data = await graphql(http, """query($after: String) {
          search(query: "北京 plan", first: 2, after: $after) {
            nodes { conversationId title messageId role snippet timestamp }
            pageInfo { hasNextPage endCursor } } }""", {"after": after}, token)
        page = data["search"]
        pages.append([{"conversation_id": n["conversationId"], "title": n["title"],
                       "message_id": n["messageId"], "role": n["role"],
                       "snippet": n["snippet"], "timestamp": n["timestamp"]}
                      for n in page["nodes"]])
        after = page["pageInfo"]["endCursor"]
        if not page["pageInfo"]["hasNextPage"]:
            break
    fields = "nodes { id pinned archived tags messageCount lastMessagePreview }"
    summary = (await graphql(http, f"{{ conversations {{ {fields} }} }}", {}, token))[
        "conversations"]["nodes"]
    pinned = (await graphql(http, f"{{ conversations(pinned: true) {{ {fields} }} }}", {},
                            token))["conversations"]["nodes"]
    link = (await graphql(http, 'mutation { shareConversation(id: "c0") { token } }', {},
                          token))["shareConversation"]
    shared = (await graphql(http, """query($t: String!) { sharedConversation(token: $t) {
        title messages { role content timestamp } } }""", {"t": link["token"]}, token))[
        "sharedConversation"]
    return {"pages": pages, "summary": summary, "pinned": [c["id"] for c in pinned],
            "shared": shared}


async def test_rest_and_graphql_agree_on_search_organize_and_share(
    client: httpx.AsyncClient
) -> None:
    rest_token = (await register(client, "rest_user"))["access_token"]
    graphql_token = (await register(client, "graphql_user"))["access_token"]
    await seed(client, rest_token)
    await seed(client, graphql_token)
    rest = await rest_scenario(client, rest_token)
    graph = await graphql_scenario(client, graphql_token)
    for hit in [h for result in (rest, graph) for page in result["pages"] for h in page]:
        if hit["message_id"] is None:  # a title's time is its updatedAt: the server's clock
            assert hit["timestamp"] > 1_700_000_000_002
            hit["timestamp"] = None
    for key in rest:
        assert rest[key] == graph[key], (key, rest[key], graph[key])
    assert [len(page) for page in rest["pages"]] == [2, 2, 2, 1]  # a title, six messages
    assert rest["pages"][0][0]["snippet"] == "<mark>北京</mark> <mark>plans</mark>"
    assert rest["pinned"] == ["c1"]
    assert [m["role"] for m in rest["shared"]["messages"]] == ["user", "assistant"]


BAD = [  # (REST method, path, params/body) ↔ (GraphQL operation) → (status, code)
    ("GET", "/api/search", {"q": "***"}, '{ search(query: "***") { nodes { title } } }',
     422, "BAD_USER_INPUT"),
    ("GET", "/api/search", {"q": "a", "cursor": "junk"},
     '{ search(query: "a", after: "junk") { nodes { title } } }', 422, "BAD_USER_INPUT"),
    ("PATCH", "/api/conversations/c0", {"title": None},
     'mutation { patchConversation(id: "c0", input: {title: null}) { id } }',
     422, "BAD_USER_INPUT"),
    ("PATCH", "/api/conversations/c0", {"tags": [""]},
     'mutation { patchConversation(id: "c0", input: {tags: [""]}) { id } }',
     422, "BAD_USER_INPUT"),
    ("PATCH", "/api/conversations/theirs", {"pinned": True},
     'mutation { patchConversation(id: "theirs", input: {pinned: true}) { id } }',
     404, "NOT_FOUND"),
    ("POST", "/api/conversations/theirs/share", None,
     'mutation { shareConversation(id: "theirs") { token } }', 404, "NOT_FOUND"),
    ("DELETE", "/api/conversations/theirs/share", None,
     'mutation { revokeShare(id: "theirs") }', 404, "NOT_FOUND"),
    ("DELETE", "/api/conversations/c0/share", None,
     'mutation { revokeShare(id: "c0") }', 404, "NOT_FOUND"),
]


async def test_the_same_bad_input_is_refused_alike(client: httpx.AsyncClient) -> None:
    token = (await register(client, "alice"))["access_token"]
    other = (await register(client, "bob"))["access_token"]
    await seed(client, token)
    await client.post("/api/conversations", headers=bearer(other), json={
        "id": "theirs", "title": "Bob's", "model": "m", "messages": []})
    await client.post("/api/conversations/theirs/share", headers=bearer(other))
    for method, path, payload, operation, status, code in BAD:
        kwargs: dict[str, Any] = {"headers": bearer(token)}
        if method == "GET":
            kwargs["params"] = payload
        elif payload is not None:
            kwargs["json"] = payload
        response = await client.request(method, path, **kwargs)
        assert response.status_code == status, (path, payload, response.text)
        body = await gql(client, operation, None, token)
        assert body["errors"][0]["extensions"]["code"] == code, (operation, body)
    # Bob's link still works: nothing Alice tried touched it.
    body = await gql(client, '{ shareLink(conversationId: "theirs") { url } }', None, other)
    assert (await client.get(body["data"]["shareLink"]["url"])).status_code == 200

"""GraphQL over HTTP: GET queries, GraphiQL, health, and how errors reach clients."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from resolvers import stats
from tests.conftest import bearer
from tests.graphql.helpers import code_of, data_of, error_of, gql, register

HEALTH = "{ health { status timestamp activeConnections totalUsers totalConversations " \
         "database version } }"


async def test_health_needs_no_token(client: httpx.AsyncClient) -> None:
    await register(client, "alice")
    health = (await data_of(client, HEALTH))["health"]
    assert health["status"] == "healthy" and health["database"] == "up"
    assert health["version"] == "2.0.0"
    assert (health["totalUsers"], health["totalConversations"]) == (1, 0)
    assert isinstance(health["activeConnections"], int)
    assert "T" in health["timestamp"]


async def test_a_query_over_get(client: httpx.AsyncClient) -> None:
    payload = await register(client, "alice")
    response = await client.get("/graphql", params={"query": "{ me { username } }"},
                                headers={**bearer(payload["accessToken"]),
                                         "Accept": "application/json"})
    assert response.status_code == 200
    assert response.json() == {"data": {"me": {"username": "alice"}}}


async def test_mutations_are_refused_over_get(client: httpx.AsyncClient) -> None:
    query = ('mutation { register(input: {username: "mallory", email: "m@example.com", '
             'password: "correct horse"}) { accessToken } }')
    response = await client.get("/graphql", params={"query": query},
                                headers={"Accept": "application/json"})
    assert response.status_code in {400, 405}
    assert (await data_of(client, HEALTH))["health"]["totalUsers"] == 0


async def test_graphiql_in_a_browser(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", headers={"Accept": "text/html,application/xhtml+xml"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "graphiql" in response.text.lower()


async def test_errors_carry_codes_and_no_internals(client: httpx.AsyncClient) -> None:
    unauthenticated = await gql(client, "{ me { id } }")
    assert code_of(unauthenticated) == "UNAUTHENTICATED"
    syntax = await gql(client, "{ me { id ")
    assert syntax["errors"] and syntax["errors"][0]["extensions"]["code"]
    unknown_field = await gql(client, "{ me { password_hash } }")
    assert unknown_field.get("data") is None
    assert code_of(unknown_field) == "GRAPHQL_VALIDATION_FAILED"
    for body in (unauthenticated, syntax, unknown_field):
        text = json.dumps(body)
        assert "Traceback" not in text and "File \"" not in text
        assert set(body["errors"][0]["extensions"]) <= {"code", "field"}


async def test_unexpected_errors_are_masked_as_internal(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = await register(client, "alice")

    async def boom(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("secret detail: postgres://admin:hunter2@db")

    monkeypatch.setattr(stats, "for_user", boom)
    body = await gql(client, "{ stats { totalMessages } }", token=payload["accessToken"])
    error = error_of(body)
    assert error["extensions"] == {"code": "INTERNAL"}
    assert error["message"] == "Internal server error"
    assert error["path"] == ["stats"]
    text = json.dumps(body)
    assert "secret" not in text and "hunter2" not in text and "RuntimeError" not in text
    assert "Traceback" not in text


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        ("query($f: Int!) { conversations(first: $f) { totalCount } }", {"f": "ten"}),
        ("mutation($i: ConversationInput!) { createConversation(input: $i) { id } }",
         {"i": {"title": "t", "model": "m", "messages": [{"role": "robot", "content": "x"}]}}),
        ("mutation($i: ConversationInput!) { createConversation(input: $i) { id } }",
         {"i": {"title": "t", "model": "m", "createdAt": "yesterday"}}),
    ],
    ids=["int", "enum", "timestamp"],
)
async def test_variables_of_the_wrong_type_carry_a_code(
    client: httpx.AsyncClient, query: str, variables: dict[str, Any]
) -> None:
    payload = await register(client, "alice")
    body = await gql(client, query, variables, token=payload["accessToken"])
    assert body.get("data") is None
    assert body["errors"][0].get("extensions", {}).get("code") in {
        "BAD_USER_INPUT", "GRAPHQL_VALIDATION_FAILED"}, body

"""GraphQL abuse limits and GraphQL-over-HTTP, against the real server.

Every limit refuses the document before execution, with a clear message and a code; the
server keeps answering afterwards.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from graphql import get_introspection_query
from strawberry.extensions.validation_cache import _get_validate_cache

from schema.protection import CACHE_SIZE
from tests.conftest import bearer, register
from tests.production.conftest import Serve

GRJ = "application/graphql-response+json"


async def gql(http: httpx.AsyncClient, query: str, *, token: str | None = None,
              variables: dict[str, Any] | None = None, accept: str | None = None,
              ) -> httpx.Response:
    headers = bearer(token) if token else {}
    if accept:
        headers["Accept"] = accept
    return await http.post("/graphql", json={"query": query, "variables": variables},
                           headers=headers)


async def test_depth_limit_refused_before_execution(serve: Serve) -> None:
    server = serve(graphql_max_depth=3)
    async with httpx.AsyncClient(base_url=server.url) as http:
        user = await register(http)
        deep = "{ conversations { edges { node { messages { id } } } } }"  # depth 5
        body = (await gql(http, deep, token=user["access_token"])).json()
        assert body["data"] is None
        assert "exceeds maximum operation depth of 3" in body["errors"][0]["message"]
        assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
        shallow = (await gql(http, "{ me { username } }", token=user["access_token"])).json()
        assert shallow["data"]["me"]["username"] == user["username"]


async def test_alias_limit(http: httpx.AsyncClient) -> None:
    many = "{ " + " ".join(f"a{i}: __typename" for i in range(16)) + " }"
    body = (await gql(http, many)).json()
    assert body["errors"][0]["message"] == "16 aliases found. Allowed: 15"
    fifteen = "{ " + " ".join(f"a{i}: __typename" for i in range(15)) + " }"
    assert (await gql(http, fifteen)).json()["data"]["a14"] == "Query"


async def test_token_limit(http: httpx.AsyncClient) -> None:
    # 2001+ tokens in a small document: parsing stops at the limit.
    query = "{ " + "a " * 2001 + "}"
    assert len(query.encode()) < 20 * 1024
    body = (await gql(http, query)).json()
    assert "Document contains more than 2000 tokens" in body["errors"][0]["message"]
    assert body["data"] is None


async def test_document_size_limit_before_parsing(http: httpx.AsyncClient) -> None:
    # Mostly a comment (no tokens): only the byte limit stops it.
    query = "{ __typename }\n#" + "x" * (20 * 1024)
    response = await gql(http, query, accept=GRJ)
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["message"].startswith("Document too large")
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "data" not in response.json()
    assert (await gql(http, "{ __typename }")).json() == {"data": {"__typename": "Query"}}


async def test_list_arguments_are_capped(http: httpx.AsyncClient) -> None:
    user = await register(http)
    body = (await gql(http, "{ conversations(first: 1000) { totalCount } }",
                      token=user["access_token"])).json()
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    messages = [{"role": "user", "content": "hi"}] * 1001
    body = (await gql(http, "mutation($m: [ChatMessageInput!]!) { chat(input: {messages: $m}) "
                            "{ content } }", token=user["access_token"],
                      variables={"m": messages})).json()
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "at most 1000 messages" in body["errors"][0]["message"]


async def test_introspection_and_graphiql_on_in_development(http: httpx.AsyncClient) -> None:
    body = (await gql(http, "{ __schema { queryType { name } } }")).json()
    assert body["data"]["__schema"]["queryType"]["name"] == "Query"
    page = await http.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "graphiql" in page.text.lower()


async def test_introspection_and_graphiql_off_in_production(serve: Serve) -> None:
    server = serve(environment="production")
    async with httpx.AsyncClient(base_url=server.url) as http:
        body = (await gql(http, "{ __schema { queryType { name } } }")).json()
        assert "introspection has been disabled" in body["errors"][0]["message"]
        assert (await http.get("/graphql", headers={"Accept": "text/html"})).status_code == 404
        # Ordinary queries still work.
        assert (await gql(http, "{ __typename }")).json()["data"] == {"__typename": "Query"}


async def test_introspection_switchable_in_production(serve: Serve) -> None:
    server = serve(environment="production", graphql_introspection=True, graphiql=True)
    async with httpx.AsyncClient(base_url=server.url) as http:
        body = (await gql(http, "{ __schema { queryType { name } } }")).json()
        assert body["data"]["__schema"]["queryType"]["name"] == "Query"
        assert (await http.get("/graphql", headers={"Accept": "text/html"})).status_code == 200


async def test_batching_is_refused(http: httpx.AsyncClient) -> None:
    response = await http.post("/graphql", json=[{"query": "{ __typename }"},
                                                 {"query": "{ __typename }"}])
    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": "Batching is not enabled"}]}


async def test_validation_cache_hits(http: httpx.AsyncClient) -> None:
    cache: Any = _get_validate_cache(CACHE_SIZE)  # an lru_cache wrapper
    query = "query CacheProbe { __typename }"
    await gql(http, query)
    hits = cache.cache_info().hits
    for _ in range(3):
        assert (await gql(http, query)).json()["data"] == {"__typename": "Query"}
    assert cache.cache_info().hits >= hits + 3


# ---------------------------------------------------------------- GraphQL over HTTP


@pytest.mark.parametrize(("accept", "media"), [
    (None, "application/json"),
    ("application/json", "application/json"),
    ("*/*", "application/json"),
    (GRJ, GRJ),
    (f"{GRJ}, application/json;q=0.9", GRJ),
    (f"application/json, {GRJ};q=0.5", "application/json"),
])
async def test_accept_negotiation(http: httpx.AsyncClient, accept: str | None,
                                  media: str) -> None:
    headers = {"Accept": accept} if accept else {}
    response = await http.post("/graphql", json={"query": "{ __typename }"}, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == media
    assert response.json() == {"data": {"__typename": "Query"}}


async def test_not_acceptable(http: httpx.AsyncClient) -> None:
    response = await http.post("/graphql", json={"query": "{ __typename }"},
                               headers={"Accept": "text/xml"})
    assert response.status_code == 406


@pytest.mark.parametrize("body", [
    b'{ "not a JSON',                                   # JSON parsing failure
    b'{"qeury": "{ __typename }"}',                     # no query
    b'{"query": 0}', b'{"query": {"obj": "ect"}}',      # query not a string
    b'{"query": "{ __typename }", "variables": "x"}',   # variables not a map
    b'{"query": "{ __typename }", "extensions": 0}',    # extensions not a map
    b'{"query": "{ __typename }", "operationName": 0}',  # operationName not a string
    b'{"query": "{"}',                                  # document parsing failure
    b'{"query": "{ f8e3c0 }"}',                         # document validation failure
])
async def test_request_errors_with_graphql_response_json(http: httpx.AsyncClient,
                                                         body: bytes) -> None:
    response = await http.post("/graphql", content=body, headers={
        "Content-Type": "application/json", "Accept": GRJ})
    assert response.status_code == 400
    payload = response.json()
    assert "data" not in payload and payload["errors"]


async def test_legacy_json_keeps_200_for_document_errors(http: httpx.AsyncClient) -> None:
    response = await http.post("/graphql", json={"query": "{ f8e3c0 }"},
                               headers={"Accept": "application/json"})
    assert response.status_code == 200
    assert response.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


async def test_field_errors_are_200_with_graphql_response_json(http: httpx.AsyncClient) -> None:
    # Executed, but the field failed (not signed in): a 200 with data null and a path.
    response = await gql(http, "{ me { id } }", accept=GRJ)
    assert response.status_code == 200
    payload = response.json()
    assert payload["data"] is None
    assert payload["errors"][0]["path"] == ["me"]
    assert payload["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_get_queries_and_no_mutations_over_get(http: httpx.AsyncClient) -> None:
    response = await http.get("/graphql", params={
        "query": "query T($n: String!) { __type(name: $n) { name } }",
        "variables": '{"n": "Query"}'}, headers={"Accept": GRJ})
    assert response.status_code == 200
    assert response.json() == {"data": {"__type": {"name": "Query"}}}
    response = await http.get("/graphql", params={"query": 'mutation { stopChat(requestId: "x") }'},
                              headers={"Accept": GRJ})
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


async def test_unsupported_content_type(http: httpx.AsyncClient) -> None:
    response = await http.post("/graphql", content=b"{ __typename }",
                               headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    response = await http.post("/graphql")
    assert 400 <= response.status_code < 500


@pytest.mark.parametrize("environment", ["development", "production"])
async def test_deep_introspection_is_refused_before_execution(serve: Serve,
                                                              environment: str) -> None:
    # QueryDepthLimiter alone skips `__` fields: a 50-deep introspection document would run.
    server = serve(environment=environment, graphql_introspection=True)
    query = "{ __schema { types { " + "ofType { " * 50 + "name" + " }" * 50 + " } } }"
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await gql(http, query, accept=GRJ)
        assert response.status_code == 400
        body = response.json()
        assert "data" not in body
        assert body["errors"][0]["message"] == (
            "'anonymous' exceeds maximum operation depth of 20 (introspection fields included)")
        # The same depth through fragments is counted too.
        fragments = "query Deep { __schema { types { ...T0 } } } " + " ".join(
            f"fragment T{i} on __Type {{ ofType {{ ...T{i + 1} }} }}" for i in range(25)
        ) + " fragment T25 on __Type { name }"
        body = (await gql(http, fragments)).json()
        assert body["data"] is None
        assert "'Deep' exceeds maximum operation depth of 20" in body["errors"][0]["message"]
        # GraphiQL's own schema query (15 deep) still works.
        standard = get_introspection_query(descriptions=True, input_value_deprecation=True)
        body = (await gql(http, standard)).json()
        assert "errors" not in body, body["errors"]
        assert body["data"]["__schema"]["queryType"]["name"] == "Query"

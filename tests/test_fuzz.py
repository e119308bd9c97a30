"""Property-based fuzzing with schemathesis against the real server (uvicorn on a real port).

REST: every operation of the OpenAPI schema, as a signed-in user, with generated valid and
invalid inputs: never a 5xx, and every documented answer matches its schema.
GraphQL: generated queries and mutations from the schema (introspected): never a 5xx and never
an INTERNAL error.

Chat runs without any model (EMBEDDED_MODEL_ENABLED=false, no provider keys), so /api/chat
answers 400 quickly instead of generating. Bounded: 25 examples per operation.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from tests.conftest import LiveServer, make_settings

EXAMPLES = 25
FUZZ_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                         suppress_health_check=list(HealthCheck))
# The fuzzer registers and signs in far faster than any person: limits would answer 429.
NO_LIMITS = {"rate_limit_auth_per_address": 0, "rate_limit_auth_per_username": 0,
             "rate_limit_chat_per_minute": 0}


class Target:
    def __init__(self, server: LiveServer, token: str) -> None:
        self.server = server
        self.headers = {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    server = LiveServer(make_settings(tmp, database_url=f"sqlite+aiosqlite:///{tmp / 'fuzz.db'}",
                                      **NO_LIMITS))
    server.start()
    try:
        with httpx.Client(base_url=server.url) as http:
            token = http.post("/api/auth/register", json={
                "username": "fuzzer", "email": "fuzzer@example.com",
                "password": "correct horse battery"}).json()["access_token"]
        yield Target(server, token)
    finally:
        server.stop()


def _schemas() -> tuple[Any, Any]:
    # Loaded at import (collection needs them): the app's own OpenAPI and GraphQL schemas,
    # built without starting anything; requests go to the live server (base_url).
    from schema import schema as graphql_schema
    from server import create_app

    app = create_app(make_settings(Path("/nonexistent")))
    rest = schemathesis.openapi.from_dict(app.openapi())
    graphql = schemathesis.graphql.from_dict({"data": graphql_schema.introspect()})
    # /graphql is fuzzed as GraphQL below; signing out or deleting the account would revoke
    # the fuzzer's own token and leave the other operations nothing to exercise.
    return (rest.exclude(path="/graphql").exclude(path="/api/auth/logout"),
            # uploadFile takes an Upload, which exists only in a multipart request (the GraphQL
            # multipart request spec): tests/chat/test_files.py sends real ones.
            graphql.exclude(name=["Mutation.logout", "Mutation.deleteAccount",
                                  "Mutation.uploadFile"]))


rest, graphql = _schemas()


@rest.parametrize()
@FUZZ_SETTINGS
def test_rest_never_fails_and_matches_its_schema(case: Any, target: Target) -> None:
    case.call_and_validate(
        base_url=target.server.url, headers=target.headers, timeout=30,
        checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
    )


def no_internal_errors(ctx: Any, response: Any, case: Any) -> bool | None:
    """A GraphQL answer may refuse input, never fail inside: no INTERNAL code."""
    if response.status_code >= 500:
        raise AssertionError(f"{response.status_code}: {response.text[:500]}")
    try:
        body = response.json()
    except ValueError:
        return None
    for error in (body.get("errors") or []) if isinstance(body, dict) else []:
        code = (error.get("extensions") or {}).get("code")
        if code == "INTERNAL":
            raise AssertionError(f"INTERNAL error for {case.body!r}: {error}")
    return None


@graphql.parametrize()
@FUZZ_SETTINGS
def test_graphql_never_fails_inside(case: Any, target: Target) -> None:
    case.call_and_validate(base_url=f"{target.server.url}/graphql", headers=target.headers,
                           timeout=30, checks=[no_internal_errors])

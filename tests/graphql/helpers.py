"""Helpers for GraphQL over real HTTP."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import bearer


async def gql(http: httpx.AsyncClient, query: str, variables: dict[str, Any] | None = None,
              token: str | None = None) -> dict[str, Any]:
    """POST a GraphQL operation; returns the whole response body (data and errors)."""
    response = await http.post("/graphql", json={"query": query, "variables": variables or {}},
                               headers=bearer(token) if token else {})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    return body


async def data_of(http: httpx.AsyncClient, query: str, variables: dict[str, Any] | None = None,
                  token: str | None = None) -> dict[str, Any]:
    """The `data` of an operation that must succeed."""
    body = await gql(http, query, variables, token)
    assert "errors" not in body, body["errors"]
    data: dict[str, Any] = body["data"]
    return data


def error_of(body: dict[str, Any]) -> dict[str, Any]:
    """The one error of a failed operation."""
    assert body.get("errors"), body
    assert len(body["errors"]) == 1, body["errors"]
    error: dict[str, Any] = body["errors"][0]
    return error


def code_of(body: dict[str, Any]) -> str:
    code: str = error_of(body)["extensions"]["code"]
    return code


REGISTER = """
mutation Register($input: RegisterInput!) {
  register(input: $input) {
    accessToken refreshToken tokenType expiresIn
    user { id username email createdAt }
  }
}
"""


async def register(http: httpx.AsyncClient, username: str,
                   password: str = "correct horse battery") -> dict[str, Any]:
    data = await data_of(http, REGISTER, {"input": {
        "username": username, "email": f"{username}@example.com", "password": password}})
    payload: dict[str, Any] = data["register"]
    return payload



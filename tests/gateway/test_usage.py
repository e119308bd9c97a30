"""Usage and cost through the faces: /api/usage and GraphQL `usage` give the same report,
/api/stats and GraphQL `stats` the same total cost — on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.chat.support import MODELS
from tests.conftest import bearer
from tests.gateway.conftest import REPLY_MICROS, KeyUser, key_user

ROW_FIELDS = "day model keyId requests promptTokens completionTokens costUsd"


def as_rest(row: dict[str, object], group: str) -> dict[str, object]:
    """A GraphQL usage row in REST's shape: the group's own field, then the measures."""
    label = {"day": "day", "model": "model", "key": "keyId"}[group]
    return {{"keyId": "key_id"}.get(label, label): row[label], "requests": row["requests"],
            "prompt_tokens": row["promptTokens"],
            "completion_tokens": row["completionTokens"], "cost_usd": row["costUsd"]}


async def test_usage_and_cost_agree_on_rest_and_graphql(user: KeyUser) -> None:
    key = await user.make_key(name="script")
    ask = {"messages": [{"role": "user", "content": "hi"}]}
    for model in (MODELS["openai"], MODELS["anthropic"]):
        assert (await user.http.post("/api/chat", headers=user.headers,
                                     json={**ask, "model": model})).status_code == 200
    assert (await user.http.post("/v1/chat/completions", headers=bearer(key["key"]),
                                 json={**ask, "model": MODELS["gemini"]})).status_code == 200
    expected = sum(REPLY_MICROS[MODELS[p]] for p in ("openai", "anthropic", "gemini")) / 1e6
    today = datetime.now(UTC).date().isoformat()

    by_model = (await user.http.get("/api/usage", params={"group_by": "model"},
                                    headers=user.headers)).json()
    assert {r["model"]: r["cost_usd"] for r in by_model["rows"]} == {
        MODELS[p]: REPLY_MICROS[MODELS[p]] / 1e6 for p in ("openai", "anthropic", "gemini")}
    assert by_model["total"] == {"requests": 3, "prompt_tokens": 63, "completion_tokens": 12,
                                 "cost_usd": pytest.approx(expected)}
    by_day = (await user.http.get("/api/usage", params={"group_by": "day", "from": today,
                                                         "to": today},
                                  headers=user.headers)).json()
    assert [r["day"] for r in by_day["rows"]] == [today]
    by_key = (await user.http.get("/api/usage?group_by=key", headers=user.headers)).json()
    assert sorted((r["key_id"] or "", r["requests"]) for r in by_key["rows"]) == [
        ("", 2), (key["id"], 1)]

    for group in ("model", "day", "key"):
        rest = (await user.http.get("/api/usage", params={"group_by": group},
                                    headers=user.headers)).json()
        answer = await user.graphql(
            f"query($g: String) {{ usage(groupBy: $g) {{ rows {{ {ROW_FIELDS} }} "
            f"total {{ {ROW_FIELDS} }} }} }}", g=group)
        usage = answer["data"]["usage"]
        assert [as_rest(r, group) for r in usage["rows"]] == rest["rows"], group
        assert usage["total"]["costUsd"] == pytest.approx(rest["total"]["cost_usd"])

    stats = (await user.http.get("/api/stats", headers=user.headers)).json()
    assert stats["total_cost_usd"] == pytest.approx(expected)
    graph_stats = await user.graphql("{ stats { totalCostUsd } }")
    assert graph_stats["data"]["stats"]["totalCostUsd"] == pytest.approx(expected)
    bad = await user.http.get("/api/usage?group_by=week", headers=user.headers)
    assert bad.status_code == 422


async def test_usage_is_only_the_callers(user: KeyUser) -> None:
    assert (await user.http.post("/api/chat", headers=user.headers, json={
        "messages": [{"role": "user", "content": "hi"}]})).status_code == 200
    other = await key_user(user.http)
    usage = (await user.http.get("/api/usage", headers=other.headers)).json()
    assert usage == {"rows": [], "total": {"requests": 0, "prompt_tokens": 0,
                                           "completion_tokens": 0, "cost_usd": 0.0},
                     "budget": {"monthly_usd": None, "spent_usd": 0.0, "reserved_usd": 0.0,
                                "remaining_usd": None}}

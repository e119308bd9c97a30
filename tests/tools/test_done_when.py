"""Issue 15's "Done when", over real HTTP, /ws and GraphQL WebSockets: the fake upstream asks
for an MCP tool (test MCP servers built with the official SDK, over stdio and Streamable
HTTP), the server runs it and the model answers with the result; every step is an event and
is stored; a hanging tool ends as an error result within the timeout; an HTTP MCP server on
127.0.0.1 is refused until the admin allow-lists it."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.chat.support import MODELS, FakeThread, new_user, read_all
from tests.realtime.clients import GraphQLWS, reply, user_id
from tests.tools.conftest import TOOL_TIMEOUT, Pair, make_admin

WEATHER = "Sunny, 21 C in Paris"


def ask_for(fakes: FakeThread, provider: str, *calls: tuple[str, str]) -> None:
    fake = fakes.all[provider]
    fake.tool_calls = list(calls)
    fake.answer_tool_results = True
    fake.split_frames = True  # tool-call frames arrive cut mid-JSON


async def sse_chat(pair: Pair, **body: Any) -> list[dict[str, Any]]:
    async with pair.user.http.stream("POST", "/api/chat", headers=pair.user.headers,
                                     json={"stream": True, **body}) as response:
        assert response.status_code == 200, (await response.aread()).decode()
        return [event.data for event in await read_all(response)]


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
async def test_rest_sse_runs_the_mcp_tool_and_the_answer_uses_its_result(
        pair: Pair, fakes: FakeThread, provider: str) -> None:
    await pair.admin.add_stdio("t")
    ask_for(fakes, provider, ("t__weather", '{"city": "Paris"}'))
    conversation_id = await pair.user.new_conversation()
    events = await sse_chat(pair, model=MODELS[provider], tools=["t.weather"],
                            conversation_id=conversation_id,
                            messages=[{"role": "user", "content": "Weather in Paris?"}])
    kinds = [e["type"] for e in events]
    call = next(e for e in events if e["type"] == "tool_call")
    result = next(e for e in events if e["type"] == "tool_result")
    assert kinds.index("tool_call") < kinds.index("tool_result") < len(kinds) - 1
    assert call["name"] == "t.weather" and json.loads(call["arguments"]) == {"city": "Paris"}
    assert result == {"type": "tool_result", "id": call["id"], "content": WEATHER,
                      "is_error": False, "request_id": result["request_id"]}
    after = "".join(e["content"] for e in events[kinds.index("tool_result"):]
                    if e["type"] == "chat_chunk")
    assert after == f"The tool said: {WEATHER}"
    complete = events[-1]
    assert complete["type"] == "chat_complete" and complete["finish_reason"] == "stop"
    # Usage summed over both model turns.
    fake = fakes.all[provider]
    assert len([r for r in fake.requests if r.method == "POST"]) == 2
    assert complete["tokens"] == 2 * fake.completion_tokens
    # The stored conversation holds every step.
    stored = (await pair.user.conversation(conversation_id))["messages"]
    assert [m["role"] for m in stored] == ["user", "tool", "tool", "assistant"]
    assert json.loads(stored[1]["content"]) == {"type": "tool_call", "id": call["id"],
                                                "name": "t.weather",
                                                "arguments": call["arguments"]}
    assert json.loads(stored[2]["content"])["content"] == WEATHER
    assert stored[3]["content"].endswith(f"The tool said: {WEATHER}")


async def test_the_same_on_ws_and_graphql(pair: Pair, fakes: FakeThread) -> None:
    await pair.admin.add_stdio("t")
    ask_for(fakes, "openai", ("t__weather", '{"city": "Paris"}'))
    token = pair.user.headers["Authorization"].split()[1]
    uid = await user_id(pair.user.http, token)
    async with connect(f"{pair.server.ws_url}/ws/{uid}?token={token}") as ws:
        await ws.send(json.dumps({"type": "chat", "content": "Weather?", "request_id": "w1",
                                  "tools": ["t.weather"]}))
        events = await reply(ws, "w1", wait=30)
    kinds = [e["type"] for e in events]
    assert "tool_call" in kinds and kinds.index("tool_call") < kinds.index("tool_result")
    assert next(e for e in events if e["type"] == "tool_result")["content"] == WEATHER
    assert "".join(e["content"] for e in events if e["type"] == "chat_chunk").endswith(
        f"The tool said: {WEATHER}")

    fakes.reset()
    ask_for(fakes, "openai", ("t__weather", '{"city": "Paris"}'))
    query = """subscription Chat($input: ChatInput!) { chatStream(input: $input) {
      __typename
      ... on ChatChunk { content }
      ... on ChatToolCall { id name arguments }
      ... on ChatToolResult { id content isError }
      ... on ChatComplete { finishReason }
      ... on ChatError { code message } } }"""
    async with GraphQLWS.connect(pair.server.ws_url, "graphql-transport-ws") as client:
        await client.init({"Authorization": f"Bearer {token}"})
        await client.subscribe("1", query, {"input": {
            "messages": [{"role": "user", "content": "Weather?"}], "tools": ["t.weather"]}})
        gql_events = await client.collect("1", "chatStream", wait=30)
    names = [e["__typename"] for e in gql_events]
    assert names.index("ChatToolCall") < names.index("ChatToolResult") < len(names) - 1
    tool_result = gql_events[names.index("ChatToolResult")]
    assert tool_result["content"] == WEATHER and tool_result["isError"] is False
    assert gql_events[-1] == {"__typename": "ChatComplete", "finishReason": "stop"}


async def test_a_hanging_tool_is_an_error_result_within_the_timeout(
        pair: Pair, fakes: FakeThread) -> None:
    await pair.admin.add_stdio("t")
    ask_for(fakes, "openai", ("t__hang", "{}"), ("t__add", '{"a": 2, "b": 3}'))
    started = time.monotonic()
    events = await sse_chat(pair, tools=["*"], messages=[{"role": "user", "content": "go"}])
    elapsed = time.monotonic() - started
    results = {e["id"]: e for e in events if e["type"] == "tool_result"}
    calls = {e["name"]: e["id"] for e in events if e["type"] == "tool_call"}
    assert results[calls["t.hang"]]["is_error"] is True
    assert "timed out" in results[calls["t.hang"]]["content"]
    assert results[calls["t.add"]] == {**results[calls["t.add"]], "content": "5",
                                       "is_error": False}  # run concurrently, not lost
    assert events[-1]["type"] == "chat_complete"
    assert elapsed < TOOL_TIMEOUT + 8
    # The model saw the error result.
    sent = fakes.openai.requests[-1].json["messages"]
    assert any(m["role"] == "tool" and "timed out" in m["content"] for m in sent)


async def test_a_server_that_dies_is_reported_to_the_model_and_restarted(
        pair: Pair, fakes: FakeThread) -> None:
    await pair.admin.add_stdio("t")
    ask_for(fakes, "openai", ("t__crash", "{}"))
    events = await sse_chat(pair, tools=["t.crash"], messages=[{"role": "user", "content": "x"}])
    result = next(e for e in events if e["type"] == "tool_result")
    assert result["is_error"] is True and events[-1]["type"] == "chat_complete"
    fakes.reset()
    ask_for(fakes, "openai", ("t__add", '{"a": 1, "b": 1}'))
    events = await sse_chat(pair, tools=["t.add"], messages=[{"role": "user", "content": "x"}])
    assert next(e for e in events if e["type"] == "tool_result")["content"] == "2"


async def test_stop_while_a_tool_runs(pair: Pair, fakes: FakeThread) -> None:
    await pair.admin.add_stdio("t")
    ask_for(fakes, "openai", ("t__hang", "{}"))
    events: list[dict[str, Any]] = []
    started = time.monotonic()
    async with pair.user.http.stream("POST", "/api/chat", headers=pair.user.headers, json={
            "stream": True, "tools": ["t.hang"], "request_id": "stopme",
            "messages": [{"role": "user", "content": "x"}]}) as response:
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line[5:]))
                if events[-1]["type"] == "tool_call":
                    stop = await pair.user.http.post("/api/chat/stopme/stop",
                                                     headers=pair.user.headers)
                    assert stop.status_code == 200, stop.text
    assert events[-1]["type"] == "chat_complete"
    assert events[-1]["finish_reason"] == "stopped"
    assert time.monotonic() - started < TOOL_TIMEOUT
    assert len([r for r in fakes.openai.requests if r.method == "POST"]) == 1


async def test_admins_choose_what_users_see(pair: Pair, fakes: FakeThread) -> None:
    refused = await pair.user.http.post("/api/admin/mcp-servers", headers=pair.user.headers,
                                        json={"name": "u", "transport": "stdio",
                                              "command": "true"})
    assert refused.status_code == 403
    await pair.admin.add_stdio("pub")
    await pair.admin.add_stdio("hidden", visible=False)
    listed = await pair.admin.http.get("/api/admin/mcp-servers", headers=pair.admin.headers)
    by_name = {row["name"]: row for row in listed.json()}
    assert by_name["pub"]["healthy"] and by_name["hidden"]["healthy"]
    assert {t["name"] for t in by_name["pub"]["tools"]} == {
        "pub.weather", "pub.add", "pub.hang", "pub.crash"}
    mine = await pair.user.http.get("/api/tools", headers=pair.user.headers)
    assert mine.status_code == 200
    names = {t["name"] for t in mine.json()}
    assert "pub.weather" in names and not any(n.startswith("hidden.") for n in names)
    weather = next(t for t in mine.json() if t["name"] == "pub.weather")
    assert weather["input_schema"]["properties"]["city"]["type"] == "string"
    hidden = await pair.user.post_chat(tools=["hidden.weather"],
                                       messages=[{"role": "user", "content": "x"}])
    assert hidden.status_code == 400 and "hidden.weather" in hidden.text
    assert [r for r in fakes.openai.requests if r.method == "POST"] == []
    unknown_model = await pair.user.post_chat(model="nope", tools=["pub.weather"],
                                              messages=[{"role": "user", "content": "x"}])
    assert unknown_model.status_code == 400


async def test_an_http_mcp_server_on_loopback_is_refused_until_allow_listed(
        pair: Pair, allowing_server: Any, http_mcp: str, fakes: FakeThread) -> None:
    refused = await pair.admin.add_server(name="web", transport="http", url=http_mcp)
    assert refused.status_code == 400, refused.text
    assert "OUTBOUND_ALLOW" in refused.json()["detail"]
    for url in ("http://169.254.169.254/mcp", "http://[::1]:9/mcp", "http://10.0.0.1/mcp",
                "http://localhost:9/mcp"):
        assert (await pair.admin.add_server(name="web", transport="http",
                                            url=url)).status_code == 400
    async with httpx.AsyncClient(base_url=allowing_server.url, timeout=30) as http:
        admin = await make_admin(http, allowing_server)
        added = await admin.add_server(name="web", transport="http", url=http_mcp)
        assert added.status_code == 201, added.text
        assert added.json()["healthy"] and added.json()["error"] is None
        user = await new_user(http)
        ask_for(fakes, "openai", ("web__weather", '{"city": "Paris"}'))
        async with http.stream("POST", "/api/chat", headers=user.headers, json={
                "stream": True, "tools": ["web.weather"],
                "messages": [{"role": "user", "content": "Weather?"}]}) as response:
            events = [e.data for e in await read_all(response)]
        assert next(e for e in events if e["type"] == "tool_result")["content"] == WEATHER
        for row in (await http.get("/api/admin/mcp-servers", headers=admin.headers)).json():
            await http.delete(f"/api/admin/mcp-servers/{row['id']}", headers=admin.headers)


async def test_whole_replies_run_tools_too(pair: Pair, fakes: FakeThread) -> None:
    """REST without stream and the GraphQL `chat` mutation: the answer that used the result."""
    await pair.admin.add_stdio("t")
    ask_for(fakes, "anthropic", ("t__add", '{"a": 20, "b": 22}'))
    whole = await pair.user.post_chat(model=MODELS["anthropic"], tools=["t.add"],
                                      messages=[{"role": "user", "content": "20 + 22?"}])
    assert whole.status_code == 200, whole.text
    assert whole.json()["content"].endswith("The tool said: 42")
    fakes.reset()
    ask_for(fakes, "gemini", ("t__add", '{"a": 1, "b": 2}'))
    data = await pair.user.graphql("""mutation($input: ChatInput!) { chat(input: $input) {
        content finishReason } }""", input={"model": MODELS["gemini"], "tools": ["t.add"],
                                            "messages": [{"role": "user", "content": "1+2"}]})
    assert "errors" not in data, data
    assert data["data"]["chat"]["content"].endswith("The tool said: 3")


async def test_the_loop_ends_after_max_tool_steps(pair: Pair, fakes: FakeThread) -> None:
    """A model that never stops asking for tools gets MAX_TOOL_STEPS (default 8) turns."""
    await pair.admin.add_stdio("t")
    fakes.openai.tool_calls = [("t__add", '{"a": 1, "b": 1}')]  # asks again every time
    events = await sse_chat(pair, tools=["t.add"], messages=[{"role": "user", "content": "x"}])
    posts = [r for r in fakes.openai.requests if r.method == "POST"]
    assert len(posts) == 8
    assert [e["type"] for e in events].count("tool_result") == 7  # the 8th call is not run
    assert events[-1]["type"] == "chat_complete"
    assert events[-1]["finish_reason"] == "tool_calls"
    assert events[-1]["tokens"] == 8 * fakes.openai.completion_tokens

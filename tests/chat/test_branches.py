"""Branches end to end (real server, real provider code, the OpenAI fake): regenerate and edit
make siblings and never delete, switching back shows the old branch, `?tree=true` shows every
message, the guide's linear PUT keeps what it did not mention, and REST and GraphQL agree.
SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.chat.support import FakeThread, User, read_all

LIMIT = 15


def path(conversation: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in conversation["messages"]]


def sent_messages(fakes: FakeThread) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in fakes.openai.last.json["messages"]]


async def chat_turn(user: User, conversation_id: str, text: str) -> dict[str, Any]:
    response = await user.post_chat(messages=[{"role": "user", "content": text}],
                                    conversation_id=conversation_id, model="gpt-4o-mini")
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def tree(user: User, conversation_id: str) -> list[dict[str, Any]]:
    response = await user.http.get(f"/api/conversations/{conversation_id}?tree=true",
                                   headers=user.headers)
    assert response.status_code == 200, response.text
    messages: list[dict[str, Any]] = response.json()["messages"]
    return messages


async def test_regenerate_keeps_both_replies_and_switching_back_shows_the_first(
        user: User, fakes: FakeThread) -> None:
    async with asyncio.timeout(LIMIT):
        conversation_id = await user.new_conversation()
        first = await chat_turn(user, conversation_id, "Name a colour")
        assert first["content"] == "Hello, world!" and first["message_id"]
        fakes.openai.chunks = ["Blue", "."]
        response = await user.http.post(
            f"/api/conversations/{conversation_id}/messages/{first['message_id']}/regenerate",
            json={"model": "gpt-4o-mini", "temperature": 0.1}, headers=user.headers)
        assert response.status_code == 200, response.text
        second = response.json()
        assert second["content"] == "Blue." and second["message_id"] != first["message_id"]
        # The provider saw the question only, not the reply being replaced.
        assert sent_messages(fakes) == [("user", "Name a colour")]
        assert fakes.openai.last.json["temperature"] == 0.1

        shown = await user.conversation(conversation_id)
        assert path(shown) == [("user", "Name a colour"), ("assistant", "Blue.")]
        question, reply = shown["messages"]
        assert reply["parentId"] == question["id"] and question["parentId"] is None
        assert reply["siblingIds"] == [first["message_id"], second["message_id"]]

        switched = await user.http.put(f"/api/conversations/{conversation_id}/active",
                                       json={"message_id": first["message_id"]},
                                       headers=user.headers)
        assert switched.status_code == 200, switched.text
        assert path(switched.json()) == [("user", "Name a colour"),
                                         ("assistant", "Hello, world!")]
        assert path(await user.conversation(conversation_id)) == path(switched.json())
        everything = await tree(user, conversation_id)
        assert [(m["content"], m["active"]) for m in everything] == [
            ("Name a colour", True), ("Hello, world!", True), ("Blue.", False)]
        # Stats count what the conversation shows.
        stats = (await user.http.get("/api/stats", headers=user.headers)).json()
        assert stats["total_messages"] == 2
        # The guide's list shows the active path only.
        listed = (await user.http.get("/api/conversations", headers=user.headers)).json()
        assert [path(c) for c in listed if c["id"] == conversation_id] == [path(switched.json())]


async def test_regenerate_streams_like_chat(user: User, fakes: FakeThread) -> None:
    async with asyncio.timeout(LIMIT):
        conversation_id = await user.new_conversation()
        first = await chat_turn(user, conversation_id, "Hi")
        fakes.openai.chunks = ["Again", "!"]
        async with user.http.stream(
                "POST",
                f"/api/conversations/{conversation_id}/messages/{first['message_id']}/regenerate",
                json={"stream": True}, headers=user.headers) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            events = await read_all(response)
        # Chunks that arrive together may leave as one: the text is what counts.
        assert {e.type for e in events[:-1]} == {"chat_chunk"}
        assert events[-1].type == "chat_complete"
        assert "".join(e.data["content"] for e in events[:-1]) == "Again!"
        new_id = events[-1].data["message_id"]
        shown = await user.conversation(conversation_id)
        assert shown["messages"][-1]["id"] == new_id
        assert shown["messages"][-1]["content"] == "Again!"


async def test_edit_makes_a_sibling_question_and_keeps_the_old_branch_whole(
        user: User, fakes: FakeThread) -> None:
    async with asyncio.timeout(LIMIT):
        conversation_id = await user.new_conversation(systemPrompt="Be brief")
        await chat_turn(user, conversation_id, "Capital of France?")
        await chat_turn(user, conversation_id, "And of Italy?")
        before = await user.conversation(conversation_id)
        assert len(before["messages"]) == 4
        question = before["messages"][0]
        fakes.openai.chunks = ["Madrid"]
        response = await user.http.post(
            f"/api/conversations/{conversation_id}/messages/{question['id']}/edit",
            json={"content": "Capital of Spain?"}, headers=user.headers)
        assert response.status_code == 200, response.text
        assert response.json()["content"] == "Madrid"
        # History before the edited message only (here: the system prompt).
        assert sent_messages(fakes) == [("system", "Be brief"), ("user", "Capital of Spain?")]
        edited = await user.conversation(conversation_id)
        assert path(edited) == [("user", "Capital of Spain?"), ("assistant", "Madrid")]
        assert edited["messages"][0]["siblingIds"] == [question["id"],
                                                       edited["messages"][0]["id"]]
        assert len(await tree(user, conversation_id)) == 6  # nothing deleted
        # Switching to the old question goes down its branch to the newest leaf.
        back = (await user.http.put(f"/api/conversations/{conversation_id}/active",
                                    json={"message_id": question["id"]},
                                    headers=user.headers)).json()
        assert path(back) == path(before)


async def test_a_linear_put_keeps_the_branches_it_does_not_mention(
        user: User, fakes: FakeThread) -> None:
    async with asyncio.timeout(LIMIT):
        conversation_id = await user.new_conversation()
        first = await chat_turn(user, conversation_id, "Hi")
        fakes.openai.chunks = ["Hey"]
        await user.http.post(
            f"/api/conversations/{conversation_id}/messages/{first['message_id']}/regenerate",
            json={}, headers=user.headers)
        shown = await user.conversation(conversation_id)
        # The guide's client sends its linear list back with one more message.
        messages = [{k: m[k] for k in ("id", "role", "content", "timestamp")}
                    for m in shown["messages"]]
        messages.append({"id": "client_3", "role": "user", "content": "Thanks",
                         "timestamp": 1_700_000_000_000})
        body = {"title": "Test", "model": "gpt-4o-mini", "messages": messages}
        put = await user.http.put(f"/api/conversations/{conversation_id}", json=body,
                                  headers=user.headers)
        assert put.status_code == 200, put.text
        assert path(put.json()) == [("user", "Hi"), ("assistant", "Hey"), ("user", "Thanks")]
        reply = put.json()["messages"][1]
        assert reply["siblingIds"] == [first["message_id"], reply["id"]]  # the first reply
        assert {m["content"] for m in await tree(user, conversation_id)} == {
            "Hi", "Hello, world!", "Hey", "Thanks"}
        # Leaving the active reply out removes it; its alternative stays, under "Hi".
        shorter = {**body, "messages": messages[:1]}
        put = await user.http.put(f"/api/conversations/{conversation_id}", json=shorter,
                                  headers=user.headers)
        assert path(put.json()) == [("user", "Hi")]
        kept = await tree(user, conversation_id)
        assert [(m["content"], m["parentId"], m["active"]) for m in kept] == [
            ("Hi", None, True),
            ("Hello, world!", kept[0]["id"], False)]
        # ?branches=drop says so: only the list is left.
        put = await user.http.put(f"/api/conversations/{conversation_id}?branches=drop",
                                  json=shorter, headers=user.headers)
        assert [m["content"] for m in await tree(user, conversation_id)] == ["Hi"]


async def test_wrong_targets_are_refused_and_nothing_changes(user: User,
                                                             fakes: FakeThread) -> None:
    async with asyncio.timeout(LIMIT):
        conversation_id = await user.new_conversation()
        first = await chat_turn(user, conversation_id, "Hi")
        question_id = (await user.conversation(conversation_id))["messages"][0]["id"]
        base = f"/api/conversations/{conversation_id}/messages"
        calls = len(fakes.openai.requests)
        cases = [
            (f"{base}/{question_id}/regenerate", {}, 422),
            (f"{base}/{first['message_id']}/edit", {"content": "x"}, 422),
            (f"{base}/nope/regenerate", {}, 404),
            (f"{base}/{question_id}/edit", {"content": "   "}, 422),
            (f"{base}/{first['message_id']}/regenerate", {"temperature": 9}, 422),
            (f"/api/conversations/missing/messages/{question_id}/edit", {"content": "x"}, 404),
        ]
        for url, body, status in cases:
            response = await user.http.post(url, json=body, headers=user.headers)
            assert response.status_code == status, (url, response.text)
        missing = await user.http.put(f"/api/conversations/{conversation_id}/active",
                                      json={"message_id": "nope"}, headers=user.headers)
        assert missing.status_code == 404
        assert len(fakes.openai.requests) == calls
        assert len(await tree(user, conversation_id)) == 2


async def test_another_users_conversation_is_not_found(user: User, fakes: FakeThread) -> None:
    from tests.chat.support import new_user

    async with asyncio.timeout(LIMIT):
        conversation_id = await user.new_conversation()
        first = await chat_turn(user, conversation_id, "Hi")
        other = await new_user(user.http)
        base = f"/api/conversations/{conversation_id}"
        for method, url, body in [
            ("POST", f"{base}/messages/{first['message_id']}/regenerate", {}),
            ("PUT", f"{base}/active", {"message_id": first["message_id"]}),
            ("GET", f"{base}/export", None),
        ]:
            response = await other.http.request(method, url, json=body, headers=other.headers)
            assert response.status_code == 404, (url, response.text)
        data = await other.graphql("""mutation($c: ID!, $m: ID!) {
            switchBranch(conversationId: $c, messageId: $m) { id } }""",
                                   c=conversation_id, m=first["message_id"])
        assert data["errors"][0]["extensions"]["code"] == "NOT_FOUND"
        assert len(await tree(user, conversation_id)) == 2


GQL_TREE = """query($id: ID!) { conversation(id: $id) {
    messages { id role content parentId siblingIds active parent { id } siblings { content } }
    tree: messages(tree: true) { content active parentId } } }"""


async def test_graphql_does_what_rest_does(user: User, fakes: FakeThread) -> None:
    """The same regenerate, edit and switch through both faces give the same trees."""

    async def scenario(face: str) -> dict[str, Any]:
        fakes.reset()
        conversation_id = await user.new_conversation()
        first = await chat_turn(user, conversation_id, "Hi")
        question_id = (await user.conversation(conversation_id))["messages"][0]["id"]
        fakes.openai.chunks = ["Two"]
        if face == "rest":
            regenerated = (await user.http.post(
                f"/api/conversations/{conversation_id}/messages/{first['message_id']}"
                "/regenerate", json={"max_tokens": 50}, headers=user.headers)).json()
            fakes.openai.chunks = ["Three"]
            edited = (await user.http.post(
                f"/api/conversations/{conversation_id}/messages/{question_id}/edit",
                json={"content": "Hello?"}, headers=user.headers)).json()
            await user.http.put(f"/api/conversations/{conversation_id}/active",
                                json={"message_id": regenerated["message_id"]},
                                headers=user.headers)
        else:
            regenerated = (await user.graphql("""mutation($c: ID!, $m: ID!) {
                regenerateMessage(conversationId: $c, messageId: $m, options: {maxTokens: 50})
                { content messageId } }""", c=conversation_id, m=first["message_id"])
                           )["data"]["regenerateMessage"]
            regenerated["message_id"] = regenerated["messageId"]
            fakes.openai.chunks = ["Three"]
            edited = (await user.graphql("""mutation($c: ID!, $m: ID!) {
                editMessage(conversationId: $c, messageId: $m, content: "Hello?")
                { content messageId } }""", c=conversation_id, m=question_id)
                      )["data"]["editMessage"]
            switched = (await user.graphql("""mutation($c: ID!, $m: ID!) {
                switchBranch(conversationId: $c, messageId: $m) { messages { content } } }""",
                                           c=conversation_id, m=regenerated["message_id"]))
            assert [m["content"] for m in switched["data"]["switchBranch"]["messages"]] == [
                "Hi", "Two"]
        assert fakes.openai.requests[1].json["max_tokens"] == 50
        data = (await user.graphql(GQL_TREE, id=conversation_id))["data"]["conversation"]
        shown = await user.conversation(conversation_id)
        # GraphQL's view of the conversation matches REST's.
        assert [m["id"] for m in data["messages"]] == [m["id"] for m in shown["messages"]]
        assert [m["siblingIds"] for m in data["messages"]] == [
            m["siblingIds"] for m in shown["messages"]]
        assert data["messages"][1]["parent"] == {"id": data["messages"][0]["id"]}
        return {
            "replies": [regenerated["content"],
                        edited["content"]],
            "path": [(m["role"], m["content"]) for m in data["messages"]],
            "siblings": [[s["content"] for s in m["siblings"]] for m in data["messages"]],
            "tree": [(m["content"], m["active"]) for m in data["tree"]],
        }

    async with asyncio.timeout(2 * LIMIT):
        rest = await scenario("rest")
        graphql = await scenario("graphql")
    assert rest == graphql
    assert rest["path"] == [("user", "Hi"), ("assistant", "Two")]
    assert rest["siblings"] == [["Hi", "Hello?"], ["Hello, world!", "Two"]]
    assert rest["tree"] == [("Hi", True), ("Hello, world!", False), ("Two", True),
                            ("Hello?", False), ("Three", False)]


async def test_regenerate_and_edit_stream_on_ws_and_graphql(
        chat_server: Any, user: User, fakes: FakeThread) -> None:
    from websockets.asyncio.client import connect

    from tests.realtime.clients import GraphQLWS, reply, user_id

    token = user.headers["Authorization"].removeprefix("Bearer ")
    conversation_id = await user.new_conversation()
    first = await chat_turn(user, conversation_id, "Hi")
    question_id = (await user.conversation(conversation_id))["messages"][0]["id"]
    uid = await user_id(user.http, token)
    async with asyncio.timeout(LIMIT), \
            connect(f"{chat_server.ws_url}/ws/{uid}?token={token}") as ws:
        fakes.openai.chunks = ["From", " ws"]
        await ws.send(json.dumps({"type": "regenerate", "conversation_id": conversation_id,
                                  "message_id": first["message_id"], "request_id": "r-ws"}))
        events = await reply(ws, "r-ws")
        assert {e["type"] for e in events[:-1]} == {"chat_chunk"}
        assert events[-1]["type"] == "chat_complete"
        assert "".join(e.get("content", "") for e in events) == "From ws"
        await ws.send(json.dumps({"type": "regenerate", "conversation_id": conversation_id,
                                  "message_id": question_id, "request_id": "r-bad"}))
        refused = await reply(ws, "r-bad")
        assert refused[-1]["type"] == "error" and refused[-1]["code"] == "bad_request"
    async with asyncio.timeout(LIMIT), \
            GraphQLWS.connect(chat_server.ws_url, "graphql-transport-ws") as gql:
        await gql.init({"token": token})
        fakes.openai.chunks = ["From", " graphql"]
        await gql.subscribe("e", """subscription($c: ID!, $m: ID!) {
            editStream(conversationId: $c, messageId: $m, content: "Hello again") {
              __typename ... on ChatChunk { content } ... on ChatComplete { messageId } } }""",
                            {"c": conversation_id, "m": question_id})
        values = await gql.collect("e", "editStream")
    assert {v["__typename"] for v in values[:-1]} == {"ChatChunk"}
    assert values[-1]["__typename"] == "ChatComplete"
    assert "".join(v["content"] for v in values[:-1]) == "From graphql"
    shown = await user.conversation(conversation_id)
    assert [(m["role"], m["content"]) for m in shown["messages"]] == [
        ("user", "Hello again"), ("assistant", "From graphql")]
    assert shown["messages"][1]["id"] == values[-1]["messageId"]
    assert [m["content"] for m in await tree(user, conversation_id)] == [
        "Hi", "Hello, world!", "From ws", "Hello again", "From graphql"]

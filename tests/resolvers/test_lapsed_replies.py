"""Closing a reply whose worker died is one piece of work that a reader cannot cut short."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import REGISTRY

from resolvers import auth, conversations
from resolvers.chat.events import ChatChunk, ChatCitations, ChatError
from resolvers.conversations import ConversationInput, MessageInput
from resolvers.services import Services


def interrupted_count() -> float:
    value = REGISTRY.get_sample_value(
        "chat_interrupted_total", {"model": "m-lapsed", "cause": "worker_lost"})
    return value or 0.0


async def test_the_reader_that_triggers_the_close_does_not_cut_it(services: Services) -> None:
    """The reader's watchdog closes the lapsed reply; the reader then gets the terminal event
    and stops its watchdog at once. Before, that cancelled the closing half-way: the partial
    reply was stored but the close was never counted — and a cancellation one step earlier
    would leave the reply to be closed, and stored, a second time."""
    async with services.db.session() as session:
        pair = await auth.register(session, services.security, username="lapsed",
                                   email="lapsed@example.com", password="password123")
        user = pair.user
        await conversations.create(session, user, data=ConversationInput(
            id="c1", title="t", model="m-lapsed",
            messages=[MessageInput(content="hi", role="user", id="u1")]))
    chat, broker = services.chat, services.broker
    chat.lease_seconds = 0.4  # readers check every 0.1 s
    key = f"{user.id}/r1"
    await broker.reply_start(key, owner_id=user.id, holder="a-worker-that-died",
                             lease_seconds=0.2,
                             meta={"conversation_id": "c1", "model": "m-lapsed",
                                   "request_id": "r1"})
    await broker.reply_append(key, ChatChunk(content="Half", request_id="r1").to_log())

    # The broker answers slowly right after the terminal event: the window in which the
    # reader, already holding that event, stops its watchdog.
    append = broker.reply_append

    async def slow_after_the_end(reply_id: str, event: dict[str, Any], *,
                                 terminal: bool = False) -> int:
        seq = await append(reply_id, event, terminal=terminal)
        if terminal:
            await asyncio.sleep(0.3)
        return seq

    broker.reply_append = slow_after_the_end  # type: ignore[method-assign]
    before = interrupted_count()
    events = [event async for _seq, event in chat.events(user, "r1")]
    assert isinstance(events[-1], ChatError) and events[-1].code == "interrupted"
    await asyncio.sleep(0.5)  # the closing task finishes on its own
    assert interrupted_count() == before + 1
    async with services.db.session() as session:
        stored = await conversations.get(session, user, conversation_id="c1")
    assert [(m.role, m.content, m.status) for m in stored.messages][-1] == (
        "assistant", "Half", "interrupted")
    assert len(stored.messages) == 2  # stored once


async def test_a_reply_closed_for_a_dead_worker_keeps_its_citations(services: Services) -> None:
    """The worker died after the `citations` event and some text: the worker that closes the
    reply stores the partial text with the sources the reply was given, as the dead one
    would have."""
    async with services.db.session() as session:
        pair = await auth.register(session, services.security, username="cited",
                                   email="cited@example.com", password="password123")
        user = pair.user
        await conversations.create(session, user, data=ConversationInput(
            id="c2", title="t", model="m-lapsed",
            messages=[MessageInput(content="what is in the manual?", role="user", id="u2")]))
    chat, broker = services.chat, services.broker
    chat.lease_seconds = 0.4
    key = f"{user.id}/r2"
    sources = [{"file_id": "f1", "filename": "manual.pdf", "snippet": "Press the red button",
                "score": 1.5},
               {"file_id": "f2", "filename": "notes.md", "snippet": "Never the blue one",
                "score": 0.25}]
    await broker.reply_start(key, owner_id=user.id, holder="a-worker-that-died",
                             lease_seconds=0.2,
                             meta={"conversation_id": "c2", "model": "m-lapsed",
                                   "request_id": "r2"})
    await broker.reply_append(key, ChatCitations(sources=sources, request_id="r2").to_log())
    await broker.reply_append(key, ChatChunk(content="Press the red ", request_id="r2").to_log())
    await broker.reply_append(key, ChatChunk(content="button [1]", request_id="r2").to_log())

    events = [event async for _seq, event in chat.events(user, "r2")]
    assert isinstance(events[0], ChatCitations) and events[0].sources == sources
    assert isinstance(events[-1], ChatError) and events[-1].code == "interrupted"
    async with services.db.session() as session:
        stored = await conversations.get(session, user, conversation_id="c2")
    reply = stored.messages[-1]
    assert (reply.role, reply.content, reply.status) == (
        "assistant", "Press the red button [1]", "interrupted")
    assert reply.citations == sources

"""Typing indicators: shared by the /ws face and GraphQL (`sendTyping`, `typing`).

Channels are scoped by the user: `typing:<user_id>:<conversation_id>`. Conversation ids are
chosen by clients and only unique per user, so another user naming the same id subscribes to
*their own* channel and can never hear this user. Each event carries the sending
connection's id so that a connection does not hear itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from resolvers import validation
from resolvers.kit.clock import now_ms

if TYPE_CHECKING:
    from models import User
    from resolvers.kit.broker import Broker, OnMessage, Subscription


def typing_channel(user_id: str, conversation_id: str | None) -> str:
    if conversation_id is None:  # the connections that named no conversation
        return f"typing:{user_id}"
    return f"typing:{user_id}:{conversation_id}"


async def publish_typing(broker: Broker, actor: User, *, conversation_id: str | None,
                         connection_id: str) -> dict[str, Any]:
    """Tell the actor's other connections in the conversation that they are typing; with no
    conversation, the actor's other connections that are in none either (the guide's bare
    `{"type":"typing"}`)."""
    event: dict[str, Any] = {"type": "user_typing", "user_id": actor.id,
                             "timestamp": now_ms(), "connection_id": connection_id}
    if conversation_id is not None:
        event["conversation_id"] = validation.identifier(conversation_id,
                                                         field="conversation_id")
    await broker.publish(typing_channel(actor.id, conversation_id), event)
    return event


def subscribe_typing(broker: Broker, actor: User, *, conversation_id: str | None,
                     on_message: OnMessage | None = None) -> Subscription:
    """The raw subscription (enter it with `async with`); filter with `others()`.
    `conversation_id=None`: typing of the actor's connections that are in no conversation.
    With `on_message`, a listener (see `Subscription`): it gets each event's JSON text and
    must skip its own connection's events itself."""
    if conversation_id is not None:
        validation.identifier(conversation_id, field="conversation_id")
    return broker.subscribe(typing_channel(actor.id, conversation_id), on_message=on_message)


async def others(subscription: Subscription,
                 connection_id: str) -> AsyncIterator[dict[str, Any]]:
    """Typing events of every connection except `connection_id`."""
    async for event in subscription:
        if event.get("connection_id") != connection_id:
            yield event

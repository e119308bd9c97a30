"""Branches: regenerate a reply, edit a question, switch between the alternatives.

Nothing here deletes. Regenerating an assistant message adds a sibling reply (same parent);
editing a user message adds a sibling question with the new content, then a reply to it.
Either way the new messages become the active path; the old ones stay, reachable through
`siblingIds` and `switch()`.

`regenerate_request` and `edit_request` check the request and turn it into the chat request
that does it (history = the path up to the branching point); the faces hand that to
`Chat.start` or `Chat.complete`, exactly as for `POST /api/chat`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel.ext.asyncio.session import AsyncSession

from models import User
from resolvers import conversations, tree, validation
from resolvers.chat.params import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_TEMPERATURE,
    Branch,
    ChatMessageInput,
    ChatParams,
)
from resolvers.kit.clock import now_ms
from resolvers.kit.db import Database
from resolvers.kit.errors import NotFound, ValidationFailed
from resolvers.tree import StoredMessage


class MessageNotFound(NotFound):
    default_message = "Message not found"


@dataclass(slots=True)
class ReplyOptions:
    """The chat options a regenerate or an edit takes (ranges checked by chat)."""

    model: str | None = None
    temperature: float = DEFAULT_TEMPERATURE
    max_tokens: int = DEFAULT_MAX_TOKENS
    request_id: str | None = None


async def _target(db: Database, actor: User, conversation_id: str,
                  message_id: str) -> tuple[StoredMessage, list[StoredMessage]]:
    """The message and the history before it (the path from the first message to its
    parent, whichever branch it is on)."""
    validation.identifier(conversation_id, field="conversation_id")
    validation.identifier(message_id, field="message_id")
    async with db.session() as session:
        stored = await conversations.get(session, actor, conversation_id=conversation_id,
                                         whole_tree=True)
    rows = stored.messages
    nodes = [tree.Node(r.position, r.parent_position, r.id, r.active) for r in rows]
    found = tree.find(nodes, message_id)
    if found is None:
        raise MessageNotFound()
    by_position = {row.position: row for row in rows}
    target = by_position[found.position]
    history = ([] if target.parent_position is None
               else [by_position[p] for p in tree.path_to(nodes, target.parent_position)])
    return target, history


def _params(conversation_id: str, history: list[ChatMessageInput], options: ReplyOptions,
            branch: Branch) -> ChatParams:
    return ChatParams(messages=history, model=options.model, temperature=options.temperature,
                      max_tokens=options.max_tokens, conversation_id=conversation_id,
                      request_id=options.request_id, branch=branch)


async def regenerate_request(db: Database, actor: User, *, conversation_id: str,
                             message_id: str, options: ReplyOptions) -> ChatParams:
    """The chat request for a new reply beside the assistant message `message_id`."""
    target, history = await _target(db, actor, conversation_id, message_id)
    if target.role != "assistant":
        raise ValidationFailed("Only an assistant message can be regenerated; edit a user "
                               "message instead", field="message_id")
    if not history:
        raise ValidationFailed("This reply answers nothing: there is nothing to regenerate",
                               field="message_id")
    messages = [ChatMessageInput(role=m.role, content=m.content) for m in history]
    return _params(conversation_id, messages, options,
                   Branch(parent_id=target.parent_id, store_newest=False))


async def edit_request(db: Database, actor: User, *, conversation_id: str, message_id: str,
                       content: str, options: ReplyOptions) -> ChatParams:
    """The chat request for a new user message beside `message_id` with `content`, and a
    reply to it."""
    target, history = await _target(db, actor, conversation_id, message_id)
    if target.role != "user":
        raise ValidationFailed("Only a user message can be edited; regenerate a reply "
                               "instead", field="message_id")
    messages = [ChatMessageInput(role=m.role, content=m.content) for m in history]
    messages.append(ChatMessageInput(role="user", content=content))
    return _params(conversation_id, messages, options,
                   Branch(parent_id=target.parent_id, store_newest=True))


async def switch(session: AsyncSession, actor: User, *, conversation_id: str,
                 message_id: str) -> conversations.ConversationWithMessages:
    """Show the branch through `message_id`: the active path becomes the path to it, then on
    to its newest leaf (always the newest child)."""
    conversation = await conversations.owned(session, actor, conversation_id)
    nodes = await conversations.structure(session, conversation.pk)
    found = tree.find(nodes, message_id)
    if found is None:
        raise MessageNotFound()
    await conversations.activate(session, conversation.pk,
                                 tree.newest_leaf(nodes, found.position), nodes)
    # The legacy shapes now show other messages: clients that sync by updatedAt see it.
    conversation.updated_at = max(now_ms(), conversation.updated_at + 1)
    session.add(conversation)
    await conversations.written(session, conversation.pk)
    await session.commit()
    return await conversations.get(session, actor, conversation_id=conversation_id)

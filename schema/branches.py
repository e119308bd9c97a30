"""Branch fields: regenerateMessage, editMessage (answer like `chat`), switchBranch, and the
streaming subscriptions regenerateStream and editStream (like `chatStream`).

Thin like every face: parse, call resolvers/branches.py and chat, shape the answer.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry

from resolvers import branches, chat
from resolvers.chat.params import ChatParams
from schema.chat import ChatReply, reply_of
from schema.context import Context
from schema.queries import ctx
from schema.subscriptions import ChatEvent, chat_event
from schema.types import Conversation


@strawberry.input(description="The chat options of a regenerate or an edit.")
class ReplyOptionsInput:
    model: str | None = None
    temperature: float = chat.DEFAULT_TEMPERATURE
    max_tokens: int = chat.DEFAULT_MAX_TOKENS
    request_id: strawberry.ID | None = strawberry.field(
        default=None, description="Your id for this reply: follow it with chatEvents")


def options_of(data: ReplyOptionsInput | None) -> branches.ReplyOptions:
    if data is None:
        return branches.ReplyOptions()
    return branches.ReplyOptions(model=data.model, temperature=data.temperature,
                                 max_tokens=data.max_tokens,
                                 request_id=str(data.request_id) if data.request_id else None)


async def _complete(context: Context, params: ChatParams) -> ChatReply:
    # A chat like `chat`: an API key needs the chat scope, and its budget pays.
    caller = await context.caller("chat")
    return reply_of(await context.services.chat.complete(caller.user, params,
                                                          api_key=caller.key))


@strawberry.type
class BranchMutation:
    @strawberry.mutation(description="A new reply beside an assistant message (its sibling); "
                         "the old one is kept. Answers like `chat`, with messageId.")
    async def regenerate_message(self, info: strawberry.Info, conversation_id: strawberry.ID,
                                 message_id: strawberry.ID,
                                 options: ReplyOptionsInput | None = None) -> ChatReply:
        context = ctx(info)
        params = await branches.regenerate_request(
            context.services.db, await context.actor("chat"),
            conversation_id=str(conversation_id), message_id=str(message_id),
            options=options_of(options))
        return await _complete(context, params)

    @strawberry.mutation(description="A new user message with `content` beside a user message "
                         "(its sibling), then a reply to it; the old branch is kept.")
    async def edit_message(self, info: strawberry.Info, conversation_id: strawberry.ID,
                           message_id: strawberry.ID, content: str,
                           options: ReplyOptionsInput | None = None) -> ChatReply:
        context = ctx(info)
        params = await branches.edit_request(
            context.services.db, await context.actor("chat"),
            conversation_id=str(conversation_id), message_id=str(message_id), content=content,
            options=options_of(options))
        return await _complete(context, params)

    @strawberry.mutation(description="Show the branch through messageId (down to its newest "
                         "leaf): `messages` is now that path.")
    async def switch_branch(self, info: strawberry.Info, conversation_id: strawberry.ID,
                            message_id: strawberry.ID) -> Conversation:
        context = ctx(info)
        async with context.session() as session:
            stored = await branches.switch(session, await context.actor(),
                                           conversation_id=str(conversation_id),
                                           message_id=str(message_id))
        return Conversation.from_model(stored.conversation)


async def _stream(context: Context, params: ChatParams) -> AsyncGenerator[ChatEvent, None]:
    caller = await context.caller("chat")
    actor = caller.user
    service = context.services.chat
    handle = await service.start(actor, params, api_key=caller.key)
    # Unsubscribing stops only this reader: the reply is still generated and kept.
    async for seq, event in service.events(actor, handle.request_id):
        yield chat_event(seq, event)


@strawberry.type
class BranchSubscription:
    @strawberry.subscription(description="regenerateMessage, streamed like chatStream.")
    async def regenerate_stream(
        self, info: strawberry.Info, conversation_id: strawberry.ID, message_id: strawberry.ID,
        options: ReplyOptionsInput | None = None,
    ) -> AsyncGenerator[ChatEvent, None]:
        context = ctx(info)
        params = await branches.regenerate_request(
            context.services.db, await context.actor("chat"),
            conversation_id=str(conversation_id), message_id=str(message_id),
            options=options_of(options))
        async for item in _stream(context, params):
            yield item

    @strawberry.subscription(description="editMessage, streamed like chatStream.")
    async def edit_stream(
        self, info: strawberry.Info, conversation_id: strawberry.ID, message_id: strawberry.ID,
        content: str, options: ReplyOptionsInput | None = None,
    ) -> AsyncGenerator[ChatEvent, None]:
        context = ctx(info)
        params = await branches.edit_request(
            context.services.db, await context.actor("chat"),
            conversation_id=str(conversation_id), message_id=str(message_id), content=content,
            options=options_of(options))
        async for item in _stream(context, params):
            yield item

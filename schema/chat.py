"""Chat fields: models, chat, stopChat (subscriptions live in schema/subscriptions.py)."""

from __future__ import annotations

import strawberry

from resolvers import chat
from resolvers.kit.errors import BadInput
from schema.citations import Citation, citations_of
from schema.queries import ctx
from schema.scalars import Timestamp
from schema.types import Role


@strawberry.type
class Model:
    id: str
    provider: str
    name: str
    is_default: bool


@strawberry.input(description="An image: a data: URL (data:image/png;base64,...) or one of "
                  "your uploaded image files. Set one of the two.")
class ChatImageInput:
    url: str | None = None
    file_id: strawberry.ID | None = None


@strawberry.input
class ChatMessageInput:
    role: Role
    content: str
    id: strawberry.ID | None = None
    timestamp: Timestamp | None = None
    images: list[ChatImageInput] = strawberry.field(
        default_factory=list, description="Images shown with the text (vision models)")


@strawberry.input
class ChatInput:
    messages: list[ChatMessageInput]
    model: str | None = None
    temperature: float = chat.DEFAULT_TEMPERATURE
    max_tokens: int = chat.DEFAULT_MAX_TOKENS
    conversation_id: strawberry.ID | None = strawberry.field(
        default=None,
        description="Keep the user's message and the reply in this conversation (server-side)",
    )
    request_id: strawberry.ID | None = strawberry.field(
        default=None, description="Your id for this reply: used by stopChat and to resume"
    )
    system_prompt: str | None = None
    tools: list[str] | None = strawberry.field(
        default=None, description="Tools the server runs for the model: <server>.<tool> "
        "names (the tools query), or \"*\" for all of them")
    files: list[strawberry.ID] = strawberry.field(
        default_factory=list,
        description="Ids of your files to answer from: their best passages go into the prompt "
                    "and the reply carries their citations")


@strawberry.type
class ChatReply:
    content: str
    tokens: int
    model: str
    request_id: strawberry.ID
    finish_reason: str
    message_id: strawberry.ID | None = strawberry.field(
        default=None, description="The stored reply, when the request named a conversation")
    citations: list[Citation] = strawberry.field(default_factory=list)


def reply_of(result: chat.ChatResult) -> ChatReply:
    return ChatReply(content=result.content, tokens=result.tokens, model=result.model,
                     request_id=strawberry.ID(result.request_id),
                     finish_reason=result.finish_reason,
                     message_id=strawberry.ID(result.message_id) if result.message_id else None,
                     citations=citations_of(result.citations))


def _image(image: ChatImageInput) -> chat.ImageInput:
    if (image.url is None) == (image.file_id is None):
        raise BadInput("An image needs a url or a fileId (one of the two)", field="images")
    return chat.ImageInput(url=image.url,
                           file_id=str(image.file_id) if image.file_id is not None else None)


def chat_params(data: ChatInput) -> chat.ChatParams:
    return chat.ChatParams(
        messages=[chat.ChatMessageInput(role=m.role.value, content=m.content,
                                        id=str(m.id) if m.id is not None else None,
                                        timestamp=m.timestamp,
                                        images=tuple(_image(i) for i in m.images))
                  for m in data.messages],
        model=data.model, temperature=data.temperature, max_tokens=data.max_tokens,
        conversation_id=str(data.conversation_id) if data.conversation_id else None,
        request_id=str(data.request_id) if data.request_id else None,
        system_prompt=data.system_prompt, server_tools=tuple(data.tools or ()),
        files=tuple(str(f) for f in data.files),
    )


@strawberry.type
class ChatQuery:
    @strawberry.field(description="Models chat can use right now.")
    async def models(self, info: strawberry.Info) -> list[Model]:
        context = ctx(info)
        actor = await context.actor("chat", "read")
        chat_service = context.services.chat
        default = await chat_service.default_model_for(actor)
        return [Model(id=m.id, provider=m.provider, name=m.name or m.id,
                      is_default=m.id == default) for m in await chat_service.models_for(actor)]


@strawberry.type
class ChatMutation:
    @strawberry.mutation(description="The whole reply at once: content, tokens, model.")
    async def chat(self, info: strawberry.Info, input: ChatInput) -> ChatReply:
        context = ctx(info)
        caller = await context.caller("chat")
        return reply_of(await context.services.chat.complete(caller.user, chat_params(input),
                                                              api_key=caller.key))

    @strawberry.mutation(description="Stop a reply of yours; what was generated is kept.")
    async def stop_chat(self, info: strawberry.Info, request_id: strawberry.ID) -> bool:
        context = ctx(info)
        return await context.services.chat.stop(await context.actor("chat"), str(request_id))

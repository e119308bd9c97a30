"""REST for branches (CONTRACT-2 §4): regenerate, edit, switch the active branch.

Thin like compat_rest.py, whose shapes and SSE stream it reuses: regenerate and edit answer
exactly like `POST /api/chat` (JSON, or SSE with `stream: true`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from compat_rest import (
    ChatCallerDep,
    ChatOut,
    ConversationOut,
    CredentialsDep,
    ServicesDep,
    SessionDep,
    UserDep,
    chat_json,
    conversation_json,
    event_stream,
)
from resolvers import branches, chat, keys
from resolvers.chat.params import ChatParams
from resolvers.services import Services

router = APIRouter(tags=["branches"])


class ReplyOptionsIn(BaseModel):
    """The chat options of `POST /api/chat` (ranges checked as there)."""

    model_config = ConfigDict(extra="ignore")
    model: str | None = None
    temperature: float = chat.DEFAULT_TEMPERATURE
    max_tokens: int = chat.DEFAULT_MAX_TOKENS
    stream: bool = False
    request_id: str | None = None

    def options(self) -> branches.ReplyOptions:
        return branches.ReplyOptions(model=self.model, temperature=self.temperature,
                                     max_tokens=self.max_tokens, request_id=self.request_id)


class EditIn(ReplyOptionsIn):
    content: str


class ActiveIn(BaseModel):
    message_id: str = Field(max_length=256)


CHAT_LIKE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}},
          "description": "The new reply, as `POST /api/chat` answers (with `message_id`)"},
    404: {"description": "No such conversation or message of yours"},
    422: {"description": "Wrong kind of message, or a chat option out of range"},
}


async def _answer(services: Services, caller: keys.Caller, token: str, params: ChatParams,
                  stream: bool) -> Any:
    # A chat like POST /api/chat: an API key's budget pays, and a revoked credential ends
    # the stream.
    if not stream:
        return chat_json(await services.chat.complete(caller.user, params, api_key=caller.key))
    handle = await services.chat.start(caller.user, params, api_key=caller.key)
    return await event_stream(services, caller, handle.request_id, 0, token)


@router.post("/api/conversations/{conversation_id}/messages/{message_id}/regenerate",
             response_model=ChatOut, responses=CHAT_LIKE)
async def regenerate(conversation_id: str, message_id: str, body: ReplyOptionsIn,
                     services: ServicesDep, caller: ChatCallerDep,
                     credentials: CredentialsDep) -> Any:
    """A new reply beside an assistant message (its sibling); the old reply is kept. The new
    one becomes the active path."""
    assert credentials is not None  # authenticated() refused the request otherwise
    params = await branches.regenerate_request(
        services.db, caller.user, conversation_id=conversation_id, message_id=message_id,
        options=body.options())
    return await _answer(services, caller, credentials.credentials, params, body.stream)


@router.post("/api/conversations/{conversation_id}/messages/{message_id}/edit",
             response_model=ChatOut, responses=CHAT_LIKE)
async def edit(conversation_id: str, message_id: str, body: EditIn, services: ServicesDep,
               caller: ChatCallerDep, credentials: CredentialsDep) -> Any:
    """A new user message with `content` beside a user message (its sibling), then a reply
    to it; the old question and everything after it are kept on their branch."""
    assert credentials is not None  # authenticated() refused the request otherwise
    params = await branches.edit_request(
        services.db, caller.user, conversation_id=conversation_id, message_id=message_id,
        content=body.content, options=body.options())
    return await _answer(services, caller, credentials.credentials, params, body.stream)


@router.put("/api/conversations/{conversation_id}/active", response_model=ConversationOut,
            responses={404: {"description": "No such conversation or message of yours"}})
async def switch_branch(conversation_id: str, body: ActiveIn, session: SessionDep,
                        user: UserDep) -> JSONResponse:
    """Show the branch through `message_id` (down to its newest leaf): the conversation's
    `messages` in every legacy shape is now that path."""
    stored = await branches.switch(session, user, conversation_id=conversation_id,
                                   message_id=body.message_id)
    return JSONResponse(conversation_json(stored.conversation, stored.messages))


def install(app: FastAPI) -> None:
    app.include_router(router)

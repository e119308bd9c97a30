"""REST for conversations people live in (CONTRACT-2 §4): search, PATCH (pin, archive, tags,
rename) and share links. The same face as compat_rest.py (its dependencies, its error
mapping), in a module of its own so that it grows apart from the guide's routes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from compat_rest import ConversationSummaryOut, SessionDep, UserDep, summary_json
from resolvers import organize, search, sharing

router = APIRouter()


class SearchResultOut(BaseModel):
    conversation_id: str
    title: str
    message_id: str | None
    role: str | None
    snippet: str = Field(description="HTML: hits in <mark>…</mark>, everything else escaped")
    timestamp: int


class SearchOut(BaseModel):
    results: list[SearchResultOut]
    next_cursor: str | None


class PatchBody(BaseModel):
    """Only the fields present change; `systemPrompt: null` clears the prompt."""

    model_config = ConfigDict(extra="ignore")
    title: str | None = None
    model: str | None = None
    systemPrompt: str | None = None
    pinned: bool | None = None
    archived: bool | None = None
    tags: list[str] | None = None


class ShareOut(BaseModel):
    token: str
    url: str
    shared_at: int


class SharedMessageOut(BaseModel):
    role: str
    content: str
    timestamp: int


class SharedOut(BaseModel):
    title: str
    messages: list[SharedMessageOut]
    shared_at: int


NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Not found"}}
BAD_QUERY: dict[int | str, dict[str, Any]] = {
    422: {"description": "Nothing to search for, a query over 500 characters, a bad limit "
                         "or cursor"}}


@router.get("/api/search", tags=["search"], response_model=SearchOut, responses=BAD_QUERY)
async def search_conversations(session: SessionDep, user: UserDep, q: str,
                               limit: int = search.LIMIT_DEFAULT,
                               cursor: str | None = None) -> dict[str, Any]:
    """Search your conversation titles and messages. Bare words match words starting with
    them, `"quoted phrases"` whole adjacent words, CJK text (`你好`) its characters in a row;
    every term must match. Titles first, then messages newest first."""
    page = await search.search(session, user, query=q, limit=limit, cursor=cursor)
    return {"results": [{"conversation_id": h.conversation_id, "title": h.title,
                         "message_id": h.message_id, "role": h.role, "snippet": h.snippet,
                         "timestamp": h.timestamp} for h in page.results],
            "next_cursor": page.next_cursor}


def _patch_of(body: PatchBody) -> organize.ConversationPatch:
    changes = organize.ConversationPatch()
    given = body.model_fields_set
    for name, attribute in (("title", "title"), ("model", "model"),
                            ("systemPrompt", "system_prompt"), ("pinned", "pinned"),
                            ("archived", "archived"), ("tags", "tags")):
        if name in given:
            setattr(changes, attribute, getattr(body, name))
    return changes


@router.patch("/api/conversations/{conversation_id}", tags=["conversations"],
              response_model=ConversationSummaryOut,
              responses={**NOT_FOUND, 422: {"description": "A field out of its limits, or null "
                                                           "where a value is needed"}})
async def patch_conversation(conversation_id: str, body: PatchBody, session: SessionDep,
                             user: UserDep) -> JSONResponse:
    """Change `title`, `model`, `systemPrompt`, `pinned`, `archived` or `tags` (the whole
    list) without touching messages; answers the conversation in the summary view."""
    changes = _patch_of(body)
    result = await organize.patch(session, user, conversation_id=conversation_id,
                                  changes=changes)
    return JSONResponse(summary_json(result.conversation, result.tags))


@router.post("/api/conversations/{conversation_id}/share", tags=["share"],
             response_model=ShareOut, responses=NOT_FOUND)
async def share_conversation(conversation_id: str, session: SessionDep,
                             user: UserDep) -> dict[str, Any]:
    """Share a read-only snapshot of the conversation as it is now (sharing again refreshes
    it and keeps the link). The snapshot holds the title and each message's role, content and
    timestamp — no ids, user, email, system prompt or system messages."""
    link = await sharing.share(session, user, conversation_id=conversation_id)
    return {"token": link.token, "url": link.url, "shared_at": link.shared_at}


@router.delete("/api/conversations/{conversation_id}/share", tags=["share"], status_code=204,
               responses={404: {"description": "No such conversation, or it is not shared"}})
async def revoke_share(conversation_id: str, session: SessionDep, user: UserDep) -> Response:
    """Revoke the link: it answers 404 from now on."""
    await sharing.revoke(session, user, conversation_id=conversation_id)
    return Response(status_code=204)


PUBLIC_HEADERS = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex",
                  "Referrer-Policy": "no-referrer"}


@router.get("/api/shared/{token}", tags=["share"], response_model=SharedOut,
            responses=NOT_FOUND)
async def read_shared(token: str, session: SessionDep) -> JSONResponse:
    """A shared conversation; no authentication. Revoked or unknown links answer 404."""
    snapshot = await sharing.shared(session, token=token)
    return JSONResponse({"title": snapshot.title, "shared_at": snapshot.shared_at,
                         "messages": [{"role": m.role, "content": m.content,
                                       "timestamp": m.timestamp} for m in snapshot.messages]},
                        headers=PUBLIC_HEADERS)


def install(app: FastAPI) -> None:
    app.include_router(router)

"""REST for export and import (CONTRACT-2 §4). Thin: read the body, call resolvers/transfer.py,
shape the answer. Exports are downloads (`Content-Disposition: attachment`)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel

from compat_rest import ServicesDep, SessionDep, UserDep
from resolvers import transfer
from resolvers.kit.errors import ValidationFailed
from resolvers.kit.settings import Settings

router = APIRouter(tags=["export / import"])

IMPORT_PATH = "/api/import"


def import_limit(settings: Settings) -> int:
    """MAX_IMPORT_MB in bytes: the body limit of POST /api/import (server.py)."""
    return int(settings.max_import_mb * 1024 * 1024)


class SkippedOut(BaseModel):
    index: int
    reason: str


class ImportOut(BaseModel):
    imported: int
    conversation_ids: list[str]
    skipped: list[SkippedOut]


def download(export: transfer.Export) -> Response:
    return Response(export.body, media_type=export.media_type, headers={
        "Content-Disposition": f'attachment; filename="{export.filename}"'})


@router.get("/api/conversations/{conversation_id}/export",
            responses={200: {"content": {"application/json": {}, "text/markdown": {}}},
                       404: {"description": "Not found"}})
async def export_conversation(conversation_id: str, session: SessionDep, user: UserDep,
                              format: Literal["json", "markdown"] = "json") -> Response:
    """Download one conversation: `json` (every branch, importable) or `markdown` (the
    active path)."""
    return download(await transfer.export_one(session, user, conversation_id=conversation_id,
                                              fmt=format))


@router.get("/api/export", responses={200: {"content": {"application/json": {}}}})
async def export_everything(session: SessionDep, user: UserDep) -> Response:
    """Download all of your conversations (every branch) as one JSON file."""
    return download(await transfer.export_all(session, user))


@router.post(IMPORT_PATH, response_model=ImportOut, responses={
    413: {"description": "Larger than MAX_IMPORT_MB"},
    422: {"description": "Not a known format (nothing imported)"}})
async def import_conversations(request: Request, services: ServicesDep,
                               user: UserDep) -> dict[str, Any]:
    """Import our export or ChatGPT's `conversations.json`: a JSON body, or a multipart
    form with the file as `file`. Each conversation is imported whole or skipped with its
    reason; ids you already use get new ones."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        async with request.form(max_files=1, max_fields=10) as form:
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise ValidationFailed("The form needs the export as a `file` field",
                                       field="file")
            raw = await upload.read()
    else:
        raw = await request.body()
    result = await transfer.import_document(
        services.db, user, data=transfer.decode(raw),
        max_conversations=services.settings.import_max_conversations)
    return {"imported": result.imported, "conversation_ids": result.conversation_ids,
            "skipped": [{"index": s.index, "reason": s.reason} for s in result.skipped]}


def install(app: FastAPI) -> None:
    app.include_router(router)

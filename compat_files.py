"""REST face of files (CONTRACT-2 §7): /api/files.

Thin like compat_rest.py, whose dependencies it reuses: parse, call resolvers/files, shape.
The upload is read from the request as it arrives (python-multipart's streaming parser): the
file's bytes go to resolvers/files.Files.upload piece by piece, which writes them to disk and
refuses the file (413) as soon as it passes MAX_UPLOAD_MB — it is never whole in memory, and
Starlette's form parser (which spools the whole body before the handler runs) is not used.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel
from python_multipart.multipart import MultipartParser, parse_options_header

from compat_rest import ServicesDep, SessionDep, UserDep
from models import StoredFile
from resolvers import files
from resolvers.kit.errors import BadInput
from resolvers.kit.settings import Settings
from resolvers.services import Services

FILES_PATH = "/api/files"
MULTIPART_OVERHEAD = 64 * 1024  # headers and other fields around the file, at most

router = APIRouter()


def upload_limit(settings: Settings) -> int:
    """The body limit of POST /api/files (server.py): MAX_UPLOAD_MB and the form around it."""
    return int(settings.max_upload_mb * 1024 * 1024) + MULTIPART_OVERHEAD


class FileOut(BaseModel):
    id: str
    filename: str
    content_type: str
    size: int
    status: str
    error: str | None = None
    chunks: int
    created_at: int


def file_json(row: StoredFile) -> dict[str, Any]:
    return {"id": row.id, "filename": row.filename, "content_type": row.content_type,
            "size": row.size, "status": row.status, "error": row.error, "chunks": row.chunks,
            "created_at": row.created_at}


class MultipartFile:
    """The part named `file` of a multipart/form-data request, read as it streams in."""

    def __init__(self, request: Request) -> None:
        content_type, options = parse_options_header(request.headers.get("content-type", ""))
        boundary = options.get(b"boundary")
        if content_type != b"multipart/form-data" or not boundary:
            raise BadInput("Send the file as multipart/form-data in a field named `file`",
                           field="file")
        self._stream = request.stream()
        self._pending: list[bytes] = []
        self._header_name = b""
        self._headers: dict[bytes, bytes] = {}
        self._in_file = False
        self._file_done = False
        self._ended = False
        self.filename: str | None = None
        self.found = False
        self._parser = MultipartParser(boundary, {
            "on_part_begin": self._part_begin, "on_header_field": self._header_field,
            "on_header_value": self._header_value, "on_headers_finished": self._headers_done,
            "on_part_data": self._part_data, "on_part_end": self._part_end,
        })

    def _part_begin(self) -> None:
        self._headers, self._header_name = {}, b""

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name = data[start:end].lower()

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._headers[self._header_name] = self._headers.get(self._header_name, b"") \
            + data[start:end]

    def _headers_done(self) -> None:
        _disposition, options = parse_options_header(
            self._headers.get(b"content-disposition", b""))
        if options.get(b"name") == b"file" and not self.found:
            self.found = self._in_file = True
            raw = options.get(b"filename")
            self.filename = raw.decode("utf-8", "replace") if raw else None

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self._pending.append(data[start:end])

    def _part_end(self) -> None:
        if self._in_file:
            self._in_file, self._file_done = False, True

    async def _feed(self) -> bool:
        try:
            piece = await anext(self._stream)
        except StopAsyncIteration:
            self._ended = True
            return False
        if piece:
            self._parser.write(piece)
        return True

    async def open(self) -> None:
        """Read until the file part's headers (its name is known then)."""
        while not self.found and await self._feed():
            pass
        if not self.found:
            raise BadInput("No file: send it in a multipart field named `file`", field="file")

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            if self._pending:
                pending, self._pending = self._pending, []
                for piece in pending:
                    yield piece
            if self._file_done:
                return
            if not await self._feed():
                raise BadInput("The upload ended before the file did", field="file")


def _files(services: Services) -> files.Files:
    assert services.files is not None  # built by assembly.py
    return services.files


@router.post(FILES_PATH, tags=["files"], status_code=201, response_model=FileOut, responses={
    413: {"description": "Larger than MAX_UPLOAD_MB (refused while it streams)"},
    415: {"description": "Not a supported type (sniffed from the bytes)"}})
async def upload_file(request: Request, services: ServicesDep, user: UserDep) -> dict[str, Any]:
    """Upload a file (multipart field `file`): text, Markdown, HTML, PDF, DOCX, CSV, JSON,
    source code or an image. Its text is extracted in the background: `status` goes from
    `processing` to `ready`, or to `error` with the reason in `error`."""
    form = MultipartFile(request)
    await form.open()
    row = await _files(services).upload(user, filename=form.filename, data=form.chunks())
    return file_json(row)


@router.get(FILES_PATH, tags=["files"], response_model=list[FileOut])
async def list_files(session: SessionDep, user: UserDep) -> list[dict[str, Any]]:
    """Your files, newest first."""
    return [file_json(row) for row in await files.listing(session, user)]


@router.get(FILES_PATH + "/{file_id}", tags=["files"], response_model=FileOut)
async def get_file(file_id: str, session: SessionDep, user: UserDep) -> dict[str, Any]:
    return file_json(await files.get(session, user, file_id=file_id))


@router.get(FILES_PATH + "/{file_id}/content", tags=["files"],
            responses={200: {"content": {"application/octet-stream": {}}}})
async def download_file(file_id: str, session: SessionDep, user: UserDep,
                        services: ServicesDep) -> Response:
    """The file as uploaded, with its sniffed content type (as an attachment: a browser never
    renders an uploaded HTML file on our origin)."""
    row = await files.get(session, user, file_id=file_id)
    return FileResponse(_files(services).path_of(row), media_type=row.content_type,
                        filename=row.filename, content_disposition_type="attachment",
                        headers={"X-Content-Type-Options": "nosniff"})


@router.delete(FILES_PATH + "/{file_id}", tags=["files"], status_code=204)
async def delete_file(file_id: str, session: SessionDep, user: UserDep,
                      services: ServicesDep) -> Response:
    """Delete the file, its passages and their index entries."""
    await _files(services).remove(session, user, file_id=file_id)
    return Response(status_code=204)


def install(app: FastAPI) -> None:
    app.include_router(router)

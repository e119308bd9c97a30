"""GraphQL fields for files (CONTRACT-2 §7), over resolvers/files — the same operations and
the same owner check as /api/files. Uploads follow the GraphQL multipart request spec
(`uploadFile(file: Upload!)`); the download is REST's /api/files/{id}/content."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import cast

import strawberry
from starlette.datastructures import UploadFile
from strawberry.file_uploads import Upload

from models import StoredFile
from resolvers import files
from schema.context import Context
from schema.scalars import Timestamp

READ_BYTES = 64 * 1024


def ctx(info: strawberry.Info) -> Context:
    context: Context = info.context
    return context


def _service(context: Context) -> files.Files:
    assert context.services.files is not None  # built by assembly.py
    return context.services.files


@strawberry.type(name="File", description="A file you uploaded; `status` is processing, "
                 "ready or error (then `error` says why).")
class FileType:
    id: strawberry.ID
    filename: str
    content_type: str
    size: int
    status: str
    error: str | None
    chunks: int = strawberry.field(description="Passages indexed for retrieval")
    created_at: Timestamp

    @classmethod
    def from_model(cls, row: StoredFile) -> FileType:
        return cls(id=strawberry.ID(row.id), filename=row.filename,
                   content_type=row.content_type, size=row.size, status=row.status,
                   error=row.error, chunks=row.chunks, created_at=Timestamp(row.created_at))


async def _pieces(upload: UploadFile) -> AsyncIterator[bytes]:
    while piece := await upload.read(READ_BYTES):
        yield piece


@strawberry.type
class FilesQuery:
    @strawberry.field(description="Your files, newest first.")
    async def files(self, info: strawberry.Info) -> list[FileType]:
        context = ctx(info)
        actor = await context.actor("read")
        async with context.session() as session:
            return [FileType.from_model(r) for r in await files.listing(session, actor)]

    @strawberry.field(description="One of your files (null: unknown or not yours).")
    async def file(self, info: strawberry.Info, id: strawberry.ID) -> FileType | None:
        context = ctx(info)
        actor = await context.actor("read")
        async with context.session() as session:
            row = await files.find(session, actor, file_id=str(id))
        return FileType.from_model(row) if row is not None else None


@strawberry.type
class FilesMutation:
    @strawberry.mutation(description="Upload a file (GraphQL multipart request spec). Its text "
                         "is extracted in the background: poll `file(id)` for `ready`.")
    async def upload_file(self, info: strawberry.Info, file: Upload) -> FileType:
        context = ctx(info)
        upload = cast(UploadFile, file)  # what Strawberry's FastAPI integration hands over
        try:
            actor = await context.actor("write")
            row = await _service(context).upload(actor, filename=upload.filename,
                                                 data=_pieces(upload))
        finally:
            await upload.close()  # Strawberry leaves the form's spooled file open
        return FileType.from_model(row)

    @strawberry.mutation(description="Delete one of your files, its passages and their index.")
    async def delete_file(self, info: strawberry.Info, id: strawberry.ID) -> bool:
        context = ctx(info)
        actor = await context.actor("write")
        async with context.session() as session:
            await _service(context).remove(session, actor, file_id=str(id))
        return True

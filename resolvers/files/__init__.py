"""Files (CONTRACT-2 §7): uploads, their text, and the one owner check every face uses.

    upload      stream the bytes to DATA_DIR/files/<id> (the size limit counted while
                reading; never whole in memory), sniff the type, store the row, and start
                extraction in the background
    find/get    the caller's file, or None / NotFound — another user's file is a missing one
    listing     the caller's files, newest first
    remove      the row, its chunks (and their index rows and vectors) and the bytes on disk

Extraction is a task of the server, not of the request: a client that hangs up does not stop
it, and files a crashed process left in `processing` are picked up again at start
(`Files.resume`). Status: processing → ready | error, where `error` is a sentence for the user.
With EMBEDDING_MODEL set, the passages' vectors are made in the same task before the file is
`ready` (resolvers/files/vectors.py); when the embeddings service fails the file is `ready`
all the same, searched by full-text until its vectors are filled in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import delete
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import FileChunk, StoredFile, User
from resolvers.files import extract
from resolvers.files.vectors import Vectors
from resolvers.kit import metrics, textsearch
from resolvers.kit.clock import now_ms
from resolvers.kit.db import Database
from resolvers.kit.errors import AppError, BadInput, NotFound, PayloadTooLarge

log = logging.getLogger("chat_studio.files")

PROCESSING, READY, ERROR = "processing", "ready", "error"
FILENAME_MAX = 255
LIST_MAX = 500
SWEEP_AGE_SECONDS = 3600.0  # bytes nobody owns are removed at start once this old


class UnsupportedType(AppError):
    code = "BAD_USER_INPUT"
    http_status = 415


def _clean_name(filename: str | None) -> str:
    name = os.path.basename((filename or "").replace("\\", "/")).strip()
    name = "".join(ch for ch in name if ch.isprintable())
    return name[:FILENAME_MAX] or "upload"


async def find(session: AsyncSession, actor: User, *, file_id: str) -> StoredFile | None:
    """The one owner check: the caller's file, or None (unknown, or another user's)."""
    row = await session.get(StoredFile, file_id)
    if row is None or row.user_id != actor.id:
        return None
    return row


async def get(session: AsyncSession, actor: User, *, file_id: str) -> StoredFile:
    row = await find(session, actor, file_id=file_id)
    if row is None:
        raise NotFound("File not found")
    return row


async def listing(session: AsyncSession, actor: User) -> list[StoredFile]:
    rows = await session.exec(select(StoredFile).where(StoredFile.user_id == actor.id)
                              .order_by(col(StoredFile.created_at).desc()).limit(LIST_MAX))
    return list(rows.all())


async def owned(session: AsyncSession, actor: User, file_ids: list[str]) -> list[StoredFile]:
    """Every file of `file_ids`, all the caller's — NotFound naming none of the others
    (a chat request's `files`)."""
    rows = []
    for file_id in dict.fromkeys(file_ids):
        rows.append(await get(session, actor, file_id=file_id))
    return rows


@dataclass
class Files:
    """Uploads and extraction of one process (built by assembly.py)."""

    db: Database
    directory: Path
    max_bytes: int
    vectors: Vectors | None = None  # EMBEDDING_MODEL set (and a store for them: `available`)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def path_of(self, row: StoredFile) -> Path:
        return self.directory / row.id

    async def upload(self, actor: User, *, filename: str | None,
                     data: AsyncIterator[bytes],
                     kinds: tuple[str, ...] | None = None) -> StoredFile:
        """Store a file the caller sends; 413 as soon as it passes the limit, 415 when it is
        not a type we read (or not one of `kinds`). Returns the row (`processing`, or `ready`
        for an image)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        file_id = str(uuid.uuid4())
        path = self.directory / file_id
        partial = path.with_suffix(".part")
        size = 0
        head = b""
        try:
            with partial.open("wb") as out:
                async for piece in data:
                    size += len(piece)
                    if size > self.max_bytes:
                        metrics.FILE_UPLOADS.labels(outcome="too_large").inc()  # metrics
                        raise PayloadTooLarge(
                            f"The file is larger than the limit of {self.max_bytes} bytes")
                    if len(head) < extract.SNIFF_BYTES:
                        head += piece[:extract.SNIFF_BYTES - len(head)]
                    await asyncio.to_thread(out.write, piece)
            name = _clean_name(filename or ("image" if kinds == ("image",) else None))
            sniffed = extract.sniff(head, name, partial)
            if sniffed is None or size == 0:
                metrics.FILE_UPLOADS.labels(outcome="unsupported").inc()  # metrics
                raise UnsupportedType(
                    "This file type is not supported: text, Markdown, HTML, PDF, DOCX, CSV, "
                    "JSON, source code and PNG/JPEG/GIF/WEBP images are" if size else
                    "The file is empty")
            if kinds is not None and sniffed[0] not in kinds:
                metrics.FILE_UPLOADS.labels(outcome="unsupported").inc()  # metrics
                raise UnsupportedType(f"Expected {' or '.join(kinds)}: PNG, JPEG, GIF or WEBP"
                                      if kinds == ("image",) else f"Expected {kinds}")
            partial.rename(path)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        kind, content_type = sniffed
        row = StoredFile(id=file_id, user_id=actor.id, filename=name, kind=kind,
                         content_type=content_type, size=size,
                         status=READY if kind == "image" else PROCESSING,
                         created_at=now_ms())
        try:
            async with self.db.session() as session:
                session.add(row)
                await session.commit()
                await session.refresh(row)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        metrics.FILE_UPLOADS.labels(outcome="stored").inc()  # metrics
        if row.status == PROCESSING:
            self._start(row.id)
        return row

    async def remove(self, session: AsyncSession, actor: User, *, file_id: str) -> None:
        row = await get(session, actor, file_id=file_id)
        # Their vectors go with the passages (foreign key ON DELETE CASCADE, alembic 0017).
        await session.exec(delete(FileChunk).where(col(FileChunk.file_id) == row.id))
        await session.delete(row)
        await session.commit()
        self.path_of(row).unlink(missing_ok=True)

    # ---------------------------------------------------------------- extraction

    def _start(self, file_id: str) -> None:
        task = asyncio.create_task(self._process(file_id), name=f"extract {file_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def resume(self) -> int:
        """Pick up files a previous process left in `processing`."""
        async with self.db.session() as session:
            rows = await session.exec(select(StoredFile.id).where(
                StoredFile.status == PROCESSING))
            ids = list(rows.all())
        for file_id in ids:
            self._start(file_id)
        return len(ids)

    async def sweep(self, *, older_than: float = SWEEP_AGE_SECONDS) -> int:
        """Remove bytes on disk that no row owns any more: the files of deleted accounts (their
        rows go with the account, by the foreign key) and uploads cut off mid-way (`.part`).
        Only what is older than `older_than` seconds: another worker may be between writing
        an upload and storing its row. Run at start; returns how many were removed."""
        if not self.directory.is_dir():
            return 0
        async with self.db.session() as session:
            known = set((await session.exec(select(StoredFile.id))).all())
        cutoff = time.time() - older_than
        removed = 0
        for path in self.directory.iterdir():
            if path.is_file() and path.name not in known and path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    async def wait_idle(self) -> None:
        """Until every extraction under way has ended (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    async def _process(self, file_id: str) -> None:
        async with self.db.session() as session:
            row = await session.get(StoredFile, file_id)
            if row is None or row.status != PROCESSING:
                return
            kind, user_id = row.kind, row.user_id
        path = self.directory / file_id
        error: str | None = None
        pieces: list[str] = []
        try:
            text = await asyncio.to_thread(extract.text_of, kind, path)
            pieces = extract.chunks_of(text)
        except extract.Unreadable as exc:
            error = str(exc)
        except FileNotFoundError:
            error = "The file's contents are missing on the server: upload it again"
        except Exception:
            log.exception("extracting %s failed", file_id)
            error = "The file could not be read"
        embedded = None
        if error is None and self.vectors is not None:
            embedded = await self.vectors.of_passages(file_id, pieces)
        async with self.db.session() as session:
            row = await session.get(StoredFile, file_id)
            if row is None:  # deleted meanwhile
                return
            if error is None:
                chunks = [FileChunk(file_id=file_id, user_id=user_id, ordinal=i, text=piece,
                                    search_text=textsearch.index_text(piece) or "")
                          for i, piece in enumerate(pieces)]
                session.add_all(chunks)
                if embedded is not None and self.vectors is not None:
                    await session.flush()  # the passages' keys, which their vectors name
                    await self.vectors.store(session, [(c.pk, v) for c, v in zip(
                        chunks, embedded, strict=True) if c.pk is not None])
                row.status, row.chunks = READY, len(pieces)
            else:
                metrics.FILE_EXTRACTION_FAILURES.labels(kind=kind).inc()  # metrics
                row.status, row.error = ERROR, error
            session.add(row)
            await session.commit()


def require_ready(rows: list[StoredFile]) -> None:
    """A chat request may only use files whose text is ready."""
    for row in rows:
        if row.status == PROCESSING:
            raise BadInput(f"The file {row.filename!r} is still being processed: "
                           "try again in a moment", field="files")
        if row.status == ERROR:
            raise BadInput(f"The file {row.filename!r} could not be read: {row.error}",
                           field="files")
        if row.kind == "image":
            raise BadInput(f"The file {row.filename!r} is an image: send it as an image "
                           "part of a message", field="files")

"""File operations called directly (no transport), on SQLite and PostgreSQL: extraction of
every kind, the owner check, retrieval by the database's full-text index, deletion."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlmodel import func, select

from models import FileChunk, StoredFile, User
from resolvers import files
from resolvers.files import retrieval
from resolvers.kit.errors import NotFound, PayloadTooLarge
from resolvers.services import Services
from tests.fakes import documents


async def _user(services: Services) -> User:
    name = f"u{uuid.uuid4().hex[:8]}"
    user = User(id=str(uuid.uuid4()), username=name, username_key=name,
                email=f"{name}@example.com", password_hash="x", created_at=datetime.now(UTC))
    async with services.db.session() as session:
        session.add(user)
        await session.commit()
        await session.refresh(user)
    return user


async def _pieces(data: bytes, size: int = 4096) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


async def _upload(services: Services, user: User, name: str, data: bytes) -> StoredFile:
    assert services.files is not None
    row = await services.files.upload(user, filename=name, data=_pieces(data))
    await services.files.wait_idle()
    async with services.db.session() as session:
        stored = await session.get(StoredFile, row.id)
        assert stored is not None
        return stored


async def _search(services: Services, user: User, ids: list[str],
                  question: str) -> list[retrieval.Passage]:
    async with services.db.session() as session:
        return await retrieval.search(session, user, file_ids=ids, question=question)


async def test_every_kind_is_read_and_found(services: Services) -> None:
    user = await _user(services)
    samples = {
        "guide.md": b"# Llamas\n\nLlamas hum when they are **content**.\n",
        "notes.txt": b"Ostriches sprint at seventy kilometres an hour.\n",
        "page.html": b"<html><head><style>.walrus{}</style><script>var walrus=1;</script>"
                     b"</head><body><p>Narwhals have one long tusk.</p></body></html>",
        "report.pdf": documents.pdf_with_text(["Quarterly revenue grew by eleven percent",
                                               "thanks to the platypus product line."]),
        "memo.docx": documents.docx_with(["The capybara project ships in March."]),
        "table.csv": b"animal,legs\nflamingo,2\n",
        "data.json": b'{"bird": "toucan", "beak": "large"}',
        "main.py": b"def pangolin_scales():\n    return 'keratin'\n",
        "中文.txt": "我们的熊猫喜欢吃竹子。".encode(),
    }
    rows = {name: await _upload(services, user, name, data) for name, data in samples.items()}
    assert {n: r.status for n, r in rows.items()} == {n: "ready" for n in samples}
    assert rows["report.pdf"].content_type == "application/pdf"
    assert rows["memo.docx"].kind == "docx"
    assert rows["page.html"].kind == "html" and rows["main.py"].kind == "code"
    ids = [r.id for r in rows.values()]
    questions = [("Why do llamas hum?", "guide.md"), ("How fast is an ostrich", "notes.txt"),
                 ("narwhals tusk", "page.html"), ("platypus revenue", "report.pdf"),
                 ("When does capybara ship?", "memo.docx"), ("flamingo legs", "table.csv"),
                 ("toucan", "data.json"), ("pangolin_scales", "main.py"),
                 ("熊猫吃什么", "中文.txt")]
    for question, name in questions:
        found = await _search(services, user, ids, question)
        assert found and found[0].filename == name, (question, found)
    # The HTML's script and style were dropped, not indexed.
    assert await _search(services, user, ids, "walrus") == []


async def test_unreadable_files_say_why(services: Services) -> None:
    user = await _user(services)
    scanned = await _upload(services, user, "scan.pdf", documents.scanned_pdf())
    assert scanned.status == "error"
    assert scanned.error is not None and "no text layer" in scanned.error
    broken = await _upload(services, user, "data.json", b'{"a": ')
    assert broken.status == "error" and "not valid JSON" in (broken.error or "")
    image = await _upload(services, user, "photo.txt", documents.png())  # the name lies
    assert (image.kind, image.content_type, image.status) == ("image", "image/png", "ready")
    assert services.files is not None
    with pytest.raises(files.UnsupportedType):
        await services.files.upload(user, filename="x.bin", data=_pieces(b"\x00\x01\x02" * 10))


async def test_the_size_limit_holds_while_reading(services: Services) -> None:
    user = await _user(services)
    assert services.files is not None
    services.files.max_bytes = 10_000
    read = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal read
        while True:
            read += 4096
            yield b"a" * 4096

    with pytest.raises(PayloadTooLarge):
        await services.files.upload(user, filename="big.txt", data=endless())
    assert read <= 16_384  # it stopped reading at once
    assert list(services.files.directory.iterdir()) == []  # nothing left on disk
    async with services.db.session() as session:
        assert (await session.exec(select(func.count()).select_from(StoredFile))).one() == 0


async def test_only_the_owner_reads_or_retrieves_and_delete_removes_everything(
        services: Services) -> None:
    alice, mallory = await _user(services), await _user(services)
    row = await _upload(services, alice, "secret.md", b"The vault code is heron seven.")
    assert services.files is not None
    async with services.db.session() as session:
        assert await files.find(session, mallory, file_id=row.id) is None
        with pytest.raises(NotFound):
            await files.owned(session, mallory, [row.id])
        with pytest.raises(NotFound):
            await services.files.remove(session, mallory, file_id=row.id)
    # Even when the id reaches retrieval, another user's passages are not read.
    assert await _search(services, mallory, [row.id], "vault code heron") == []
    assert await _search(services, alice, [row.id], "vault code heron")
    async with services.db.session() as session:
        await services.files.remove(session, alice, file_id=row.id)
    async with services.db.session() as session:
        assert (await session.exec(select(func.count()).select_from(FileChunk))).one() == 0
        if session.bind is not None and session.bind.dialect.name == "sqlite":
            left = await session.exec(text("SELECT count(*) FROM file_chunk_search"))  # type: ignore[call-overload]
            assert left.one()[0] == 0
    assert not services.files.path_of(row).exists()
    assert await _search(services, alice, [row.id], "vault code heron") == []


async def test_bytes_nobody_owns_are_swept_at_start(services: Services) -> None:
    """A deleted account's rows go with it (foreign key); its bytes are removed at the next
    start, and an upload cut off mid-way too — but nothing another worker may be writing."""
    user = await _user(services)
    row = await _upload(services, user, "mine.md", b"kept")
    gone = await _upload(services, user, "gone.md", b"goes")
    assert services.files is not None
    async with services.db.session() as session:
        stored = await session.get(StoredFile, gone.id)
        await session.delete(stored)
        await session.commit()
    leftover = services.files.directory / "cut-off.part"
    leftover.write_bytes(b"half")
    fresh = services.files.directory / "being-written.part"
    fresh.write_bytes(b"now")
    old = 10_000
    for path in (services.files.path_of(gone), leftover):
        os.utime(path, (time.time() - old, time.time() - old))
    os.utime(services.files.path_of(row), (time.time() - old, time.time() - old))
    assert await services.files.sweep() == 2
    assert services.files.path_of(row).exists() and fresh.exists()
    assert not services.files.path_of(gone).exists() and not leftover.exists()

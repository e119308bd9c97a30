"""Export and import fields, over resolvers/transfer.py like REST's.

GraphQL carries the document as a string (`importConversations(document:)`), so it is bound
by MAX_BODY_BYTES; larger files go to REST's `POST /api/import` (MAX_IMPORT_MB).
"""

from __future__ import annotations

from enum import Enum

import strawberry

from resolvers import transfer
from schema.queries import ctx


@strawberry.enum
class ExportFormat(Enum):
    JSON = "json"
    MARKDOWN = "markdown"


@strawberry.type(description="A file to save: REST's download, as a string.")
class ExportFile:
    filename: str
    media_type: str
    content: str

    @classmethod
    def from_export(cls, export: transfer.Export) -> ExportFile:
        return cls(filename=export.filename, media_type=export.media_type, content=export.body)


@strawberry.type
class ImportSkipped:
    index: int
    reason: str


@strawberry.type
class ImportResult:
    imported: int
    conversation_ids: list[strawberry.ID]
    skipped: list[ImportSkipped]


@strawberry.type
class TransferQuery:
    @strawberry.field(description="One conversation as a file: JSON (every branch, importable) "
                      "or Markdown (the active path).")
    async def export_conversation(self, info: strawberry.Info, id: strawberry.ID,
                                  format: ExportFormat = ExportFormat.JSON) -> ExportFile:
        context = ctx(info)
        async with context.session() as session:
            export = await transfer.export_one(session, await context.actor(),
                                               conversation_id=str(id), fmt=format.value)
        return ExportFile.from_export(export)

    @strawberry.field(description="All of your conversations (every branch) as one JSON file.")
    async def export_all(self, info: strawberry.Info) -> ExportFile:
        context = ctx(info)
        async with context.session() as session:
            export = await transfer.export_all(session, await context.actor())
        return ExportFile.from_export(export)


@strawberry.type
class TransferMutation:
    @strawberry.mutation(description="Import our export or ChatGPT's conversations.json (the "
                         "file's text). Each conversation is imported whole or skipped with "
                         "its reason; a document of no known format: BAD_USER_INPUT.")
    async def import_conversations(self, info: strawberry.Info, document: str) -> ImportResult:
        context = ctx(info)
        result = await transfer.import_document(
            context.services.db, await context.actor(),
            data=transfer.decode(document.encode()),
            max_conversations=context.services.settings.import_max_conversations)
        return ImportResult(
            imported=result.imported,
            conversation_ids=[strawberry.ID(i) for i in result.conversation_ids],
            skipped=[ImportSkipped(index=s.index, reason=s.reason) for s in result.skipped])

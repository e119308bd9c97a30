"""What a file is (sniffed from its first bytes, never the client's word) and its text.

Kinds: text, markdown, html, pdf, docx, csv, json, code — and image (stored, never indexed).
Sniffing is an allowlist: PDF and DOCX by their signatures, PNG/JPEG/GIF/WEBP by theirs, and
anything else only if it decodes as UTF-8 text (the file name's extension then picks among the
text kinds). Everything else is refused at upload.

`text_of(kind, path)` runs in a worker thread (resolvers/files/__init__.py); it raises
`Unreadable` with a sentence a user understands.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from html.parser import HTMLParser
from pathlib import Path, PurePath

IMAGE_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
MARKDOWN = {".md", ".markdown", ".mdx"}
HTML = {".html", ".htm", ".xhtml"}
CODE = {".py", ".js", ".ts", ".tsx", ".jsx", ".java", ".c", ".h", ".cpp", ".hpp", ".cc", ".cs",
        ".go", ".rs", ".rb", ".php", ".swift", ".kt", ".scala", ".sh", ".sql", ".yaml", ".yml",
        ".toml", ".ini", ".css", ".scss", ".lua", ".pl", ".r", ".m", ".dart", ".vue", ".xml"}
TEXT_TYPES = {"text": "text/plain", "markdown": "text/markdown", "html": "text/html",
              "csv": "text/csv", "json": "application/json", "code": "text/plain"}
DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
SNIFF_BYTES = 8192


class Unreadable(ValueError):
    """The file cannot be read as the kind it is; the message is shown to the user."""


def sniff(head: bytes, filename: str, path: Path | None = None) -> tuple[str, str] | None:
    """(kind, content type) of a file from its first bytes (and, for a ZIP, its member
    names); None: not a type we accept."""
    if head.startswith(b"%PDF-"):
        return "pdf", "application/pdf"
    for signature, content_type in IMAGE_SIGNATURES:
        if head.startswith(signature):
            return "image", content_type
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image", "image/webp"
    if head.startswith(b"PK\x03\x04"):
        if path is not None and zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                if "word/document.xml" in archive.namelist():
                    return "docx", DOCX_TYPE
        return None
    if b"\x00" in head:
        return None
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end of the sniffed bytes is still text.
        if exc.start < len(head) - 4:
            return None
    suffix = PurePath(filename).suffix.lower()
    kind = ("markdown" if suffix in MARKDOWN else "html" if suffix in HTML
            else "csv" if suffix == ".csv" else "json" if suffix == ".json"
            else "code" if suffix in CODE else "text")
    if kind == "text" and head.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html")):
        kind = "html"
    return kind, TEXT_TYPES[kind]


class _HTMLText(HTMLParser):
    """The visible text of an HTML document: script, style and template bodies are dropped."""

    SKIP = frozenset({"script", "style", "template", "noscript", "head"})
    BLOCK = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section",
             "article", "pre", "blockquote", "table", "ul", "ol", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self._skipping += 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def _read_text(path: Path) -> str:
    return path.read_bytes().decode("utf-8", errors="replace")


def _pdf(path: Path) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        if reader.is_encrypted:
            raise Unreadable("This PDF is password-protected: upload an unprotected copy")
        pages = [page.extract_text() or "" for page in reader.pages]
    except PdfReadError as exc:
        raise Unreadable(f"This PDF could not be read ({exc})") from exc
    text = "\n\n".join(pages)
    if not text.strip():
        raise Unreadable("This PDF has no text layer (a scanned document?): "
                         "run it through OCR first, then upload the result")
    return text


def _docx(path: Path) -> str:
    import docx

    try:
        document = docx.Document(str(path))
    except Exception as exc:  # python-docx raises several kinds for a damaged file
        raise Unreadable("This Word document could not be read (damaged or not DOCX)") from exc
    parts = [p.text for p in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            parts.append(" | ".join(cell.text for cell in row.cells))
    return "\n".join(parts)


def _csv(path: Path) -> str:
    rows = csv.reader(io.StringIO(_read_text(path)))
    header: list[str] | None = None
    lines = []
    for row in rows:
        if header is None:
            header = row
            lines.append(", ".join(row))
            continue
        lines.append("; ".join(f"{h}: {v}" if h else v for h, v in zip(header, row, strict=False)))
    return "\n".join(lines)


def _json(path: Path) -> str:
    raw = _read_text(path)
    try:
        return json.dumps(json.loads(raw), indent=1, ensure_ascii=False)
    except json.JSONDecodeError as exc:
        raise Unreadable(f"This is not valid JSON (line {exc.lineno}: {exc.msg})") from exc


def _html(path: Path) -> str:
    parser = _HTMLText()
    parser.feed(_read_text(path))
    parser.close()
    return "".join(parser.parts)


def text_of(kind: str, path: Path) -> str:
    """The text of a stored file; Unreadable when there is none to index."""
    match kind:
        case "pdf":
            text = _pdf(path)
        case "docx":
            text = _docx(path)
        case "csv":
            text = _csv(path)
        case "json":
            text = _json(path)
        case "html":
            text = _html(path)
        case "image":
            raise Unreadable("Images are not indexed for retrieval")
        case _:
            text = _read_text(path)
    if not text.strip():
        raise Unreadable("This file has no text to index")
    return text


def chunks_of(text: str, *, size: int = 1000, overlap: int = 150) -> list[str]:
    """Passages of about `size` characters, cut at paragraph, line or word ends where one is
    near, each starting `overlap` characters before the previous one ended."""
    text = "\n".join(line.rstrip() for line in text.replace("\r\n", "\n").split("\n"))
    out: list[str] = []
    start = 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            window = text[start:end]
            for mark in ("\n\n", "\n", ". ", " "):
                cut = window.rfind(mark)
                if cut > size // 2:
                    end = start + cut + len(mark)
                    break
        piece = text[start:end].strip()
        if piece:
            out.append(piece)
        if end >= len(text):
            break
        start = max(end - overlap, start + 1)
        # start at a word boundary
        space = text.find(" ", start, end)
        if 0 <= space - start < overlap:
            start = space + 1
    return out

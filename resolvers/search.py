"""Search over the caller's conversation titles and messages.

The index is the database's own, kept in step by the database in the writing transaction —
whatever code writes a message or a title (create, PUT, PATCH, delete, chat replies, imports):

- SQLite: FTS5 tables `message_search` and `title_search` (unicode61 words, prefix indexes
  for 1-3 characters, one `owner` token per row so a search walks only the caller's rows),
  filled by triggers (alembic 0013a).
- PostgreSQL: GIN full-text indexes over `to_tsvector('simple', chat_search_text(...))`:
  messages.search_vector (a stored generated column) and conversations.title (an expression).

Both cut text the same way (resolvers/kit/textsearch.py): words of letters and digits, and
every CJK character a word of its own, so "你好" is a two-word phrase found inside "我说你好".

Query syntax (documented in the README):
- `hello wor` — every term must match; a bare term matches words *starting* with it;
- `"exact words"` — a quoted phrase: these whole words, adjacent, in this order;
- a term with punctuation inside (`e-mail`, `foo.bar`) is the phrase of its words;
- CJK text matches as a phrase of its characters, anywhere (`你好`);
- any other character (`* ( ) : ^ - + OR NOT …`) is a separator and never an operator.

Results: titles first (newest conversation first), then messages, newest stored first; a
cursor continues where a page ended.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from models import User
from resolvers.kit import textsearch
from resolvers.kit.errors import ValidationFailed

QUERY_MAX_CHARS = 500
TERMS_MAX = 16
WORDS_MAX = 64
LIMIT_DEFAULT = 20
LIMIT_MAX = 50
SNIPPET_CHARS = 200
SNIPPET_LEAD = 60
QUOTES = {'"', "\u201c", "\u201d", "\u201e", "\uff02"}


@dataclass(slots=True, frozen=True)
class Term:
    """Words that must appear adjacent and in order; the last one as a prefix if `prefix`."""

    words: tuple[str, ...]
    prefix: bool


@dataclass(slots=True, frozen=True)
class SearchHit:
    conversation_id: str
    title: str
    message_id: str | None
    role: str | None
    snippet: str
    timestamp: int
    cursor: str  # where a page ending with this hit continues


@dataclass(slots=True, frozen=True)
class SearchPage:
    results: list[SearchHit]
    next_cursor: str | None


# ---------------------------------------------------------------- the query


def _chunk_term(chunk: str, *, quoted: bool) -> Term | None:
    words = textsearch.words(chunk)
    if not words:
        return None
    ends_in_word = not textsearch.is_cjk(words[-1][-1])
    return Term(tuple(words), prefix=ends_in_word and not quoted)


def parse(query: str) -> list[Term]:
    """The terms of what a user typed. Anything is accepted; a query that is too long or has
    nothing to search for is a ValidationFailed (REST 422, GraphQL BAD_USER_INPUT)."""
    if len(query) > QUERY_MAX_CHARS:
        raise ValidationFailed(
            f"The search may be at most {QUERY_MAX_CHARS} characters", field="q")
    terms: list[Term] = []
    quoted = False
    current: list[str] = []

    def close(segment: str) -> None:
        if quoted:
            term = _chunk_term(segment, quoted=True)
            if term:
                terms.append(term)
            return
        for chunk in segment.split():
            term = _chunk_term(chunk, quoted=False)
            if term:
                terms.append(term)

    for char in query:
        if char in QUOTES:
            close("".join(current))
            current = []
            quoted = not quoted
        else:
            current.append(char)
    close("".join(current))  # an unclosed quote runs to the end
    unique = list(dict.fromkeys(terms))
    if not unique:
        raise ValidationFailed("Nothing to search for: type a word", field="q")
    if len(unique) > TERMS_MAX or sum(len(t.words) for t in unique) > WORDS_MAX:
        raise ValidationFailed(
            f"The search may have at most {TERMS_MAX} terms and {WORDS_MAX} words", field="q")
    return unique


def fts5_query(terms: Sequence[Term], owner: str) -> str:
    """An FTS5 MATCH expression. Words hold only letters and digits, so quoting them is safe."""
    phrases = [f'"{" ".join(t.words)}"' + ("*" if t.prefix else "") for t in terms]
    return f'owner : "{owner}" AND body : ({" AND ".join(phrases)})'


def tsquery(terms: Sequence[Term]) -> str:
    """A to_tsquery() expression: phrases with <->, prefixes with :*, terms with &.

    A phrase of Latin words also repeats its words with & — the same matches, but PostgreSQL
    estimates a phrase like its words anywhere together (404 rows for "brown fox" at 120k
    messages; 6 real) and then walks every message newest first instead of using the index
    (50-500 ms). The repetition squares that estimate. CJK phrases are left alone: their
    characters together are usually the phrase itself, and the walk is the fast plan for them.
    """
    parts = []
    for term in terms:
        words = [f"'{word}'" for word in term.words]
        if term.prefix:
            words[-1] += ":*"
        part = "(" + " <-> ".join(words) + ")"
        latin = [w for w in words if not textsearch.is_cjk(w[1])]
        if len(words) > 1 and len(latin) > 1:
            part = f"({part} & {' & '.join(words)})"
        parts.append(part)
    return " & ".join(parts)


def owner_token(user_id: str) -> str:
    """The user as the SQLite index stores it: 'u' || hex(user_id)."""
    return "u" + user_id.encode().hex().upper()


# ---------------------------------------------------------------- snippets

_NOT_LATIN_WORD = f"[^\\W_{textsearch.CJK_RANGES}]"


def _pattern(terms: Sequence[Term]) -> re.Pattern[str]:
    alternatives = []
    for term in terms:
        parts = []
        for index, word in enumerate(term.words):
            piece = re.escape(word)
            if not textsearch.is_cjk(word[0]):
                piece = f"(?<!{_NOT_LATIN_WORD}){piece}"
            if index == len(term.words) - 1 and term.prefix:
                piece += f"{_NOT_LATIN_WORD}*"
            parts.append(piece)
        alternatives.append(r"[\W_]*".join(parts))
    return re.compile("|".join(f"(?:{a})" for a in alternatives), re.IGNORECASE)


def snippet(content: str, terms: Sequence[Term]) -> str:
    """Up to SNIPPET_CHARS characters around the first hit; hits in <mark>, the rest
    HTML-escaped (safe to insert as HTML)."""
    pattern = _pattern(terms)
    first = pattern.search(content)
    start = 0
    if first is not None and first.start() > SNIPPET_LEAD:
        start = first.start() - SNIPPET_LEAD
        space = content.find(" ", start, first.start())
        if space != -1 and first.start() - space > 10:
            start = space + 1
    end = min(len(content), start + SNIPPET_CHARS)
    window = content[start:end]
    out = ["…" if start > 0 else ""]
    at = 0
    for match in pattern.finditer(window):
        if match.end() == match.start():
            continue
        out.append(html.escape(window[at:match.start()]))
        out.append(f"<mark>{html.escape(match.group())}</mark>")
        at = match.end()
    out.append(html.escape(window[at:]))
    if end < len(content):
        out.append("…")
    return "".join(out)


# ---------------------------------------------------------------- cursors


def _cursor(kind: str, *parts: object) -> str:
    raw = ":".join([kind, *(str(p) for p in parts)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> tuple[str, int, str]:
    """('t', updated_at, conversation pk) or ('m', message pk, '')."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, number, *rest = raw.split(":", 2)
        value = int(number)
        if kind not in ("t", "m") or not 0 <= value < 2**63:
            raise ValueError(kind)
        pk = rest[0] if rest else ""
        if kind == "t" and not re.fullmatch(r"[0-9a-f-]{36}", pk):
            raise ValueError(pk)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailed("Invalid cursor", field="cursor") from exc
    return kind, value, pk


# ---------------------------------------------------------------- the queries

# CROSS JOIN makes SQLite walk the full-text index first: otherwise it may loop over the
# user's conversations and run the MATCH once per row (measured: 9-17 ms → under 1 ms).
_SQLITE_TITLES = """
SELECT c.pk, c.id, c.title, c.updated_at
FROM title_search s
CROSS JOIN title_search_keys k ON k.id = s.rowid
CROSS JOIN conversations c ON c.pk = k.conversation_pk
WHERE title_search MATCH :match AND c.user_id = :user_id {after}
ORDER BY c.updated_at DESC, c.pk DESC LIMIT :limit
"""
_SQLITE_MESSAGES = """
SELECT m.pk, m.id, m.role, m.content, m.timestamp, c.id AS conversation_id, c.title
FROM message_search s
CROSS JOIN messages m ON m.pk = s.rowid
CROSS JOIN conversations c ON c.pk = m.conversation_pk
WHERE message_search MATCH :match AND c.user_id = :user_id {after}
ORDER BY s.rowid DESC LIMIT :limit
"""
# The indexes' column and expression (alembic 0013a), or PostgreSQL would not use them.
PG_TITLE_MATCH = ("to_tsvector('simple'::regconfig, chat_search_text(c.title))"
                  " @@ to_tsquery('simple'::regconfig, :match)")
PG_MESSAGE_MATCH = "m.search_vector @@ to_tsquery('simple'::regconfig, :match)"
_PG_TITLES = f"""
SELECT c.pk, c.id, c.title, c.updated_at
FROM conversations c
WHERE {PG_TITLE_MATCH} AND c.user_id = :user_id {{after}}
ORDER BY c.updated_at DESC, c.pk DESC LIMIT :limit
"""
_PG_MESSAGES = f"""
SELECT m.pk, m.id, m.role, m.content, m.timestamp, c.id AS conversation_id, c.title
FROM messages m
JOIN conversations c ON c.pk = m.conversation_pk
WHERE {PG_MESSAGE_MATCH} AND c.user_id = :user_id {{after}}
ORDER BY m.pk DESC LIMIT :limit
"""
_TITLES_AFTER = "AND (c.updated_at < :after_at OR (c.updated_at = :after_at AND c.pk < :after_pk))"


async def search(
    session: AsyncSession, actor: User, *, query: str, limit: int = LIMIT_DEFAULT,
    cursor: str | None = None, names: tuple[str, str, str] = ("q", "limit", "cursor"),
) -> SearchPage:
    """The caller's titles and messages matching `query` (syntax in the module docstring),
    titles first, then messages newest first; `next_cursor` continues. `names` are the face's
    names for query, limit and cursor, for error messages."""
    if not 1 <= limit <= LIMIT_MAX:
        raise ValidationFailed(f"{names[1]} must be between 1 and {LIMIT_MAX}", field=names[1])
    try:
        terms = parse(query)
        kind, after_number, after_pk = _decode(cursor) if cursor else ("t", -1, "")
    except ValidationFailed as exc:
        field = names[0] if exc.extra.get("field") == "q" else names[2]
        raise ValidationFailed(exc.message, field=field) from exc
    sqlite = session.get_bind().dialect.name == "sqlite"
    match = fts5_query(terms, owner_token(actor.id)) if sqlite else tsquery(terms)
    connection = await session.connection()
    results: list[SearchHit] = []

    if kind == "t":
        after = _TITLES_AFTER if after_number >= 0 else ""
        sql = (_SQLITE_TITLES if sqlite else _PG_TITLES).format(after=after)
        params: dict[str, object] = {"match": match, "user_id": actor.id, "limit": limit + 1}
        if after:
            params.update(after_at=after_number, after_pk=after_pk)
        rows = (await connection.execute(text(sql), params)).all()
        for row in rows[:limit]:
            results.append(SearchHit(conversation_id=row.id, title=row.title, message_id=None,
                                     role=None, snippet=snippet(row.title, terms),
                                     timestamp=row.updated_at,
                                     cursor=_cursor("t", row.updated_at, row.pk)))
        if len(rows) > limit:
            return SearchPage(results, results[-1].cursor)
        after_number = -1

    room = limit - len(results)
    after = "AND m.pk < :after_pk" if after_number >= 0 else ""
    if sqlite and after:
        after = "AND s.rowid < :after_pk"
    sql = (_SQLITE_MESSAGES if sqlite else _PG_MESSAGES).format(after=after)
    params = {"match": match, "user_id": actor.id, "limit": room + 1}
    if after:
        params["after_pk"] = after_number
    rows = (await connection.execute(text(sql), params)).all()
    for row in rows[:room]:
        results.append(SearchHit(conversation_id=row.conversation_id, title=row.title,
                                 message_id=row.id, role=row.role,
                                 snippet=snippet(row.content, terms), timestamp=row.timestamp,
                                 cursor=_cursor("m", row.pk)))
    # More to come: a page that titles filled exactly continues after its last title (no
    # titles are left, so the next page starts with the messages).
    return SearchPage(results, results[-1].cursor if len(rows) > room else None)

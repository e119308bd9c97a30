"""Retrieval: the passages of the caller's files that best answer a question.

Full-text, by the database's own index (alembic 0016a), the same way on SQLite and PostgreSQL:
the question is cut into words like the indexed text (resolvers/kit/textsearch: CJK characters
are words of their own, so a CJK question matches as pairs of adjacent characters), and any
word may match — ranked by BM25 (FTS5) or ts_rank_cd (PostgreSQL), best first.

With vectors (EMBEDDING_MODEL, resolvers/files/vectors.py) the question's vector also finds
the passages nearest to it, and the two lists are merged by reciprocal rank fusion: a
passage's score is the sum over the lists it is in of 1 / (RRF_K + its rank there), rank 1
first. RRF needs no common scale between BM25 / ts_rank_cd and cosine distance (they have
none); k = 60 is the value of Cormack, Clarke and Büttcher (SIGIR 2009), which damps the
difference between the first few ranks so a passage both lists like beats one only a single
list puts first. Each list contributes its best CANDIDATES.

Owner scoping is in the query (`user_id` and the file ids the caller named, which
resolvers/files.owned has checked), so a passage of another user's file is never read — by
full-text or by vector.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, text
from sqlalchemy.exc import DBAPIError
from sqlmodel.ext.asyncio.session import AsyncSession

from models import User
from resolvers.files.vectors import Vectors
from resolvers.kit import metrics, textsearch

log = logging.getLogger("chat_studio.files")

TERMS_MAX = 48
TOP_K = 8
RRF_K = 60
CANDIDATES = 20  # from each list, before fusion
PREFIX_MIN = 4  # words this long also match as prefixes
SNIPPET_CHARS = 240


@dataclass(slots=True, frozen=True)
class Passage:
    file_id: str
    filename: str
    ordinal: int
    text: str
    score: float

    def snippet(self) -> str:
        return self.text if len(self.text) <= SNIPPET_CHARS \
            else self.text[:SNIPPET_CHARS].rsplit(" ", 1)[0] + "…"


# English function words: in a question they match nearly every passage, which costs time
# (PostgreSQL ranks every match) and ranks nothing. Left out unless the question has nothing
# else.
STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further
had has have having he her here hers herself him himself his how i if in into is it its
itself just me more most my myself no nor not now of off on once only or other our ours
ourselves out over own same she should so some such than that the their theirs them
themselves then there these they this those through to too under until up very was we were
what when where which while who whom why will with would you your yours yourself yourselves
get got may might must shall""".split())


def query_terms(question: str) -> list[str]:
    """Distinct search terms of a question: its words but function words, and for CJK runs
    their adjacent pairs (a phrase of two characters) — each character alone matches far too
    much."""
    words = textsearch.words(question)
    content = [w for w in words if w not in STOPWORDS]
    words = content or words
    terms: list[str] = []
    for i, word in enumerate(words):
        if textsearch.is_cjk(word):
            if i + 1 < len(words) and textsearch.is_cjk(words[i + 1]):
                terms.append(f"{word} {words[i + 1]}")
            elif not (i > 0 and textsearch.is_cjk(words[i - 1])):
                terms.append(word)  # a lone CJK character
        else:
            terms.append(word)
    return list(dict.fromkeys(terms))[:TERMS_MAX]


SQLITE_QUERY = """
SELECT c.file_id, f.filename, c.ordinal, c.text, -bm25(file_chunk_search) AS score
FROM file_chunk_search
JOIN file_chunks c ON c.pk = file_chunk_search.rowid
JOIN files f ON f.id = c.file_id
WHERE file_chunk_search MATCH :match AND c.user_id = :user_id AND c.file_id IN :file_ids
ORDER BY bm25(file_chunk_search) LIMIT :limit
"""
POSTGRES_QUERY = """
SELECT c.file_id, f.filename, c.ordinal, c.text,
       ts_rank_cd(c.search_vector, q.query, 1) AS score
FROM file_chunks c
JOIN files f ON f.id = c.file_id,
     to_tsquery('simple'::regconfig, :match) AS q(query)
WHERE c.search_vector @@ q.query AND c.user_id = :user_id AND c.file_id IN :file_ids
ORDER BY score DESC, c.file_id, c.ordinal LIMIT :limit
"""


async def search(session: AsyncSession, actor: User, *, file_ids: Sequence[str],
                 question: str, limit: int = TOP_K, vectors: Vectors | None = None,
                 query_vector: Sequence[float] | None = None) -> list[Passage]:
    """The best passages of `file_ids` (the caller's, checked by the caller) for
    `question`: full-text, fused with the passages nearest to `query_vector` when there is
    one (see the module docstring); none when the question has no words and no vector."""
    if not file_ids:
        return []
    vectored = vectors is not None and vectors.available and query_vector is not None
    started = time.perf_counter()
    words = await _fulltext(session, actor, file_ids=file_ids, question=question,
                            limit=max(limit, CANDIDATES) if vectored else limit)
    if not vectored:
        metrics.RETRIEVAL_LATENCY.labels(mode="fulltext").observe(  # metrics
            time.perf_counter() - started)
        return words[:limit]
    assert vectors is not None and query_vector is not None
    try:
        near = await vectors.nearest(session, actor, file_ids=file_ids, query=query_vector,
                                     limit=max(limit, CANDIDATES))
    except DBAPIError as exc:  # e.g. vectors of another size under the same model name
        await session.rollback()
        metrics.EMBEDDING_FAILURES.labels(stage="query").inc()  # metrics
        log.warning("vector retrieval failed (%s): full-text only for this request",
                    str(exc.orig or exc).splitlines()[0])
        return words[:limit]
    nearest = [Passage(n.file_id, n.filename, n.ordinal, n.text, round(1 - n.distance, 4))
               for n in near]
    fused = fuse(words, nearest, limit=limit)
    metrics.RETRIEVAL_LATENCY.labels(mode="hybrid" if words else "vector").observe(  # metrics
        time.perf_counter() - started)
    return fused


def fuse(*ranked: Sequence[Passage], limit: int = TOP_K) -> list[Passage]:
    """Reciprocal rank fusion of ranked lists (best first); `score` becomes the fused one."""
    scores: dict[tuple[str, int], float] = {}
    first: dict[tuple[str, int], Passage] = {}
    for passages in ranked:
        for rank, passage in enumerate(passages, start=1):
            key = (passage.file_id, passage.ordinal)
            scores[key] = scores.get(key, 0.0) + 1.0 / (RRF_K + rank)
            first.setdefault(key, passage)
    order = sorted(scores, key=lambda key: (-scores[key], key))
    return [Passage(first[key].file_id, first[key].filename, first[key].ordinal,
                    first[key].text, round(scores[key], 5)) for key in order[:limit]]


async def _fulltext(session: AsyncSession, actor: User, *, file_ids: Sequence[str],
                    question: str, limit: int) -> list[Passage]:
    terms = query_terms(question)
    if not terms:
        return []
    sqlite = session.bind is not None and session.bind.dialect.name == "sqlite"
    # A longer Latin word also matches as a prefix ("bicycle" finds "bicycles", "park"
    # "parking"): no stemmer is language-neutral, a prefix nearly is.
    def prefix(term: str) -> bool:
        return len(term) >= PREFIX_MIN and not textsearch.is_cjk(term[0])

    if sqlite:  # words hold only letters and digits: quoting them is safe
        match = " OR ".join(f'"{term}"' + ("*" if prefix(term) else "") for term in terms)
        sql = SQLITE_QUERY
    else:
        match = " | ".join("(" + " <-> ".join(term.split()) + (":*" if prefix(term) else "")
                           + ")" for term in terms)
        sql = POSTGRES_QUERY
    statement = text(sql).bindparams(bindparam("file_ids", expanding=True))
    result = await session.exec(statement, params={  # type: ignore[call-overload]
        "match": match, "user_id": actor.id, "file_ids": list(file_ids), "limit": limit})
    return [Passage(file_id=r[0], filename=r[1], ordinal=r[2], text=r[3],
                    score=round(float(r[4]), 4)) for r in result.all()]


def within_budget(passages: Sequence[Passage], budget_chars: int) -> list[Passage]:
    """The best passages whose text fits in `budget_chars` (at least the best one, cut)."""
    chosen: list[Passage] = []
    used = 0
    for passage in passages:
        if used + len(passage.text) > budget_chars:
            if not chosen:
                chosen.append(Passage(passage.file_id, passage.filename, passage.ordinal,
                                      passage.text[:budget_chars], passage.score))
            break
        chosen.append(passage)
        used += len(passage.text)
    return chosen


def prompt_of(passages: Sequence[Passage]) -> str:
    """The system message that hands the passages to the model, numbered to be cited."""
    lines = ["Answer using the sources below when they help. Cite a source by its number "
             "in brackets, e.g. [1]. If the sources do not answer the question, say so.", ""]
    for number, passage in enumerate(passages, start=1):
        lines.append(f"[{number}] {passage.filename} (part {passage.ordinal + 1}):")
        lines.append(passage.text)
        lines.append("")
    return "\n".join(lines).rstrip()

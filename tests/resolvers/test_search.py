"""Search called directly (no transport), on SQLite and PostgreSQL: what it finds, that it finds
only the caller's, that the index follows every write in its transaction, safe snippets, any
input a result or a ValidationFailed, and that the query uses the index (never a scan)."""

from __future__ import annotations

import random
import string

import pytest
from sqlalchemy import text

from models import User
from resolvers import conversations, organize, search
from resolvers.conversations import ConversationInput, MessageInput
from resolvers.kit.errors import Conflict, ValidationFailed
from resolvers.services import Services
from tests.resolvers.test_conversations import make_user


@pytest.fixture
async def alice(services: Services) -> User:
    return await make_user(services, "alice")


@pytest.fixture
async def bob(services: Services) -> User:
    return await make_user(services, "bob")


def conv(id: str, title: str, *contents: str) -> ConversationInput:
    roles = ("user", "assistant")
    return ConversationInput(id=id, title=title, model="m", messages=[
        MessageInput(role=roles[i % 2], content=c, id=f"{id}_m{i}")
        for i, c in enumerate(contents)])


async def create(services: Services, actor: User, data: ConversationInput) -> None:
    async with services.db.session() as session:
        await conversations.create(session, actor, data=data)


async def find(services: Services, actor: User, query: str, **kw: object) -> search.SearchPage:
    async with services.db.session() as session:
        return await search.search(session, actor, query=query, **kw)  # type: ignore[arg-type]


async def hits(services: Services, actor: User, query: str) -> list[str | None]:
    """Message ids found (None for a title hit), in result order."""
    return [h.message_id for h in (await find(services, actor, query)).results]


async def test_cjk_phrases_and_latin_prefixes_find_only_the_callers_messages(
    services: Services, alice: User, bob: User
) -> None:
    await create(services, alice, conv("a1", "Notes", "我说你好世界", "Hello there, general",
                                       "你们好", "a generalization"))
    await create(services, bob, conv("b1", "Bob", "你好 from bob", "hello bob"))
    assert await hits(services, alice, "你好") == ["a1_m0"]  # inside a longer CJK run
    assert await hits(services, alice, "好") == ["a1_m2", "a1_m0"]  # newest first
    assert await hits(services, alice, "世界 你好") == ["a1_m0"]  # both terms
    assert await hits(services, alice, "好世") == ["a1_m0"]
    assert await hits(services, alice, "你们你好") == []  # a phrase is in a row
    assert await hits(services, alice, "gen") == ["a1_m3", "a1_m1"]  # a prefix of words
    assert await hits(services, alice, '"general"') == ["a1_m1"]  # quoted: the whole word
    assert await hits(services, alice, "HELLO") == ["a1_m1"]  # any case
    assert await hits(services, alice, "eral") == []  # words, not the middle of one
    assert await hits(services, bob, "你好") == ["b1_m0"]
    assert await hits(services, bob, "gen") == []


async def test_phrases_titles_first_then_messages_and_the_hit_shape(
    services: Services, alice: User
) -> None:
    await create(services, alice, conv("trip", "Trip to 北京 in May", "Book the train to 北京",
                                       "the train leaves at nine"))
    page = await find(services, alice, "北京")
    assert [(h.conversation_id, h.message_id, h.role) for h in page.results] == [
        ("trip", None, None), ("trip", "trip_m0", "user")]
    title, message = page.results
    assert title.title == message.title == "Trip to 北京 in May"
    assert title.snippet == "Trip to <mark>北京</mark> in May"
    assert message.snippet == "Book the train to <mark>北京</mark>"
    assert page.next_cursor is None
    assert await hits(services, alice, '"the train"') == ["trip_m1", "trip_m0"]
    assert await hits(services, alice, '"train the"') == []
    assert await hits(services, alice, "train leaves nine") == ["trip_m1"]


async def test_snippets_escape_everything_but_their_marks(services: Services,
                                                          alice: User) -> None:
    nasty = "<script>alert('x')</script> & the <b>secret</b> word is " + "filler " * 40 + "END"
    await create(services, alice, conv("x", "t", nasty, "x" * 50 + " marker " + "y" * 400))
    (hit,) = (await find(services, alice, "secret")).results
    assert hit.snippet.startswith("&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; the "
                                  "&lt;b&gt;<mark>secret</mark>&lt;/b&gt; word is filler")
    assert hit.snippet.endswith("…") and "END" not in hit.snippet
    assert "<" not in hit.snippet.replace("<mark>", "").replace("</mark>", "")
    (long,) = (await find(services, alice, "marker")).results
    assert "<mark>marker</mark>" in long.snippet
    assert len(long.snippet) <= search.SNIPPET_CHARS + len("<mark></mark>") + 2


async def test_the_index_follows_every_write(services: Services, alice: User,
                                             bob: User) -> None:
    await create(services, alice, conv("c", "Alpha title", "original words here"))
    assert await hits(services, alice, "original") == ["c_m0"]
    async with services.db.session() as session:  # PUT replaces the messages
        await conversations.replace(session, alice, conversation_id="c",
                                    data=conv("c", "Beta title", "replacement words"))
    assert await hits(services, alice, "original") == []
    assert await hits(services, alice, "replacement") == ["c_m0"]
    assert await hits(services, alice, "alpha") == []
    assert await hits(services, alice, "beta") == [None]
    async with services.db.session() as session:  # PATCH renames
        await organize.patch(session, alice, conversation_id="c",
                             changes=organize.ConversationPatch(title="Gamma 标题"))
    assert await hits(services, alice, "beta") == []
    assert await hits(services, alice, "标题") == [None]
    async with services.db.session() as session:  # a chat reply is appended
        await conversations.append_messages(session, alice, conversation_id="c", messages=[
            MessageInput(role="assistant", content="a reply about zebras", id="reply")])
    assert await hits(services, alice, "zebra") == ["reply"]
    async with services.db.session() as session:
        await conversations.remove(session, alice, conversation_id="c")
    assert await hits(services, alice, "replacement") == []
    assert await hits(services, alice, "zebras") == []
    assert await hits(services, alice, "gamma") == []
    # New rows may reuse the deleted rows' ids: no stale entry may make them match.
    await create(services, alice, conv("d", "Delta", "fresh", "content"))
    assert await hits(services, alice, "replacement") == []
    assert await hits(services, alice, "zebras") == []
    assert await hits(services, alice, "fresh") == ["d_m0"]


async def test_a_deleted_account_leaves_nothing_in_the_index(services: Services, alice: User,
                                                             bob: User) -> None:
    await create(services, alice, conv("a", "Alice's", "platypus one", "platypus two"))
    await create(services, bob, conv("b", "Bob's", "platypus three"))
    async with services.db.session() as session:
        connection = await session.connection()
        await connection.execute(text("DELETE FROM users WHERE id = :id"), {"id": alice.id})
        await session.commit()
    assert await hits(services, bob, "platypus") == ["b_m0"]
    if services.db.dialect == "sqlite":
        async with services.db.session() as session:
            left = (await (await session.connection()).execute(text(
                "SELECT count(*) FROM message_search WHERE message_search MATCH 'platypus'"
            ))).scalar_one()
            titles = (await (await session.connection()).execute(
                text("SELECT count(*) FROM title_search_keys"))).scalar_one()
        assert (left, titles) == (1, 1)


async def test_a_write_that_fails_leaves_nothing_in_the_index(services: Services,
                                                              alice: User) -> None:
    await create(services, alice, conv("same", "First", "kept words"))
    with pytest.raises(Conflict):
        await create(services, alice, conv("same", "Second", "lost wombat words"))
    assert await hits(services, alice, "wombat") == []
    assert await hits(services, alice, "second") == []
    assert await hits(services, alice, "kept") == ["same_m0"]


async def test_cursor_walks_titles_then_messages_once(services: Services, alice: User) -> None:
    for i in range(3):
        await create(services, alice, conv(f"c{i}", f"kiwi {i}", *[f"kiwi message {i}.{j}"
                                                                   for j in range(4)]))
    expected = [None, None, None] + [f"c{i}_m{j}" for i in (2, 1, 0) for j in (3, 2, 1, 0)]
    for limit in (1, 2, 3, 5, 50):
        seen: list[str | None] = []
        cursor = None
        while True:
            page = await find(services, alice, "kiwi", limit=limit, cursor=cursor)
            assert len(page.results) <= limit
            seen += [h.message_id for h in page.results]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == expected, limit


JUNK = ['"', '""', '"unclosed phrase', "*", "a*", "**a", "NEAR(a b)", "a OR b", "NOT a",
        "a AND", "(a", "a)", "col:a", "owner:x", "body:(x)", "^a", "-a", "+a", "'", "\\",
        "a'b", "'; DROP TABLE messages; --", "\x00", "a\x00b", "%", "_", "<mark>", "🙂",
        "👩‍👩‍👧", "e\u0301", "ﬁ", "İ", "a" * 500, "你" * 64, " ", "\t\n", "a:*", "a & b",
        "a <-> b", "!a", "a|b", "{x}", "$$", "[]", "\u200b", "\ufeff"]


async def test_any_input_is_a_result_or_a_validation_error(services: Services,
                                                           alice: User) -> None:
    await create(services, alice, conv("c", "t", "some text a b to find"))
    rng = random.Random(13)
    alphabet = string.printable + "你好世界\"*()^:-'\\\x00🙂é"
    queries = JUNK + ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 80)))
                      for _ in range(150)]
    queries += ["x" * 10_240, "a " * 5_000, " ".join(f"w{i}" for i in range(17))]
    answered = refused = 0
    for query in queries:
        try:
            page = await find(services, alice, query)
        except ValidationFailed as exc:
            assert exc.extra["field"] == "q"
            refused += 1
        else:
            assert all(h.conversation_id == "c" for h in page.results)
            answered += 1
    assert answered > 100 and refused >= 3
    for bad in ({"limit": 0}, {"limit": 51}, {"cursor": "nope"}, {"cursor": "bTotMQ"},
                {"cursor": "eDox"}, {"cursor": "dDoxOjI="}):
        with pytest.raises(ValidationFailed):
            await find(services, alice, "text", **bad)


async def test_the_search_uses_the_index(services: Services, alice: User) -> None:
    await create(services, alice, conv("c", "title", "words"))
    terms = search.parse("wor 你好")
    async with services.db.session() as session:
        if services.db.dialect == "sqlite":
            plan = (await (await session.connection()).execute(text(
                "EXPLAIN QUERY PLAN " + search._SQLITE_MESSAGES.format(after="")), {
                    "match": search.fts5_query(terms, search.owner_token(alice.id)),
                    "user_id": alice.id, "limit": 21})).all()
            steps = " / ".join(row[-1] for row in plan)
            assert "VIRTUAL TABLE INDEX" in steps and "SCAN m" not in steps, steps
            assert "TEMP B-TREE" not in steps, steps  # streamed newest first, no sort
        else:
            # The planner picks by table size; with scans off it must be able to use the
            # GIN indexes, which proves the queries use the indexes' very expressions.
            connection = await session.connection()
            await connection.execute(text("SET LOCAL enable_seqscan = off"))
            for sql, index in (
                    (f"SELECT 1 FROM messages m WHERE {search.PG_MESSAGE_MATCH}",
                     "ix_messages_search"),
                    (f"SELECT 1 FROM conversations c WHERE {search.PG_TITLE_MATCH}",
                     "ix_conversations_search")):
                plan = (await connection.execute(text("EXPLAIN " + sql), {
                    "match": search.tsquery(terms)})).all()
                assert index in " ".join(row[0] for row in plan), plan

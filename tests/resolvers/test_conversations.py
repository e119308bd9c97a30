"""Conversation operations called directly (no transport), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from typing import Any

import pytest
from sqlmodel import select

from models import Message, User
from resolvers import auth, conversations, organize
from resolvers.conversations import ConversationInput, MessageInput
from resolvers.kit.errors import Conflict, NotFound, ValidationFailed
from resolvers.services import Services
from tests.conftest import count_statements


async def make_user(services: Services, username: str) -> User:
    async with services.db.session() as session:
        pair = await auth.register(session, services.security, username=username,
                                   email=f"{username}@example.com", password="correct horse")
    return pair.user


@pytest.fixture
async def alice(services: Services) -> User:
    return await make_user(services, "alice")


@pytest.fixture
async def bob(services: Services) -> User:
    return await make_user(services, "bob")


def conv(id: str | None = "conv_123", title: str = "Hello", *messages: tuple[str, str],
         **extra: Any) -> ConversationInput:
    return ConversationInput(
        id=id, title=title, model="gpt-4o-mini",
        messages=[MessageInput(role=role, content=content) for role, content in messages],
        **extra,
    )


async def create(services: Services, actor: User, data: ConversationInput
                 ) -> conversations.ConversationWithMessages:
    async with services.db.session() as session:
        return await conversations.create(session, actor, data=data)


async def get(services: Services, actor: User, conversation_id: str
              ) -> conversations.ConversationWithMessages:
    async with services.db.session() as session:
        return await conversations.get(session, actor, conversation_id=conversation_id)


async def replace(services: Services, actor: User, conversation_id: str,
                  data: ConversationInput) -> conversations.ConversationWithMessages:
    async with services.db.session() as session:
        return await conversations.replace(session, actor, conversation_id=conversation_id,
                                           data=data)


async def remove(services: Services, actor: User, conversation_id: str) -> None:
    async with services.db.session() as session:
        await conversations.remove(session, actor, conversation_id=conversation_id)


@dataclasses.dataclass
class Page:
    items: list[conversations.ConversationView]
    has_next_page: bool
    end_cursor: str | None
    total_count: int


async def page(services: Services, actor: User, **kwargs: Any) -> Page:
    """The list as every face pages it (organize.page), its items the conversation rows."""
    async with services.db.session() as session:
        found = await organize.page(session, actor, **kwargs)
    return Page([item.conversation for item in found.items], found.has_next_page,
                found.end_cursor, found.total_count)


def contents(stored: conversations.ConversationWithMessages) -> list[tuple[str, str]]:
    return [(message.role, message.content) for message in stored.messages]


# ---------------------------------------------------------------- create / get


async def test_create_keeps_the_client_chosen_id_and_messages(
    services: Services, alice: User
) -> None:
    stored = await create(services, alice, conv(
        "conv_123", "First chat", ("user", "Hi"), ("assistant", "Hello!"),
        system_prompt="Be brief"))
    assert stored.conversation.id == "conv_123"
    assert stored.conversation.user_id == alice.id
    assert stored.conversation.system_prompt == "Be brief"
    assert contents(stored) == [("user", "Hi"), ("assistant", "Hello!")]
    assert all(message.id for message in stored.messages)
    loaded = await get(services, alice, "conv_123")
    assert loaded.conversation.title == "First chat"
    assert contents(loaded) == contents(stored)
    assert [m.id for m in loaded.messages] == [m.id for m in stored.messages]


async def test_create_without_an_id_gets_a_server_id(services: Services, alice: User) -> None:
    first = await create(services, alice, conv(None))
    second = await create(services, alice, conv(None))
    assert first.conversation.id.startswith("conv_")
    assert first.conversation.id != second.conversation.id


async def test_message_ids_and_timestamps_from_the_client_are_kept(
    services: Services, alice: User
) -> None:
    data = conv("c1")
    data.messages = [MessageInput(id="m1", role="user", content="Hi", timestamp=1_700_000_000_000)]
    stored = await create(services, alice, data)
    (message,) = (await get(services, alice, "c1")).messages
    assert (message.id, message.timestamp) == ("m1", 1_700_000_000_000)
    assert stored.messages[0].id == "m1"


async def test_same_id_twice_for_one_user_is_a_conflict(services: Services, alice: User) -> None:
    await create(services, alice, conv("conv_123", "Original", ("user", "keep me")))
    with pytest.raises(Conflict) as caught:
        await create(services, alice, conv("conv_123", "Impostor", ("user", "overwrite")))
    assert caught.value.code == "CONFLICT" and caught.value.http_status == 409
    stored = await get(services, alice, "conv_123")
    assert stored.conversation.title == "Original"
    assert contents(stored) == [("user", "keep me")]


async def test_unknown_conversation_is_not_found(services: Services, alice: User) -> None:
    with pytest.raises(NotFound):
        await get(services, alice, "nope")
    with pytest.raises(NotFound):
        await replace(services, alice, "nope", conv(None))
    with pytest.raises(NotFound):
        await remove(services, alice, "nope")


# ---------------------------------------------------------------- ownership


async def test_two_users_own_the_same_id_without_seeing_each_other(
    services: Services, alice: User, bob: User
) -> None:
    await create(services, alice, conv("conv_123", "Alice's", ("user", "alice secret")))
    await create(services, bob, conv("conv_123", "Bob's", ("user", "bob secret")))

    assert (await get(services, alice, "conv_123")).conversation.title == "Alice's"
    assert (await get(services, bob, "conv_123")).conversation.title == "Bob's"

    await replace(services, bob, "conv_123", conv(None, "Bob renamed", ("user", "changed")))
    await remove(services, bob, "conv_123")
    with pytest.raises(NotFound):
        await get(services, bob, "conv_123")

    alice_copy = await get(services, alice, "conv_123")
    assert alice_copy.conversation.title == "Alice's"
    assert contents(alice_copy) == [("user", "alice secret")]


async def test_another_users_conversation_is_not_found_and_unchanged(
    services: Services, alice: User, bob: User
) -> None:
    before = await create(services, alice, conv("private", "Mine", ("user", "secret")))
    with pytest.raises(NotFound):
        await get(services, bob, "private")
    with pytest.raises(NotFound):
        await replace(services, bob, "private", conv(None, "Hijacked", ("user", "pwned")))
    with pytest.raises(NotFound):
        await remove(services, bob, "private")
    async with services.db.session() as session:
        assert await conversations.find(session, bob, conversation_id="private") is None
    assert (await page(services, bob)).items == []
    after = await get(services, alice, "private")
    assert after.conversation.title == "Mine"
    assert after.conversation.updated_at == before.conversation.updated_at
    assert contents(after) == [("user", "secret")]


# ---------------------------------------------------------------- replace / times / order


async def test_created_at_is_kept_and_updated_at_increases(
    services: Services, alice: User
) -> None:
    created = await create(services, alice, conv("c1", created_at=1_600_000_000_000))
    assert created.conversation.created_at == 1_600_000_000_000
    assert created.conversation.updated_at > created.conversation.created_at
    seen = [created.conversation.updated_at]
    for title in ("two", "three", "four"):  # quicker than the clock: still strictly increasing
        updated = await replace(services, alice, "c1", conv(None, title,
                                                            created_at=1))  # ignored
        assert updated.conversation.created_at == 1_600_000_000_000
        seen.append(updated.conversation.updated_at)
    assert seen == sorted(set(seen))
    loaded = await get(services, alice, "c1")
    assert (loaded.conversation.created_at, loaded.conversation.updated_at) == (
        1_600_000_000_000, seen[-1])


async def test_replace_replaces_the_message_list_in_order(services: Services, alice: User) -> None:
    await create(services, alice, conv("c1", "t", ("user", "a"), ("assistant", "b"),
                                       ("user", "c")))
    new = [("system", "z"), ("user", "y"), ("assistant", "x"), ("user", "w")]
    updated = await replace(services, alice, "c1", conv(None, "renamed", *new,
                                                        system_prompt="sp"))
    assert contents(updated) == new
    loaded = await get(services, alice, "c1")
    assert contents(loaded) == new
    assert loaded.conversation.title == "renamed"
    assert loaded.conversation.system_prompt == "sp"
    cleared = await replace(services, alice, "c1", conv(None, "empty"))
    assert cleared.messages == [] and (await get(services, alice, "c1")).messages == []


async def test_remove_deletes_the_conversation_and_its_messages(
    services: Services, alice: User
) -> None:
    await create(services, alice, conv("c1", "t", ("user", "a")))
    await create(services, alice, conv("c2", "t", ("user", "b")))
    await remove(services, alice, "c1")
    with pytest.raises(NotFound):
        await get(services, alice, "c1")
    assert [c.id for c in (await page(services, alice)).items] == ["c2"]
    async with services.db.session() as session:
        remaining = (await session.exec(select(Message.content))).all()
    assert remaining == ["b"]
    # The id is free again.
    assert (await create(services, alice, conv("c1"))).messages == []


async def test_newest_first(services: Services, alice: User) -> None:
    for name in ("a", "b", "c"):
        await create(services, alice, conv(name))
    assert [c.id for c in (await page(services, alice)).items] == ["c", "b", "a"]
    await replace(services, alice, "a", conv(None, "touched"))
    assert [c.id for c in (await page(services, alice)).items] == ["a", "c", "b"]
    async with services.db.session() as session:
        listed = (await organize.page(session, alice, first=None)).items
    assert [c.conversation.id for c in listed] == ["a", "c", "b"]


# ---------------------------------------------------------------- size and statement counts


async def test_a_thousand_messages_save_and_load_in_a_handful_of_statements(
    services: Services, alice: User
) -> None:
    roles = ("user", "assistant")
    many = [(roles[i % 2], f"message {i}") for i in range(1000)]
    with count_statements(services.db.engine) as saved:
        stored = await create(services, alice, conv("big", "big", *many))
    with count_statements(services.db.engine) as loaded_statements:
        loaded = await get(services, alice, "big")
    with count_statements(services.db.engine) as replaced:
        await replace(services, alice, "big", conv(None, "big", *reversed(many)))
    print(f"1,000 messages: create {len(saved)}, get {len(loaded_statements)}, "
          f"replace {len(replaced)} statements")
    assert len(stored.messages) == 1000
    assert contents(loaded) == many
    assert len(saved) <= 5, saved
    assert len(loaded_statements) <= 3, loaded_statements
    # PUT: the conversation, the stored tree (branches), one DELETE, one INSERT, the timestamp
    # and the summary refresh (message count and preview, so a sidebar reads no bodies).
    assert len(replaced) <= 8, replaced
    assert contents(await get(services, alice, "big")) == list(reversed(many))


# ---------------------------------------------------------------- paging


async def test_cursor_paging_walks_every_conversation_once(
    services: Services, alice: User, bob: User
) -> None:
    for i in range(7):
        await create(services, alice, conv(f"a{i}"))
    await create(services, bob, conv("b0"))
    first = await page(services, alice, first=3)
    assert [c.id for c in first.items] == ["a6", "a5", "a4"]
    assert first.has_next_page and first.total_count == 7
    second = await page(services, alice, first=3, after=first.end_cursor)
    assert [c.id for c in second.items] == ["a3", "a2", "a1"]
    assert second.has_next_page
    last = await page(services, alice, first=3, after=second.end_cursor)
    assert [c.id for c in last.items] == ["a0"]
    assert not last.has_next_page
    assert last.end_cursor == conversations.cursor_of(last.items[0])
    exact = await page(services, alice, first=7)
    assert len(exact.items) == 7 and not exact.has_next_page


async def test_paging_stays_stable_when_a_seen_conversation_changes(
    services: Services, alice: User
) -> None:
    for i in range(4):
        await create(services, alice, conv(f"a{i}"))
    first = await page(services, alice, first=2)
    assert [c.id for c in first.items] == ["a3", "a2"]
    await replace(services, alice, "a3", conv(None, "bumped"))  # moves to the top
    rest = await page(services, alice, first=10, after=first.end_cursor)
    assert [c.id for c in rest.items] == ["a1", "a0"]


async def test_empty_list(services: Services, alice: User) -> None:
    empty = await page(services, alice)
    assert (empty.items, empty.has_next_page, empty.end_cursor, empty.total_count) == (
        [], False, None, 0)


@pytest.mark.parametrize(
    "cursor",
    [
        "%%%",
        "bm90LWEtY3Vyc29y",  # "not-a-cursor"
        base64.urlsafe_b64encode(b"abc:pk").decode(),
        base64.urlsafe_b64encode(b"\xff\xfe:pk").decode(),
        base64.urlsafe_b64encode(b"99999999999999999999999999:pk").decode(),
        base64.urlsafe_b64encode(b"1700000000000:pk\x00").decode(),
    ],
    ids=["not-base64", "no-colon", "not-a-number", "not-utf8", "out-of-range", "nul-byte"],
)
async def test_invalid_cursor_is_a_validation_error(
    services: Services, alice: User, cursor: str
) -> None:
    await create(services, alice, conv("a"))
    with pytest.raises(ValidationFailed, match="Invalid cursor") as caught:
        await page(services, alice, after=cursor)
    assert caught.value.extra["field"] == "after"


@pytest.mark.parametrize("first", [101, -1, 10_000])
async def test_page_size_is_bounded(services: Services, alice: User, first: int) -> None:
    with pytest.raises(ValidationFailed, match="first must be between 0 and 100"):
        await page(services, alice, first=first)


async def test_hundred_is_the_largest_page(services: Services, alice: User) -> None:
    assert (await page(services, alice, first=100)).items == []


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (conv("c", "t", ("robot", "hi")), "role must be one of"),
        (conv("c", "t", ("user", "x" * 100_001)), "content is longer than 100000"),
        (conv("c", "t", ("user", "nul \x00 byte")), "content must not contain NUL"),
        (conv("c", "t" * 501), "title is longer than 500"),
        (conv("c", system_prompt="s" * 20_001), "systemPrompt is longer than 20000"),
        (conv("has space"), "id must be 1-128 characters"),
        (conv("a/b"), "id must be 1-128 characters"),
        (conv("../etc"), "id must be 1-128 characters"),
        (conv("x" * 129), "id must be 1-128 characters"),
        (conv(""), "id must be 1-128 characters"),
        (conv("c", created_at=-5), "createdAt must be epoch milliseconds"),
    ],
    ids=["role", "content", "nul", "title", "system-prompt", "space", "slash", "dots-slash",
         "long-id", "empty-id", "created-at"],
)
async def test_invalid_conversations_are_refused(
    services: Services, alice: User, data: ConversationInput, match: str
) -> None:
    with pytest.raises(ValidationFailed, match=match):
        await create(services, alice, data)
    assert (await page(services, alice)).total_count == 0


async def test_invalid_replace_leaves_the_conversation_unchanged(
    services: Services, alice: User
) -> None:
    before = await create(services, alice, conv("c1", "t", ("user", "kept")))
    with pytest.raises(ValidationFailed, match="role"):
        await replace(services, alice, "c1", conv(None, "new", ("user", "ok"), ("bot", "bad")))
    after = await get(services, alice, "c1")
    assert contents(after) == [("user", "kept")]
    assert after.conversation.updated_at == before.conversation.updated_at


async def test_content_at_the_limit_is_accepted(services: Services, alice: User) -> None:
    big = "x" * 100_000
    await create(services, alice, conv("c1", "t", ("user", big)))
    assert contents(await get(services, alice, "c1")) == [("user", big)]


async def test_concurrent_creates_of_one_id_yield_one_conversation(
    services: Services, alice: User
) -> None:
    results = await asyncio.gather(
        *(create(services, alice, conv("race", f"t{i}")) for i in range(4)),
        return_exceptions=True,
    )
    created = [r for r in results if not isinstance(r, BaseException)]
    assert len(created) == 1
    assert all(isinstance(r, Conflict) for r in results if isinstance(r, BaseException))
    assert (await page(services, alice)).total_count == 1

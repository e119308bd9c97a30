"""Statistics over the caller's own data, on SQLite and PostgreSQL."""

from __future__ import annotations

from models import User
from resolvers import auth, conversations, stats
from resolvers.conversations import ConversationInput, MessageInput
from resolvers.kit.clock import now_ms
from resolvers.services import Services


async def make_user(services: Services, username: str) -> User:
    async with services.db.session() as session:
        pair = await auth.register(session, services.security, username=username,
                                   email=f"{username}@example.com", password="correct horse")
    return pair.user


async def add_conversation(services: Services, actor: User, id: str, messages: int) -> None:
    data = ConversationInput(
        id=id, title=id, model="gpt-4o-mini",
        messages=[MessageInput(role="user", content=f"m{i}") for i in range(messages)],
    )
    async with services.db.session() as session:
        await conversations.create(session, actor, data=data)


async def use_tokens(services: Services, actor: User, prompt: int, completion: int) -> None:
    async with services.db.session() as session:
        await stats.record_usage(session, actor, model="gpt-4o-mini", prompt_tokens=prompt,
                                 completion_tokens=completion, request_id=None,
                                 created_at=now_ms())


async def stats_of(services: Services, actor: User) -> stats.Stats:
    async with services.db.session() as session:
        return await stats.for_user(session, actor)


async def test_a_new_user_has_zero_everything(services: Services) -> None:
    alice = await make_user(services, "alice")
    assert await stats_of(services, alice) == stats.Stats(0, 0, 0, 0.0)


async def test_stats_count_only_the_callers_data(services: Services) -> None:
    alice = await make_user(services, "alice")
    bob = await make_user(services, "bob")
    await add_conversation(services, alice, "conv_123", 3)
    await add_conversation(services, alice, "a2", 4)
    await add_conversation(services, alice, "a3", 0)
    # Bob's data, including a conversation with the same id, must not leak into Alice's.
    await add_conversation(services, bob, "conv_123", 10)
    await use_tokens(services, alice, prompt=100, completion=40)
    await use_tokens(services, alice, prompt=50, completion=2)
    await use_tokens(services, bob, prompt=999, completion=1000)

    mine = await stats_of(services, alice)
    assert mine.total_conversations == 3
    assert mine.total_messages == 7
    assert mine.average_messages_per_conversation == 2.33
    # total_tokens adds up the `tokens` of the caller's replies (completion tokens).
    assert mine.total_tokens == 42

    theirs = await stats_of(services, bob)
    assert (theirs.total_conversations, theirs.total_messages, theirs.total_tokens) == (
        1, 10, 1000)
    assert theirs.average_messages_per_conversation == 10.0


async def test_stats_follow_changes(services: Services) -> None:
    alice = await make_user(services, "alice")
    await add_conversation(services, alice, "a1", 2)
    await add_conversation(services, alice, "a2", 2)
    assert (await stats_of(services, alice)).total_messages == 4
    async with services.db.session() as session:
        await conversations.remove(session, alice, conversation_id="a1")
    after = await stats_of(services, alice)
    assert (after.total_conversations, after.total_messages) == (1, 2)
    assert after.average_messages_per_conversation == 2.0
    # Tokens already spent stay spent when a conversation is deleted.
    await use_tokens(services, alice, prompt=1, completion=5)
    async with services.db.session() as session:
        await conversations.remove(session, alice, conversation_id="a2")
    assert await stats_of(services, alice) == stats.Stats(0, 0, 5, 0.0)

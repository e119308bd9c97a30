"""The message tree under concurrency: appends that race for the same end of a conversation
all land, in one chain, on both databases (positions are unique; a loser reads again)."""

from __future__ import annotations

import asyncio

from models import User
from resolvers import auth, conversations
from resolvers.conversations import ConversationInput, MessageInput
from resolvers.services import Services


async def test_racing_appends_all_land_in_one_chain(services: Services) -> None:
    async with services.db.session() as session:
        await auth.register(session, services.security, username="racer",
                            email="racer@example.com", password="correct horse")
    async with services.db.session() as session:
        pair = await auth.login(session, services.security, username="racer",
                                password="correct horse")
        assert isinstance(pair, auth.TokenPair)  # no 2FA here
        actor = await auth.authenticate(session, services.security, pair.access_token)
        await conversations.create(session, actor, data=ConversationInput(
            id="race", title="Race", model="m",
            messages=[MessageInput(content="start", role="user")]))

    async def append(number: int, user: User) -> None:
        async with services.db.session() as session:
            await conversations.append_messages(
                session, user, conversation_id="race",
                messages=[MessageInput(content=f"reply {number}", role="assistant")])

    await asyncio.gather(*(append(number, actor) for number in range(8)))
    async with services.db.session() as session:
        stored = await conversations.get(session, actor, conversation_id="race",
                                         whole_tree=True)
    messages = stored.messages
    assert sorted(m.content for m in messages) == sorted(
        ["start", *(f"reply {n}" for n in range(8))])
    assert len({m.position for m in messages}) == 9
    # One chain, every message on the active path, each following the one before.
    assert all(m.active for m in messages)
    assert [m.parent_id for m in messages] == [None, *(m.id for m in messages[:-1])]

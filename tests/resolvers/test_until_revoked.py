"""chat.until_revoked: a reader's stream cut by revocation, and nothing else."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from resolvers.chat import until_revoked
from resolvers.chat.events import ChatChunk, ChatComplete, ChatError, ReplyEvent


async def reply(gate: asyncio.Event) -> AsyncGenerator[tuple[int, ReplyEvent], None]:
    yield 1, ChatChunk(content="a", request_id="r")
    await gate.wait()  # the model thinks
    yield 2, ChatComplete(tokens=1, model="m", request_id="r")


async def never() -> str:
    await asyncio.Event().wait()
    return "unreachable"


async def test_a_reader_that_leaves_mid_wait_closes_cleanly() -> None:
    """The client hangs up while the reply is between events: closing the reader must not
    fail with 'aclose(): asynchronous generator is already running'."""
    gate = asyncio.Event()
    stream = until_revoked(reply(gate), never(), request_id="r")
    assert (await anext(stream))[0] == 1
    pending = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.05)
    pending.cancel()
    (outcome,) = await asyncio.gather(pending, return_exceptions=True)
    # Before the fix the reader's cleanup raised RuntimeError("aclose(): asynchronous
    # generator is already running") instead of ending with the cancellation.
    assert isinstance(outcome, asyncio.CancelledError), repr(outcome)
    await stream.aclose()


async def test_revocation_ends_the_stream_with_unauthenticated() -> None:
    revoked = asyncio.Event()

    async def watch() -> str:
        await revoked.wait()
        return "logout"

    stream = until_revoked(reply(asyncio.Event()), watch(), request_id="r")
    assert (await anext(stream))[0] == 1
    revoked.set()
    seq, event = await anext(stream)
    assert isinstance(event, ChatError) and event.code == "unauthenticated"
    assert "logout" in event.message and seq == 1


async def test_a_failing_revocation_watch_does_not_cut_a_healthy_reply() -> None:
    """A broker hiccup in the watcher is not a revocation: the reader still gets the reply."""
    gate = asyncio.Event()

    async def broken_watch() -> str:
        await asyncio.sleep(0.01)
        raise ConnectionError("redis went away")

    stream = until_revoked(reply(gate), broken_watch(), request_id="r")
    first = await anext(stream)
    waiting = asyncio.ensure_future(anext(stream))  # the reader waits for the next event
    await asyncio.sleep(0.05)  # … and the watch fails meanwhile
    gate.set()
    second = await waiting
    assert [type(e).__name__ for _, e in (first, second)] == ["ChatChunk", "ChatComplete"]

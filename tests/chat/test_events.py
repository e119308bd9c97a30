"""Reply events: the broker's dicts round-trip to typed events, and only documented fields
are put on the wire."""

from __future__ import annotations

import pytest

from resolvers.chat.events import (
    ChatChunk,
    ChatComplete,
    ChatError,
    UnknownEvent,
    from_log,
)

COMPLETE = ChatComplete(request_id="r1", tokens=7, model="gpt-4o-mini", finish_reason="stopped",
                        message_id="msg_1", status="stopped", elapsed_ms=812)
ERROR = ChatError(request_id="r1", code="interrupted", message="The worker went away",
                  message_id="msg_2", elapsed_ms=90)
CHUNK = ChatChunk(request_id="r1", content="Hel")


@pytest.mark.parametrize("event", [CHUNK, COMPLETE, ERROR], ids=lambda e: e.type)
def test_log_round_trip_keeps_every_field(event: ChatChunk | ChatComplete | ChatError) -> None:
    assert from_log(event.to_log()) == event


def test_wire_holds_only_documented_fields() -> None:
    assert CHUNK.to_wire() == {"type": "chat_chunk", "content": "Hel", "request_id": "r1"}
    assert COMPLETE.to_wire() == {"type": "chat_complete", "tokens": 7, "model": "gpt-4o-mini",
                                  "finish_reason": "stopped", "request_id": "r1",
                                  "message_id": "msg_1"}
    # Any code travels (the durability work adds "interrupted"); internals never do.
    assert ERROR.to_wire() == {"type": "error", "code": "interrupted",
                               "message": "The worker went away", "request_id": "r1",
                               "message_id": "msg_2"}
    # No stored message: no message_id key at all (not null).
    bare = ChatComplete(request_id="r2", tokens=1, model="m")
    assert "message_id" not in bare.to_wire() and "status" not in bare.to_wire()


def test_fields_a_newer_worker_adds_are_ignored_and_unknown_types_refused() -> None:
    newer = {**COMPLETE.to_log(), "cost_usd": 0.01}
    assert from_log(newer) == COMPLETE
    with pytest.raises(UnknownEvent):
        from_log({"type": "tool_call", "request_id": "r1", "name": "search"})
    with pytest.raises(UnknownEvent):
        from_log({"type": "chat_chunk", "request_id": "r1"})  # no content

"""The signed-in users an access-token check needs, kept per process, so that a request does
not read its user row from the database every time (issue 11).

Correctness before speed — a change to a user is seen at once:

- every operation that changes a user row the token check reads (token generation: logout
  everywhere, deactivation; role, active, allowed models, 2FA; deletion) calls `changed()`
  after its commit: the entry is dropped in every cache of this process at once, and the
  broker carries it to the other workers (channel `users-changed`);
- a lookup that was under way while a change happened is not stored (`epoch`): it may have
  read the row before the commit;
- while this process is not listening to the broker (not started yet, the subscription ended,
  Redis reconnecting), nothing is served from the cache: every check reads the database, as
  before; after such a gap, or when messages were dropped, every entry is dropped;
- an entry lives `ttl` seconds at most: a change made outside the server (the command line's
  `admin promote`, SQL by hand) is seen within that time.

The cached objects are detached ORM instances shared by concurrent requests: read only (no
operation assigns to the caller's attributes; `session.get` gives a fresh one to change).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from resolvers.kit.broker import Broker

log = logging.getLogger("chat_studio.usercache")

CHANNEL = "users-changed"
DEFAULT_TTL = 10.0
MAX_ENTRIES = 10_000

_caches: weakref.WeakSet[UserCache] = weakref.WeakSet()


class UserCache:
    def __init__(self, broker: Broker | None, *, ttl: float = DEFAULT_TTL,
                 max_entries: int = MAX_ENTRIES) -> None:
        self.broker = broker
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, tuple[Any, float]] = {}
        self.epoch = 0
        self.listening = False
        self._gap = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        _caches.add(self)

    # -- lifecycle
    async def start(self) -> None:
        """Listen for changes made by other workers; the cache serves nothing until then."""
        if self.broker is None or self._task is not None or self.ttl <= 0:
            return
        self._loop = asyncio.get_running_loop()
        ready = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._listen(ready), name="usercache-listen")
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(ready), timeout=10)

    async def aclose(self) -> None:
        self.listening = False
        self._entries.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None

    async def _listen(self, ready: asyncio.Future[None]) -> None:
        assert self.broker is not None
        try:
            async with self.broker.subscribe(CHANNEL) as subscription:
                await subscription.ready()
                self.listening = True
                if not ready.done():
                    ready.set_result(None)
                dropped = 0
                async for message in subscription:
                    user_id = message.get("user_id")
                    if subscription.dropped != dropped:  # fell behind: some were lost
                        dropped, user_id = subscription.dropped, None
                    self.forget(user_id if isinstance(user_id, str) else None)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the user cache stopped listening: every token check reads the "
                          "database from now on")
        finally:
            self.listening = False
            self._entries.clear()
            if not ready.done():
                ready.set_result(None)

    # -- use
    def _live(self) -> bool:
        """Listening, and the broker delivers: after a gap (a Redis reconnect loses what was
        published meanwhile) every entry is dropped."""
        if not self.listening:
            return False
        if getattr(self.broker, "subscribed", True):
            if self._gap:
                self._gap = False
                self.forget(None)
            return True
        self._gap = True
        return False

    def get(self, user_id: str) -> Any | None:
        if not self._live():
            return None
        entry = self._entries.get(user_id)
        if entry is None:
            return None
        value, expires = entry
        if time.monotonic() >= expires:
            self._entries.pop(user_id, None)
            return None
        return value

    def put(self, user_id: str, value: Any, *, epoch: int) -> None:
        """Store what a lookup read, unless a change happened since it started (`epoch`)."""
        if not self._live() or epoch != self.epoch:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[user_id] = (value, time.monotonic() + self.ttl)

    def forget(self, user_id: str | None = None) -> None:
        """Drop one user's entry (None: every entry)."""
        self.epoch += 1
        if user_id is None:
            self._entries.clear()
        else:
            self._entries.pop(user_id, None)


def forget_here(user_id: str | None) -> None:
    """Drop the user from every cache of this process (at once, no awaiting)."""
    for cache in list(_caches):
        cache.forget(user_id)


async def changed(user_id: str) -> None:
    """A user row changed (call after the commit): every cache of this process forgets it at
    once, and the other workers when the broker's message reaches them. Never raises."""
    forget_here(user_id)
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    # Only brokers of this event loop (an in-process tool on a thread of its own has none).
    brokers = {id(cache.broker): cache.broker for cache in list(_caches)
               if cache.broker is not None and cache.listening and cache._loop is loop}
    for broker in brokers.values():
        try:
            await broker.publish(CHANNEL, {"user_id": user_id})
        except Exception:
            log.exception("could not publish the change of user %s", user_id)

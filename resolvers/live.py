"""The lifecycle of long-lived connections (/ws and GraphQL over WebSocket), written once.

Both WebSocket faces open one `session()` per socket:

    async with live.session(services, on_revoked=close_4401) as socket:
        user = await socket.authenticate(token, user_id=path_user_id)  # AppError if not
        ...  # the protocol: frames, close codes

It counts the connection for /health (every worker, through the broker) for exactly as long
as the block runs, authenticates with a short database session of its own (a socket holds
none while it lives), and keeps that decision true for the socket's whole life: when the
access token expires, the user logs out everywhere or is deleted, `on_revoked(reason)` is
called once so that the face closes the socket its own way. Logouts and deletions are
announced on the broker (channel `user-revoked:<user_id>`) after the change is committed, so
sockets on every worker hear them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from resolvers import auth, keys
from resolvers.auth import revocation_channel
from resolvers.kit.errors import AppError, Forbidden, Unavailable

if TYPE_CHECKING:
    from models import ApiKey, User
    from resolvers.kit.broker import Broker
    from resolvers.kit.db import Database
    from resolvers.kit.security import Security
    from resolvers.services import Services

log = logging.getLogger("chat_studio.revocation")

EXPIRED = "expired"
REVOKED = "revoked"


def _applies(message: dict[str, Any], generation: int) -> bool:
    if "key_id" in message:  # an API key was revoked: not this access token's business
        return False
    below = message.get("below_generation")
    return below is None or generation < int(below)


def _applies_to_key(message: dict[str, Any], key_id: str) -> bool:
    # A key's own revocation, or the account's deletion. Logout-everywhere (which carries
    # below_generation) ends sessions, not keys: they are revoked one by one.
    if "key_id" in message:
        return bool(message["key_id"] == key_id)
    return "below_generation" not in message


async def wait_until_key_revoked(broker: Broker, db: Database, key: ApiKey) -> str:
    """Like wait_until_revoked, for a socket opened with an API key: until the key is
    revoked, expires, or its owner is deleted."""
    async with broker.subscribe(revocation_channel(key.user_id)) as subscription:
        try:
            async with db.session() as session:  # short: the socket holds no session
                key = await keys.still_valid(session, key.id)
        except AppError:
            return REVOKED
        timeout = None if key.expires_at is None else max(key.expires_at / 1000 - time.time(), 0)
        try:
            async with asyncio.timeout(timeout):
                async for message in subscription:
                    if _applies_to_key(message, key.id):
                        return str(message.get("reason") or REVOKED)
        except TimeoutError:
            return EXPIRED
    return REVOKED


async def wait_until_revoked(broker: Broker, db: Database, security: Security,
                             token: str) -> str:
    """Wait until `token` stops authorizing its socket; return why.

    Returns at once with REVOKED when the token is no longer valid. The token is re-checked
    after the revocation channel is live, so a logout that lands between the socket's own
    authentication and this subscription is not missed.
    """
    try:
        claims = security.decode_access_token(token)
    except AppError:
        return EXPIRED
    async with broker.subscribe(revocation_channel(claims.user_id)) as subscription:
        try:
            async with db.session() as session:  # short: the socket holds no session
                await auth.authenticate(session, security, token)
        except auth.UserGone:
            return "deleted"
        except Unavailable:
            # The database is down: not a revocation. The socket authenticated a moment
            # ago, and no logout can commit while the database is down.
            pass
        except AppError:
            return REVOKED
        try:
            async with asyncio.timeout(max(claims.expires_at - time.time(), 0)):
                async for message in subscription:
                    if _applies(message, claims.generation):
                        return str(message.get("reason") or REVOKED)
        except TimeoutError:
            return EXPIRED
    return REVOKED  # the broker closed (server shutting down)


async def wait_until_caller_revoked(broker: Broker, db: Database, security: Security,
                                    token: str, key: ApiKey | None) -> str:
    """Until the credential a caller used — the API key `key`, else the access token `token`
    — stops authorizing its socket or stream: key revocation or expiry, logout-everywhere,
    deactivation, deletion."""
    if key is not None:
        return await wait_until_key_revoked(broker, db, key)
    return await wait_until_revoked(broker, db, security, token)


OnRevoked = Callable[[str], Awaitable[None]]


class LiveSocket:
    """One long-lived connection: who it is, and the watcher that ends it when that stops
    being true. Made by `session()`."""

    def __init__(self, services: Services, on_revoked: OnRevoked) -> None:
        self._services = services
        self._on_revoked = on_revoked
        self._watcher: asyncio.Task[None] | None = None
        self.user: User | None = None
        self.token: str | None = None
        self.key: ApiKey | None = None  # when the socket signed in with an API key

    async def authenticate(self, token: str | None, *, user_id: str | None = None) -> User:
        """The token's user, checked with a short session; Unauthenticated (or UserGone) when
        the token is not valid, Forbidden when it belongs to another user than `user_id`.

        May be called again on the same socket (a refreshed token): the new token's watcher
        replaces the old one.
        """
        services = self._services
        async with services.db.session() as session:  # short: sockets hold none
            # Any key scope may open a socket; each operation on it checks its own scope.
            caller = await keys.authenticate(session, services.security, token,
                                             scopes=keys.KEY_SCOPES)
        user = caller.user
        if user_id is not None and user.id != user_id:
            raise Forbidden("the token belongs to another user")
        assert token is not None  # auth.authenticate refuses a missing token
        self.user, self.token, self.key = user, token, caller.key
        await self._stop_watching()
        self._watcher = asyncio.create_task(self._watch(token, caller.key),
                                            name="live authorization")
        return user

    def require(self, *scopes: keys.Scope) -> None:
        """Forbidden when the socket's API key lacks every one of `scopes`."""
        keys.require(self.key, scopes)

    async def _watch(self, token: str, key: ApiKey | None) -> None:
        services = self._services
        reason = await wait_until_caller_revoked(services.broker, services.db,
                                                 services.security, token, key)
        log.info("closing a live socket: token %s", reason)
        await self._on_revoked(reason)

    async def _stop_watching(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None and watcher is not asyncio.current_task():
            watcher.cancel()
            # A broker outage in the watcher must not fail the socket's teardown.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher


@contextlib.asynccontextmanager
async def session(services: Services, *, on_revoked: OnRevoked) -> AsyncIterator[LiveSocket]:
    """One socket's life: counted for /health while the block runs, authenticated by
    `socket.authenticate()`, closed through `on_revoked(reason)` when its rights end."""
    await services.broker.connections_add(1)
    socket = LiveSocket(services, on_revoked)
    try:
        yield socket
    finally:
        await socket._stop_watching()
        await services.broker.connections_add(-1)

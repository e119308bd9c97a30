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
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from resolvers import auth, keys
from resolvers.auth import revocation_channel
from resolvers.kit.errors import AppError, Forbidden, Unavailable

if TYPE_CHECKING:
    from models import ApiKey, User
    from resolvers.kit.broker import Broker, Subscription
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
    """One long-lived connection: who it is, and what ends it when that stops being true.
    Made by `session()`.

    An idle socket must cost little (thousands stay open for hours), so the watch holds no
    task: a broker listener on the user's revocation channel (`Subscription` with
    `on_message`, called in place by the broker) and one timer for the credential's expiry.
    Only when one of them fires does a task run `on_revoked`.
    """

    def __init__(self, services: Services, on_revoked: OnRevoked) -> None:
        self._services = services
        self._on_revoked = on_revoked
        self._listener: Subscription | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self._revoking: asyncio.Task[None] | None = None
        self.user: User | None = None
        self.token: str | None = None
        self.key: ApiKey | None = None  # when the socket signed in with an API key

    async def authenticate(self, token: str | None, *, user_id: str | None = None) -> User:
        """The token's user, checked with a short session; Unauthenticated (or UserGone) when
        the token is not valid, Forbidden when it belongs to another user than `user_id`.

        May be called again on the same socket (a refreshed token): the new token's watch
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
        await self._watch(token, caller.key)
        return user

    def require(self, *scopes: keys.Scope) -> None:
        """Forbidden when the socket's API key lacks every one of `scopes`."""
        keys.require(self.key, scopes)

    async def _watch(self, token: str, key: ApiKey | None) -> None:
        """Listen for the credential's revocation, then check it once more (a logout that
        landed between the authentication and the listener being live is not missed), and
        set the expiry timer. The same decisions as `wait_until_caller_revoked`."""
        services = self._services
        applies: Callable[[dict[str, Any]], bool]
        if key is not None:
            key_id = key.id
            user_id = key.user_id
            expires_at = None if key.expires_at is None else key.expires_at / 1000
            applies = lambda message: _applies_to_key(message, key_id)  # noqa: E731
        else:
            try:
                claims = services.security.decode_access_token(token)
            except AppError:
                self._revoke(EXPIRED)
                return
            user_id, expires_at, generation = claims.user_id, claims.expires_at, \
                claims.generation
            applies = lambda message: _applies(message, generation)  # noqa: E731

        def heard(text: str) -> None:
            message = json.loads(text)
            if applies(message):
                self._revoke(str(message.get("reason") or REVOKED))

        listener = services.broker.subscribe(revocation_channel(user_id), on_message=heard)
        self._listener = listener
        try:
            await listener.ready()
        except Exception:
            # The broker is down: the socket stays open (its authentication just succeeded),
            # unwatched, as before this listener existed; logged rather than failing it.
            log.warning("could not listen for revocations of a live socket", exc_info=True)
            return
        reason = await _still_valid(services, token, key)
        if reason is not None:
            self._revoke(reason)
        elif expires_at is not None:
            self._expiry = asyncio.get_running_loop().call_later(
                max(expires_at - time.time(), 0), self._revoke, EXPIRED)

    def _revoke(self, reason: str) -> None:
        if self._revoking is not None:
            return  # once per socket

        async def close() -> None:
            log.info("closing a live socket: token %s", reason)
            await self._on_revoked(reason)

        self._revoking = asyncio.create_task(close(), name="live revocation")

    async def _stop_watching(self) -> None:
        listener, self._listener = self._listener, None
        expiry, self._expiry = self._expiry, None
        revoking, self._revoking = self._revoking, None
        if expiry is not None:
            expiry.cancel()
        if listener is not None:
            # A broker outage must not fail the socket's teardown.
            with contextlib.suppress(Exception):
                await listener.aclose()
        if revoking is not None and revoking is not asyncio.current_task():
            revoking.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await revoking


async def _still_valid(services: Services, token: str, key: ApiKey | None) -> str | None:
    """None while the credential still authorizes its socket, else why not."""
    if key is not None:
        try:
            async with services.db.session() as session:
                await keys.still_valid(session, key.id)
        except AppError:
            return REVOKED
        return None
    try:
        async with services.db.session() as session:  # short: the socket holds no session
            await auth.authenticate(session, services.security, token)
    except auth.UserGone:
        return "deleted"
    except Unavailable:
        # The database is down: not a revocation. The socket authenticated a moment ago,
        # and no logout can commit while the database is down.
        return None
    except AppError:
        return REVOKED
    return None


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

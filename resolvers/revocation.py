"""Live authorization for long-lived connections (WebSockets, GraphQL subscriptions).

A socket is authorized once, when it connects; these helpers keep that decision true for its
whole life. It must close when its access token expires, when its user logs out everywhere,
or when the user is deleted. The last two are announced on the broker (channel
`user-revoked:<user_id>`) after the change is committed, so sockets on every worker hear it.

    reason = await revocation.wait_until_revoked(broker, db, security, token)
    # -> "expired" | "logout" | "deleted" | "revoked": close the socket (4401)
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from resolvers.errors import AppError

if TYPE_CHECKING:
    from resolvers.broker import Broker
    from resolvers.db import Database
    from resolvers.security import Security

log = logging.getLogger("chat_studio.revocation")

EXPIRED = "expired"
REVOKED = "revoked"


def revocation_channel(user_id: str) -> str:
    return f"user-revoked:{user_id}"


async def publish_revocation(
    broker: Broker, user_id: str, reason: str, *, below_generation: int | None = None
) -> None:
    """Tell every worker to close `user_id`'s sockets. Call only after the commit.

    `below_generation`: only tokens of an older generation are revoked (logout everywhere
    bumps it; a session signed in afterwards stays open). None revokes every token (deletion).
    Never raises: the change is committed either way, and sockets still close at token expiry.
    """
    message: dict[str, Any] = {"reason": reason}
    if below_generation is not None:
        message["below_generation"] = below_generation
    try:
        await broker.publish(revocation_channel(user_id), message)
    except Exception:
        log.exception("could not publish the revocation of %s", user_id)


def _applies(message: dict[str, Any], generation: int) -> bool:
    below = message.get("below_generation")
    return below is None or generation < int(below)


async def wait_until_revoked(broker: Broker, db: Database, security: Security,
                             token: str) -> str:
    """Wait until `token` stops authorizing its socket; return why.

    Returns at once with REVOKED when the token is no longer valid. The token is re-checked
    after the revocation channel is live, so a logout that lands between the socket's own
    authentication and this subscription is not missed.
    """
    from resolvers import auth  # auth publishes revocations: imported here, not at the top

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

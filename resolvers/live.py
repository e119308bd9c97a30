"""Live authorization for long-lived connections (WebSockets, GraphQL subscriptions).

A socket is authorized once, when it connects; these helpers keep that decision true for its
whole life. It must close when its access token expires, when its user logs out everywhere,
or when the user is deleted. The last two are announced on the broker (channel
`user-revoked:<user_id>`) after the change is committed, so sockets on every worker hear it.

    reason = await live.wait_until_revoked(broker, db, security, token)
    # -> "expired" | "logout" | "deleted" | "revoked": close the socket (4401)
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from resolvers import auth
from resolvers.auth import revocation_channel
from resolvers.kit.errors import AppError, Unavailable

if TYPE_CHECKING:
    from resolvers.kit.broker import Broker
    from resolvers.kit.db import Database
    from resolvers.kit.security import Security

log = logging.getLogger("chat_studio.revocation")

EXPIRED = "expired"
REVOKED = "revoked"


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

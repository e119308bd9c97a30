"""The per-process service container handed to both faces.

Built by server.py's lifespan (never at import time), so tests can build one per test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from resolvers.kit.db import Database
from resolvers.kit.ratelimit import MemoryRateLimiter, RateLimiter
from resolvers.kit.security import Security
from resolvers.kit.settings import Settings

if TYPE_CHECKING:
    from resolvers.chat import Chat
    from resolvers.files import Files
    from resolvers.kit.broker import Broker
    from resolvers.kit.usercache import UserCache
    from resolvers.sso import SignOn


@dataclass
class Services:
    settings: Settings
    db: Database
    security: Security
    broker: Broker
    chat: Chat
    # Rate limits (memory, or Redis with REDIS_URL); assembly.py builds the real one.
    limiter: RateLimiter = field(default_factory=MemoryRateLimiter)
    # Single sign-on providers (assembly.py builds it from the OIDC_/GITHUB_/GOOGLE_ settings).
    sign_on: SignOn | None = None
    # Uploads and their extraction (issue 16); assembly.py builds it.
    files: Files | None = None
    # Signed-in users for the access-token check (issue 11); assembly.py builds and starts it.
    users: UserCache | None = None

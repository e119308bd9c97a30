"""The per-process service container handed to both faces.

Built by server.py's lifespan (never at import time), so tests can build one per test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from resolvers.db import Database
from resolvers.security import Security
from resolvers.settings import Settings

if TYPE_CHECKING:
    from resolvers.broker import Broker


@dataclass
class Services:
    settings: Settings
    db: Database
    security: Security
    broker: Broker
    # Filled in by the chat wiring (resolvers/chat.py); typed loosely to keep this leaf small.
    extras: dict[str, Any] = field(default_factory=dict)

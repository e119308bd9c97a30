"""Dependency outages: one log line when a dependency goes down and one when it is back.

A database or Redis outage makes every request fail the same way; logging (and sending to
Sentry) a stack trace per request would bury the one line that matters. Each process keeps the
state of each dependency it uses and logs only its changes. `/health` asks the dependency
itself; this is about what the log says.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("chat_studio.outages")


class Outage:
    """The state of one dependency ("database", "redis") in this process."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._down_since: float | None = None

    @property
    def is_down(self) -> bool:
        return self._down_since is not None

    def down(self, exc: BaseException) -> None:
        """A request failed because the dependency is unreachable."""
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.error("%s is unavailable: requests that need it answer 503 until it is back "
                      "(%s: %s)", self.name, type(exc).__name__, str(exc)[:300])

    def up(self) -> None:
        """A request to the dependency succeeded."""
        if self._down_since is not None:
            seconds = time.monotonic() - self._down_since
            self._down_since = None
            log.warning("%s is back after %.1f s", self.name, seconds)


_outages: dict[str, Outage] = {}


def outage(name: str) -> Outage:
    """The process-wide state of `name` (every client of one dependency shares it, so an
    outage is logged once per process, not once per client)."""
    if name not in _outages:
        _outages[name] = Outage(name)
    return _outages[name]

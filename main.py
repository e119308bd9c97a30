"""The integration guide's entry point: `uvicorn main:app` serves the same app as `server:app`.

Nothing is built at import: `app` comes from `server.__getattr__` on first access.
"""

from __future__ import annotations

from typing import Any

import server


def __getattr__(name: str) -> Any:
    return getattr(server, name)

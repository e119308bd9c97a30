"""The audit log: who did what, when, from where. Append-only.

`record()` adds a row to the caller's session: it commits (or rolls back) together with the
change it describes, so the log never claims a change that did not happen nor misses one
that did. Details are small dicts of non-secret facts; `record()` refuses keys that name a
secret, so a careless caller cannot write a password, token, key or TOTP secret into it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import AuditEvent, User
from resolvers.kit.clock import now_ms
from resolvers.kit.errors import ValidationFailed
from resolvers.kit.logging import REQUEST_ID
from resolvers.roles import require_admin

# Every event type the contract names (CONTRACT-2 §5), and the ones each issue adds.
LOGIN_OK = "login.ok"
LOGIN_FAILED = "login.failed"
LOGOUT = "logout"
REGISTER = "register"
SSO_LOGIN = "sso.login"
SSO_LINK = "sso.link"
TWOFA_SETUP = "2fa.setup"
TWOFA_ENABLED = "2fa.enabled"
TWOFA_DISABLED = "2fa.disabled"
TWOFA_FAILED = "2fa.failed"
TWOFA_RECOVERY_USED = "2fa.recovery_used"
KEY_CREATED = "key.created"  # written by the API keys issue (#12)
KEY_REVOKED = "key.revoked"
SHARE_CREATED = "share.created"  # written by the sharing issue (#13a)
SHARE_REVOKED = "share.revoked"
IMPORT = "import"  # written by the import issue (#13b)
ADMIN_USER_UPDATED = "admin.user_updated"
ADMIN_PROMOTED = "admin.promoted"
ADMIN_INVITE_CREATED = "admin.invite_created"
ACCOUNT_DELETED = "account.deleted"
MCP_SERVER_ADDED = "admin.mcp_server_added"  # written by the tools issue (#15)
MCP_SERVER_REMOVED = "admin.mcp_server_removed"

TYPES = frozenset({
    LOGIN_OK, LOGIN_FAILED, LOGOUT, REGISTER, SSO_LOGIN, SSO_LINK, TWOFA_SETUP, TWOFA_ENABLED,
    TWOFA_DISABLED, TWOFA_FAILED, TWOFA_RECOVERY_USED, KEY_CREATED, KEY_REVOKED, SHARE_CREATED,
    SHARE_REVOKED, IMPORT, ADMIN_USER_UPDATED, ADMIN_PROMOTED, ADMIN_INVITE_CREATED,
    ACCOUNT_DELETED, MCP_SERVER_ADDED, MCP_SERVER_REMOVED,
})

# Substrings of detail keys that would name a secret: refused outright.
_SECRET_WORDS = ("password", "token", "secret", "key", "code", "otp")
PAGE_MAX = 200


def record(session: AsyncSession, type: str, *, actor_id: str | None = None,
           target_id: str | None = None, ip: str | None = None,
           detail: dict[str, Any] | None = None) -> AuditEvent:
    """Add one audit row to `session` (the caller commits it with its change)."""
    if type not in TYPES:
        raise ValueError(f"unknown audit event type {type!r}")
    detail = dict(detail or {})
    for name in detail:
        lowered = name.lower()
        if any(word in lowered for word in _SECRET_WORDS) and lowered != "key_id":
            raise ValueError(f"audit detail {name!r} may hold a secret")
    row = AuditEvent(at=now_ms(), type=type, actor_id=actor_id, target_id=target_id,
                     ip=(ip or None) and ip[:64], request_id=REQUEST_ID.get(), detail=detail)
    session.add(row)
    return row


@dataclass(slots=True)
class AuditPage:
    items: list[AuditEvent]
    next_cursor: str | None


async def query(session: AsyncSession, actor: User, *, limit: int = 50,
                cursor: str | None = None, type: str | None = None) -> AuditPage:
    """The audit log, newest first (admins only). `cursor` is the previous page's
    `next_cursor`; `type` filters by event type."""
    require_admin(actor)
    limit = max(1, min(limit, PAGE_MAX))
    statement = select(AuditEvent)
    if type:
        statement = statement.where(AuditEvent.type == type)
    if cursor:
        try:
            before = int(cursor)
        except ValueError as exc:
            raise ValidationFailed("Invalid cursor", field="cursor") from exc
        statement = statement.where(col(AuditEvent.id) < before)
    rows = list((await session.exec(
        statement.order_by(col(AuditEvent.id).desc()).limit(limit + 1))).all())
    more = len(rows) > limit
    rows = rows[:limit]
    return AuditPage(items=rows, next_cursor=str(rows[-1].id) if more and rows else None)

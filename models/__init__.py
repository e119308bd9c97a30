"""SQLModel tables only (what is stored)."""

from models.tables import (
    AuditEvent,
    Conversation,
    Invite,
    Message,
    OAuthIdentity,
    OAuthLogin,
    RecoveryCode,
    RefreshToken,
    TokenUsage,
    User,
)

__all__ = ["AuditEvent", "Conversation", "Invite", "Message", "OAuthIdentity", "OAuthLogin",
           "RecoveryCode", "RefreshToken", "TokenUsage", "User"]

"""SQLModel tables only (what is stored)."""

from models.tables import (
    ApiKey,
    AuditEvent,
    BudgetLedger,
    BudgetReservation,
    Conversation,
    FileChunk,
    Invite,
    Message,
    OAuthIdentity,
    OAuthLogin,
    RecoveryCode,
    RefreshToken,
    StoredFile,
    TokenUsage,
    User,
)

__all__ = ["ApiKey", "AuditEvent", "BudgetLedger", "BudgetReservation", "Conversation",
           "FileChunk", "Invite", "Message", "OAuthIdentity", "OAuthLogin", "RecoveryCode",
           "RefreshToken",
           "StoredFile", "TokenUsage", "User"]

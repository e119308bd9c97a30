"""SQLModel tables only (what is stored)."""

from models.tables import (
    ApiKey,
    AuditEvent,
    BudgetLedger,
    BudgetReservation,
    Conversation,
    ConversationTag,
    FileChunk,
    Invite,
    McpServer,
    Message,
    OAuthIdentity,
    OAuthLogin,
    RecoveryCode,
    RefreshToken,
    Share,
    StoredFile,
    TokenUsage,
    User,
)

__all__ = ["ApiKey", "AuditEvent", "BudgetLedger", "BudgetReservation", "Conversation",
           "ConversationTag", "FileChunk", "Invite", "McpServer", "Message", "OAuthIdentity",
           "OAuthLogin", "RecoveryCode", "RefreshToken", "Share", "StoredFile", "TokenUsage",
           "User"]

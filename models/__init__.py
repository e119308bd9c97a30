"""SQLModel tables only (what is stored)."""

from models.tables import (
    ApiKey,
    AuditEvent,
    BudgetLedger,
    BudgetReservation,
    Conversation,
    Invite,
    McpServer,
    Message,
    OAuthIdentity,
    OAuthLogin,
    RecoveryCode,
    RefreshToken,
    TokenUsage,
    User,
)

__all__ = ["ApiKey", "AuditEvent", "BudgetLedger", "BudgetReservation", "Conversation",
           "Invite", "McpServer", "Message", "OAuthIdentity", "OAuthLogin", "RecoveryCode",
           "RefreshToken", "TokenUsage", "User"]

"""SQLModel tables only (what is stored)."""

from models.tables import (
    ApiKey,
    BudgetLedger,
    BudgetReservation,
    Conversation,
    Message,
    RefreshToken,
    TokenUsage,
    User,
)

__all__ = ["ApiKey", "BudgetLedger", "BudgetReservation", "Conversation", "Message",
           "RefreshToken", "TokenUsage", "User"]

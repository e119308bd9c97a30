"""SQLModel tables only (what is stored)."""

from models.tables import (
    Conversation,
    ConversationTag,
    Message,
    RefreshToken,
    Share,
    TokenUsage,
    User,
)

__all__ = ["Conversation", "ConversationTag", "Message", "RefreshToken", "Share", "TokenUsage",
           "User"]

"""SQLModel tables only (what is stored)."""

from models.tables import Conversation, Message, RefreshToken, TokenUsage, User

__all__ = ["Conversation", "Message", "RefreshToken", "TokenUsage", "User"]

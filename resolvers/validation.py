"""Input rules shared by both faces (one place, so GraphQL and REST cannot disagree)."""

from __future__ import annotations

import re

from email_validator import EmailNotValidError, validate_email

from resolvers.kit.errors import ValidationFailed

USERNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{3,32}$")
# Conversation and message ids travel in URL paths: keep them to URL-safe characters.
ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")

PASSWORD_MIN = 8
PASSWORD_MAX = 128
TITLE_MAX = 500
MODEL_NAME_MAX = 128
SYSTEM_PROMPT_MAX = 20_000
MESSAGE_CONTENT_MAX = 100_000
MESSAGES_PER_CONVERSATION_MAX = 10_000
ROLES = frozenset({"user", "assistant", "system"})


def username(value: str) -> str:
    value = value.strip()
    if not USERNAME_RE.fullmatch(value):
        raise ValidationFailed(
            "Username must be 3-32 characters: letters, digits, '_', '.' or '-'",
            field="username",
        )
    return value


def email(value: str) -> str:
    try:
        result = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValidationFailed(f"Invalid email address: {exc}", field="email") from exc
    return result.normalized.lower()


def password(value: str) -> str:
    if not PASSWORD_MIN <= len(value) <= PASSWORD_MAX:
        raise ValidationFailed(
            f"Password must be {PASSWORD_MIN}-{PASSWORD_MAX} characters", field="password"
        )
    if value.strip() == "":
        raise ValidationFailed("Password must not be blank", field="password")
    return value


def identifier(value: str, *, field: str) -> str:
    if not ID_RE.fullmatch(value):
        raise ValidationFailed(
            f"{field} must be 1-128 characters: letters, digits, '_', '.', ':' or '-'",
            field=field,
        )
    return value


def bounded_text(value: str, *, field: str, limit: int, allow_empty: bool = True) -> str:
    if len(value) > limit:
        raise ValidationFailed(f"{field} is longer than {limit} characters", field=field)
    if "\x00" in value:  # PostgreSQL text cannot hold NUL: refuse it on every database alike
        raise ValidationFailed(f"{field} must not contain NUL characters", field=field)
    if not allow_empty and not value.strip():
        raise ValidationFailed(f"{field} must not be empty", field=field)
    return value


def role(value: str | None) -> str:
    if value is None:
        raise ValidationFailed("role is required: user, assistant or system", field="role")
    if value not in ROLES:
        raise ValidationFailed("role must be one of: user, assistant, system", field="role")
    return value


def timestamp(value: int, *, field: str = "timestamp") -> int:
    # Epoch milliseconds; reject values that cannot be a date (negative or beyond year 9999).
    if not 0 <= value <= 253_402_300_799_999:
        raise ValidationFailed(f"{field} must be epoch milliseconds", field=field)
    return value

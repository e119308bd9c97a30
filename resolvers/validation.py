"""Input rules shared by both faces (one place, so GraphQL and REST cannot disagree)."""

from __future__ import annotations

import re

from email_validator import EmailNotValidError, validate_email

from resolvers.kit.errors import ValidationFailed

USERNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{3,32}$")
# Lone UTF-16 surrogates: JSON may spell them ("\ud800"), Python decodes them, but no UTF-8
# can hold them, so they could be neither stored, hashed nor sent back.
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
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
# Epoch milliseconds up to the end of year 9999 (and a BIGINT on every database).
TIMESTAMP_MAX = 253_402_300_799_999
# Token counts are INTEGER columns (32-bit on PostgreSQL).
COUNT_MAX = 2**31 - 1


def is_text(value: str) -> bool:
    """Whether `value` is valid Unicode text (no lone surrogates)."""
    return _SURROGATE_RE.search(value) is None


def text(value: str, *, field: str) -> str:
    if not is_text(value):
        raise ValidationFailed(f"{field} is not valid Unicode text (it holds a lone UTF-16 "
                               "surrogate such as \\ud800)", field=field)
    return value


def username(value: str) -> str:
    value = text(value, field="username").strip()
    if not USERNAME_RE.fullmatch(value):
        raise ValidationFailed(
            "Username must be 3-32 characters: letters, digits, '_', '.' or '-'",
            field="username",
        )
    return value


def email(value: str) -> str:
    text(value, field="email")
    try:
        result = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValidationFailed(f"Invalid email address: {exc}", field="email") from exc
    return result.normalized.lower()


def password(value: str) -> str:
    text(value, field="password")
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
    text(value, field=field)
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
    if isinstance(value, bool) or not isinstance(value, int) \
            or not 0 <= value <= TIMESTAMP_MAX:
        raise ValidationFailed(f"{field} must be epoch milliseconds", field=field)
    return value


def count(value: int, *, field: str) -> int:
    """A non-negative count that fits its column (token counts)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= COUNT_MAX:
        raise ValidationFailed(f"{field} must be a whole number from 0 to {COUNT_MAX}",
                               field=field)
    return value


def unique_ids(ids: list[str | None], *, field: str = "message id") -> None:
    """Message ids are unique within their conversation."""
    seen: set[str] = set()
    for value in ids:
        if value is None:
            continue
        if value in seen:
            raise ValidationFailed(f"Duplicate {field} {value!r}: ids are unique within a "
                                   "conversation", field=field)
        seen.add(value)

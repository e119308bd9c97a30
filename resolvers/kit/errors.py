"""One error tree for every operation.

Each error has a stable `code` (GraphQL `extensions.code`) and an HTTP status (REST). Both
faces map errors in one place; no face invents its own.
"""

from __future__ import annotations

from typing import Any, ClassVar


class AppError(Exception):
    code: ClassVar[str] = "INTERNAL"
    http_status: ClassVar[int] = 500
    default_message: ClassVar[str] = "Internal server error"

    def __init__(self, message: str | None = None, **extra: Any) -> None:
        self.message = message or self.default_message
        self.extra = extra
        super().__init__(self.message)


class BadInput(AppError):
    code = "BAD_USER_INPUT"
    http_status = 400
    default_message = "Invalid input"


class ValidationFailed(BadInput):
    """Input that fails field validation (REST: 422 like FastAPI's own validation)."""

    http_status = 422


class Unauthenticated(AppError):
    code = "UNAUTHENTICATED"
    http_status = 401
    default_message = "Not authenticated"


class InvalidCredentials(Unauthenticated):
    default_message = "Incorrect username or password"


class Forbidden(AppError):
    code = "FORBIDDEN"
    http_status = 403
    default_message = "Forbidden"


class NotFound(AppError):
    code = "NOT_FOUND"
    http_status = 404
    default_message = "Not found"


class Conflict(AppError):
    code = "CONFLICT"
    http_status = 409
    default_message = "Already exists"


class UsernameTaken(Conflict):
    # The guide documents 400 for a taken username or email on register.
    http_status = 400


class RateLimited(AppError):
    code = "RATE_LIMITED"
    http_status = 429
    default_message = "Too many requests"

    def __init__(self, message: str | None = None, *, retry_after: int = 1) -> None:
        super().__init__(message, retry_after=retry_after)
        self.retry_after = retry_after


class PayloadTooLarge(AppError):
    code = "BAD_USER_INPUT"
    http_status = 413
    default_message = "Request too large"


class ProviderFailed(AppError):
    code = "PROVIDER_ERROR"
    http_status = 502
    default_message = "The model provider failed"


class ProviderTimeout(ProviderFailed):
    http_status = 504
    default_message = "The model provider timed out"


class Unavailable(AppError):
    """A dependency (the database, Redis) is down or saturated: REST 503 with Retry-After,
    GraphQL SERVICE_UNAVAILABLE, /ws `service_unavailable`. Never a 500."""

    code = "SERVICE_UNAVAILABLE"
    http_status = 503
    default_message = "The service is temporarily unavailable; retry shortly"

    def __init__(self, message: str | None = None, *, retry_after: int = 2) -> None:
        super().__init__(message, retry_after=retry_after)
        self.retry_after = retry_after

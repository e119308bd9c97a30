"""Error shaping: our coded errors reach the client with `extensions.code`; anything else is
masked as INTERNAL (details go to the log, never to the client)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from resolvers.kit.errors import AppError, RateLimited, Unavailable

log = logging.getLogger("chat_studio.graphql")


def shape_error(error: GraphQLError) -> GraphQLError:
    original = error.original_error
    if original is None:
        # Parse and validation errors from graphql-core: already safe, give them a code.
        extensions = dict(error.extensions or {})
        extensions.setdefault("code", "GRAPHQL_VALIDATION_FAILED")
        error.extensions = extensions
        return error
    if isinstance(original, AppError):
        extensions = {"code": original.code}
        if original.extra.get("field"):
            extensions["field"] = original.extra["field"]
        if isinstance(original, RateLimited | Unavailable):
            extensions["retryAfter"] = original.retry_after
        if "available" in original.extra:
            extensions["available"] = original.extra["available"]
        if "mfa_token" in original.extra:  # login of a 2FA account: the second step's token
            extensions["mfaToken"] = original.extra["mfa_token"]
        message = original.message
    elif isinstance(original, GraphQLError) or (
        isinstance(original, ValueError) and error.path is None
    ):
        # Variable coercion ("Variable '$first' got invalid value …", also from our scalars'
        # ValueError): keep graphql-core's message and location, add the code.
        extensions = dict(error.extensions or {})
        extensions.setdefault("code", "BAD_USER_INPUT")
        error.extensions = extensions
        return error
    else:
        log.error("unexpected error in %s", error.path, exc_info=original)
        extensions, message = {"code": "INTERNAL"}, "Internal server error"
    return GraphQLError(message, nodes=error.nodes, source=error.source,
                        positions=error.positions, path=error.path,
                        original_error=None, extensions=extensions)


class ErrorCodes(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if result is not None and result.errors:
            result.errors = [shape_error(error) for error in result.errors]

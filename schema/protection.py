"""GraphQL protection: every limit refuses a document before execution, with a clear error.

- document size (bytes of the query text, checked before parsing),
- tokens (graphql-core stops parsing past the limit: MaxTokensLimiter),
- depth (QueryDepthLimiter) and aliases (MaxAliasesLimiter), validation rules; and depth
  counting introspection fields too (QueryDepthLimiter skips every `__` field, so a 50-deep
  `__schema { types { ofType { ofType ... } } }` would pass it): FullDepthLimit,
- introspection (off in production unless GRAPHQL_INTROSPECTION=true),
- parse and validation caches (ParserCache, ValidationCache; bounded LRUs),
- operation metrics (by name, type and outcome).

Extensions are passed to Strawberry as factories (a fresh instance per operation). The
validation rule classes are built once per schema, so ValidationCache's key (schema, document,
rules) repeats and the cache actually hits.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationRule,
    parse,
)
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.extensions.disable_introspection import DisableIntrospection

from resolvers.kit import metrics
from resolvers.kit.settings import Settings

CACHE_SIZE = 256  # distinct documents kept parsed and validated (per process)


@dataclass(frozen=True, slots=True)
class Limits:
    max_depth: int = 10
    # Introspection included. GraphiQL's own schema query is 15 deep (TypeRef's ofType chain).
    max_introspection_depth: int = 20
    max_aliases: int = 15
    max_tokens: int = 2000
    max_document_bytes: int = 20 * 1024
    introspection: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(max_depth=settings.graphql_max_depth,
                   max_introspection_depth=settings.graphql_max_introspection_depth,
                   max_aliases=settings.graphql_max_aliases,
                   max_tokens=settings.graphql_max_tokens,
                   max_document_bytes=settings.graphql_max_document_bytes,
                   introspection=settings.introspection_enabled)


def full_depth_limit(limit: int) -> type[ValidationRule]:
    """A validation rule: no operation deeper than `limit`, counting every field (introspection
    included) and following fragments. Linear in the document (fragment depths are memoized)
    and never recursing deeper than `limit`."""

    class FullDepthLimit(ValidationRule):
        def enter_operation_definition(self, node: OperationDefinitionNode, *_: object) -> None:
            fragments = {d.name.value: d for d in self.context.document.definitions
                         if isinstance(d, FragmentDefinitionNode)}
            memo: dict[tuple[str, int], int] = {}

            def depth(selection_set: SelectionSetNode, budget: int) -> int:
                """The exact depth when it is at most `budget`, else some number above it."""
                deepest = 0
                for selection in selection_set.selections:
                    if isinstance(selection, FieldNode):
                        if selection.selection_set is None:
                            found = 1
                        elif budget < 1:
                            found = budget + 2
                        else:
                            found = 1 + depth(selection.selection_set, budget - 1)
                    elif isinstance(selection, FragmentSpreadNode):
                        key = (selection.name.value, budget)
                        fragment = fragments.get(key[0])
                        if fragment is None:
                            continue  # reported by graphql-core's own rules
                        if key not in memo:
                            memo[key] = 0  # a fragment cycle (invalid anyway) ends here
                            memo[key] = depth(fragment.selection_set, budget)
                        found = memo[key]
                    elif isinstance(selection, InlineFragmentNode):
                        found = depth(selection.selection_set, budget)
                    else:
                        continue
                    deepest = max(deepest, found)
                    if deepest > budget:
                        break
                return deepest

            if depth(node.selection_set, limit) > limit:
                name = node.name.value if node.name else "anonymous"
                self.report_error(GraphQLError(
                    f"'{name}' exceeds maximum operation depth of {limit} (introspection "
                    "fields included)", node))

    return FullDepthLimit


class DocumentTooLarge(GraphQLError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"Document too large: {size} bytes (limit {limit})",
                         extensions={"code": "BAD_USER_INPUT"})


class GuardedParser(ParserCache):
    """ParserCache plus the document-size limit, without raising from a hook.

    An exception raised in a hook would skip the other extensions' exits (error codes,
    metrics). So: an oversized document is never parsed (a tiny placeholder stands in for it)
    and its error is reported at validation, where Strawberry expects request errors; a
    document that fails to parse is left to Strawberry's own parse, which reports it.
    """

    def __init__(self, *, max_bytes: int, maxsize: int = CACHE_SIZE) -> None:
        super().__init__(maxsize=maxsize)
        self.max_bytes = max_bytes
        self.too_large: DocumentTooLarge | None = None

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        query = context.query
        if query is not None and context.graphql_document is None:
            size = len(query) if len(query) * 4 <= self.max_bytes else len(query.encode())
            if size > self.max_bytes:
                self.too_large = DocumentTooLarge(size, self.max_bytes)
                context.graphql_document = _PLACEHOLDER
            else:
                try:
                    context.graphql_document = self.cached_parse_document(
                        query, **context.parse_options)
                except GraphQLError:
                    pass  # parsed again (bounded by the token limit) and reported by Strawberry
        yield

    def on_validate(self) -> Iterator[None]:
        if self.too_large is not None:
            self.execution_context.pre_execution_errors = [self.too_large]
        yield


_PLACEHOLDER = parse("{ __typename }")


class OperationMetrics(SchemaExtension):
    """graphql_operations_total{operation,type,outcome} and the operation's duration."""

    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        yield
        context = self.execution_context
        try:
            kind = context.operation_type.value
        except Exception:  # no parseable operation: a rejected document
            kind = "unknown"
        result = context.result
        errors = (result.errors if result is not None else None) or context.pre_execution_errors
        if not errors:
            outcome = "ok"
        elif (result is None or result.data is None) and all(e.path is None for e in errors):
            outcome = "rejected"  # refused before execution (parse, validation, limits)
        else:
            outcome = "error"
        metrics.GRAPHQL_OPERATIONS.labels(operation=metrics.operation_label(context.operation_name),
                                          type=kind, outcome=outcome).inc()
        metrics.GRAPHQL_LATENCY.labels(type=kind).observe(time.perf_counter() - started)


ExtensionFactory = Callable[[], SchemaExtension]


def extensions(limits: Limits) -> list[ExtensionFactory]:
    """The protection extensions, in hook order."""
    rules = [
        *QueryDepthLimiter(max_depth=limits.max_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=limits.max_aliases).validation_rules,
        full_depth_limit(max(limits.max_depth, limits.max_introspection_depth)),
    ]
    if not limits.introspection:
        rules.extend(DisableIntrospection().validation_rules)
    # GuardedParser after ValidationCache: its on_validate must win over the cache's.
    return [
        lambda: MaxTokensLimiter(max_token_count=limits.max_tokens),
        lambda: AddValidationRules(rules),
        lambda: ValidationCache(maxsize=CACHE_SIZE),
        lambda: GuardedParser(max_bytes=limits.max_document_bytes),
        OperationMetrics,
    ]

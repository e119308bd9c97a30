"""GraphQL execution with a fast path for plain leaf fields (issue 11).

graphql-core executes every field of every object one by one: a path, a resolve-info object,
the field's resolver, then value completion — about ten Python calls for `id` of one message.
A chat list asks for a few scalars of a thousand messages, so that bookkeeping was most of
its CPU time (docs/BENCHMARKS.md).

Here, an object whose selected fields are all *basic* Strawberry fields (an attribute, no
resolver, no field extension, no arguments) of a scalar or enum type, or a list of those,
is completed in one loop (and a list of such objects too: a conversation's messages): read
the attribute, coerce it with the type's own
`coerce_output_value` — the very function graphql-core's leaf completion calls. The answer
is the same dict graphql-core would build. Anything else, or anything unusual on the way (a
null in a non-null field, a value the scalar refuses), goes through graphql-core's own path
for that object, which reports it as it always did. Schema extensions that hook `resolve`
(a middleware manager) turn the fast path off.
"""

from __future__ import annotations

from typing import Any

from graphql import (
    GraphQLEnumType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
)
from graphql.pyutils import Path, Undefined
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

# One selected field: (response name, attribute, coerce, non-null, list item non-null or None
# for a plain leaf).
_Leaf = tuple[str, str, Any, bool, bool | None]
_NO_PLAN: tuple[_Leaf, ...] = ()
_MISSING = object()


def _leaf_of(type_: Any) -> tuple[Any, bool, bool | None] | None:
    """(coerce, non-null, item non-null or None) for a leaf or a list of leaves, else None."""
    non_null = isinstance(type_, GraphQLNonNull)
    inner = type_.of_type if non_null else type_
    if isinstance(inner, GraphQLScalarType | GraphQLEnumType):
        return inner.coerce_output_value, non_null, None
    if isinstance(inner, GraphQLList):
        item = inner.of_type
        item_non_null = isinstance(item, GraphQLNonNull)
        item = item.of_type if item_non_null else item
        if isinstance(item, GraphQLScalarType | GraphQLEnumType):
            return item.coerce_output_value, non_null, item_non_null
    return None


class FastLeaves(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's execution context, plus the leaf fast path (one instance per operation)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Per selection (graphql-core memoizes it per list, so every item shares one): its
        # plan; the selection is kept alive with it so that its id is not reused.
        self._plans: dict[int, tuple[Any, tuple[_Leaf, ...]]] = {}

    def _plan(self, parent_type: GraphQLObjectType, grouped_field_set: Any) -> tuple[_Leaf, ...]:
        key = id(grouped_field_set)
        cached = self._plans.get(key)
        if cached is not None and cached[0] is grouped_field_set:
            return cached[1]
        plan = self._make_plan(parent_type, grouped_field_set)
        self._plans[key] = (grouped_field_set, plan)
        return plan

    def _make_plan(self, parent_type: GraphQLObjectType,
                   grouped_field_set: Any) -> tuple[_Leaf, ...]:
        if self.middleware_manager is not None:
            return _NO_PLAN
        leaves: list[_Leaf] = []
        for response_name, field_details_list in grouped_field_set.items():
            node = field_details_list[0].node
            name = node.name.value
            if name.startswith("__") or node.arguments:
                return _NO_PLAN
            field_def = parent_type.fields.get(name)
            if field_def is None or field_def.args:
                return _NO_PLAN
            # Strawberry marks the resolver of a basic field (an attribute, no resolver,
            # no extensions); its value is the attribute named by the field's python_name.
            if not getattr(field_def.resolve, "_is_default", False):
                return _NO_PLAN
            definition = (field_def.extensions or {}).get("strawberry-definition")
            python_name = getattr(definition, "python_name", None)
            resolver = getattr(definition, "default_resolver", None)
            if not isinstance(python_name, str) or resolver is not getattr:
                return _NO_PLAN
            leaf = _leaf_of(field_def.type)
            if leaf is None:
                return _NO_PLAN
            leaves.append((response_name, python_name, *leaf))
        return tuple(leaves)

    def complete_list_value(self, return_type: Any, field_details_list: Any, info: Any,
                            path: Path, result: Any, position_context: Any) -> Any:
        """A list of objects whose selection is all plain leaves (a conversation's messages):
        every item in one loop, without graphql-core's per-item completion."""
        item_type = return_type.of_type
        object_type = item_type.of_type if isinstance(item_type, GraphQLNonNull) else item_type
        if (isinstance(object_type, GraphQLObjectType) and object_type.is_type_of is None
                and isinstance(result, list | tuple)):
            grouped_field_set, new_defer_usages, *_ = self.collect_subfields(
                object_type, field_details_list)
            plan = () if new_defer_usages else self._plan(object_type, grouped_field_set)
            if plan:
                completed = []
                for item in result:
                    done = _complete(plan, item) if item is not None else None
                    if done is None:
                        break  # graphql-core completes the list and reports what is wrong
                    completed.append(done)
                else:
                    return completed
        return super().complete_list_value(return_type, field_details_list, info, path,
                                           result, position_context)

    def execute_fields(self, parent_type: GraphQLObjectType, source_value: Any,
                       path: Path | None, grouped_field_set: Any,
                       position_context: Any) -> Any:
        plan = self._plan(parent_type, grouped_field_set)
        if plan:
            done = _complete(plan, source_value)
            if done is not None:
                return done
        return super().execute_fields(parent_type, source_value, path, grouped_field_set,
                                      position_context)


def _complete(plan: tuple[_Leaf, ...], source: Any) -> dict[str, Any] | None:
    """The object's answer, or None to let graphql-core do it (and report what is wrong)."""
    out: dict[str, Any] = {}
    try:
        for response_name, attribute, coerce, non_null, items_non_null in plan:
            value: Any = getattr(source, attribute, _MISSING)
            if value is _MISSING:
                return None
            if value is None:
                if non_null:
                    return None
                out[response_name] = None
            elif items_non_null is None:
                coerced = coerce(value)
                if coerced is None or coerced is Undefined:
                    return None
                out[response_name] = coerced
            else:
                if isinstance(value, str | bytes | dict):
                    return None  # not a list: graphql-core's error
                completed: list[Any] = []
                for item in value:
                    if item is None:
                        if items_non_null:
                            return None
                        completed.append(None)
                        continue
                    coerced = coerce(item)
                    if coerced is None or coerced is Undefined:
                        return None
                    completed.append(coerced)
                out[response_name] = completed
    except Exception:
        return None
    return out

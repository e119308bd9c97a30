"""The GraphQL face: Strawberry types, fields, subscriptions and context.

Naming: in Strawberry a "resolver" is a field function; here those are called *fields*, and
`resolvers/` is the business layer they call.
"""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext

from schema.branches import BranchMutation, BranchSubscription
from schema.chat import ChatMutation, ChatQuery
from schema.errors import ErrorCodes
from schema.execution import FastLeaves
from schema.files import FilesMutation, FilesQuery
from schema.identity import IdentityMutation, IdentityQuery
from schema.keys import KeysMutation, KeysQuery
from schema.mutations import Mutation as CoreMutation
from schema.organize import OrganizeMutation, OrganizeQuery
from schema.protection import Limits
from schema.protection import extensions as protection
from schema.queries import Query as CoreQuery
from schema.scalars import SCALAR_MAP
from schema.subscriptions import GraphQLRouter, StreamErrorCodes, TypingMutation
from schema.subscriptions import Subscription as CoreSubscription
from schema.titles import TitleSubscription
from schema.tools import ToolsMutation, ToolsQuery
from schema.transfer import TransferMutation, TransferQuery


class Schema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # ErrorCodes already logged what was unexpected; client mistakes are not server logs.
        return None


Query = merge_types("Query", (CoreQuery, ChatQuery, IdentityQuery, KeysQuery, TransferQuery,
                              OrganizeQuery, ToolsQuery, FilesQuery))
Mutation = merge_types("Mutation", (CoreMutation, ChatMutation, TypingMutation,
                                    IdentityMutation, KeysMutation, BranchMutation,
                                    TransferMutation, OrganizeMutation, ToolsMutation,
                                    FilesMutation))
Subscription = merge_types("Subscription", (CoreSubscription, TitleSubscription,
                                            BranchSubscription))


def build_schema(limits: Limits | None = None, **kwargs: Any) -> Schema:
    """The schema with its protection (depth, aliases, tokens, size, introspection, caches,
    metrics): `limits` from settings (server.py), else the defaults."""
    kwargs.setdefault("execution_context_class", FastLeaves)  # plain leaves in one loop
    return Schema(query=Query, mutation=Mutation, subscription=Subscription,
                  extensions=[*protection(limits or Limits()), ErrorCodes, StreamErrorCodes],
                  config=StrawberryConfig(scalar_map=SCALAR_MAP), **kwargs)


schema = build_schema()

__all__ = ["GraphQLRouter", "Schema", "build_schema", "schema"]

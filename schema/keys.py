"""GraphQL fields for API keys and usage (CONTRACT-2 §2–3), over resolvers/keys.py and
resolvers/billing — the same operations as /api/keys and /api/usage."""

from __future__ import annotations

from typing import Annotated

import strawberry

from models import ApiKey as ApiKeyRow
from resolvers import billing, keys
from schema.context import Context
from schema.scalars import Timestamp


def _stamp(value: int | None) -> Timestamp | None:
    return Timestamp(value) if value is not None else None


def ctx(info: strawberry.Info) -> Context:
    context: Context = info.context
    return context


@strawberry.type(description="An API key (the secret itself is shown only by createApiKey).")
class ApiKey:
    id: strawberry.ID
    name: str
    prefix: str
    scopes: list[str]
    created_at: Timestamp
    expires_at: Timestamp | None
    last_used_at: Timestamp | None
    budget_usd: float | None = strawberry.field(description="Lifetime budget in USD")

    @classmethod
    def from_model(cls, row: ApiKeyRow) -> ApiKey:
        return cls(id=strawberry.ID(row.id), name=row.name, prefix=row.prefix,
                   scopes=list(keys.scopes_of(row)), created_at=Timestamp(row.created_at),
                   expires_at=_stamp(row.expires_at), last_used_at=_stamp(row.last_used_at),
                   budget_usd=billing.usd(row.budget_micros)
                   if row.budget_micros is not None else None)


@strawberry.type
class CreatedApiKey:
    api_key: ApiKey
    key: str = strawberry.field(description="The key itself: shown this once, stored hashed.")


@strawberry.input
class ApiKeyInput:
    name: str
    scopes: list[str] | None = strawberry.field(
        default=None, description="Any of chat, read, write (default: all three).")
    expires_in_days: int | None = None
    budget_usd: float | None = strawberry.field(default=None,
                                                description="Lifetime budget in USD")


@strawberry.type
class UsageRow:
    day: str | None
    model: str | None
    key_id: strawberry.ID | None
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float

    @classmethod
    def from_data(cls, row: billing.UsageRow) -> UsageRow:
        return cls(day=row.day, model=row.model,
                   key_id=strawberry.ID(row.key_id) if row.key_id else None,
                   requests=row.requests, prompt_tokens=row.prompt_tokens,
                   completion_tokens=row.completion_tokens, cost_usd=row.cost_usd)


@strawberry.type(description="Your monthly budget this calendar month (UTC), in USD.")
class Budget:
    monthly_usd: float | None = strawberry.field(description="null: no budget")
    spent_usd: float
    reserved_usd: float = strawberry.field(description="Held by replies still running")
    remaining_usd: float | None

    @classmethod
    def from_data(cls, status: billing.BudgetStatus) -> Budget:
        def usd(micros: int | None) -> float | None:
            return billing.usd(micros) if micros is not None else None

        return cls(monthly_usd=usd(status.monthly_micros), spent_usd=billing.usd(
            status.spent_micros), reserved_usd=billing.usd(status.reserved_micros),
            remaining_usd=usd(status.remaining_micros))


@strawberry.type
class Usage:
    rows: list[UsageRow]
    total: UsageRow
    budget: Budget


@strawberry.type
class KeysQuery:
    @strawberry.field(description="Your API keys, newest first (never with a key session).")
    async def api_keys(self, info: strawberry.Info) -> list[ApiKey]:
        context = ctx(info)
        caller = await context.caller(keys.ACCOUNT)
        async with context.session() as session:
            rows = await keys.list_for(session, caller.user, key=caller.key)
        return [ApiKey.from_model(row) for row in rows]

    @strawberry.field(description="Your requests, tokens and cost from `from` to `to` "
                      "(YYYY-MM-DD, inclusive; default this month), grouped by day, model or "
                      "key (groupBy: \"day\" | \"model\" | \"key\"; none: only the total).")
    async def usage(
        self, info: strawberry.Info,
        from_: Annotated[str | None, strawberry.argument(name="from")] = None,
        to: str | None = None, group_by: str | None = None,
    ) -> Usage:
        context = ctx(info)
        actor = await context.actor("read")
        async with context.session() as session:
            report = await billing.usage(session, actor, start=from_, end=to,
                                         group_by=group_by)
            budget = await billing.budget_status(session, actor,
                                                 billing=context.services.chat.billing)
        return Usage(rows=[UsageRow.from_data(row) for row in report.rows],
                     total=UsageRow.from_data(report.total), budget=Budget.from_data(budget))


@strawberry.type
class KeysMutation:
    @strawberry.mutation(description="A new API key; `key` is in this answer only.")
    async def create_api_key(self, info: strawberry.Info, input: ApiKeyInput) -> CreatedApiKey:
        context = ctx(info)
        caller = await context.caller(keys.ACCOUNT)
        async with context.session() as session:
            created = await keys.create(
                session, caller.user, key=caller.key, name=input.name, scopes=input.scopes,
                expires_in_days=input.expires_in_days,
                budget_micros=billing.to_micros(input.budget_usd)
                if input.budget_usd is not None else None)
        return CreatedApiKey(api_key=ApiKey.from_model(created.row), key=created.secret)

    @strawberry.mutation(description="Revoke one of your API keys; its sockets close.")
    async def revoke_api_key(self, info: strawberry.Info, id: strawberry.ID) -> bool:
        context = ctx(info)
        caller = await context.caller(keys.ACCOUNT)
        async with context.session() as session:
            await keys.revoke(session, caller.user, key=caller.key, key_id=str(id),
                              broker=context.services.broker)
        return True

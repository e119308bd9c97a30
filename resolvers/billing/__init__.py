"""Cost and budgets: what each reply costs, who may still spend, and the usage report.

Budgets are enforced by reservation, before any provider call:

    reservation = await billing.reserve(db, user, key, worst_case_micros)   # or BudgetExceeded
    ... generate ...
    await billing.settle(session, reservation, usage)   # real cost; the rest is released

Each budget has one ledger row (`budget_ledgers`): a user's month `user:<id>:<YYYY-MM>` and a
key's life `key:<id>`. Reserving is one conditional UPDATE per ledger —

    UPDATE budget_ledgers SET reserved = reserved + :w
     WHERE id = :id AND spent + reserved + :w <= :limit

— in one transaction for both ledgers: the database applies it atomically, whichever worker
(process, machine) sends it, so concurrent requests can never reserve past the limit together.
Settling adds the real cost to `spent` and removes the reservation, in the same transaction
as the usage row. A stopped or failed reply settles for what it generated. Each hold is also a
`budget_reservations` row, so the hold of a reply whose worker died is released after an hour
(`release_stale`: at start, and when a reservation is refused) instead of never.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import delete, func, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import ApiKey, BudgetLedger, BudgetReservation, TokenUsage, User
from resolvers.billing.prices import (
    FREE,
    Price,
    PriceTable,
    prompt_tokens_estimate,
    prompt_tokens_upper_bound,
    to_micros,
    usd,
)
from resolvers.kit import metrics
from resolvers.kit.clock import now_ms
from resolvers.kit.db import Database
from resolvers.kit.errors import AppError, ValidationFailed

__all__ = [
    "FREE", "Billing", "BudgetExceeded", "BudgetStatus", "Price", "PriceTable", "Reservation",
    "Settlement", "UsageReport", "UsageRow", "prompt_tokens_estimate",
    "prompt_tokens_upper_bound", "to_micros", "usd",
]

log = logging.getLogger("chat_studio.billing")

GroupBy = Literal["day", "model", "key"]
GROUPS: tuple[GroupBy, ...] = ("day", "model", "key")
DAY_MS = 86_400_000
# A reply still holding its reservation after this long lost its worker (a reply lasts
# minutes at most: the provider stall timeout, max_tokens): its hold is released.
RESERVATION_STALE_MS = 3_600_000


class BudgetExceeded(AppError):
    """REST 402 with `"code": "budget_exceeded"`, GraphQL BUDGET_EXCEEDED, /v1 429
    insufficient_quota. Raised before any provider call."""

    code = "BUDGET_EXCEEDED"
    http_status = 402
    default_message = "Budget exceeded"

    def __init__(self, message: str | None = None, *, budget: str) -> None:
        super().__init__(message, code="budget_exceeded", budget=budget)
        self.budget = budget


@dataclass(frozen=True, slots=True)
class Billing:
    """Prices and the budget defaults of one process (built by assembly.py)."""

    prices: PriceTable = field(default_factory=PriceTable.load)
    default_monthly_budget_micros: int = 0  # 0: no monthly budget


@dataclass(frozen=True, slots=True)
class Reservation:
    id: str  # its budget_reservations row while it holds (amount > 0)
    user_id: str
    key_id: str | None
    month_ledger: str
    key_ledger: str | None
    amount: int  # micro-dollars held on each ledger listed


def month_of(now: datetime) -> str:
    return f"{now.year:04d}-{now.month:02d}"


def _month_ledger(user_id: str, month: str) -> str:
    return f"user:{user_id}:{month}"


def _key_ledger(key_id: str) -> str:
    return f"key:{key_id}"


async def monthly_budget_micros(session: AsyncSession, user: User, *,
                                billing: Billing) -> int | None:
    """The user's monthly budget in micro-dollars, None for none. Today the settings'
    default for everyone; per-user budgets set by an admin (issue 14) are read here."""
    del session, user  # the admin-set value will be looked up with them
    return billing.default_monthly_budget_micros or None


async def _ensure_ledger(session: AsyncSession, ledger_id: str, user_id: str) -> None:
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    await session.exec(
        insert(BudgetLedger).values(id=ledger_id, user_id=user_id, spent_micros=0,
                                    reserved_micros=0).on_conflict_do_nothing())


async def _hold(session: AsyncSession, ledger_id: str, amount: int, limit: int | None) -> bool:
    """Add `amount` to the ledger's reservation if the limit allows it (one atomic UPDATE)."""
    statement = update(BudgetLedger).where(col(BudgetLedger.id) == ledger_id)
    if limit is not None:
        statement = statement.where(
            col(BudgetLedger.spent_micros) + col(BudgetLedger.reserved_micros) + amount <= limit)
    result = await session.exec(statement.values(
        reserved_micros=col(BudgetLedger.reserved_micros) + amount))
    return bool(result.rowcount == 1)


async def reserve(db: Database, user: User, key: ApiKey | None, *, amount: int,
                  model: str, billing: Billing, now: datetime | None = None) -> Reservation:
    """Hold `amount` µ$ (the reply's worst case) on the user's month and the key's budget,
    or raise BudgetExceeded and hold nothing."""
    now = now or datetime.now(UTC)
    reservation = Reservation(
        id=uuid.uuid4().hex, user_id=user.id, key_id=key.id if key else None,
        month_ledger=_month_ledger(user.id, month_of(now)),
        key_ledger=_key_ledger(key.id) if key else None, amount=amount)
    if amount <= 0:
        return reservation
    async with db.session() as session:  # a read of its own, ended before the writes
        monthly = await monthly_budget_micros(session, user, billing=billing)
    refused = await _try_reserve(db, reservation, monthly, key)
    if refused is not None and await release_stale(db, user_id=user.id):
        refused = await _try_reserve(db, reservation, monthly, key)  # dead holds are gone
    if refused == "user":
        _refused(model, "user")
        raise BudgetExceeded("Your monthly budget is spent (or this request could exceed it: "
                             "lower max_tokens)", budget="user")
    if refused == "key":
        _refused(model, "key")
        raise BudgetExceeded("This API key's budget is spent (or this request could exceed "
                             "it: lower max_tokens)", budget="key")
    return reservation


async def _try_reserve(db: Database, reservation: Reservation, monthly: int | None,
                       key: ApiKey | None) -> str | None:
    """Hold the amount on every ledger in one transaction; the budget that refused, if any."""
    amount = reservation.amount
    async with db.session() as session:
        # Writes only (the ledger insert takes SQLite's write lock at once: no upgrade from
        # a read lock that a concurrent writer could refuse).
        await _ensure_ledger(session, reservation.month_ledger, reservation.user_id)
        if not await _hold(session, reservation.month_ledger, amount, monthly):
            await session.rollback()
            return "user"
        if reservation.key_ledger is not None and key is not None:
            await _ensure_ledger(session, reservation.key_ledger, reservation.user_id)
            if not await _hold(session, reservation.key_ledger, amount, key.budget_micros):
                await session.rollback()
                return "key"
        session.add(BudgetReservation(
            id=reservation.id, user_id=reservation.user_id,
            month_ledger=reservation.month_ledger, key_ledger=reservation.key_ledger,
            amount_micros=amount, created_at=now_ms()))
        await session.commit()
    return None


async def release_stale(db: Database, *, user_id: str | None = None,
                        older_than_ms: int = RESERVATION_STALE_MS) -> int:
    """Release holds older than `older_than_ms` (their worker died mid-reply); how many.
    Run at start and when a reservation is refused. A reply that does settle later still
    pays its cost; it just no longer releases a hold that is gone."""
    cutoff = now_ms() - older_than_ms
    async with db.session() as session:
        query = select(BudgetReservation).where(col(BudgetReservation.created_at) < cutoff)
        if user_id is not None:
            query = query.where(col(BudgetReservation.user_id) == user_id)
        rows = list((await session.exec(query.limit(1000))).all())
    released = 0
    for row in rows:
        async with db.session() as session:
            if not await _drop_reservation(session, row.id):
                continue  # settled or released meanwhile
            for ledger in (row.month_ledger, row.key_ledger):
                if ledger is not None:
                    await session.exec(update(BudgetLedger).where(
                        col(BudgetLedger.id) == ledger).values(
                        reserved_micros=col(BudgetLedger.reserved_micros) - row.amount_micros))
            await session.commit()
            released += 1
    if released:
        log.warning("released %d budget reservation(s) of replies that never settled",
                    released)
    return released


async def _drop_reservation(session: AsyncSession, reservation_id: str) -> bool:
    result = await session.exec(delete(BudgetReservation).where(
        col(BudgetReservation.id) == reservation_id))
    return bool(result.rowcount == 1)


def _refused(model: str, budget: str) -> None:
    metrics.BUDGET_REFUSALS.labels(model=model, budget=budget).inc()  # metrics


async def _apply(session: AsyncSession, reservation: Reservation, cost: int) -> None:
    held = 0
    if reservation.amount > 0 and await _drop_reservation(session, reservation.id):
        held = reservation.amount  # else a sweep already released it: do not release twice
    if not held and not cost:
        return
    for ledger in (reservation.month_ledger, reservation.key_ledger):
        if ledger is None:
            continue
        if reservation.amount <= 0:
            await _ensure_ledger(session, ledger, reservation.user_id)
        await session.exec(
            update(BudgetLedger).where(col(BudgetLedger.id) == ledger).values(
                reserved_micros=col(BudgetLedger.reserved_micros) - held,
                spent_micros=col(BudgetLedger.spent_micros) + cost))


@dataclass(frozen=True, slots=True)
class Settlement:
    """What one reply used and costs: settles its reservation (see `settle`)."""

    reservation: Reservation
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_micros: int
    request_id: str | None
    created_at: int


async def write_settlement(session: AsyncSession, item: Settlement) -> None:
    """`settle`'s statements, without the commit: the caller's transaction holds them (a
    group commit of several replies, or the transaction that also stores the reply)."""
    reservation = item.reservation
    if item.prompt_tokens or item.completion_tokens or item.cost_micros:
        session.add(TokenUsage(
            user_id=reservation.user_id, model=item.model, prompt_tokens=item.prompt_tokens,
            completion_tokens=item.completion_tokens, created_at=item.created_at,
            request_id=item.request_id, cost_micros=item.cost_micros,
            api_key_id=reservation.key_id))
    if item.cost_micros or reservation.amount:
        await _apply(session, reservation, item.cost_micros)
    if item.cost_micros:
        metrics.CHAT_COST.labels(model=item.model).inc(item.cost_micros)  # metrics


async def settle(session: AsyncSession, reservation: Reservation, *, model: str,
                 prompt_tokens: int, completion_tokens: int, cost_micros: int,
                 request_id: str | None, created_at: int) -> None:
    """Record the reply's usage and cost and replace its reservation by the real cost, in
    one transaction."""
    await write_settlement(session, Settlement(
        reservation=reservation, model=model, prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens, cost_micros=cost_micros, request_id=request_id,
        created_at=created_at))
    await session.commit()


async def release(db: Database, reservation: Reservation) -> None:
    """Give a reservation back unused (the reply never started)."""
    if reservation.amount <= 0:
        return
    try:
        async with db.session() as session:
            await _apply(session, reservation, 0)
            await session.commit()
    except Exception:
        log.exception("could not release a budget reservation of %s", reservation.user_id)


# ---------------------------------------------------------------- the usage report


@dataclass(frozen=True, slots=True)
class UsageRow:
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_micros: int
    day: str | None = None
    model: str | None = None
    key_id: str | None = None

    @property
    def cost_usd(self) -> float:
        return usd(self.cost_micros)


@dataclass(frozen=True, slots=True)
class UsageReport:
    start: date
    end: date  # inclusive
    group_by: GroupBy | None
    rows: list[UsageRow]
    total: UsageRow


def _parse_day(value: str | None, field_name: str) -> date | None:
    if value is None or value == "":
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise ValidationFailed(f"{field_name} must be a date YYYY-MM-DD",
                               field=field_name) from exc


async def usage(session: AsyncSession, actor: User, *, start: str | None = None,
                end: str | None = None, group_by: str | None = None,
                today: date | None = None) -> UsageReport:
    """The caller's requests, tokens and cost from `start` to `end` (UTC days, inclusive;
    default this month so far), grouped by day, model or key (or only the total)."""
    today = today or datetime.now(UTC).date()
    first = _parse_day(start, "from") or today.replace(day=1)
    last = _parse_day(end, "to") or today
    if last < first:
        raise ValidationFailed("to must not be before from", field="to")
    if group_by not in (None, "", *GROUPS):
        raise ValidationFailed("group_by must be day, model or key", field="group_by")
    grouping: GroupBy | None = group_by or None  # type: ignore[assignment]
    low = int(datetime(first.year, first.month, first.day, tzinfo=UTC).timestamp() * 1000)
    high = int(datetime(last.year, last.month, last.day, tzinfo=UTC).timestamp() * 1000) \
        + DAY_MS
    measures: list[Any] = [
        func.count(), func.coalesce(func.sum(TokenUsage.prompt_tokens), 0),
        func.coalesce(func.sum(TokenUsage.completion_tokens), 0),
        func.coalesce(func.sum(TokenUsage.cost_micros), 0)]
    key_column: Any = None
    if grouping == "day":
        key_column = col(TokenUsage.created_at) // DAY_MS
    elif grouping == "model":
        key_column = col(TokenUsage.model)
    elif grouping == "key":
        key_column = col(TokenUsage.api_key_id)
    where = (col(TokenUsage.user_id) == actor.id, col(TokenUsage.created_at) >= low,
             col(TokenUsage.created_at) < high)
    rows: list[UsageRow] = []
    if key_column is not None:
        result = await session.exec(
            select(key_column, *measures).where(*where).group_by(key_column)
            .order_by(key_column))
        for value, count, prompt, completion, cost in result.all():
            label: dict[str, Any] = {}
            if grouping == "day":
                label["day"] = (date(1970, 1, 1) + timedelta(days=int(value))).isoformat()
            elif grouping == "model":
                label["model"] = value
            else:
                label["key_id"] = value
            rows.append(UsageRow(requests=int(count), prompt_tokens=int(prompt),
                                 completion_tokens=int(completion), cost_micros=int(cost),
                                 **label))
    count, prompt, completion, cost = (await session.exec(
        select(*measures).where(*where))).one()
    total = UsageRow(requests=int(count), prompt_tokens=int(prompt),
                     completion_tokens=int(completion), cost_micros=int(cost))
    return UsageReport(start=first, end=last, group_by=grouping, rows=rows, total=total)


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """The caller's monthly budget this month: limit (None: none), spent, held by replies
    still running."""

    monthly_micros: int | None
    spent_micros: int
    reserved_micros: int

    @property
    def remaining_micros(self) -> int | None:
        if self.monthly_micros is None:
            return None
        return max(self.monthly_micros - self.spent_micros - self.reserved_micros, 0)


async def budget_status(session: AsyncSession, actor: User, *, billing: Billing,
                        now: datetime | None = None) -> BudgetStatus:
    """Where the caller stands against their monthly budget (UTC calendar month)."""
    now = now or datetime.now(UTC)
    ledger = await session.get(BudgetLedger, _month_ledger(actor.id, month_of(now)))
    return BudgetStatus(
        monthly_micros=await monthly_budget_micros(session, actor, billing=billing),
        spent_micros=ledger.spent_micros if ledger else 0,
        reserved_micros=ledger.reserved_micros if ledger else 0)


async def total_cost_micros(session: AsyncSession, actor: User) -> int:
    """Everything the user's replies ever cost."""
    return int((await session.exec(
        select(func.coalesce(func.sum(TokenUsage.cost_micros), 0))
        .where(TokenUsage.user_id == actor.id))).one())

"""The price table, cost arithmetic, the usage report and the 0012a migration (resolvers only,
on SQLite and PostgreSQL; no transport)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text

from models import User
from resolvers import auth, billing
from resolvers.billing.prices import PricesError, PriceTable, prompt_tokens_upper_bound
from resolvers.kit.db import Database
from resolvers.kit.errors import ValidationFailed
from resolvers.kit.migrate import upgrade
from resolvers.services import Services
from tests.conftest import POSTGRES_URL


async def make_user(services: Services, name: str) -> User:
    async with services.db.session() as session:
        pair = await auth.register(session, services.security, username=name,
                                   email=f"{name}@example.com", password="correct horse 1")
    return pair.user


def test_builtin_prices_are_dated_and_cover_the_three_vendors() -> None:
    table = PriceTable.load()
    assert date.fromisoformat(table.taken)
    for model in ("gpt-4o-mini", "claude-3-5-haiku", "gemini-2.0-flash"):
        assert not table.price("x", model).free, model
    # Dated snapshots take the longest matching family's price.
    assert table.price("openai", "gpt-4o-mini-2024-07-18") == table.price("openai",
                                                                           "gpt-4o-mini")
    assert table.price("openai", "gpt-4o-2024-08-06") == table.price("openai", "gpt-4o")
    assert table.price("anthropic", "claude-3-5-haiku-20241022") == table.price(
        "anthropic", "claude-3-5-haiku")


def test_embedded_and_unknown_models_are_free_and_overrides_win(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"gpt-4o-mini": {"input": 1, "output": 2},
                                "llama3": {"input": 0.5, "output": 0.5}}))
    table = PriceTable.load(str(path))
    assert table.price("embedded", "smollm2-135m-instruct").free
    assert table.price("embedded", "gpt-4o-mini").free  # embedded is always free
    assert table.price("openai", "my-local-model").free
    assert table.price("openai", "gpt-4o-mini").cost_micros(1, 1) == 3
    assert table.price("openai", "llama3").cost_micros(3, 0) == 2  # 1.5 rounds up
    assert not table.price("openai", "gpt-4o").free  # the built-ins stay


@pytest.mark.parametrize("content", ['{"m": {"input": 1}}', '{"m": {"input": -1, "output": 1}}',
                                     '["not", "an", "object"]', "not json"])
def test_a_bad_price_file_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "prices.json"
    path.write_text(content)
    with pytest.raises(PricesError):
        PriceTable.load(str(path))


def test_cost_is_exact_integer_micro_dollars_rounded_up_once() -> None:
    price = PriceTable.load().price("openai", "gpt-4o-mini")  # 0.15 / 0.60 per M
    assert price.cost_micros(1_000_000, 0) == 150_000
    assert price.cost_micros(0, 1_000_000) == 600_000
    assert price.cost_micros(7, 3) == 3  # 1.05 + 1.8 = 2.85 → 3
    assert price.cost_micros(0, 0) == 0
    # The reservation's prompt bound counts every UTF-8 byte (a token is at least one).
    assert prompt_tokens_upper_bound(["你好"]) >= 6


async def test_usage_is_grouped_by_day_model_and_key_and_only_the_callers(
        services: Services) -> None:
    from models import ApiKey, TokenUsage

    alice = await make_user(services, "alice")
    bob = await make_user(services, "bob")
    day1 = int(datetime(2026, 3, 1, 10, tzinfo=UTC).timestamp() * 1000)
    day2 = int(datetime(2026, 3, 2, 23, 59, tzinfo=UTC).timestamp() * 1000)
    async with services.db.session() as session:
        session.add(ApiKey(id="key_a", user_id=alice.id, name="a", prefix="cs-a",
                           key_hash="h" * 64, scopes="chat", created_at=day1))
        await session.commit()
        for user_id, model, key_id, at, cost in [
                (alice.id, "gpt-4o", None, day1, 100), (alice.id, "gpt-4o", "key_a", day2, 250),
                (alice.id, "claude", "key_a", day2, 5), (bob.id, "gpt-4o", None, day1, 999)]:
            session.add(TokenUsage(user_id=user_id, model=model, prompt_tokens=10,
                                   completion_tokens=2, created_at=at, cost_micros=cost,
                                   api_key_id=key_id))
        await session.commit()
        span: dict[str, Any] = {"start": "2026-03-01", "end": "2026-03-31"}
        by_day = await billing.usage(session, alice, group_by="day", **span)
        by_model = await billing.usage(session, alice, group_by="model", **span)
        by_key = await billing.usage(session, alice, group_by="key", **span)
        only_first = await billing.usage(session, alice, start="2026-03-01", end="2026-03-01")
        this_month = await billing.usage(session, alice, today=date(2026, 3, 15))
    assert [(r.day, r.requests, r.cost_micros) for r in by_day.rows] == [
        ("2026-03-01", 1, 100), ("2026-03-02", 2, 255)]
    assert [(r.model, r.cost_micros) for r in by_model.rows] == [("claude", 5),
                                                                 ("gpt-4o", 350)]
    assert sorted((r.key_id or "", r.requests) for r in by_key.rows) == [("", 1), ("key_a", 2)]
    assert by_day.total.cost_micros == 355 and by_day.total.prompt_tokens == 30
    assert by_day.total.cost_usd == pytest.approx(0.000355)
    assert only_first.total.requests == 1 and only_first.rows == []
    assert this_month.total.requests == 3
    with pytest.raises(ValidationFailed):
        await billing.usage(session, alice, start="March")
    with pytest.raises(ValidationFailed):
        await billing.usage(session, alice, group_by="week")
    with pytest.raises(ValidationFailed):
        await billing.usage(session, alice, start="2026-03-02", end="2026-03-01")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database with no schema at all (PostgreSQL: one made for this test, then dropped)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
        return
    name = f"chatstudio_mig_{uuid.uuid4().hex[:10]}"
    try:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        pytest.skip(f"PostgreSQL is not reachable ({exc})")
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
        base, _, _ = POSTGRES_URL.rpartition("/")
        yield f"{base}/{name}".replace("postgresql://", "postgresql+asyncpg://", 1)
    finally:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


async def test_migration_0012a_upgrades_a_database_that_holds_data(empty_database: str) -> None:
    """From the previous head (0001) with a user and usage rows in it, to the newest schema:
    old usage costs 0 and has no key; keys and ledgers work."""
    db = Database(empty_database)
    try:
        await upgrade(db.engine, "0001")
        async with db.engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO users (id, username, username_key, email, password_hash, "
                "created_at, token_generation) VALUES ('u1', 'old', 'old', 'old@example.com', "
                "'x', CURRENT_TIMESTAMP, 0)"))
            await conn.execute(text(
                "INSERT INTO token_usage (user_id, model, prompt_tokens, completion_tokens, "
                "created_at, request_id) VALUES ('u1', 'gpt-4o', 10, 5, 1700000000000, 'r1')"))
        await upgrade(db.engine)
        async with db.engine.begin() as conn:
            row = (await conn.execute(text(
                "SELECT prompt_tokens, cost_micros, api_key_id FROM token_usage"))).one()
            assert tuple(row) == (10, 0, None)
            await conn.execute(text(
                "INSERT INTO api_keys (id, user_id, name, prefix, key_hash, scopes, created_at) "
                "VALUES ('k1', 'u1', 'n', 'cs-x', :h, 'chat', 1)"), {"h": "a" * 64})
            await conn.execute(text(
                "INSERT INTO token_usage (user_id, model, created_at, cost_micros, api_key_id, "
                "prompt_tokens, completion_tokens) VALUES ('u1', 'm', 2, 7, 'k1', 1, 1)"))
            await conn.execute(text(
                "INSERT INTO budget_ledgers (id, user_id, spent_micros, reserved_micros) "
                "VALUES ('user:u1:2026-11', 'u1', 7, 0)"))
            await conn.execute(text("DELETE FROM api_keys"))  # usage keeps its row
            left = (await conn.execute(text(
                "SELECT count(*) FROM token_usage WHERE api_key_id IS NULL"))).scalar()
            assert left == 2
    finally:
        await db.dispose()


async def test_a_hold_whose_worker_died_is_released_and_never_twice(services: Services) -> None:
    from models import BudgetLedger

    user = await make_user(services, "carol")
    plan = billing.Billing(default_monthly_budget_micros=100)
    crashed = await billing.reserve(services.db, user, None, amount=60, model="m",
                                    billing=plan)
    with pytest.raises(billing.BudgetExceeded):
        await billing.reserve(services.db, user, None, amount=60, model="m", billing=plan)
    async with services.db.engine.begin() as conn:  # the crashed reply's hold ages
        await conn.execute(text("UPDATE budget_reservations SET created_at = created_at - "
                                "7200000 WHERE id = :id"), {"id": crashed.id})
    # Refused at first, the reservation sweeps the dead hold and gets through.
    second = await billing.reserve(services.db, user, None, amount=60, model="m", billing=plan)
    async with services.db.session() as session:
        # The crashed reply settles after all: it pays, but does not release a hold twice.
        await billing.settle(session, crashed, model="m", prompt_tokens=1, completion_tokens=1,
                             cost_micros=10, request_id="r", created_at=1)
        ledger = await session.get(BudgetLedger, crashed.month_ledger)
        assert ledger is not None
        assert (ledger.spent_micros, ledger.reserved_micros) == (10, 60)
        await billing.settle(session, second, model="m", prompt_tokens=1, completion_tokens=1,
                             cost_micros=20, request_id="s", created_at=2)
        await session.refresh(ledger)
        assert (ledger.spent_micros, ledger.reserved_micros) == (30, 0)
    assert await billing.release_stale(services.db) == 0

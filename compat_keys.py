"""REST face of API keys and usage (CONTRACT-2 §2–3): /api/keys and /api/usage.

Thin like compat_rest.py, whose dependencies it reuses: parse, call resolvers/keys.py and
resolvers/billing, shape. Which caller may do what is decided there, not here.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from compat_rest import AccountCallerDep, ServicesDep, SessionDep, UserDep
from models import ApiKey
from resolvers import billing, keys


class KeyIn(BaseModel):
    name: str = Field(max_length=keys.NAME_MAX * 4)
    scopes: list[str] | None = Field(
        default=None, max_length=8,
        description="Any of chat, read, write (default: all three). No key can manage keys, "
                    "the password, 2FA or the account.")
    expires_in_days: int | None = Field(default=None, ge=1, le=keys.EXPIRES_DAYS_MAX)
    budget_usd: float | None = Field(default=None, ge=0, le=keys.BUDGET_USD_MAX,
                                     description="Lifetime budget in USD")


class KeyOut(BaseModel):
    id: str
    name: str
    prefix: str
    scopes: list[str]
    created_at: int
    expires_at: int | None
    last_used_at: int | None
    budget_usd: float | None


class CreatedKeyOut(KeyOut):
    key: str = Field(description="The key itself: shown this once, stored hashed.")


class UsageRowOut(BaseModel):
    day: str | None = None
    model: str | None = None
    key_id: str | None = None
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


class BudgetOut(BaseModel):
    monthly_usd: float | None = Field(description="Your monthly budget; null: none")
    spent_usd: float = Field(description="Spent this calendar month (UTC)")
    reserved_usd: float = Field(description="Held by replies still running")
    remaining_usd: float | None


class UsageOut(BaseModel):
    rows: list[UsageRowOut]
    total: UsageRowOut
    budget: BudgetOut


def key_json(row: ApiKey) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "prefix": row.prefix,
            "scopes": list(keys.scopes_of(row)), "created_at": row.created_at,
            "expires_at": row.expires_at, "last_used_at": row.last_used_at,
            "budget_usd": billing.usd(row.budget_micros) if row.budget_micros is not None
            else None}


def usage_row_json(row: billing.UsageRow, group_by: str | None) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if group_by == "day":
        data["day"] = row.day
    elif group_by == "model":
        data["model"] = row.model
    elif group_by == "key":
        data["key_id"] = row.key_id
    data.update(requests=row.requests, prompt_tokens=row.prompt_tokens,
                completion_tokens=row.completion_tokens, cost_usd=row.cost_usd)
    return data


router = APIRouter(tags=["keys"])


@router.post("/api/keys", status_code=201, response_model=CreatedKeyOut, responses={
    403: {"description": "Called with an API key: keys never make keys"}})
async def create_key(body: KeyIn, session: SessionDep, caller: AccountCallerDep) -> dict[str, Any]:
    """A new API key. `key` is in this answer only: store it now."""
    created = await keys.create(
        session, caller.user, key=caller.key, name=body.name, scopes=body.scopes,
        expires_in_days=body.expires_in_days,
        budget_micros=billing.to_micros(body.budget_usd) if body.budget_usd is not None
        else None)
    return {**key_json(created.row), "key": created.secret}


@router.get("/api/keys", response_model=list[KeyOut])
async def list_keys(session: SessionDep, caller: AccountCallerDep) -> list[dict[str, Any]]:
    """Your keys (without the secret), newest first."""
    return [key_json(row) for row in await keys.list_for(session, caller.user, key=caller.key)]


@router.delete("/api/keys/{key_id}", status_code=204,
               responses={404: {"description": "Not found"}})
async def revoke_key(key_id: str, services: ServicesDep, session: SessionDep,
                     caller: AccountCallerDep) -> Response:
    """Revoke a key: refused from its next call on; sockets it opened close (4401)."""
    await keys.revoke(session, caller.user, key=caller.key, key_id=key_id,
                      broker=services.broker)
    return Response(status_code=204)


@router.get("/api/usage", tags=["stats"], response_model=UsageOut)
async def usage(session: SessionDep, user: UserDep, services: ServicesDep,
                from_: str | None = Query(None, alias="from", description="YYYY-MM-DD"),
                to: str | None = Query(None, description="YYYY-MM-DD (inclusive)"),
                group_by: str | None = Query(None, description="day, model or key"),
                ) -> JSONResponse:
    """Your requests, tokens and cost (default: this month), grouped by day, model or key
    (`key_id` null: calls made while signed in, without a key)."""
    report = await billing.usage(session, user, start=from_, end=to, group_by=group_by)
    budget = await billing.budget_status(session, user, billing=services.chat.billing)
    # Only the grouping's own field in each row (response_model would add the others).
    return JSONResponse({"rows": [usage_row_json(row, report.group_by) for row in report.rows],
                         "total": usage_row_json(report.total, None),
                         "budget": budget_json(budget)})


def budget_json(budget: billing.BudgetStatus) -> dict[str, Any]:
    def usd(micros: int | None) -> float | None:
        return billing.usd(micros) if micros is not None else None

    return {"monthly_usd": usd(budget.monthly_micros), "spent_usd": usd(budget.spent_micros),
            "reserved_usd": usd(budget.reserved_micros),
            "remaining_usd": usd(budget.remaining_micros)}


def install(app: FastAPI) -> None:
    app.include_router(router)

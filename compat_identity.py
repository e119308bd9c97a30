"""REST face of identity and administration (CONTRACT-2 §5): single sign-on, TOTP 2FA, the
admin API and the audit log. Thin like compat_rest.py: parse, call resolvers/, shape."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from compat_rest import (
    ServicesDep,
    SessionDep,
    UserDep,
    client_address,
    sign_in_json,
    token_json,
)
from models import AuditEvent, User
from resolvers import admin, audit, sso, twofactor
from resolvers.kit.clock import as_utc
from resolvers.kit.errors import AppError, NotFound
from resolvers.services import Services

router = APIRouter()


def user_json(user: User) -> dict[str, Any]:
    """A user as /api/auth/me and the admin API show it (never a hash or secret)."""
    return {"id": user.id, "username": user.username, "email": user.email,
            "created_at": as_utc(user.created_at).isoformat(), "role": user.role,
            "active": user.active, "allowed_models": user.allowed_models,
            "totp_enabled": user.totp_enabled}


def audit_json(row: AuditEvent) -> dict[str, Any]:
    return {"id": row.id, "at": row.at, "type": row.type, "actor_id": row.actor_id,
            "target_id": row.target_id, "ip": row.ip, "request_id": row.request_id,
            "detail": row.detail}


def sign_on_of(services: Services) -> sso.SignOn:
    if services.sign_on is None:
        raise NotFound("Single sign-on is not configured")
    return services.sign_on


# ---------------------------------------------------------------- single sign-on


@router.get("/api/auth/providers", tags=["auth"])
async def providers(services: ServicesDep) -> list[dict[str, str]]:
    """The configured sign-in providers (OpenID Connect, Google, GitHub)."""
    return [{"id": p.id, "name": p.name, "authorize_url": p.authorize_url}
            for p in sso.listed(sign_on_of(services))]


@router.get("/api/auth/oauth/{provider}/authorize", tags=["auth"], status_code=302,
            responses={302: {"description": "To the provider's sign-in page"}})
async def oauth_authorize(provider: str, services: ServicesDep,
                          session: SessionDep) -> RedirectResponse:
    """Start signing in through a provider (authorization code + PKCE, state, nonce)."""
    url = await sso.start(session, sign_on_of(services), provider_id=provider)
    return RedirectResponse(url, status_code=302)


@router.get("/api/auth/oauth/{provider}/callback", tags=["auth"], responses={
    200: {"description": "Our tokens (or mfa_required), when OAUTH_REDIRECT_URL is empty"},
    302: {"description": "To OAUTH_REDIRECT_URL with the tokens in the URL fragment"}})
async def oauth_callback(provider: str, request: Request, services: ServicesDep,
                         session: SessionDep, code: str | None = None,
                         state: str | None = None, error: str | None = None,
                         iss: str | None = None) -> Response:
    """Where the provider sends the browser back: signs the person in (creating the account
    on first sign-in) and hands over our tokens."""
    target = services.settings.oauth_redirect_url
    try:
        result = await sso.finish(session, services.security, sign_on_of(services),
                                  provider_id=provider, code=code, state=state, error=error,
                                  issuer=iss, address=client_address(request))
    except AppError as exc:
        if not target:
            raise
        # The app's page shows the failure; nothing secret travels in the fragment.
        fragment = urlencode({"error": exc.code.lower(), "error_description": exc.message})
        return RedirectResponse(f"{target}#{fragment}", status_code=302)
    body = sign_in_json(result)
    if not target:
        return JSONResponse(body)
    # In the fragment: never sent to a server, never in access logs or Referer headers.
    return RedirectResponse(f"{target}#{urlencode(body)}", status_code=302,
                            headers={"Cache-Control": "no-store"})


# ---------------------------------------------------------------- two-factor


class CodeBody(BaseModel):
    code: str = Field(max_length=64)


class VerifyBody(BaseModel):
    mfa_token: str = Field(max_length=2048)
    code: str | None = Field(default=None, max_length=64)
    recovery_code: str | None = Field(default=None, max_length=64)


class DisableBody(BaseModel):
    password: str = Field(max_length=1024)
    code: str | None = Field(default=None, max_length=64)
    recovery_code: str | None = Field(default=None, max_length=64)


@router.post("/api/auth/2fa/setup", tags=["2fa"])
async def twofa_setup(services: ServicesDep, session: SessionDep,
                      user: UserDep) -> dict[str, str]:
    """A new TOTP secret, its otpauth:// URI and a QR code (SVG) for an authenticator app.
    2FA is on only after /2fa/enable with a code."""
    made = await twofactor.setup(session, services.security, user)
    return {"secret": made.secret, "otpauth_uri": made.otpauth_uri, "qr_svg": made.qr_svg}


@router.post("/api/auth/2fa/enable", tags=["2fa"])
async def twofa_enable(body: CodeBody, request: Request, services: ServicesDep,
                       session: SessionDep, user: UserDep) -> dict[str, list[str]]:
    """Turn 2FA on with a current code; answers ten single-use recovery codes (shown once)."""
    codes = await twofactor.enable(session, services.security, user, code=body.code,
                                   limiter=services.limiter, address=client_address(request))
    return {"recovery_codes": codes}


@router.post("/api/auth/2fa/verify", tags=["2fa"])
async def twofa_verify(body: VerifyBody, request: Request, services: ServicesDep,
                       session: SessionDep) -> dict[str, Any]:
    """The second step of a sign-in: `mfa_token` and a `code` (or a `recovery_code`)."""
    pair = await twofactor.verify(session, services.security, mfa_token=body.mfa_token,
                                  code=body.code, recovery_code=body.recovery_code,
                                  limiter=services.limiter, address=client_address(request))
    return token_json(pair)


@router.post("/api/auth/2fa/disable", tags=["2fa"])
async def twofa_disable(body: DisableBody, request: Request, services: ServicesDep,
                        session: SessionDep, user: UserDep) -> dict[str, str]:
    """Turn 2FA off: your password and a current code (or a recovery code)."""
    await twofactor.disable(session, services.security, user, password=body.password,
                            code=body.code, recovery_code=body.recovery_code,
                            limiter=services.limiter, address=client_address(request))
    return {"message": "two-factor authentication disabled"}


# ---------------------------------------------------------------- admin


class UserPatch(BaseModel):
    role: str | None = None
    active: bool | None = None
    allowed_models: list[Annotated[str, Field(max_length=128)]] | None = Field(
        default=None, max_length=500)


@router.get("/api/admin/users", tags=["admin"])
async def admin_users(session: SessionDep, user: UserDep, q: str | None = None,
                      limit: Annotated[int, Query(ge=1, le=200)] = 50,
                      cursor: str | None = None) -> dict[str, Any]:
    """Users by username (admins only). `q` matches part of a username or email."""
    page = await admin.list_users(session, user, q=q, limit=limit, cursor=cursor)
    return {"users": [user_json(row) for row in page.items], "next_cursor": page.next_cursor}


@router.patch("/api/admin/users/{user_id}", tags=["admin"])
async def admin_update_user(user_id: str, body: UserPatch, request: Request,
                            services: ServicesDep, session: SessionDep,
                            user: UserDep) -> dict[str, Any]:
    """Change a user's role, active flag or allowed models (admins only). Deactivating
    refuses their tokens at once, closes their sockets and stops their replies."""
    given = body.model_fields_set
    changes = admin.UserChanges(
        role=body.role if "role" in given else ...,
        active=body.active if "active" in given else ...,
        allowed_models=body.allowed_models if "allowed_models" in given else ...)
    row = await admin.update_user(session, user, user_id=user_id, changes=changes,
                                  broker=services.broker, address=client_address(request))
    return user_json(row)


@router.post("/api/admin/invites", tags=["admin"], status_code=201)
async def admin_invite(request: Request, session: SessionDep, user: UserDep) -> dict[str, str]:
    """A single-use sign-up code for SIGNUP=invite (admins only)."""
    return {"code": await admin.create_invite(session, user, address=client_address(request))}


@router.get("/api/admin/audit", tags=["admin"])
async def admin_audit(session: SessionDep, user: UserDep,
                      limit: Annotated[int, Query(ge=1, le=200)] = 50,
                      cursor: str | None = None, type: str | None = None) -> dict[str, Any]:
    """The audit log, newest first (admins only)."""
    page = await audit.query(session, user, limit=limit, cursor=cursor, type=type)
    return {"events": [audit_json(row) for row in page.items], "next_cursor": page.next_cursor}


def install(app: FastAPI) -> None:
    """Mount these routes (server.py calls it after compat_rest.install)."""
    app.include_router(router)


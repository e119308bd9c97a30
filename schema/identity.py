"""GraphQL fields of identity and administration: sign-in providers, TOTP 2FA, the admin
operations and the audit log — the same operations as compat_identity.py."""

from __future__ import annotations

from typing import Any, cast

import strawberry
from strawberry.scalars import JSON

from models import AuditEvent as AuditRow
from resolvers import admin, audit, sso, twofactor
from schema.queries import ctx
from schema.scalars import Timestamp
from schema.types import AuthPayload, User


@strawberry.type
class AuthProvider:
    id: str
    name: str
    authorize_url: str


@strawberry.type
class TwoFactorSetup:
    secret: str
    otpauth_uri: str
    qr_svg: str


@strawberry.type
class AuditEvent:
    id: strawberry.ID
    at: Timestamp
    type: str
    actor_id: strawberry.ID | None
    target_id: str | None
    ip: str | None
    request_id: str | None
    detail: JSON

    @classmethod
    def from_model(cls, row: AuditRow) -> AuditEvent:
        return cls(id=strawberry.ID(str(row.id)), at=Timestamp(row.at), type=row.type,
                   actor_id=strawberry.ID(row.actor_id) if row.actor_id else None,
                   target_id=row.target_id, ip=row.ip, request_id=row.request_id,
                   detail=cast(JSON, row.detail))


@strawberry.type
class UserPage:
    users: list[User]
    next_cursor: str | None


@strawberry.type
class AuditPage:
    events: list[AuditEvent]
    next_cursor: str | None


@strawberry.input
class UserChangesInput:
    """Only the fields given are changed; `allowedModels: null` allows every model."""

    role: str | None = strawberry.UNSET
    active: bool | None = strawberry.UNSET
    allowed_models: list[str] | None = strawberry.UNSET


def _given(value: Any) -> Any:
    return ... if value is strawberry.UNSET else value


@strawberry.type
class IdentityQuery:
    @strawberry.field(description="The configured sign-in providers; no authentication needed.")
    def auth_providers(self, info: strawberry.Info) -> list[AuthProvider]:
        sign_on = ctx(info).services.sign_on
        if sign_on is None:
            return []
        return [AuthProvider(id=p.id, name=p.name, authorize_url=p.authorize_url)
                for p in sso.listed(sign_on)]

    @strawberry.field(description="Users by username (admins only); `q` matches part of a "
                      "username or email.")
    async def admin_users(self, info: strawberry.Info, q: str | None = None, limit: int = 50,
                          cursor: str | None = None) -> UserPage:
        context = ctx(info)
        async with context.session() as session:
            page = await admin.list_users(session, await context.actor(), q=q, limit=limit,
                                          cursor=cursor)
        return UserPage(users=[User.from_model(row) for row in page.items],
                        next_cursor=page.next_cursor)

    @strawberry.field(description="The audit log, newest first (admins only).")
    async def audit_log(self, info: strawberry.Info, limit: int = 50, cursor: str | None = None,
                        type: str | None = None) -> AuditPage:
        context = ctx(info)
        async with context.session() as session:
            page = await audit.query(session, await context.actor(), limit=limit,
                                     cursor=cursor, type=type)
        return AuditPage(events=[AuditEvent.from_model(row) for row in page.items],
                         next_cursor=page.next_cursor)


@strawberry.type
class IdentityMutation:
    @strawberry.mutation(description="Start TOTP enrolment: secret, otpauth URI, QR (SVG).")
    async def setup_two_factor(self, info: strawberry.Info) -> TwoFactorSetup:
        context = ctx(info)
        async with context.session() as session:
            made = await twofactor.setup(session, context.services.security,
                                         await context.actor())
        return TwoFactorSetup(secret=made.secret, otpauth_uri=made.otpauth_uri,
                              qr_svg=made.qr_svg)

    @strawberry.mutation(description="Turn 2FA on with a code; returns ten recovery codes.")
    async def enable_two_factor(self, info: strawberry.Info, code: str) -> list[str]:
        context = ctx(info)
        async with context.session() as session:
            return await twofactor.enable(session, context.services.security,
                                          await context.actor(), code=code,
                                          limiter=context.services.limiter,
                                          address=context.client_address())

    @strawberry.mutation(description="Second step of a 2FA sign-in: the mfaToken from login "
                         "and a code or a recovery code.")
    async def verify_two_factor(self, info: strawberry.Info, mfa_token: str,
                                code: str | None = None,
                                recovery_code: str | None = None) -> AuthPayload:
        context = ctx(info)
        async with context.session() as session:
            pair = await twofactor.verify(session, context.services.security,
                                          mfa_token=mfa_token, code=code,
                                          recovery_code=recovery_code,
                                          limiter=context.services.limiter,
                                          address=context.client_address())
        return AuthPayload.from_pair(pair)

    @strawberry.mutation(description="Turn 2FA off: your password and a code (or a recovery "
                         "code).")
    async def disable_two_factor(self, info: strawberry.Info, password: str,
                                 code: str | None = None,
                                 recovery_code: str | None = None) -> bool:
        context = ctx(info)
        async with context.session() as session:
            await twofactor.disable(session, context.services.security,
                                    await context.actor(), password=password, code=code,
                                    recovery_code=recovery_code,
                                    limiter=context.services.limiter,
                                    address=context.client_address())
        return True

    @strawberry.mutation(description="Change a user's role, active flag or allowed models "
                         "(admins only). Deactivating signs them out everywhere at once.")
    async def admin_update_user(self, info: strawberry.Info, id: strawberry.ID,
                                input: UserChangesInput) -> User:
        context = ctx(info)
        changes = admin.UserChanges(role=_given(input.role), active=_given(input.active),
                                    allowed_models=_given(input.allowed_models))
        async with context.session() as session:
            row = await admin.update_user(session, await context.actor(), user_id=str(id),
                                          changes=changes, broker=context.services.broker,
                                          address=context.client_address())
        return User.from_model(row)

    @strawberry.mutation(description="A single-use sign-up code for SIGNUP=invite (admins "
                         "only).")
    async def admin_create_invite(self, info: strawberry.Info) -> str:
        context = ctx(info)
        async with context.session() as session:
            return await admin.create_invite(session, await context.actor(),
                                             address=context.client_address())

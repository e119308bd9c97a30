"""Single sign-on: OpenID Connect (any issuer, by discovery), Google and GitHub.

The flow is the authorization code flow with PKCE (S256), a `state` and (OpenID Connect) a
`nonce` — built and exchanged with Authlib's httpx client; ID tokens are verified with
joserfc (Authlib's JOSE library) against the issuer's published keys (JWKS): signature,
`iss`, `aud`, `exp`, `iat` and our `nonce`.

    start()  → stores a pending sign-in (state, nonce, PKCE verifier; single use, 10 min)
               and answers the provider's authorization URL
    finish() → consumes the pending sign-in by its `state`, exchanges the code, verifies the
               ID token (or asks GitHub's API), and signs the person in:
               1. an account already linked to this (provider, subject) → that account
               2. else an account with the same email — linked only when the provider says
                  the email is verified
               3. else a new account (when SIGNUP=open)

A user with TOTP 2FA gets an MfaChallenge here too: SSO never skips our second factor.
Users who sign in only through a provider rely on the provider's own MFA.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oauth2.rfc6749.errors import OAuth2Error
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry
from sqlalchemy import delete, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import OAuthIdentity, OAuthLogin, User
from resolvers import audit, auth, validation
from resolvers.kit.clock import now_ms, utcnow
from resolvers.kit.errors import Conflict, NotFound, Unauthenticated
from resolvers.kit.security import Security
from resolvers.kit.settings import Settings

log = logging.getLogger("chat_studio.sso")

GOOGLE_ISSUER = "https://accounts.google.com"
GITHUB_AUTHORIZE = "https://github.com/login/oauth/authorize"
GITHUB_TOKEN = "https://github.com/login/oauth/access_token"
GITHUB_API = "https://api.github.com"
ID_TOKEN_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                       "ES256", "ES384", "ES512", "EdDSA"]


class SignInFailed(Unauthenticated):
    default_message = "The sign-in through the provider failed"


class UnknownProvider(NotFound):
    default_message = "Unknown sign-in provider"


@dataclass(frozen=True, slots=True)
class Provider:
    id: str
    name: str
    client_id: str
    client_secret: str
    scope: str
    issuer: str | None = None  # OpenID Connect: discovery and ID tokens
    authorize_url: str | None = None  # plain OAuth2 (GitHub)
    token_url: str | None = None
    api_url: str | None = None


@dataclass(frozen=True, slots=True)
class Identity:
    subject: str
    email: str | None
    email_verified: bool
    name: str | None


def providers_of(settings: Settings) -> dict[str, Provider]:
    """The configured providers, by id (`oidc`, `google`, `github`)."""
    found: dict[str, Provider] = {}
    if settings.oidc_issuer and settings.oidc_client_id:
        found["oidc"] = Provider(id="oidc", name=settings.oidc_name,
                                 client_id=settings.oidc_client_id,
                                 client_secret=settings.oidc_client_secret,
                                 scope=settings.oidc_scopes,
                                 issuer=settings.oidc_issuer.rstrip("/"))
    if settings.google_client_id:
        found["google"] = Provider(id="google", name="Google",
                                   client_id=settings.google_client_id,
                                   client_secret=settings.google_client_secret,
                                   scope="openid email profile", issuer=GOOGLE_ISSUER)
    if settings.github_client_id:
        found["github"] = Provider(id="github", name="GitHub",
                                   client_id=settings.github_client_id,
                                   client_secret=settings.github_client_secret,
                                   scope="read:user user:email",
                                   authorize_url=GITHUB_AUTHORIZE, token_url=GITHUB_TOKEN,
                                   api_url=GITHUB_API)
    return found


class SignOn:
    """The sign-in providers of one process, with their discovery documents and keys
    cached (keys are fetched again when a token names one we do not have)."""

    def __init__(self, settings: Settings, *, http: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self.providers = providers_of(settings)
        self._http = http or httpx.AsyncClient(timeout=10.0, follow_redirects=False)
        self._metadata: dict[str, dict[str, Any]] = {}
        self._keys: dict[str, KeySet] = {}

    def get(self, provider_id: str) -> Provider:
        provider = self.providers.get(provider_id)
        if provider is None:
            raise UnknownProvider()
        return provider

    def callback_url(self, provider: Provider) -> str:
        return f"{self.settings.public_url.rstrip('/')}/api/auth/oauth/{provider.id}/callback"

    async def fetch_json(self, url: str, **kwargs: Any) -> Any:
        """GET a provider's JSON document; SignInFailed when it cannot be had."""
        try:
            response = await self._http.get(url, **kwargs)
            response.raise_for_status()
            return response.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("sign-in provider request %s failed: %s", url, exc)
            raise SignInFailed("The sign-in provider cannot be reached") from exc

    async def metadata(self, provider: Provider) -> dict[str, Any]:
        """The provider's endpoints: OpenID discovery, or the preset's."""
        if provider.issuer is None:
            return {"authorization_endpoint": provider.authorize_url,
                    "token_endpoint": provider.token_url}
        cached = self._metadata.get(provider.id)
        if cached is None:
            cached = await self.fetch_json(f"{provider.issuer}/.well-known/openid-configuration")
            if not isinstance(cached, dict) or cached.get("issuer", "").rstrip(
                    "/") != provider.issuer:
                raise SignInFailed("The provider's discovery document names another issuer")
            self._metadata[provider.id] = cached
        return cached

    async def _key_set(self, provider: Provider, *, fresh: bool = False) -> KeySet:
        keys = self._keys.get(provider.id)
        if keys is None or fresh:
            document = await self.fetch_json(str((await self.metadata(provider))["jwks_uri"]))
            keys = KeySet.import_key_set(document)
            self._keys[provider.id] = keys
        return keys

    async def verify_id_token(self, provider: Provider, id_token: str,
                              nonce: str) -> dict[str, Any]:
        """The ID token's claims once its signature (issuer's JWKS) and claims are right."""
        metadata = await self.metadata(provider)
        algorithms = [a for a in metadata.get("id_token_signing_alg_values_supported",
                                              ID_TOKEN_ALGORITHMS) if a in ID_TOKEN_ALGORITHMS]
        try:
            try:
                token = jwt.decode(id_token, await self._key_set(provider),
                                   algorithms=algorithms)
            except (ValueError, JoseError):
                # A key rotated since we fetched them: fetch once more.
                token = jwt.decode(id_token, await self._key_set(provider, fresh=True),
                                   algorithms=algorithms)
            JWTClaimsRegistry(
                leeway=60,
                iss={"essential": True, "value": str(metadata["issuer"])},
                aud={"essential": True, "value": provider.client_id},
                sub={"essential": True},
                exp={"essential": True},
                iat={"essential": True},
                nonce={"essential": True, "value": nonce},
            ).validate(token.claims)
        except (ValueError, JoseError) as exc:
            log.warning("refused an ID token from %s: %r", provider.id, exc)
            raise SignInFailed("The provider's ID token is not valid") from exc
        claims = dict(token.claims)
        audience = claims.get("aud")
        if isinstance(audience, list) and len(audience) > 1 and claims.get(
                "azp") != provider.client_id:
            raise SignInFailed("The provider's ID token is not valid")
        return claims

    def client(self, provider: Provider) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=provider.client_id, client_secret=provider.client_secret,
            scope=provider.scope, redirect_uri=self.callback_url(provider),
            code_challenge_method="S256", timeout=10.0)

    async def aclose(self) -> None:
        await self._http.aclose()


async def start(session: AsyncSession, sign_on: SignOn, *, provider_id: str) -> str:
    """Begin a sign-in: the provider's authorization URL to send the browser to."""
    provider = sign_on.get(provider_id)
    metadata = await sign_on.metadata(provider)
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)[:96]
    now = now_ms()
    # Old abandoned sign-ins go as new ones come.
    await session.exec(delete(OAuthLogin).where(col(OAuthLogin.expires_at) < now))
    session.add(OAuthLogin(state=state, provider=provider.id, nonce=nonce,
                           code_verifier=verifier,
                           expires_at=now + sign_on.settings.oauth_login_ttl_seconds * 1000))
    await session.commit()
    extra: dict[str, str] = {"nonce": nonce} if provider.issuer else {}
    async with sign_on.client(provider) as client:
        url, _ = client.create_authorization_url(
            str(metadata["authorization_endpoint"]), state=state, code_verifier=verifier,
            **extra)
    return str(url)


async def _consume(session: AsyncSession, provider: Provider, state: str | None) -> OAuthLogin:
    """The pending sign-in `state` names, deleted so it works once."""
    if not state:
        raise SignInFailed("Missing state")
    row = await session.get(OAuthLogin, state[:128])
    if row is None or row.provider != provider.id:
        raise SignInFailed("Unknown or already used sign-in state")
    result = await session.exec(delete(OAuthLogin).where(col(OAuthLogin.state) == row.state))
    await session.commit()
    if result.rowcount != 1:
        raise SignInFailed("Unknown or already used sign-in state")
    if row.expires_at < now_ms():
        raise SignInFailed("The sign-in took too long; start again")
    return row


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


async def _identity(sign_on: SignOn, provider: Provider, pending: OAuthLogin,
                    code: str) -> Identity:
    metadata = await sign_on.metadata(provider)
    async with sign_on.client(provider) as client:
        try:
            token = await client.fetch_token(str(metadata["token_endpoint"]), code=code,
                                             code_verifier=pending.code_verifier)
        except (OAuthError, OAuth2Error, httpx.HTTPError, ValueError) as exc:
            log.warning("code exchange with %s refused: %r", provider.id, exc)
            raise SignInFailed("The provider refused the authorization code") from exc
        if provider.issuer is not None:
            id_token = token.get("id_token")
            if not isinstance(id_token, str):
                raise SignInFailed("The provider sent no ID token")
            claims = await sign_on.verify_id_token(provider, id_token, pending.nonce)
            if "email" not in claims and metadata.get("userinfo_endpoint"):
                info = await sign_on.fetch_json(
                    str(metadata["userinfo_endpoint"]),
                    headers={"Authorization": f"Bearer {token['access_token']}"})
                if isinstance(info, dict) and info.get("sub") == claims["sub"]:
                    claims = {**info, **claims}
            email = claims.get("email")
            return Identity(subject=str(claims["sub"]),
                            email=email if isinstance(email, str) else None,
                            email_verified=_truthy(claims.get("email_verified")),
                            name=claims.get("preferred_username") or claims.get("name"))
        # GitHub: the user, and the verified primary email from /user/emails.
        headers = {"Authorization": f"Bearer {token['access_token']}",
                   "Accept": "application/vnd.github+json"}
        user = await sign_on.fetch_json(f"{provider.api_url}/user", headers=headers)
        emails = await sign_on.fetch_json(f"{provider.api_url}/user/emails", headers=headers)
        if not isinstance(user, dict) or "id" not in user or not isinstance(emails, list):
            raise SignInFailed("GitHub answered something unexpected")
        primary = next((e for e in emails if isinstance(e, dict) and e.get("primary")), None)
        return Identity(subject=str(user["id"]),
                        email=primary.get("email") if primary else None,
                        email_verified=bool(primary and primary.get("verified") is True),
                        name=user.get("login"))


def _username_base(identity: Identity) -> str:
    raw = identity.name or (identity.email or "").partition("@")[0] or "user"
    base = re.sub(r"[^A-Za-z0-9_-]", "", raw.replace(".", "_").replace(" ", "_"))[:24]
    return base if len(base) >= 3 else f"user{base}"


async def _new_user(session: AsyncSession, identity: Identity, provider: Provider) -> User:
    base = _username_base(identity)
    username = base
    for _ in range(20):
        taken = (await session.exec(select(User.id).where(
            User.username_key == username.lower()))).first()
        if taken is None:
            break
        username = f"{base[:24]}_{secrets.token_hex(3)}"
    email = identity.email or (
        f"{provider.id}-{hashlib.sha256(identity.subject.encode()).hexdigest()[:16]}"
        "@users.noreply.invalid")
    user = User(id=f"user_{uuid.uuid4().hex[:16]}", username=username,
                username_key=username.lower(), email=validation.email(email),
                password_hash=auth.NO_PASSWORD, created_at=utcnow())
    session.add(user)
    await session.flush()  # before rows that refer to it (no ORM relationships order them)
    return user


async def finish(session: AsyncSession, security: Security, sign_on: SignOn, *,
                 provider_id: str, code: str | None, state: str | None,
                 error: str | None = None, issuer: str | None = None,
                 address: str | None = None) -> auth.TokenPair | auth.MfaChallenge:
    """The provider sent the browser back: sign the person in (see the module docstring).
    `issuer`: the response's `iss` (RFC 9207), when the provider sends one, must be its own."""
    provider = sign_on.get(provider_id)
    pending = await _consume(session, provider, state)
    if error or not code:
        raise SignInFailed(f"The provider did not sign you in ({(error or 'no code')[:64]})")
    if issuer is not None and provider.issuer is not None and issuer.rstrip(
            "/") != provider.issuer:
        raise SignInFailed("The response names another issuer")
    identity = await _identity(sign_on, provider, pending, code[:2048])
    linked = (await session.exec(select(OAuthIdentity).where(
        OAuthIdentity.provider == provider.id,
        OAuthIdentity.subject == identity.subject))).first()
    user: User | None = None
    created = False
    if linked is not None:
        user = await session.get(User, linked.user_id)
    if user is None and identity.email:
        user = (await session.exec(select(User).where(
            func.lower(col(User.email)) == identity.email.lower()))).first()
        if user is not None and not identity.email_verified:
            # The advisory this rule comes from: an attacker's provider account claiming a
            # victim's email must never open the victim's account.
            audit.record(session, audit.LOGIN_FAILED, target_id=user.id, ip=address,
                         detail={"provider": provider.id, "reason": "unverified email"})
            await session.commit()
            raise Conflict("An account with this email exists, and the provider has not "
                           "verified the email: sign in with your password instead")
    if user is None:
        if sign_on.settings.signup != "open":
            raise auth.SignupClosed("Sign-up is not open on this server: ask an admin")
        user = await _new_user(session, identity, provider)
        created = True
    if not user.active:
        raise auth.Deactivated()
    if linked is None:
        session.add(OAuthIdentity(id=str(uuid.uuid4()), user_id=user.id, provider=provider.id,
                                  subject=identity.subject, email=identity.email,
                                  created_at=now_ms()))
        if not created:
            audit.record(session, audit.SSO_LINK, actor_id=user.id, target_id=user.id,
                         ip=address, detail={"provider": provider.id})
    if created:
        audit.record(session, audit.REGISTER, actor_id=user.id, target_id=user.id, ip=address,
                     detail={"provider": provider.id, "username": user.username})
    if user.totp_enabled:
        await session.commit()
        return auth.MfaChallenge(mfa_token=security.create_mfa_token(user.id,
                                                                     user.token_generation),
                                 user=user)
    audit.record(session, audit.SSO_LOGIN, actor_id=user.id, target_id=user.id, ip=address,
                 detail={"provider": provider.id})
    try:
        await session.flush()
    except IntegrityError as exc:  # the same person's first sign-in, twice at once
        await session.rollback()
        raise Conflict("Another sign-in of this account is under way; try again") from exc
    return await auth.issue(session, security, user)


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    id: str
    name: str
    authorize_url: str


def listed(sign_on: SignOn) -> list[ProviderInfo]:
    """`GET /api/auth/providers`: what a sign-in page shows."""
    return [ProviderInfo(id=p.id, name=p.name, authorize_url=f"/api/auth/oauth/{p.id}/authorize")
            for p in sign_on.providers.values()]


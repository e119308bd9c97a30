"""Settings from the environment: refusals with clear messages, and the development key."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from resolvers.kit.errors import Unauthenticated
from resolvers.kit.security import Security
from resolvers.kit.settings import Settings, SettingsError

ENV_VARS = ("ENVIRONMENT", "SECRET_KEY", "WORKERS", "REDIS_URL", "DATABASE_URL", "DATA_DIR",
            "ALLOWED_ORIGINS")
STRONG = "k" * 12 + "Vq3x9-P_s8LwZr2TnYb0aHc4uMe7"  # 40 characters


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))


def from_env(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings(_env_file=None)


@pytest.mark.parametrize(
    "secret",
    [None, "", "your-secret-key-change-in-production",
     "your-very-secure-secret-key-change-this-in-production", "change-me", "too-short-but-random"],
    ids=["missing", "empty", "guide-example", "guide-example-2", "change-me", "short"],
)
def test_production_refuses_a_missing_or_weak_secret(
    monkeypatch: pytest.MonkeyPatch, secret: str | None
) -> None:
    env = {"ENVIRONMENT": "production"}
    if secret is not None:
        env["SECRET_KEY"] = secret
    with pytest.raises(SettingsError) as caught:
        from_env(monkeypatch, **env)
    message = str(caught.value)
    assert "SECRET_KEY" in message and "production" in message
    assert "secrets.token_urlsafe" in message  # tells the operator how to make one


def test_production_accepts_a_strong_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = from_env(monkeypatch, ENVIRONMENT="production", SECRET_KEY=STRONG)
    assert settings.is_production and settings.signing_key() == STRONG
    assert not (settings.data_dir / "secret_key").exists()


def test_development_makes_a_key_once_and_tokens_survive_a_restart(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    first = from_env(monkeypatch)
    assert first.environment == "development" and first.secret_key == ""
    token, _ = Security(first).create_access_token("user_1", 0)
    key_file = tmp_path / "data" / "secret_key"
    assert key_file.exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(key_file.read_text().strip()) >= 32

    restarted = Settings(_env_file=None)
    claims = Security(restarted).decode_access_token(token)
    assert claims.user_id == "user_1"
    assert restarted.signing_key() == first.signing_key()

    elsewhere = from_env(monkeypatch, DATA_DIR=str(tmp_path / "other"))
    assert elsewhere.signing_key() != first.signing_key()
    with pytest.raises(Unauthenticated, match="Invalid token"):
        Security(elsewhere).decode_access_token(token)


def test_several_workers_need_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError, match="WORKERS=4 needs REDIS_URL"):
        from_env(monkeypatch, WORKERS="4")
    settings = from_env(monkeypatch, WORKERS="4", REDIS_URL="redis://127.0.0.1:6379/0")
    assert settings.workers == 4
    assert from_env(monkeypatch, WORKERS="1", REDIS_URL="").workers == 1


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u:p@db:5432/chat", "postgresql+asyncpg://u:p@db:5432/chat"),
        ("postgresql://u:p@db/chat", "postgresql+asyncpg://u:p@db/chat"),
        ("postgresql+asyncpg://u@db/chat", "postgresql+asyncpg://u@db/chat"),
        ("sqlite:///./x.db", "sqlite+aiosqlite:///./x.db"),
    ],
)
def test_database_url_is_made_async(monkeypatch: pytest.MonkeyPatch, url: str,
                                    expected: str) -> None:
    assert from_env(monkeypatch, DATABASE_URL=url).effective_database_url == expected


def test_default_database_is_sqlite_under_data_dir(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    url = from_env(monkeypatch).effective_database_url
    assert url == f"sqlite+aiosqlite:///{(tmp_path / 'data' / 'chat.db').as_posix()}"


def test_allowed_origins_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = from_env(monkeypatch,
                        ALLOWED_ORIGINS="http://localhost:3000, https://chat.example.com")
    assert settings.allowed_origins == ["http://localhost:3000", "https://chat.example.com"]


def test_an_empty_key_file_is_refused_not_used(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    # A first start killed between creating and writing the file must not leave a server that
    # signs tokens with an empty key (every login would fail with a 500).
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "secret_key").write_text("")
    with pytest.raises(SettingsError, match="secret_key is empty"):
        Security(from_env(monkeypatch))

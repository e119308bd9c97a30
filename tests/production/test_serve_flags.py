"""`chat-studio serve` (what `make run`, the Dockerfile and the systemd unit start) asks uvicorn
for uvloop and httptools by name, and both are installed: uvicorn's "auto" would fall back to
asyncio and h11 without a word when either is missing."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import uvicorn

import chat_studio_cli
import server

ROOT = Path(__file__).resolve().parents[2]


def test_serve_runs_uvicorn_on_uvloop_and_httptools(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    def fake_run(app: str, **options: Any) -> None:
        seen.update(options, app=app)

    monkeypatch.setattr(uvicorn, "run", fake_run)
    monkeypatch.setattr(server, "configure_logging", lambda _settings: None)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SECRET_KEY", "serve-flags-test-" + "k" * 32)
    monkeypatch.chdir(tmp_path)  # main() changes into the repository; undo it afterwards
    assert chat_studio_cli.main(["--app-dir", str(ROOT), "serve", "--port", "8123",
                                 "--workers", "1"]) == 0
    assert seen["app"] == "server:create_app" and seen["factory"] is True
    assert seen["loop"] == "uvloop"
    assert seen["http"] == "httptools"
    assert seen["port"] == 8123


@pytest.mark.parametrize("module", ["uvloop", "httptools"])
def test_the_named_loop_and_parser_are_installed(module: str) -> None:
    assert importlib.util.find_spec(module) is not None


def test_uvicorn_accepts_the_names() -> None:
    from uvicorn.config import HTTP_PROTOCOLS, LOOP_FACTORIES

    assert server.SERVE_LOOP in LOOP_FACTORIES
    assert server.SERVE_HTTP in HTTP_PROTOCOLS

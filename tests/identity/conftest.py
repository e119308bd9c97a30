"""Fixtures for identity and administration: a real OpenID provider under node, and live
servers signed in through it.

node and npm come from the machine (.ci/run installs them when missing); oidc-provider is
installed by `npm ci` from tests/identity/package-lock.json into a cache folder outside the
repository, once per lock file (the pattern of tests/guide).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from resolvers.kit.settings import Settings
from tests.conftest import LiveServer, free_port, make_settings
from tests.npm import npm_packages, tool

HERE = Path(__file__).resolve().parent
CLIENT_ID = "chat-studio-tests"
CLIENT_SECRET = "a-client-secret-only-the-tests-know-0123456789"
NO_LIMITS: dict[str, Any] = {"rate_limit_auth_per_address": 0,
                             "rate_limit_auth_per_username": 0}


@pytest.fixture(scope="session")
def oidc_node_modules() -> Path:
    """tests/identity's npm packages (`oidc-provider`)."""
    return npm_packages(HERE, "identity-node")


@dataclass
class OidcProvider:
    issuer: str
    process: subprocess.Popen[str]


@contextlib.contextmanager
def running_provider(node_modules: Path, folder: Path, *, port: int,
                     redirect_uri: str) -> Iterator[OidcProvider]:
    """oidc-provider on 127.0.0.1:`port`, until the block ends. ES modules ignore NODE_PATH,
    so the script runs from `folder` next to a link to the cached node_modules."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "oidc_provider.mjs"
    shutil.copy(HERE / "oidc_provider.mjs", script)
    link = folder / "node_modules"
    if not link.exists():
        link.symlink_to(node_modules, target_is_directory=True)
    env = {**os.environ, "OIDC_PORT": str(port), "OIDC_CLIENT_ID": CLIENT_ID,
           "OIDC_CLIENT_SECRET": CLIENT_SECRET, "OIDC_REDIRECT_URI": redirect_uri,
           "NODE_ENV": "test"}
    process = subprocess.Popen([tool("node"), str(script)], cwd=folder, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # "ready", or nothing when node died
        if line.strip() != "ready":
            process.kill()
            _, err = process.communicate(timeout=5)
            raise RuntimeError(f"oidc-provider did not start: {line}{err[-2000:]}")
        yield OidcProvider(issuer=f"http://127.0.0.1:{port}", process=process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


@dataclass
class SsoServer:
    server: LiveServer
    provider: OidcProvider
    settings: Settings

    @property
    def url(self) -> str:
        return self.server.url


@contextlib.contextmanager
def sso_server(node_modules: Path, tmp: Path, database_url: str,
               **overrides: Any) -> Iterator[SsoServer]:
    """A live server whose OIDC provider is a real oidc-provider; both stop at the end."""
    port = free_port()
    settings = make_settings(tmp, database_url=database_url,
                             oidc_issuer=f"http://127.0.0.1:{port}", oidc_client_id=CLIENT_ID,
                             oidc_client_secret=CLIENT_SECRET, oidc_name="Test IdP",
                             **{**NO_LIMITS, **overrides})
    server = LiveServer(settings)
    # The callback URL names the server's own port, known only now.
    settings.public_url = server.url
    redirect = f"{server.url}/api/auth/oauth/oidc/callback"
    with running_provider(node_modules, tmp / "idp", port=port,
                          redirect_uri=redirect) as provider:
        server.start()
        try:
            yield SsoServer(server=server, provider=provider, settings=settings)
        finally:
            server.stop()


def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)

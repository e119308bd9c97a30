"""The official `openai` npm package as the client of /v1, under node: list models, complete,
stream with the usage chunk, and the SDK's own error classes for OpenAI-shaped errors.

node and npm come from the machine (.ci/run installs them when missing); the package is
installed by `npm ci` from tests/gateway/package-lock.json into a cache folder outside the
repository, once per lock file.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from tests.chat.support import MODELS
from tests.conftest import LiveServer
from tests.gateway.conftest import KeyUser
from tests.npm import npm_packages, tool

HERE = Path(__file__).resolve().parent
pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """tests/gateway's npm packages (the `openai` npm package)."""
    return npm_packages(HERE, "gateway-node")


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_the_openai_npm_package_lists_completes_and_streams(
        node_modules: Path, user: KeyUser, gateway: LiveServer, tmp_path: Path,
        provider: str) -> None:
    node = tool("node")
    key = (await user.make_key(name="node"))["key"]
    out = tmp_path / "result.json"
    env = {**os.environ, "NODE_PATH": str(node_modules), "BASE_URL": f"{gateway.url}/v1",
           "API_KEY": key, "MODEL": MODELS[provider]}
    process = await asyncio.create_subprocess_exec(
        node, str(HERE / "openai_client.cjs"), str(out), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, f"{stdout.decode()[-2000:]}\n{stderr.decode()[-3000:]}"
    result = json.loads(out.read_text())
    assert MODELS[provider] in [m["id"] for m in result["models"]]
    assert {m["object"] for m in result["models"]} == {"model"}
    assert result["completion"] == {
        "object": "chat.completion", "content": "Hello, world!", "finish_reason": "stop",
        "usage": {"prompt_tokens": 21, "completion_tokens": 4, "total_tokens": 25}}
    assert result["stream"]["text"] == "Hello, world!"
    assert result["stream"]["usage"] == {"prompt_tokens": 21, "completion_tokens": 4,
                                         "total_tokens": 25}
    assert result["error"] == {"name": "NotFoundError", "status": 404,
                               "code": "model_not_found", "type": "invalid_request_error"}
    assert result["unauthorized"] == {"name": "AuthenticationError", "status": 401,
                                      "code": "invalid_api_key"}
    usage = (await user.http.get("/api/usage", headers=user.headers)).json()
    assert usage["total"]["requests"] == 2

"""The official `openai` npm package as the client of /v1, under node: list models, complete,
stream with the usage chunk, and the SDK's own error classes for OpenAI-shaped errors.

node and npm come from the machine (.ci/run installs them when missing); the package is
installed by `npm ci` from tests/gateway/package-lock.json into a cache folder outside the
repository, once per lock file.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.chat.support import MODELS
from tests.conftest import LiveServer
from tests.gateway.conftest import KeyUser

HERE = Path(__file__).resolve().parent
pytestmark = pytest.mark.slow


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail(f"{name} is not installed: .ci/run installs nodejs and npm")
    pytest.skip(f"{name} is not installed (apt-get install -y nodejs npm)")


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """tests/gateway's npm packages, installed once per lock file into a cache folder."""
    npm = _tool("npm")
    lock = (HERE / "package-lock.json").read_bytes()
    base = Path(os.environ.get("GATEWAY_NODE_CACHE")
                or Path.home() / ".cache" / "chat-studio" / "gateway-node")
    target = base / hashlib.sha256(lock).hexdigest()[:16]
    if not (target / "node_modules" / ".package-lock.json").exists():
        staging = base / f"staging-{uuid.uuid4().hex[:8]}"
        staging.mkdir(parents=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(HERE / name, staging / name)
        result = subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
                                cwd=staging, capture_output=True, text=True, timeout=600,
                                check=False)
        if result.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            pytest.fail(f"npm ci failed: {result.stderr[-2000:]}")
        try:
            staging.rename(target)
        except OSError:  # another run installed it meanwhile
            shutil.rmtree(staging, ignore_errors=True)
    return target / "node_modules"


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_the_openai_npm_package_lists_completes_and_streams(
        node_modules: Path, user: KeyUser, gateway: LiveServer, tmp_path: Path,
        provider: str) -> None:
    node = _tool("node")
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

"""The integration guide's frontend code, run as it is under node against the real server: its
axios service (register, login, me, conversations CRUD, chat, stats) and its React
`useWebSocket` hook (auth, ping, chat, typing).

node and npm come from the machine (.ci/run installs them when missing); axios, React,
react-test-renderer, ws and TypeScript (to strip the types) are installed by `npm ci` from
tests/guide/package-lock.json into a cache folder outside the repository, once.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.chat.support import NO_RATE_LIMITS, FakeThread
from tests.conftest import LiveServer, make_settings, register
from tests.npm import npm_packages

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
GUIDE = ROOT.parent / "shared" / "seed" / "backend-integration-guide.md"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """tests/guide's npm packages (axios, React, ws, TypeScript)."""
    return npm_packages(HERE, "guide-node")


@pytest.fixture(scope="module")
def fakes() -> Iterator[FakeThread]:
    fakes = FakeThread()
    fakes.start()
    try:
        yield fakes
    finally:
        fakes.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, fakes: FakeThread) -> Iterator[LiveServer]:
    """Served as the guide's frontend expects: its default model, gpt-3.5-turbo, is an alias."""
    tmp = tmp_path_factory.mktemp("guide")
    settings = make_settings(tmp, database_url=f"sqlite+aiosqlite:///{tmp / 'chat.db'}",
                             openai_base_url=fakes.openai.api_base, openai_api_key="sk-test",
                             default_model="gpt-4o-mini",
                             model_aliases={"gpt-3.5-turbo": "gpt-4o-mini"}, **NO_RATE_LIMITS)
    with LiveServer.running(settings) as live:
        yield live


def run_guide(node_modules: Path, server: LiveServer, scenario: str, tmp_path: Path,
              **inputs: str) -> dict[str, Any]:
    result_file = tmp_path / f"{scenario}.json"
    env = {**os.environ, "NODE_PATH": str(node_modules), "SERVER_URL": server.url,
           **{f"GUIDE_{k.upper()}": v for k, v in inputs.items()}}
    node = shutil.which("node")
    assert node
    done = subprocess.run([node, str(HERE / "run_guide.cjs"), scenario, str(result_file)],
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    data: dict[str, Any] = json.loads(result_file.read_text())
    return data


@pytest.fixture
async def account(server: LiveServer) -> AsyncIterator[dict[str, str]]:
    async with httpx.AsyncClient(base_url=server.url) as http:
        tokens = await register(http, f"hook{uuid.uuid4().hex[:8]}")
        me = await http.get("/api/auth/me",
                            headers={"Authorization": f"Bearer {tokens['access_token']}"})
        yield {"token": tokens["access_token"], "user_id": me.json()["id"]}


def test_the_files_are_the_guides_code() -> None:
    if not GUIDE.exists():
        pytest.skip(f"{GUIDE} is not here")
    blocks = re.findall(r"```typescript\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.S)
    for name, marker in (("backendApi.ts", "export class BackendApiService"),
                         ("useWebSocket.ts", "export const useWebSocket")):
        [block] = [b for b in blocks if marker in b]
        assert (HERE / "frontend" / name).read_text(encoding="utf-8") == block, name


def test_guide_api_service(node_modules: Path, server: LiveServer, fakes: FakeThread,
                           tmp_path: Path) -> None:
    fakes.reset()
    fakes.openai.chunks = ["你好", "！"]
    name = f"guide{uuid.uuid4().hex[:8]}"
    out = run_guide(node_modules, server, "api", tmp_path, username=name)
    failed = {step: r for step, r in out.items() if step != "loginWrong" and not r["ok"]}
    assert failed == {}

    assert out["register"]["data"]["token_type"] == "bearer"
    assert out["login"]["data"]["access_token"]
    assert out["me"]["data"]["username"] == name
    conversation_id = f"conv_{name}"
    assert out["created"]["data"]["id"] == conversation_id
    assert [c["id"] for c in out["listed"]["data"]] == [conversation_id]
    updated = out["updated"]["data"]
    assert updated["title"] == "关于React的讨论" and updated["systemPrompt"] == "你是一个AI助手"
    assert [m["content"] for m in updated["messages"]] == ["你好"]
    # The guide asks for gpt-3.5-turbo; MODEL_ALIASES serves it, the answer names the model.
    chat = out["chat"]["data"]
    assert chat["content"] == "你好！" and chat["model"] == "gpt-4o-mini" and chat["tokens"] > 0
    assert fakes.openai.requests[-1].json["model"] == "gpt-4o-mini"
    stats = out["stats"]["data"]
    assert stats["total_conversations"] == 1 and stats["total_messages"] == 1
    assert stats["total_tokens"] == chat["tokens"]
    assert out["listedAfter"]["data"] == []
    assert out["loginWrong"]["status"] == 401


def test_guide_websocket_hook(node_modules: Path, server: LiveServer, fakes: FakeThread,
                              account: dict[str, str], tmp_path: Path) -> None:
    fakes.reset()
    fakes.openai.chunks = ["实时", "回复"]
    out = run_guide(node_modules, server, "hook", tmp_path, **account)
    messages = out["messages"]
    types = [m["type"] for m in messages]
    assert types[:2] == ["auth_ok", "pong"], messages
    assert "error" not in types, messages
    chunks = [m["content"] for m in messages if m["type"] == "chat_chunk"]
    assert "".join(chunks) == "实时回复"
    assert types[-1] == "chat_complete"
    assert out["connectedBeforeUnmount"] is True


def test_guide_typing_reaches_the_other_tab(node_modules: Path, server: LiveServer,
                                            account: dict[str, str], tmp_path: Path) -> None:
    out = run_guide(node_modules, server, "typing", tmp_path, **account)
    assert [m["type"] for m in out["first"]] == ["auth_ok"], "the typing tab got an answer"
    delivered = out["delivered"]
    assert delivered is not None, out
    assert (delivered["type"], delivered["user_id"]) == ("user_typing", account["user_id"])

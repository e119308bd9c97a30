"""GraphiQL, Swagger UI and ReDoc render in a real browser with no internet, and GraphiQL runs
a query and a subscription: headless Chromium whose network reaches 127.0.0.1 only.

Screenshots land in the test's tmp dir (or EXPLORER_SCREENSHOTS, to look at them).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import quote, urlencode

import httpx
import pytest

from tests.chat.support import NO_RATE_LIMITS, FakeThread
from tests.conftest import LiveServer, make_settings, register
from tests.explorers.browser import Chromium, Tab

pytestmark = pytest.mark.slow


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
    tmp = tmp_path_factory.mktemp("explorers")
    settings = make_settings(tmp, database_url=f"sqlite+aiosqlite:///{tmp / 'chat.db'}",
                             openai_base_url=fakes.openai.api_base, openai_api_key="sk-test",
                             default_model="gpt-4o-mini", **NO_RATE_LIMITS)
    with LiveServer.running(settings) as live:
        yield live


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    with Chromium.running(tmp_path_factory.mktemp("chromium") / "profile") as chromium:
        yield chromium


@pytest.fixture
async def tab(browser: Chromium) -> AsyncIterator[Tab]:
    async with browser.tab() as opened:
        yield opened


def shot(tmp_path: Path, name: str) -> Path:
    folder = Path(os.environ.get("EXPLORER_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}.png"


def assert_offline(tab: Tab, server: LiveServer) -> None:
    assert tab.off_loopback() == [], "requests left the machine"
    assert any(url.startswith(f"{server.url}/static/") for url in tab.requested)
    assert tab.exceptions == []


async def test_swagger_ui_renders_offline(tab: Tab, server: LiveServer, tmp_path: Path) -> None:
    await tab.navigate(f"{server.url}/docs")
    await tab.wait_for("document.querySelector('.swagger-ui .info .title')?.innerText"
                       ".includes('AI Chat Studio API')")
    operations = await tab.wait_for(
        "[...document.querySelectorAll('.opblock-summary-path')].map(e => e.innerText)")
    assert "/api/auth/register" in operations and "/api/chat" in operations
    await tab.screenshot(shot(tmp_path, "swagger"))
    assert_offline(tab, server)


async def test_redoc_renders_offline(tab: Tab, server: LiveServer, tmp_path: Path) -> None:
    await tab.navigate(f"{server.url}/redoc")
    await tab.wait_for("document.querySelector('h1')?.innerText.includes('AI Chat Studio API')")
    menu = await tab.wait_for("document.querySelector('.menu-content')?.innerText")
    assert {"auth", "conversations", "chat", "stats"} <= set(menu.split("\n"))
    await tab.screenshot(shot(tmp_path, "redoc"))
    assert_offline(tab, server)


def graphiql_url(server: LiveServer, query: str, token: str) -> str:
    # The page takes its editors' contents from the URL (q, headers); GraphiQL sends the headers
    # with each HTTP request and as connection_init's payload on its WebSocket.
    headers = json.dumps({"Authorization": f"Bearer {token}"})
    return f"{server.url}/graphql?" + urlencode({"q": query, "headers": headers}, quote_via=quote)


RESULT = ("document.querySelector('.graphiql-response .CodeMirror')?.CodeMirror?.getValue()"
          " || ''")


async def run_in_graphiql(tab: Tab, url: str, expect: str) -> str:
    await tab.navigate(url)
    # Rendered, and the schema loaded (introspection over HTTP): the docs explorer has it.
    await tab.wait_for("document.querySelector('.graphiql-execute-button') !== null")
    await tab.wait_for("!document.body.innerText.includes('Loading...')")
    await tab.evaluate("document.querySelector('.graphiql-execute-button').click()")
    result: str = await tab.wait_for(f"(({RESULT}).includes({json.dumps(expect)})) && ({RESULT})")
    return result


@pytest.fixture
async def token(server: LiveServer) -> str:
    async with httpx.AsyncClient(base_url=server.url) as http:
        return (await register(http, f"gq{uuid.uuid4().hex[:8]}"))["access_token"]


async def test_graphiql_runs_a_query_offline(tab: Tab, server: LiveServer, token: str,
                                             tmp_path: Path) -> None:
    result = await run_in_graphiql(tab, graphiql_url(server, "{ me { username } }", token),
                                   '"username"')
    assert json.loads(result)["data"]["me"]["username"].startswith("gq")
    # The schema came in by introspection: the docs explorer lists the root types.
    await tab.evaluate("document.querySelector('[aria-label=\"Show Documentation Explorer\"]')"
                       "?.click()")
    await tab.wait_for("document.querySelector('.graphiql-doc-explorer')?.innerText"
                       ".includes('Subscription')")
    await tab.screenshot(shot(tmp_path, "graphiql-query"))
    assert_offline(tab, server)


async def test_graphiql_runs_a_subscription_offline(tab: Tab, server: LiveServer, token: str,
                                                    fakes: FakeThread, tmp_path: Path) -> None:
    fakes.reset()
    fakes.openai.chunks = ["Offline", " and", " streaming"]
    subscription = """subscription Reply {
  chatStream(input: {messages: [{role: user, content: "Hi"}]}) {
    __typename
    ... on ChatChunk { content seq }
    ... on ChatComplete { model finishReason }
  }
}"""
    result = await run_in_graphiql(tab, graphiql_url(server, subscription, token),
                                   '"finishReason"')
    assert json.loads(result)["data"]["chatStream"] == {
        "__typename": "ChatComplete", "model": "gpt-4o-mini", "finishReason": "stop"}
    # Every chunk came over GraphiQL's WebSocket (graphql-transport-ws `next` messages).
    events = [json.loads(text)["payload"]["data"]["chatStream"] for way, text in tab.frames
              if way == "received" and json.loads(text)["type"] == "next"]
    assert "".join(e.get("content", "") for e in events) == "Offline and streaming"
    sockets = [url for url in tab.requested if url.startswith("ws")]
    assert sockets == [f"ws://127.0.0.1:{server.port}/graphql"]
    # The fake model was really asked: the subscription ran the chat, not a cached answer.
    assert fakes.openai.requests[-1].json["messages"][-1]["content"] == "Hi"
    await tab.screenshot(shot(tmp_path, "graphiql-subscription"))
    assert_offline(tab, server)


async def test_graphiql_page_names_no_cdn(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        page = (await http.get("/graphql", headers={"Accept": "text/html"})).text
        assert "unpkg.com" not in page and "https://" not in page.replace(
            "http://www.w3.org", "")
        for path in ("/docs", "/redoc"):
            html = (await http.get(path)).text
            assert "cdn." not in html and "fonts.googleapis" not in html

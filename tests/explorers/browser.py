"""Headless Chromium driven over its DevTools protocol (CDP), with its network limited to loopback.

Playwright needs a browser build of its own (not installable here); Debian's `chromium` plus
the CDP over a WebSocket (the `websockets` package) is all a test needs: open a tab, navigate,
evaluate JavaScript, take a screenshot, and see every request the page makes.

Every host name resolves to nothing except 127.0.0.1 (`--host-resolver-rules`), and the test
checks the requests the page sent: a page that tries a CDN fails to render *and* is caught.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import websockets

LOOPBACK = {"127.0.0.1"}
# Schemes that never touch the network.
LOCAL_SCHEMES = {"data", "blob", "about", "chrome-extension", "devtools"}


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed: .ci/run installs it (apt-get install chromium)")
    pytest.skip("chromium is not installed (apt-get install -y chromium)")


class Chromium:
    """One headless Chromium process with a fresh profile."""

    def __init__(self, profile: Path) -> None:
        self.profile = profile
        self.log = (profile.parent / "chromium.log").open("w")
        self.proc = subprocess.Popen([
            chromium_path(), "--headless=new", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", f"--user-data-dir={profile}",
            "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-default-apps",
            "--disable-extensions", "--mute-audio", "--window-size=1400,900", "about:blank",
        ], stdout=self.log, stderr=subprocess.STDOUT)
        self.port = self._port()
        self.http = f"http://127.0.0.1:{self.port}"

    def _port(self) -> int:
        marker = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if marker.exists():
                first = marker.read_text().splitlines()[:1]
                if first and first[0].isdigit():
                    return int(first[0])
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("chromium did not start: "
                           + (self.profile.parent / "chromium.log").read_text()[-2000:])

    @contextlib.asynccontextmanager
    async def tab(self) -> AsyncIterator[Tab]:
        async with httpx.AsyncClient(base_url=self.http, timeout=10) as http:
            target = (await http.put("/json/new?about:blank")).json()
            try:
                async with websockets.connect(target["webSocketDebuggerUrl"],
                                              max_size=None) as ws:
                    tab = Tab(ws)
                    await tab.start()
                    try:
                        yield tab
                    finally:
                        await tab.stop()
            finally:
                await http.get(f"/json/close/{target['id']}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    @classmethod
    @contextlib.contextmanager
    def running(cls, profile: Path) -> Iterator[Chromium]:
        browser = cls(profile)
        try:
            yield browser
        finally:
            browser.stop()


class CDPError(RuntimeError):
    pass


class Tab:
    """One page: commands, the events it sent, and every URL it asked for."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.next_id = 0
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self.requested: list[str] = []  # HTTP(S) requests and WebSockets, in order
        self.exceptions: list[str] = []  # uncaught JavaScript errors
        self.frames: list[tuple[str, str]] = []  # WebSocket frames: ("sent"|"received", text)
        self.reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.reader = asyncio.create_task(self._read())
        for domain in ("Page", "Network", "Runtime"):
            await self.send(f"{domain}.enable")

    async def stop(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader

    async def _read(self) -> None:
        async for raw in self.ws:
            message = json.loads(raw)
            if "id" in message:
                future = self.pending.pop(message["id"], None)
                if future is not None and not future.done():
                    future.set_result(message)
                continue
            self.events.append(message)
            method, params = message.get("method"), message.get("params", {})
            if method == "Network.requestWillBeSent":
                self.requested.append(params["request"]["url"])
            elif method == "Network.webSocketCreated":
                self.requested.append(params["url"])
            elif method in ("Network.webSocketFrameSent", "Network.webSocketFrameReceived"):
                direction = "sent" if method.endswith("Sent") else "received"
                self.frames.append((direction, params["response"]["payloadData"]))
            elif method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                self.exceptions.append(details.get("exception", {}).get("description")
                                       or details.get("text", ""))

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = future
        await self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        message = await asyncio.wait_for(future, 30)
        if "error" in message:
            raise CDPError(f"{method}: {message['error']}")
        result: dict[str, Any] = message.get("result", {})
        return result

    async def navigate(self, url: str) -> None:
        await self.send("Page.navigate", url=url)
        await self.wait_for("document.readyState === 'complete'")

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression,
                                 returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise CDPError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, within: float = 20) -> Any:
        """Poll until the expression is truthy; its value."""
        deadline = time.monotonic() + within
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                text = await self.evaluate("document.body ? document.body.innerText : ''")
                raise AssertionError(f"timed out waiting for {expression!r}; page text: "
                                     f"{str(text)[:500]!r}; errors: {self.exceptions}; "
                                     f"WebSocket frames: {self.frames}")
            await asyncio.sleep(0.2)

    async def screenshot(self, path: Path) -> Path:
        data = await self.send("Page.captureScreenshot", format="png")
        await asyncio.to_thread(path.write_bytes, base64.b64decode(data["data"]))
        return path

    def off_loopback(self) -> list[str]:
        """Requests that would have left the machine."""
        return [url for url in self.requested
                if urlsplit(url).scheme not in LOCAL_SCHEMES
                and urlsplit(url).hostname not in LOOPBACK]

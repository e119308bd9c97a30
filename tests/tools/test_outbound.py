"""The outbound guard with a stub resolver (names mapped to every kind of address) and a
transport that records each connection it is asked to open: nothing here opens a socket."""

from __future__ import annotations

import httpx2
import pytest

from resolvers.kit.outbound import Outbound, OutboundRefused

NAMES = {
    "public.test": ["93.184.216.34"],
    "public6.test": ["2606:2800:220:1:248:1893:25c8:1946"],
    "loop.test": ["127.0.0.1"],
    "loop6.test": ["::1"],
    "private.test": ["10.1.2.3"],
    "private172.test": ["172.16.5.4"],
    "private192.test": ["192.168.1.1"],
    "ula.test": ["fd12:3456::1"],
    "linklocal.test": ["169.254.10.10"],
    "linklocal6.test": ["fe80::1"],
    "metadata.test": ["169.254.169.254"],
    "metadata6.test": ["fd00:ec2::254"],
    "alibaba.test": ["100.100.100.200"],
    "multicast.test": ["224.0.0.1"],
    "multicast6.test": ["ff02::1"],
    "mapped.test": ["::ffff:127.0.0.1"],
    "nat64.test": ["64:ff9b::a00:1"],
    "zero.test": ["0.0.0.0"],
    "cgnat.test": ["100.64.0.1"],
    "mixed.test": ["93.184.216.34", "10.0.0.1"],  # one bad answer is enough
}


class StubResolver:
    def __init__(self, names: dict[str, list[str]]) -> None:
        self.names = names
        self.asked: list[str] = []

    async def __call__(self, host: str) -> list[str]:
        self.asked.append(host)
        if host not in self.names:
            raise OSError("name does not resolve")
        answer = self.names[host]
        return answer


class Recorder(httpx2.AsyncBaseTransport):
    """Records where each request would connect; answers from `routes` (path -> response)."""

    def __init__(self, redirect_to: str | None = None) -> None:
        self.connections: list[tuple[str, str, str | None]] = []
        self.redirect_to = redirect_to

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self.connections.append((request.url.host, request.headers.get("host", ""),
                                 request.extensions.get("sni_hostname")))
        if self.redirect_to and request.url.path == "/start":
            return httpx2.Response(302, headers={"location": self.redirect_to})
        return httpx2.Response(200, text="ok")


REFUSED = [name for name in NAMES if not name.startswith("public")]


@pytest.mark.parametrize("name", REFUSED)
async def test_names_that_resolve_to_internal_addresses_are_refused(name: str) -> None:
    guard = Outbound(resolver=StubResolver(NAMES))
    with pytest.raises(OutboundRefused):
        await guard.check_url(f"http://{name}/mcp")


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8000/mcp", "http://[::1]/mcp", "http://localhost/mcp",
    "http://LOCALHOST./mcp", "http://metadata.google.internal/computeMetadata/v1/",
    "http://169.254.169.254/latest/meta-data/", "http://[::ffff:10.0.0.1]/",
    "http://2130706433/", "http://0x7f.1/", "file:///etc/passwd", "ftp://public.test/",
    "http://nowhere.test/",
])
async def test_literal_and_odd_urls_are_refused(url: str) -> None:
    guard = Outbound(resolver=StubResolver(NAMES))
    with pytest.raises(OutboundRefused):
        await guard.check_url(url)


async def test_public_names_pass_and_the_admin_allow_list_opens_internal_ones() -> None:
    resolver = StubResolver(NAMES)
    guard = Outbound(resolver=resolver)
    assert [str(a) for a in await guard.check_url("https://public.test/x")] == ["93.184.216.34"]
    assert await guard.check_url("https://public6.test/x")
    allowed = Outbound(allow=("127.0.0.0/8", "private.test", "fd00:ec2::254"),
                       resolver=resolver)
    assert await allowed.check_url("http://127.0.0.1:9/mcp")
    assert await allowed.check_url("http://loop.test/mcp")
    assert await allowed.check_url("http://private.test/mcp")
    assert await allowed.check_url("http://metadata6.test/")
    with pytest.raises(OutboundRefused):
        await allowed.check_url("http://linklocal.test/")


async def test_the_transport_connects_to_the_checked_address_and_keeps_the_host() -> None:
    names = dict(NAMES)
    resolver = StubResolver(names)
    recorder = Recorder()
    guard = Outbound(resolver=resolver)
    async with httpx2.AsyncClient(transport=guard.transport(recorder)) as client:
        response = await client.get("https://public.test/mcp")
        assert response.text == "ok"
        # The name now answers with a loopback address (DNS rebinding): refused, and the
        # connection already made went to the address that was checked.
        names["public.test"] = ["127.0.0.1"]
        with pytest.raises(OutboundRefused):
            await client.get("https://public.test/mcp")
    assert recorder.connections == [("93.184.216.34", "public.test", "public.test")]


@pytest.mark.parametrize("target", ["http://loop.test/", "http://169.254.169.254/latest",
                                    "http://[::1]:8080/", "http://metadata6.test/"])
async def test_redirects_to_internal_addresses_are_refused(target: str) -> None:
    recorder = Recorder(redirect_to=target)
    guard = Outbound(resolver=StubResolver(NAMES))
    async with httpx2.AsyncClient(transport=guard.transport(recorder),
                                  follow_redirects=True) as client:
        with pytest.raises(OutboundRefused):
            await client.get("http://public.test/start")
    assert [host for host, _h, _s in recorder.connections] == ["93.184.216.34"]

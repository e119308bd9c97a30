"""The outbound guard: every server-side fetch made for a user goes through here.

A user (or an admin typing a URL for users) must not make the server reach what only the
server can reach: its own loopback, the private network, link-local addresses and the cloud
metadata endpoints (LobeHub's SSRF advisory). `check_url()` resolves the name and refuses the
URL when *any* answer is such an address; `GuardedTransport` does it again for every request
it sends — redirects included — and connects to the address it checked, never to a second DNS
answer (a name that resolves to a public address once and to 127.0.0.1 the next time gets
nowhere). The admin allow-lists addresses, networks or host names with `OUTBOUND_ALLOW`.

The MCP client's Streamable HTTP connections and the remote image URLs of chat messages
(resolvers/files/remote.py) use it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx2

from resolvers.kit.errors import BadInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# name -> its addresses (as text); the default asks the system resolver.
Resolver = Callable[[str], Awaitable[list[str]]]

# Cloud metadata endpoints that are not already link-local or private.
_METADATA = (
    ipaddress.ip_network("169.254.169.254/32"),  # AWS, GCP, Azure, OpenStack (link-local too)
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS over IPv6
    ipaddress.ip_network("100.100.100.200/32"),  # Alibaba Cloud
    ipaddress.ip_network("192.0.0.192/32"),  # Oracle Cloud
)
_METADATA_NAMES = frozenset({"metadata.google.internal", "metadata", "instance-data"})


class OutboundRefused(BadInput):
    """The URL points at an address the server does not fetch for users."""

    default_message = "That address is not reachable from this server"


async def system_resolver(host: str) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def refusal(address: IPAddress) -> str | None:
    """Why `address` is refused (None: a public address)."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            return refusal(mapped)
        if address in ipaddress.ip_network("64:ff9b::/96"):  # NAT64 of an IPv4 address
            return refusal(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    if any(address in net for net in _METADATA):
        return "a cloud metadata address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_private or address.is_reserved or not address.is_global:
        return "a private address"
    return None


@dataclass(frozen=True, slots=True)
class Outbound:
    """The guard with its allow-list (OUTBOUND_ALLOW) and resolver (tests pass a stub)."""

    allow: tuple[str, ...] = ()  # addresses, networks (CIDR) or host names
    resolver: Resolver = system_resolver
    _networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(
        init=False, default=())
    _names: frozenset[str] = field(init=False, default=frozenset())

    def __post_init__(self) -> None:
        networks, names = [], set()
        for item in self.allow:
            try:
                networks.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError:
                names.add(item.strip().lower().rstrip("."))
        object.__setattr__(self, "_networks", tuple(networks))
        object.__setattr__(self, "_names", frozenset(names))

    def _allowed(self, address: IPAddress) -> bool:
        return any(address in net for net in self._networks)

    async def addresses(self, host: str) -> list[IPAddress]:
        """The addresses `host` may be reached at: every answer checked, or OutboundRefused."""
        name = host.strip("[]").lower().rstrip(".")
        if not name:
            raise OutboundRefused("The URL has no host", field="url")
        try:
            answers: Iterable[str] = [str(ipaddress.ip_address(name))]
        except ValueError:
            if name in self._names:
                return [ipaddress.ip_address(a) for a in await self._resolve(name)]
            if name in _METADATA_NAMES or name == "localhost" or name.endswith(".localhost"):
                raise OutboundRefused(f"{host} is not reachable from this server "
                                      "(a local or metadata name)", field="url") from None
            answers = await self._resolve(name)
        checked: list[IPAddress] = []
        for answer in answers:
            address = ipaddress.ip_address(answer.split("%", 1)[0])
            why = None if self._allowed(address) else refusal(address)
            if why is not None:
                raise OutboundRefused(f"{host} is not reachable from this server: it "
                                      f"resolves to {why} (an admin can allow it with "
                                      "OUTBOUND_ALLOW)", field="url")
            checked.append(address)
        return checked

    async def _resolve(self, name: str) -> list[str]:
        try:
            answers = await self.resolver(name)
        except OSError as exc:
            raise OutboundRefused(f"{name} does not resolve", field="url") from exc
        if not answers:
            raise OutboundRefused(f"{name} does not resolve", field="url")
        return answers

    async def check_url(self, url: str) -> list[IPAddress]:
        """The one check for a URL the server will fetch for a user (http and https only)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise OutboundRefused("Only http and https URLs with a host are fetched",
                                  field="url")
        return await self.addresses(parts.hostname)

    def transport(self, inner: httpx2.AsyncBaseTransport | None = None) -> GuardedTransport:
        return GuardedTransport(self, inner or httpx2.AsyncHTTPTransport())


class GuardedTransport(httpx2.AsyncBaseTransport):
    """Checks every request (each redirect is a request of its own) and connects to the
    address it checked: the Host header and TLS name stay the URL's."""

    def __init__(self, guard: Outbound, inner: httpx2.AsyncBaseTransport) -> None:
        self.guard = guard
        self.inner = inner

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        host = request.url.host
        address = (await self.guard.check_url(str(request.url)))[0]
        extensions: dict[str, Any] = dict(request.extensions)
        if request.url.scheme == "https":
            extensions.setdefault("sni_hostname", host)
        pinned = httpx2.Request(request.method, request.url.copy_with(host=str(address)),
                                headers=request.headers, stream=request.stream,
                                extensions=extensions)
        return await self.inner.handle_async_request(pinned)

    async def aclose(self) -> None:
        await self.inner.aclose()

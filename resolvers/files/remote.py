"""Remote images: an `http(s)://` URL in a message's image part, fetched for its sender.

Only through the outbound guard (resolvers/kit/outbound.py): every request — the first and
each redirect — is checked and connects to the address it checked, so a URL naming (or
redirecting to, or re-resolving to) loopback, the private network, link-local or a cloud
metadata address gets nowhere unless the admin allow-listed it (OUTBOUND_ALLOW). On top of
the guard, a fetch is bounded: one deadline for all of it (name, connection, redirects and
body), at most `max_bytes` (a declared Content-Length above it is refused before the body is
read; the body is counted while it arrives), and the first bytes must be a PNG, JPEG, GIF or
WEBP (sniffed; the server's Content-Type is not trusted) — anything else is dropped at once.
Every failure is a BadInput (400) that says which of these it was.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from http.cookiejar import CookieJar, DefaultCookiePolicy
from urllib.parse import urlsplit

import httpx2

from resolvers.files import extract
from resolvers.kit import metrics
from resolvers.kit.errors import BadInput
from resolvers.kit.outbound import Outbound, OutboundRefused

MAX_REDIRECTS = 3
ACCEPT = "image/png,image/jpeg,image/gif,image/webp"
USER_AGENT = "AI-Chat-Studio (image fetch)"
SNIFF_BYTES = 16  # enough for every image signature (WEBP: RIFF....WEBP)


class ImageFetchFailed(BadInput):
    """A remote image could not be used; the message says why."""


def _shown(url: str) -> str:
    """The URL as named in an error: scheme, host and path (no query: it may hold a token)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"[:200]


def filename_of(url: str) -> str:
    """The last path segment of the URL (the stored file's name), or `image`."""
    return urlsplit(url).path.rstrip("/").rpartition("/")[2] or "image"


@dataclass
class RemoteImages:
    """The fetcher of one process (built by assembly.py; closed with the chat service)."""

    outbound: Outbound
    max_bytes: int
    timeout: float  # seconds for the whole fetch
    _client: httpx2.AsyncClient | None = field(default=None, init=False)

    def _http(self) -> httpx2.AsyncClient:
        if self._client is None:
            # One client for every user: it keeps no cookies (one user's fetch must not send
            # what a server set during another's) and ignores proxy variables (trust_env).
            self._client = httpx2.AsyncClient(
                transport=self.outbound.transport(), follow_redirects=True,
                max_redirects=MAX_REDIRECTS, timeout=self.timeout, trust_env=False,
                cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
                headers={"Accept": ACCEPT, "Accept-Encoding": "identity",
                         "User-Agent": USER_AGENT})
        return self._client

    async def fetch(self, url: str) -> bytes:
        """The image's bytes, or ImageFetchFailed / OutboundRefused (both 400)."""
        outcome = "error"
        try:
            async with asyncio.timeout(self.timeout):
                data = await self._fetch(url)
            outcome = "fetched"
            return data
        except OutboundRefused as exc:
            outcome = "blocked"
            raise OutboundRefused(f"The image URL was not fetched: {exc.message}",
                                  field="content") from exc
        except ImageFetchFailed as exc:
            outcome = str(exc.extra.get("outcome", "error"))
            raise
        except (TimeoutError, httpx2.TimeoutException) as exc:
            outcome = "timeout"
            raise ImageFetchFailed(f"The image at {_shown(url)} did not arrive within "
                                   f"{self.timeout:g} seconds", field="content") from exc
        except httpx2.TooManyRedirects as exc:
            outcome = "unreachable"
            raise ImageFetchFailed(f"The image at {_shown(url)} redirects more than "
                                   f"{MAX_REDIRECTS} times", field="content") from exc
        except (httpx2.InvalidURL, httpx2.UnsupportedProtocol) as exc:
            outcome = "unreachable"
            raise ImageFetchFailed(f"The image URL is not a usable http(s) URL: {exc}",
                                   field="content") from exc
        except httpx2.HTTPError as exc:
            outcome = "unreachable"
            raise ImageFetchFailed(f"The image at {_shown(url)} could not be fetched "
                                   f"({type(exc).__name__})", field="content") from exc
        finally:
            metrics.IMAGE_FETCHES.labels(outcome=outcome).inc()  # metrics

    def _failed(self, message: str, outcome: str) -> ImageFetchFailed:
        return ImageFetchFailed(message, field="content", outcome=outcome)

    async def _fetch(self, url: str) -> bytes:
        shown = _shown(url)
        limit = f"the limit of {self.max_bytes} bytes for a fetched image"
        async with self._http().stream("GET", url) as response:
            if response.status_code != 200:
                raise self._failed(f"The image at {shown} could not be fetched: the server "
                                   f"answered HTTP {response.status_code}", "unreachable")
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
                raise self._failed(f"The image at {shown} is larger than {limit}",
                                   "too_large")
            encoding = response.headers.get("content-encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                # Asked for identity: decompressing what a server sends anyway could turn a
                # few kilobytes into gigabytes before a single piece is counted.
                raise self._failed(f"The image at {shown} was sent compressed "
                                   f"(Content-Encoding: {encoding}): not fetched",
                                   "unreachable")
            pieces: list[bytes] = []
            size = 0
            sniffed = False
            async for piece in response.aiter_raw():
                size += len(piece)
                if size > self.max_bytes:
                    raise self._failed(f"The image at {shown} is larger than {limit}",
                                       "too_large")
                pieces.append(piece)
                if not sniffed and size >= SNIFF_BYTES:
                    self._check_image(b"".join(pieces), shown)
                    sniffed = True
            data = b"".join(pieces)
            if not sniffed:
                self._check_image(data, shown)
            return data

    def _check_image(self, head: bytes, shown: str) -> None:
        found = extract.sniff(head[:extract.SNIFF_BYTES], "image")
        if found is None or found[0] != "image":
            raise self._failed(f"The URL {shown} is not a PNG, JPEG, GIF or WEBP image",
                               "not_image")

    async def aclose(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.aclose()
            self._client = None

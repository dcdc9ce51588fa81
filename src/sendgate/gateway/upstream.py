"""The only way out: requests to the configured upstream, never to a client-chosen host."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import unquote

import aiohttp
from yarl import URL

__all__ = ["Upstream", "UpstreamError", "UpstreamHooks", "UpstreamResponse", "UnsafePath", "decoded_path"]

# Headers that mean something to Meta; hop-by-hop and client-identity headers stay here.
# Content-Encoding stays too: bodies are forwarded decoded (body.py).
_FORWARDED_HEADERS = ("Authorization", "Content-Type", "Accept", "User-Agent")
_SAFE_PATHS = 1024  # url_for's cache of judged paths
_MAX_DECODINGS = 4  # "%25252e" is "." three decodings deep; deeper than this is refused outright


class UnsafePath(ValueError):
    """The path could reach somewhere other than the upstream host."""


class UpstreamError(Exception):
    """Meta could not be reached or did not answer in time."""

    def __init__(self, timed_out: bool, detail: str) -> None:
        super().__init__(detail)
        self.timed_out = timed_out
        self.detail = detail


@dataclass(frozen=True)
class UpstreamResponse:
    status: int
    body: bytes
    content_type: str | None


@dataclass(frozen=True)
class UpstreamHooks:
    """Event hooks, as httpx's `event_hooks`: called in order as each request to Meta ends, with
    the seconds it took. Observers (the metrics) add their behaviour here, not by subclassing."""

    on_response: Sequence[Callable[[UpstreamResponse, float], None]] = ()
    on_error: Sequence[Callable[[UpstreamError, float], None]] = ()


class Upstream:
    """One pooled client session to `upstream_url`.

    The session is the transport seam (httpx's `transport=`): tests and tools pass their own.
    """

    def __init__(
        self, base_url: str, timeout: float, session: aiohttp.ClientSession, hooks: UpstreamHooks = UpstreamHooks()
    ) -> None:
        self._base = URL(base_url.rstrip("/"))
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session = session
        self._hooks = hooks
        # Paths already judged safe, and their URLs: a send path repeats per account, and judging
        # it again (decoding, yarl's parse) cost about 6 µs a send. Only paths without a query (a
        # passthrough query may carry an access token). Bounded: cleared when full.
        self._safe: dict[str, URL] = {}

    @classmethod
    def open_session(cls, connections: int = 256) -> aiohttp.ClientSession:
        # auto_decompress stays on: bodies go back to the app decoded, without Content-Encoding.
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=connections, ttl_dns_cache=300),
            skip_auto_headers=("User-Agent",),
        )

    def url_for(self, raw_path_qs: str) -> URL:
        """The upstream URL for a request's raw path and query, refusing anything that could change host.

        The path is judged as fully percent-decoded, as some server on the way may decode it:
        `%2e%2e`, `%2F%2F` or `%5C` (at any depth of encoding) are refused like `..`, `//`, `\\`.
        """
        url = self._safe.get(raw_path_qs)
        if url is not None:
            return url
        path = raw_path_qs.split("?", 1)[0]
        if not path.startswith("/"):  # an absolute URI ("http://host/...") or worse
            raise UnsafePath(f"refusing path {path!r}")
        plain = decoded_path(path)
        if "//" in plain or "\\" in plain or any(segment in ("..", ".") for segment in plain.split("/")):
            raise UnsafePath(f"refusing path {path!r}")
        url = URL(str(self._base) + raw_path_qs, encoded=True)
        if (url.scheme, url.host, url.port) != (self._base.scheme, self._base.host, self._base.port):
            raise UnsafePath(f"refusing path {path!r}")
        if path == raw_path_qs:
            if len(self._safe) >= _SAFE_PATHS:
                self._safe.clear()
            self._safe[raw_path_qs] = url
        return url

    async def send(
        self,
        method: str,
        target: str | URL,
        headers: Mapping[str, str],
        body: bytes | AsyncIterable[bytes] | None,
    ) -> UpstreamResponse:
        """`target`: the request's raw path and query, or the URL `url_for` already built from them."""
        url = target if isinstance(target, URL) else self.url_for(target)
        out = {name: headers[name] for name in _FORWARDED_HEADERS if name in headers}
        started = time.perf_counter()
        try:
            response = await self._request(method, url, out, body)
        except UpstreamError as exc:
            seconds = time.perf_counter() - started
            for on_error in self._hooks.on_error:
                on_error(exc, seconds)
            raise
        seconds = time.perf_counter() - started
        for on_response in self._hooks.on_response:
            on_response(response, seconds)
        return response

    async def _request(
        self, method: str, url: URL, headers: dict[str, str], body: bytes | AsyncIterable[bytes] | None
    ) -> UpstreamResponse:
        try:
            async with self._session.request(
                method, url, data=body, headers=headers, timeout=self._timeout, allow_redirects=False
            ) as response:
                payload = await response.read()
                return UpstreamResponse(response.status, payload, response.headers.get("Content-Type"))
        except asyncio.TimeoutError as exc:
            raise UpstreamError(True, f"no answer from upstream within {self._timeout.total:g}s") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(False, f"upstream unreachable: {type(exc).__name__}: {exc}") from exc


def decoded_path(path: str) -> str:
    """`path` percent-decoded until nothing changes: what a server that decodes it (again) would see."""
    for _ in range(_MAX_DECODINGS):
        if "%" not in path:
            return path
        decoded = unquote(path)
        if decoded == path:
            return path
        path = decoded
    raise UnsafePath(f"refusing path {path!r}: percent-encoded more than {_MAX_DECODINGS} times")

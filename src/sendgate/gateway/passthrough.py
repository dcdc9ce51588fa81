"""Graph calls that are not sends: forwarded only when `passthrough` lists them."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable, Iterable

from aiohttp import web

from sendgate.config import PassthroughRule
from sendgate.gateway.body import BodyDecoder, content_coding, iter_body
from sendgate.gateway.errors import CODE_INVALID, graph_error
from sendgate.gateway.media import UploadSniffer, multipart_boundary, record_upload, upload_phone_number_id
from sendgate.gateway.upstream import UnsafePath, Upstream, UpstreamError, decoded_path
from sendgate.ids import DecisionIds
from sendgate.messages import InvalidMessage
from sendgate.state import MediaCatalog

__all__ = ["Passthrough", "rule_matches"]

_VERSION = re.compile(r"^/v\d+\.\d+(?=/|$)")


def rule_matches(rule: PassthroughRule, method: str, path: str) -> bool:
    """Match `path` (without its version segment) against a rule's pattern."""
    if rule.method not in ("*", method):
        return False
    pattern = rule.path.strip("/").split("/") if rule.path.strip("/") else []
    segments = _VERSION.sub("", path).strip("/").split("/")
    for i, part in enumerate(pattern):
        if part == "*":
            return True
        if i >= len(segments):
            return False
        if not (part.startswith("{") and part.endswith("}")) and part != segments[i]:
            return False
    return len(segments) == len(pattern)


class Passthrough:
    """`own_paths`: the gateway's own path prefixes (admin API and pages, webhook, health, metrics).

    A request that did not match one of their routes exactly (another case, a percent-encoded
    letter or slash, a version segment in front) still never goes to Meta: it would carry the
    caller's `Authorization`, an admin token as likely as not.

    `media`: where media uploads (`POST /{phone_number_id}/media`) that Meta answers with an id
    are kept, with what the form said of the file (`gateway/media.py`); None keeps nothing.
    """

    def __init__(
        self,
        rules: tuple[PassthroughRule, ...],
        upstream: Upstream,
        own_paths: Iterable[str],
        media: MediaCatalog | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._rules = rules
        self._upstream = upstream
        self._own = tuple(path.rstrip("/").lower() for path in own_paths)
        self._ids = DecisionIds()
        self._media = media
        self._clock = clock

    def _is_own(self, plain_path: str) -> bool:
        path = _VERSION.sub("", plain_path.lower())
        return any(path == own or path.startswith(own + "/") for own in self._own)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        trace_id = self._ids.new()  # the fbtrace_id of our own errors
        try:
            if self._is_own(decoded_path(request.path)):
                return graph_error(
                    404,
                    CODE_INVALID,
                    f"{request.method} {request.path} is sendgate's own path, not a Graph path: never forwarded",
                    kind="SendgateRequestError",
                    trace_id=trace_id,
                )
            url = self._upstream.url_for(request.raw_path)
        except UnsafePath as exc:
            return graph_error(404, CODE_INVALID, str(exc), kind="SendgateRequestError", trace_id=trace_id)
        if not any(rule_matches(rule, request.method, request.path) for rule in self._rules):
            return graph_error(
                404,
                CODE_INVALID,
                f"sendgate does not forward {request.method} {request.path}: not a send endpoint and not in passthrough",
                kind="SendgateRequestError",
                trace_id=trace_id,
            )
        try:
            coding = content_coding(request.headers)
        except InvalidMessage as exc:
            return _invalid_body(exc, trace_id)
        decoder = None if coding == "identity" else BodyDecoder(coding)
        body: AsyncIterator[bytes] | None = iter_body(request, decoder) if request.can_read_body else None
        # A media upload is read on its way to Meta (decoded: what Meta gets), never held.
        uploader = (
            upload_phone_number_id(request.method, decoded_path(request.path)) if self._media is not None else None
        )
        boundary = multipart_boundary(request.headers.get("Content-Type")) if uploader else None
        sniffer = UploadSniffer(boundary) if boundary is not None and body is not None else None
        if sniffer is not None and body is not None:
            body = sniffer.observe(body)
        try:
            response = await self._upstream.send(request.method, url, request.headers, body)
        except UpstreamError as exc:
            if decoder is not None and decoder.failure is not None:  # the body broke off mid-way, not Meta
                return _invalid_body(decoder.failure, trace_id)
            return graph_error(
                504 if exc.timed_out else 502, 2, "Meta could not be reached", kind="SendgateUpstreamError",
                trace_id=trace_id, details=exc.detail,
            )
        if sniffer is not None and uploader is not None and self._media is not None:
            await record_upload(self._media, uploader, sniffer, response.status, response.body, self._clock())
        out = web.Response(status=response.status, body=response.body)
        if response.content_type:
            out.headers["Content-Type"] = response.content_type
        return out


def _invalid_body(exc: InvalidMessage, trace_id: str) -> web.Response:
    return graph_error(400, CODE_INVALID, f"Invalid parameter: {exc}", kind="SendgateRequestError", trace_id=trace_id)

"""Graph calls that are not sends: forwarded only when `passthrough` lists them."""

from __future__ import annotations

import re

from aiohttp import web

from sendgate.config import PassthroughRule
from sendgate.gateway.errors import CODE_INVALID, graph_error
from sendgate.gateway.upstream import UnsafePath, Upstream, UpstreamError
from sendgate.ids import DecisionIds

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
    def __init__(self, rules: tuple[PassthroughRule, ...], upstream: Upstream) -> None:
        self._rules = rules
        self._upstream = upstream
        self._ids = DecisionIds()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        trace_id = self._ids.new()  # the fbtrace_id of our own errors
        if not any(rule_matches(rule, request.method, request.path) for rule in self._rules):
            return graph_error(
                404,
                CODE_INVALID,
                f"sendgate does not forward {request.method} {request.path}: not a send endpoint and not in passthrough",
                kind="SendgateRequestError",
                trace_id=trace_id,
            )
        body = request.content.iter_chunked(64 * 1024) if request.can_read_body else None
        try:
            response = await self._upstream.send(request.method, request.raw_path, request.headers, body)
        except UnsafePath as exc:
            return graph_error(404, CODE_INVALID, str(exc), kind="SendgateRequestError", trace_id=trace_id)
        except UpstreamError as exc:
            return graph_error(
                504 if exc.timed_out else 502, 2, "Meta could not be reached", kind="SendgateUpstreamError",
                trace_id=trace_id, details=exc.detail,
            )
        out = web.Response(status=response.status, body=response.body)
        if response.content_type:
            out.headers["Content-Type"] = response.content_type
        return out

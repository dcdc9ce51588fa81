"""Meta's webhook path through the gateway: verify, update state, relay to the app.

- `GET <path>`: Meta's verification (`hub.mode=subscribe`, `hub.verify_token`, `hub.challenge`).
- `POST <path>`: `X-Hub-Signature-256` checked (HMAC-SHA256 of the raw body with the app
  secret, constant-time); a bad or missing one gets 401 and changes nothing. Then the state is
  updated, then the raw body goes to every `forward_to` URL with the original signature header,
  so the app's own verification keeps working. Meta gets 200 only when the state was updated
  and every URL answered 2xx; otherwise 503 (state) or 502 (relay), and Meta retries, which the
  idempotent state updates make harmless. An event refused for an unusable time (`events.py`)
  is logged and answered 200 all the same: a redelivery would bring the same time.

No `app_secret` configured: the path answers 404 (off rather than unauthenticated).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from sendgate.config import Config
from sendgate.gateway.upstream import Upstream
from sendgate.monitoring import Metrics, Monitor
from sendgate.policy import PolicyEngine
from sendgate.policy.params import ServingParams
from sendgate.state.leader import FleetLeader
from sendgate.webhooks.apply import WebhookApplier, WebhookStore
from sendgate.webhooks.events import Parsed, parse_webhook
from sendgate.webhooks.templates import TemplateSync

__all__ = ["SIGNATURE_HEADER", "TEMPLATE_SYNC", "WebhookReceiver", "setup_webhooks", "signature"]

log = logging.getLogger("sendgate.webhooks")

SIGNATURE_HEADER = "X-Hub-Signature-256"
TEMPLATE_SYNC = web.AppKey("template_sync", TemplateSync)
# What the app's own webhook handler may look at; hop-by-hop and length headers are aiohttp's.
_RELAYED_HEADERS = ("Content-Type", SIGNATURE_HEADER, "X-Hub-Signature", "User-Agent")


def signature(secret: str, body: bytes) -> str:
    """The `X-Hub-Signature-256` value Meta sends for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _text(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message)


def _json(status: int, value: Any) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(value), content_type="application/json")


class WebhookReceiver:
    def __init__(
        self,
        config: Config,
        applier: WebhookApplier,
        metrics: Metrics,
        monitor: Monitor,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._options = config.webhooks
        self._config = config
        self._applier = applier
        self._metrics = metrics
        self._monitor = monitor
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None

    def context(self) -> Callable[[web.Application], AsyncIterator[None]]:
        """A `cleanup_ctx` entry: the relay's own client session."""

        async def ctx(app: web.Application) -> AsyncIterator[None]:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._options.forward_timeout),
                skip_auto_headers=("User-Agent",),
            )
            try:
                yield
            finally:
                await self._session.close()

        return ctx

    # -- GET: verification ------------------------------------------------------------------

    async def verify(self, request: web.Request) -> web.Response:
        if not self._options.enabled:
            return _text(404, "webhooks are off: set webhooks.app_secret")
        query = request.query
        token = self._options.verify_token
        given = query.get("hub.verify_token", "")
        if (
            query.get("hub.mode") == "subscribe"
            and token is not None
            and hmac.compare_digest(given.encode(), token.encode())
            and "hub.challenge" in query
        ):
            log.info("webhook verification answered")
            return _text(200, query["hub.challenge"])
        log.warning("webhook verification refused (mode %r)", query.get("hub.mode"))
        return _text(403, "verification failed")

    # -- POST: events -------------------------------------------------------------------------

    async def receive(self, request: web.Request) -> web.Response:
        if not self._options.enabled:
            return _text(404, "webhooks are off: set webhooks.app_secret")
        assert self._options.app_secret is not None
        limit = self._options.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            self._metrics.webhook_requests.labels("too_large").inc()
            return _json(413, {"error": f"webhook body over {limit} bytes"})
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > limit:
                self._metrics.webhook_requests.labels("too_large").inc()
                return _json(413, {"error": f"webhook body over {limit} bytes"})
            chunks.append(chunk)
        raw = b"".join(chunks)
        given = request.headers.get(SIGNATURE_HEADER, "")
        expected = signature(self._options.app_secret, raw)
        if not hmac.compare_digest(given.strip().lower().encode(), expected.encode()):
            self._metrics.webhook_requests.labels("bad_signature").inc()
            log.warning("webhook refused: %s", "no signature" if not given else "signature does not match")
            return _json(401, {"error": f"missing or invalid {SIGNATURE_HEADER}"})

        now = self._clock()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        parsed = parse_webhook(body, now)
        for kind in parsed.kinds():
            self._metrics.webhook_events.labels(kind).inc()
        state_ok = True
        try:
            await self._applier.apply(parsed, now)
            await self._monitor.settle()
        except Exception:
            state_ok = False
            log.exception("webhook: updating the state failed; Meta will retry")
        failed = await self._forward(request, raw)

        if not state_ok or failed:
            self._monitor.webhook_failure(self._accounts(parsed))
        if not state_ok:
            self._metrics.webhook_requests.labels("state_failed").inc()
            return _json(503, {"error": "the gateway could not record this webhook; retry"})
        if failed:
            self._metrics.webhook_requests.labels("forward_failed").inc()
            return _json(502, {"error": "the app did not take this webhook; retry", "failed": failed})
        self._metrics.webhook_requests.labels("ok").inc()
        return _text(200, "EVENT_RECEIVED")

    async def _forward(self, request: web.Request, raw: bytes) -> list[str]:
        """Relay the raw body to every `forward_to` URL; the URLs that did not answer 2xx."""
        urls = self._options.forward_to
        if not urls:
            return []
        headers = {name: request.headers[name] for name in _RELAYED_HEADERS if name in request.headers}
        headers.setdefault("Content-Type", "application/json")
        results = await asyncio.gather(*(self._forward_one(url, raw, headers) for url in urls))
        return [url for url, ok in zip(urls, results, strict=True) if not ok]

    async def _forward_one(self, url: str, raw: bytes, headers: dict[str, str]) -> bool:
        session = self._session
        assert session is not None, "the receiver's context is not running"
        try:
            async with session.post(url, data=raw, headers=headers, allow_redirects=False) as response:
                await response.read()
                ok = 200 <= response.status < 300
                if not ok:
                    log.warning("webhook relay to %s: answered %s", url, response.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("webhook relay to %s failed: %s", url, type(exc).__name__ if not str(exc) else exc)
            ok = False
        self._metrics.webhook_forwards.labels("ok" if ok else "failed").inc()
        return ok

    def _accounts(self, parsed: Parsed) -> list[str]:
        accounts = set(parsed.phone_numbers)
        wabas = {e.waba_id for e in parsed.templates} | {e.waba_id for e in parsed.accounts}
        accounts |= {a.phone_number_id for a in self._config.accounts if a.waba_id in wabas}
        return sorted(accounts)


def setup_webhooks(
    app: web.Application,
    config: Config,
    store: Callable[[], WebhookStore],
    engine: Callable[[], PolicyEngine],
    metrics: Metrics,
    monitor: Monitor,
    clock: Callable[[], float] = time.time,
    leader: FleetLeader | None = None,
) -> TemplateSync:
    """Routes and contexts of the webhook path and the template sync; call after the store's context.

    The sync has its own client session and `Upstream` to `upstream_url`, apart from the send
    path's pool. Its periodic rounds run while this process leads the fleet (`leader`).
    """
    # The opt-out keywords and the like; asked again on every event while the engine fails.
    params = ServingParams(engine, reader="webhook", clock=clock, retry=0.0)
    sync = TemplateSync(config, None, store, metrics, clock, leader)
    applier = WebhookApplier(config, store, params.get, monitor, sync.request)
    receiver = WebhookReceiver(config, applier, metrics, monitor, clock)

    async def sync_upstream(app: web.Application) -> AsyncIterator[None]:
        session = Upstream.open_session(connections=4)
        sync.upstream = Upstream(config.upstream_url, config.upstream_timeout, session)
        app[TEMPLATE_SYNC] = sync
        try:
            yield
        finally:
            sync.upstream = None
            await session.close()

    app.cleanup_ctx.append(receiver.context())
    app.cleanup_ctx.append(sync_upstream)
    app.cleanup_ctx.append(sync.context())
    path = config.webhooks.path
    app.router.add_get(path, receiver.verify)
    app.router.add_post(path, receiver.receive)
    return sync

"""The template catalog from Meta: `GET /{version}/{waba_id}/message_templates`, every page.

Requests go through the configured upstream only (the paging cursor is followed, never the
`next` URL Graph returns), with the `template_sync.token`. A WABA's catalog is replaced in one
transaction once every page has arrived; a failed sync keeps the old catalog and says so.
The periodic sync runs in the fleet's leading process only (state/leader.py); a sync a webhook
asks for runs in the process that received it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import orjson
from aiohttp import web

from sendgate.config import Config
from sendgate.gateway.upstream import Upstream, UpstreamError
from sendgate.state import InvalidRecord, TemplateCatalog
from sendgate.state.leader import FleetLeader, SoleProcess

if TYPE_CHECKING:
    from sendgate.monitoring import Metrics

__all__ = ["SyncResult", "TemplateSync", "TemplateSyncError", "sync_wabas"]

log = logging.getLogger("sendgate.templates")

_FIELDS = "id,name,language,status,category,components,parameter_format,quality_score,previous_category"
_MAX_PAGES = 1000


class TemplateSyncError(RuntimeError):
    """The catalog could not be fetched or stored; the old one is still in place."""


@dataclass(frozen=True)
class SyncResult:
    waba_id: str
    ok: bool
    templates: int | None  # how many are now in the catalog (the old count when it failed)
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"waba_id": self.waba_id, "ok": self.ok, "templates": self.templates, "error": self.error}


def sync_wabas(config: Config) -> list[str]:
    """`template_sync.wabas`, else every WABA under `accounts`."""
    if config.template_sync.wabas:
        return list(config.template_sync.wabas)
    return list(dict.fromkeys(a.waba_id for a in config.accounts))


class TemplateSync:
    def __init__(
        self,
        config: Config,
        upstream: Upstream | None,
        store: Callable[[], TemplateCatalog],
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        leader: FleetLeader | None = None,
    ) -> None:
        self._config = config
        self._leader = leader or SoleProcess()  # who runs the periodic sync
        self._options = config.template_sync
        self.upstream = upstream  # set when the app's context opens its session
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self._running: dict[str, asyncio.Task[SyncResult]] = {}
        self.last: dict[str, SyncResult] = {}

    async def fetch(self, waba_id: str) -> list[dict[str, Any]]:
        """Every template of the WABA, page by page."""
        token = self._options.token
        if token is None:
            raise TemplateSyncError("template_sync.token is not set")
        upstream = self.upstream
        if upstream is None:
            raise TemplateSyncError("no upstream session (the gateway is stopping)")
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        templates: list[dict[str, Any]] = []
        after: str | None = None
        seen: set[str] = set()
        for _ in range(_MAX_PAGES):
            query: dict[str, Any] = {"limit": self._options.page_size, "fields": _FIELDS}
            if after is not None:
                query["after"] = after
            path = f"/{self._options.api_version}/{waba_id}/message_templates?{urlencode(query)}"
            try:
                response = await upstream.send("GET", path, headers, None)
            except UpstreamError as exc:
                raise TemplateSyncError(exc.detail) from exc
            try:
                body = orjson.loads(response.body)
            except orjson.JSONDecodeError:
                body = None
            if response.status != 200 or not isinstance(body, dict) or not isinstance(body.get("data"), list):
                raise TemplateSyncError(f"Graph answered {response.status}: {_graph_error(body, response.body)}")
            templates.extend(t for t in body["data"] if isinstance(t, dict))
            paging = found if isinstance(found := body.get("paging"), dict) else {}
            cursors = found if isinstance(found := paging.get("cursors"), dict) else {}
            after = cursors.get("after") if isinstance(cursors.get("after"), str) else None
            if not paging.get("next") or after is None:
                return templates
            if after in seen:
                raise TemplateSyncError(f"Graph repeated the paging cursor {after!r}")
            seen.add(after)
        raise TemplateSyncError(f"more than {_MAX_PAGES} pages of templates")

    async def sync(self, waba_id: str) -> SyncResult:
        """Fetch and replace one WABA's catalog; never raises for Graph or catalog problems."""
        store = self._store()
        try:
            templates = await self.fetch(waba_id)
            count = await store.put_templates(waba_id, {"data": templates})
        except (TemplateSyncError, InvalidRecord) as exc:
            old = await store.templates(waba_id)
            kept = None if old is None else len(old.get("data", []))
            result = SyncResult(waba_id, False, kept, str(exc))
            log.error(
                "template sync of WABA %s failed: %s; kept the old catalog (%s templates)",
                waba_id, exc, "no" if kept is None else kept,
            )  # fmt: skip
        else:
            result = SyncResult(waba_id, True, count)
            log.info("template sync of WABA %s: %d templates", waba_id, count)
        self.last[waba_id] = result
        if self._metrics is not None:
            self._metrics.template_syncs.labels(waba_id, "ok" if result.ok else "failed").inc()
        return result

    async def sync_all(self, wabas: list[str] | None = None) -> list[SyncResult]:
        return [await self.sync(waba_id) for waba_id in (wabas or sync_wabas(self._config))]

    def request(self, waba_id: str) -> None:
        """Sync one WABA soon (a webhook named a template the catalog lacks); once at a time."""
        if self._options.token is None:
            return
        running = self._running.get(waba_id)
        if running is not None and not running.done():
            return
        task = asyncio.get_running_loop().create_task(self.sync(waba_id))
        self._running[waba_id] = task

    def context(self) -> Callable[[web.Application], AsyncIterator[None]]:
        """A `cleanup_ctx` entry: the periodic sync (`template_sync.interval`), when on."""

        async def ctx(app: web.Application) -> AsyncIterator[None]:
            periodic = None
            if self._options.interval is not None:
                periodic = asyncio.get_running_loop().create_task(self._periodic(self._options.interval))
            try:
                yield
            finally:
                tasks = [t for t in [periodic, *self._running.values()] if t is not None]
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

        return ctx

    async def _periodic(self, interval: float) -> None:
        while True:
            await self._leader.wait_leading()
            try:
                await self.sync_all()
            except Exception:  # the store went away mid-sync, say: try again next time
                log.exception("periodic template sync failed")
            await asyncio.sleep(interval)


def _graph_error(body: Any, raw: bytes) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        return f"({error.get('code')}) {error.get('message')}"
    return raw[:200].decode("utf-8", "replace") or "no body"


def cli_sync(config: Config, wabas: list[str] | None) -> int:
    """`sendgate templates sync`: 0 when every WABA synced, 1 when one failed (its old catalog kept)."""
    import sys

    from sendgate.state import open_store

    targets = wabas or sync_wabas(config)
    if not targets:
        print("sendgate: no WABA to sync: pass --waba, or set accounts or template_sync.wabas", file=sys.stderr)
        return 2

    async def run() -> list[SyncResult]:
        store = open_store(config.state)
        session = Upstream.open_session(connections=4)
        try:
            sync = TemplateSync(config, Upstream(config.upstream_url, config.upstream_timeout, session), lambda: store)
            return await sync.sync_all(targets)
        finally:
            await session.close()
            await store.close()

    results = asyncio.run(run())
    for result in results:
        if result.ok:
            print(f"synced {result.templates} templates for WABA {result.waba_id}")
        else:
            kept = "no catalog" if result.templates is None else f"the old catalog ({result.templates} templates)"
            print(f"sync of WABA {result.waba_id} failed: {result.error}; kept {kept}", file=sys.stderr)
    return 0 if all(r.ok for r in results) else 1

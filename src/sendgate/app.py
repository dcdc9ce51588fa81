"""Wiring: the aiohttp application, its resources and its routes."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from sendgate.admin.api import AdminGuard, admin_routes
from sendgate.admin.pages import setup_review_pages
from sendgate.admin.sessions import MemorySessions, SessionStore
from sendgate.admin.shared import RedisGuessThrottle, RedisSessions
from sendgate.admin.throttle import GuessThrottle, MemoryGuessThrottle
from sendgate.config import Config
from sendgate.gateway.errors import CODE_INVALID, graph_error
from sendgate.gateway.passthrough import Passthrough
from sendgate.gateway.recorder import DecisionRecorder
from sendgate.gateway.send import SendPath
from sendgate.gateway.upstream import Upstream
from sendgate.ids import DecisionIds
from sendgate.masking import mask_numbers
from sendgate.monitoring import Metrics, Monitor, monitoring_routes, recorder_hooks, upstream_hooks
from sendgate.policy import PolicyEngine
from sendgate.policy.factory import create_engine
from sendgate.policy.watch import RELOADER, PolicyReloader
from sendgate.retention import retention_context
from sendgate.state import Lifecycle, Store, StoreError, open_store
from sendgate.state.counters import LocalCounters, SendCounters
from sendgate.state.fleet import open_admission, open_leader
from sendgate.state.leader import FleetLeader
from sendgate.state.redis import open_redis
from sendgate.state.redis.counters import RedisCounters
from sendgate.webhooks.receiver import setup_webhooks

__all__ = [
    "CONFIG", "COUNTERS", "ENGINE", "LEADER", "RELOADER", "STORE", "AccessLogger", "MaskedAccessLogger", "access_logger_class", "create_app",
]  # fmt: skip

CONFIG = web.AppKey("config", Config)
STORE = web.AppKey("store", Store)
ENGINE = web.AppKey("engine", PolicyEngine)
SEND_PATH = web.AppKey("send_path", SendPath)
PASSTHROUGH = web.AppKey("passthrough", Passthrough)
REDIS = web.AppKey("redis", aioredis.Redis)  # with `redis_url`: the app's one client
# The rate and pacing counters per sending number and per account (`state/counters.py`): in this
# process, or with `redis_url` in Redis, one count for every replica. `SendPath` reads them
# (gateway/counting.py: throughput, messaging limit, same-content pacing) inside the send's
# admission hold, before the policy decides, and `undo`es them when the send is not forwarded
# (denied, deferred, not recorded), so only forwarded sends count; a `SharedStateError` (Redis
# down) refuses the send with its own error (503, SendgateSharedStateError): fail closed.
COUNTERS = web.AppKey("counters", SendCounters)
LEADER = web.AppKey("fleet_leader", FleetLeader)  # whether this process runs the fleet's timed work

log = logging.getLogger("sendgate")

_SEND_ENDPOINTS = "messages|marketing_messages|messages_encrypted"
# The routes that read bodies for Meta decode Content-Encoding themselves (gateway/body.py).
_DECODING_ROUTES = frozenset({"send", "passthrough"})


class AccessLogger(AbstractAccessLogger):
    """Method, path and status only: query strings can carry `access_token`, and tokens are never logged."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info("%s %s %s %.1fms", request.method, self.shown_path(request.path), response.status, time * 1000)

    def shown_path(self, path: str) -> str:
        return path


class MaskedAccessLogger(AccessLogger):
    """The access log with `log.mask_recipients`: paths carry numbers (`/admin/v1/consent/{number}`)."""

    def shown_path(self, path: str) -> str:
        return str(mask_numbers(path))


def access_logger_class(config: Config) -> type[AccessLogger]:
    """The `access_log_class` to serve `config` with: aiohttp builds it, so the class carries the setting."""
    return MaskedAccessLogger if config.log.mask_recipients else AccessLogger


def create_app(
    config: Config, engine: PolicyEngine | None = None, clock: Callable[[], float] = time.time
) -> web.Application:
    """The gateway. `engine` defaults to the embedded engine on `config.policy_dir`; `clock` is for tests."""
    # Send bodies are size-checked by the send path itself; passthrough media uploads may be large.
    # Bodies are decoded by gateway/body.py, not aiohttp, so a body that does not decode gets a Graph error.
    app = web.Application(
        client_max_size=1024**3, middlewares=[_refuse_malformed], handler_args={"auto_decompress": False}
    )
    app[CONFIG] = config
    owned = engine is None  # an engine passed in (tests) is started and closed by its owner
    policy = engine or create_engine(config)  # fails fast on broken policies
    app[ENGINE] = policy
    watched = config.engine == "embedded" or config.opa_policies == "push"
    reloader = PolicyReloader(policy, config.policy_dir if watched else None, clock=clock)
    app[RELOADER] = reloader
    metrics = Metrics(lambda phone_number_id: config.account(phone_number_id) is not None)  # GET /metrics
    # With `redis_url`: one Redis client for the state the replicas share (opened first, closed last).
    shared: Callable[[], aioredis.Redis] | None = None
    if config.redis_url is not None:
        redis_url = config.redis_url

        async def shared_state(app: web.Application) -> AsyncIterator[None]:
            app[REDIS] = open_redis(redis_url)
            try:
                yield
            finally:
                await app[REDIS].aclose()

        def shared_client() -> aioredis.Redis:
            return app[REDIS]

        app.cleanup_ctx.append(shared_state)
        shared = shared_client
    monitor = Monitor(config, metrics, lambda: app[STORE], clock, shared)  # per-account counts and alerts
    app[COUNTERS] = LocalCounters() if shared is None else RedisCounters(shared)
    metrics.before_render(reloader.bind_metrics(metrics.registry))  # sendgate_policy_reload{s_total,_failed}
    # Template sync and retention run once per fleet of processes on one database: in its leader.
    leader = open_leader(config.state)
    app[LEADER] = leader

    async def resources(app: web.Application) -> AsyncIterator[None]:
        store = open_store(config.state)
        app[STORE] = store
        await _mark_outcome_unknown(store, clock())
        session = Upstream.open_session()
        # The metrics and the monitor observe the send path through its event hooks.
        upstream = Upstream(config.upstream_url, config.upstream_timeout, session, upstream_hooks(metrics))
        recorder = DecisionRecorder(
            store, config.log, config.mode, lambda: policy.revision, recorder_hooks(metrics, monitor, config.mode)
        )
        # Sends are admitted per recipient: on this event loop (SQLite, one process), or across
        # every process on the database (PostgreSQL).
        admission = open_admission(config.state)
        app[SEND_PATH] = SendPath(config, policy, upstream, recorder, store, admission, clock, app[COUNTERS])
        own_paths = ("/admin", config.webhooks.path, "/healthz", "/readyz", "/metrics")
        # Media uploads Meta answers with an id are kept in the store (`MediaCatalog`) for the send path.
        app[PASSTHROUGH] = Passthrough(config.passthrough, upstream, own_paths, store, clock)
        try:
            yield
        finally:
            await session.close()
            await admission.close()
            await store.close()

    async def fleet(app: web.Application) -> AsyncIterator[None]:
        await leader.start()
        try:
            yield
        finally:
            await leader.close()

    async def policy_lifecycle(app: web.Application) -> AsyncIterator[None]:
        if owned:
            await policy.start()  # OPA: open the connection pool, push the policies
        if config.policy_watch:
            reloader.start_watching()
        try:
            yield
        finally:
            await reloader.stop()
            if owned:
                await policy.close()

    app.cleanup_ctx.append(policy_lifecycle)
    app.cleanup_ctx.append(resources)
    app.cleanup_ctx.append(fleet)
    app.cleanup_ctx.append(
        retention_context(config.log.retention_days, lambda: app[STORE], clock, leader=leader)
    )
    app.cleanup_ctx.append(monitor.context())
    # Meta's webhooks (GET/POST webhooks.path) and the template sync: sendgate/webhooks/
    setup_webhooks(app, config, lambda: app[STORE], lambda: policy, metrics, monitor, clock, leader)
    # Wrong tokens per client address (the admin API and the sign-in page) and the review sessions:
    # in this process, or with `redis_url` in Redis, shared by every replica.
    guesses: GuessThrottle
    sessions: SessionStore
    if shared is None:
        guesses, sessions = MemoryGuessThrottle(), MemorySessions(config.session_ttl, clock)
    else:
        guesses, sessions = RedisGuessThrottle(shared), RedisSessions(shared, config.session_ttl, clock)
    guarded = AdminGuard(config.admin_token, guesses, clock)  # every /admin/v1 route
    app.router.add_routes(monitoring_routes(config, metrics, monitor, lambda: app[STORE], lambda: policy, guarded, clock))
    app.router.add_post(
        rf"/{{version:v\d+\.\d+}}/{{phone_number_id:\d+}}/{{endpoint:{_SEND_ENDPOINTS}}}", _send, name="send"
    )
    app.router.add_get("/healthz", _healthz)
    app.router.add_routes(admin_routes(
        guarded, lambda: app[STORE], lambda: policy, reloader, mask_recipients=config.log.mask_recipients
    ))
    setup_review_pages(app, config, lambda: app[STORE], clock, lambda: policy.revision, guesses, sessions)  # /admin/
    app.router.add_route("*", "/{tail:.*}", _passthrough, name="passthrough")
    return app


async def _mark_outcome_unknown(store: Lifecycle, started_at: float) -> None:
    """Before serving: a forwarded record still waiting for Meta's answer was left by a process that
    is gone (SQLite: one serving process per database; see `mark_outcome_unknown`)."""
    try:
        unknown = await store.mark_outcome_unknown(started_at)
    except StoreError as exc:  # a full disk must not keep the gateway down: the next start marks them
        log.error("could not mark unanswered sends from before this start as outcome unknown: %s", exc)
        return
    if unknown:
        log.warning("%d forwarded sends from before this start have no recorded answer from Meta: "
                    "marked outcome unknown (they still count as sent)", unknown)  # fmt: skip


_ERROR_IDS = DecisionIds()  # fbtrace_ids of the refusals below that have no decision record


@web.middleware
async def _refuse_malformed(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Refuse, on every path, what no handler should see: a Graph 400 (on a send path, logged `invalid`)."""
    route = request.match_info.route.name
    reason = None
    if not request.raw_path.startswith("/"):
        # "POST http://evil.example/v23.0/...": the path routes like a send, but the request names
        # another host; sendgate is not a forward proxy.
        reason = "absolute request URIs are not accepted: the request line must carry the path only"
    elif route not in _DECODING_ROUTES and request.body_exists:
        coding = request.headers.get("Content-Encoding", "").strip()
        if coding.lower() not in ("", "identity"):
            reason = f"Content-Encoding {coding!r} is not accepted on {request.path}: send the body plain"
    if reason is None:
        return await handler(request)
    if route == "send":
        return await request.app[SEND_PATH].refuse(request, reason)
    return graph_error(
        400, CODE_INVALID, f"Invalid parameter: {reason}", kind="SendgateRequestError", trace_id=_ERROR_IDS.new()
    )


async def _send(request: web.Request) -> web.StreamResponse:
    return await request.app[SEND_PATH].handle(request)


async def _passthrough(request: web.Request) -> web.StreamResponse:
    return await request.app[PASSTHROUGH].handle(request)


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def configure_logging(config: Config, process: str | None = None) -> None:
    """`process` names the process in every line (`worker 2`, under `serve --workers`)."""
    logging.basicConfig(
        level=getattr(logging, config.log.level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s " + (f"[{process}] " if process else "") + "%(message)s",
    )
    # Every send already has a decision record; per-request access lines only at DEBUG.
    if config.log.level != "DEBUG":
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)

"""Metrics, per-account early warnings, and the health endpoints.

- `Metrics`: the Prometheus series `GET /metrics` serves (one registry per app; with
  `serve --workers N`, prometheus_client's multiprocess mode: each worker writes its series to
  files in `PROMETHEUS_MULTIPROC_DIR`, and a scrape of any worker adds up all of them).
- `Monitor`: rolling per-account counts (sends, rejections by rule, Meta error codes, webhook
  failures) checked against the `alerts.thresholds`; an alert is a log line, a metric and a
  POST to `alerts.url`, once per episode (when the condition starts holding, and once when it
  stops). A threshold with `pause_marketing` also pauses marketing templates on the account
  (the policy input's `account.marketing_paused`, rule `account.paused`) until an operator
  clears it (`DELETE /admin/v1/accounts/{phone_number_id}/pause`).
- `recorder_hooks` and `upstream_hooks`: how both observe the send path, through the event
  hooks of its recorder and upstream.
- `/metrics`, `/readyz` and the monitoring admin routes.

Counts live in memory: a restart starts them afresh (pauses are in the store and survive).
With `redis_url` they are also the fleet's: each replica pushes its counts to Redis and
evaluates the sums, and one replica announces each episode (`Monitor`; keys in
`state/redis/rolling.py`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import aiohttp
import orjson
import redis.asyncio as aioredis
from aiohttp import web
from cachetools import TTLCache
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from sendgate.config import Config
from sendgate.gateway.call import SendCall
from sendgate.gateway.errors import primary_reason
from sendgate.gateway.recorder import RecorderHooks
from sendgate.gateway.upstream import UpstreamError, UpstreamHooks, UpstreamResponse
from sendgate.options import Threshold
from sendgate.policy.watch import RELOADER
from sendgate.state import AccountState, Lifecycle, SendRecord
from sendgate.state.counters import SharedStateError
from sendgate.state.redis.rolling import RedisRollingCounts

if TYPE_CHECKING:
    from sendgate.policy import PolicyEngine

__all__ = ["MONITOR", "Metrics", "Monitor", "monitoring_routes", "recorder_hooks", "upstream_hooks"]

log = logging.getLogger("sendgate.monitoring")

_BUCKET = 10.0  # seconds per rolling-count bucket
_CHECK_INTERVAL = 15.0  # seconds between checks for episodes that ended
_PUSH_INTERVAL = 1.0  # with Redis: seconds between pushes of this replica's counts
_READY_TIMEOUT = 2.0
_PROBE_INTERVAL = 1.0  # seconds a /readyz store probe's answer stands

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
T = TypeVar("T")


class Metrics:
    """The Prometheus series, on a registry of their own (one per app).

    Under workers (`PROMETHEUS_MULTIPROC_DIR` set by `serve --workers`, before prometheus_client
    is imported) counters and histograms add up over the workers; a gauge says how it combines.
    """

    def __init__(self, accounts: Callable[[str], bool]) -> None:
        self._known = accounts
        self._multiprocess = "PROMETHEUS_MULTIPROC_DIR" in os.environ
        self._before_render: list[Callable[[], None]] = []
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.decisions = Counter(
            "sendgate_decisions", "Send calls by decision, primary rule, mode and account",
            ["decision", "rule", "mode", "account"], registry=r,
        )  # fmt: skip
        self.evaluation = Histogram(
            "sendgate_policy_evaluation_seconds", "Policy evaluation time per send call", registry=r,
            buckets=(10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 1e-2, 5e-2, 0.25, 1.0),
        )  # fmt: skip
        self.upstream = Histogram(
            "sendgate_upstream_request_seconds", "Requests to Meta by HTTP status (timeout / error: no answer)",
            ["status"], registry=r,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
        )  # fmt: skip
        self.upstream_errors = Counter(
            "sendgate_upstream_errors", "Meta error codes, from send responses and failed-status webhooks",
            ["account", "code", "source"], registry=r,
        )  # fmt: skip
        self.webhook_events = Counter("sendgate_webhook_events", "Webhook events received, by kind", ["kind"], registry=r)
        self.webhook_requests = Counter(
            "sendgate_webhook_requests", "Webhook deliveries by result", ["result"], registry=r
        )
        self.webhook_forwards = Counter(
            "sendgate_webhook_forwards", "Webhook relays to the app by outcome", ["outcome"], registry=r
        )
        self.alerts = Counter("sendgate_alerts", "Alert episodes started", ["account", "alert"], registry=r)
        # Workers: firing while it fires in any worker; a pause is the store's, so the last worker to set it is right.
        self.alert_firing = Gauge(
            "sendgate_alert_firing", "1 while an alert's condition holds", ["account", "alert"], registry=r,
            multiprocess_mode="livemax",
        )  # fmt: skip
        self.marketing_paused = Gauge(
            "sendgate_marketing_paused", "1 while marketing is paused on the account", ["account"], registry=r,
            multiprocess_mode="livemostrecent",
        )  # fmt: skip
        self.template_syncs = Counter(
            "sendgate_template_syncs", "Template catalog syncs by WABA and result", ["waba", "result"], registry=r
        )

    def account(self, phone_number_id: str | None) -> str:
        """A label value: configured accounts by id, anything else as `unknown` (bounded cardinality)."""
        return phone_number_id if phone_number_id and self._known(phone_number_id) else "unknown"

    def before_render(self, refresh: Callable[[], None]) -> None:
        """Run `refresh` before each scrape (a gauge that reads its value then)."""
        self._before_render.append(refresh)

    def render(self) -> bytes:
        for refresh in self._before_render:
            refresh()
        if not self._multiprocess:
            return generate_latest(self.registry)
        fleet = CollectorRegistry()  # every worker's files, this one's included
        MultiProcessCollector(fleet)  # type: ignore[no-untyped-call]  # (prometheus_client leaves it untyped)
        return generate_latest(fleet)


def _bucket_start(now: float) -> float:
    return now - now % _BUCKET


class RollingCounts:
    """Per-account counts in `_BUCKET`-second buckets, kept for `horizon` seconds."""

    def __init__(self, horizon: float) -> None:
        self.horizon = horizon
        self._buckets: dict[tuple[str, tuple[Any, ...]], deque[list[float]]] = defaultdict(deque)

    def add(self, account: str, key: tuple[Any, ...], now: float, n: int = 1) -> None:
        start = _bucket_start(now)
        buckets = self._buckets[(account, key)]
        if buckets and buckets[-1][0] == start:
            buckets[-1][1] += n
        else:
            buckets.append([start, n])
        while buckets and buckets[0][0] <= now - self.horizon - _BUCKET:
            buckets.popleft()

    def total(self, account: str, key: tuple[Any, ...], now: float, window: float) -> int:
        buckets = self._buckets.get((account, key))
        if not buckets:
            return 0
        since = now - window
        return int(sum(n for start, n in buckets if start + _BUCKET > since))

    def keys(self, account: str) -> list[tuple[Any, ...]]:
        return [key for (acct, key) in self._buckets if acct == account]

    def accounts(self) -> set[str]:
        return {acct for acct, _ in self._buckets}


Total = Callable[[tuple[Any, ...], float, float], int]  # (key, now, window) -> count, for one account


def _name(key: tuple[Any, ...]) -> str:
    """A count key as Redis keeps it: `["error",131049]`."""
    return orjson.dumps(key).decode()


def _bucket_total(buckets: dict[float, int], now: float, window: float) -> int:
    since = now - window
    return sum(n for start, n in buckets.items() if start + _BUCKET > since)


@dataclass
class Episode:
    alert: Threshold
    account: str
    started_at: float
    value: int
    sends: int
    announced: bool = True  # this replica posted (and logged, and counted) its start: it posts the end


class Monitor:
    """Rolling counts and alert episodes per account (see the module docstring).

    With `redis` (the app's client when `redis_url` is set), the counts and the episodes are the
    fleet's: every add is counted here and queued for Redis (pushed every `_PUSH_INTERVAL` and
    before each evaluation), thresholds are evaluated on the fleet's sums, off the caller's
    path (`settle()` waits for it), and an episode is announced by the one replica that claims
    it; the others follow it (firing, not announced). The end is announced by the replica that
    ends it in Redis, or, if Redis forgot the episode (a restart), by the one that announced it.
    When Redis does not answer, evaluation falls back to this replica's own counts: alerts pause
    marketing, so losing the fleet's counts must not stop protection. New episodes start and are
    announced here; none ends until the fleet can be read again; `/readyz` and `/monitoring` say
    so (`shared_counts`), and the queued counts are pushed once Redis is back.
    """

    def __init__(
        self,
        config: Config,
        metrics: Metrics,
        store: Callable[[], AccountState],
        clock: Callable[[], float] = time.time,
        redis: Callable[[], aioredis.Redis] | None = None,
    ) -> None:
        self._config = config
        self._options = config.alerts
        self._metrics = metrics
        self._store = store
        self._clock = clock
        horizon = max([3600.0, *(t.window for t in self._options.thresholds)])
        self.counts = RollingCounts(horizon)
        self._fleet = None if redis is None else RedisRollingCounts(redis, _BUCKET, horizon)
        self._unpushed: dict[tuple[str, str], dict[float, int]] = {}  # counted here, not yet in Redis
        self._pushing = asyncio.Lock()  # one push at a time: an evaluation after a push sees it
        self._due: dict[str, set[str | None]] = {}  # accounts to evaluate on the fleet's counts, by metric
        self._evaluator: asyncio.Task[None] | None = None
        self._shared_fault: dict[str, Any] | None = None  # since when Redis has not answered
        self._firing: dict[tuple[str, str], Episode] = {}
        self._seen: TTLCache[str, bool] = TTLCache(maxsize=200_000, ttl=86400)
        self._state_tasks: set[asyncio.Task[Any]] = set()  # store writes a webhook answer waits for
        self._background: set[asyncio.Task[Any]] = set()  # alert POSTs
        self._session: aiohttp.ClientSession | None = None

    # -- what happened ------------------------------------------------------------------

    def _count(self, account: str, key: tuple[Any, ...], now: float) -> None:
        self.counts.add(account, key, now)
        if self._fleet is not None:
            buckets = self._unpushed.setdefault((account, _name(key)), {})
            start = _bucket_start(now)
            buckets[start] = buckets.get(start, 0) + 1

    def sent(self, account: str) -> None:
        self._count(account, ("sends",), self._clock())

    def rejected(self, account: str, rules: list[str]) -> None:
        now = self._clock()
        self._count(account, ("rejections",), now)
        for rule in dict.fromkeys(rules):
            self._count(account, ("rejection", rule), now)
        self._evaluate(account, "rejections", now)

    def upstream_error(self, account: str, code: int, dedupe: str | None = None, source: str = "webhook") -> None:
        """A Meta error code for a message of `account`; `dedupe` drops redeliveries of the same one."""
        if dedupe is not None:
            if dedupe in self._seen:
                return
            self._seen[dedupe] = True
        now = self._clock()
        self._metrics.upstream_errors.labels(self._metrics.account(account), str(code), source).inc()
        self._count(account, ("errors",), now)
        self._count(account, ("error", code), now)
        self._evaluate(account, "errors", now)

    def webhook_failure(self, accounts: list[str]) -> None:
        now = self._clock()
        for account in accounts or ["unknown"]:
            self._count(account, ("webhook_failures",), now)
            self._evaluate(account, "webhook_failures", now)

    # -- thresholds ---------------------------------------------------------------------

    @staticmethod
    def _keys(threshold: Threshold) -> list[tuple[Any, ...]]:
        if threshold.metric == "errors":
            return [("error", c) for c in threshold.codes] or [("errors",)]
        if threshold.metric == "rejections":
            return [("rejection", r) for r in threshold.rules] or [("rejections",)]
        return [("webhook_failures",)]

    def _value(self, threshold: Threshold, now: float, total: Total) -> tuple[int, int]:
        window = threshold.window
        value = sum(total(key, now, window) for key in self._keys(threshold))
        return value, total(("sends",), now, window)

    @staticmethod
    def _breached(threshold: Threshold, value: int, sends: int) -> bool:
        if threshold.count is not None:
            return value >= threshold.count
        assert threshold.rate is not None
        return sends >= threshold.min_sends and value > threshold.rate * sends

    def _evaluate(self, account: str, metric: str | None, now: float) -> None:
        if self._fleet is None:
            self._evaluate_here(account, metric, now, can_end=True)
            return
        self._due.setdefault(account, set()).add(metric)
        if self._evaluator is None or self._evaluator.done():
            try:
                self._evaluator = asyncio.get_running_loop().create_task(self._evaluate_due())
            except RuntimeError:  # no loop (CLI use): nothing to evaluate with
                return
            self._evaluator.add_done_callback(_log_failure)

    def _evaluate_here(self, account: str, metric: str | None, now: float, *, can_end: bool) -> None:
        """On this process's counts: all of them without Redis; this replica's share while it is down."""

        def total(key: tuple[Any, ...], now: float, window: float) -> int:
            return self.counts.total(account, key, now, window)

        for threshold in self._options.thresholds:
            if metric is not None and threshold.metric != metric:
                continue
            value, sends = self._value(threshold, now, total)
            breached = self._breached(threshold, value, sends)
            episode = self._firing.get((account, threshold.name))
            if breached and episode is None:
                self._start(Episode(threshold, account, now, value, sends))
            elif not breached and episode is not None and can_end:
                self._end(episode, now, value, sends, announce=episode.announced)

    async def _evaluate_due(self) -> None:
        """Evaluate the accounts due on the fleet's counts, one at a time (so one replica never
        claims an episode twice), until none is left."""
        assert self._fleet is not None
        while self._due:
            due, self._due = self._due, {}
            now = self._clock()
            # While Redis is known down, evaluate here without asking it again (a webhook's answer
            # waits for this); the periodic push and check find out when it is back.
            if self._shared_fault is None:
                try:
                    await self._push(now)
                    for account, metrics in due.items():
                        await self._evaluate_fleet(account, metrics, now)
                    continue
                except SharedStateError:
                    pass
            for account, metrics in due.items():  # keep protecting with what is known here
                for metric in metrics:
                    self._evaluate_here(account, metric, now, can_end=False)

    async def _evaluate_fleet(self, account: str, metrics: set[str | None], now: float) -> None:
        thresholds = [t for t in self._options.thresholds if None in metrics or t.metric in metrics]
        if not thresholds:
            return
        names = {_name(key) for t in thresholds for key in [*self._keys(t), ("sends",)]}
        fleet, watch = self._fleet, self._watch
        assert fleet is not None
        buckets, episodes = await watch(fleet.read(account, names, {t.name: self._episode_ttl(t) for t in thresholds}))

        def total(key: tuple[Any, ...], now: float, window: float) -> int:
            return _bucket_total(buckets[_name(key)], now, window)

        for threshold in thresholds:
            value, sends = self._value(threshold, now, total)
            started, ended_last = episodes[threshold.name]
            ttl = self._episode_ttl(threshold)
            episode = self._firing.get((account, threshold.name))
            if self._breached(threshold, value, sends):
                if started is None:
                    # (an episode that started here while Redis was down becomes the fleet's as it was)
                    since = now if episode is None else episode.started_at
                    started = await watch(fleet.claim(account, threshold.name, since, ttl))
                    if started is None and episode is None:  # this replica's episode to announce
                        self._start(Episode(threshold, account, now, value, sends))
                if episode is None and started is not None:  # another replica's: follow it, announce nothing
                    self._start(Episode(threshold, account, started, value, sends, announced=False))
            else:
                ended = None if started is None else await watch(fleet.release(account, threshold.name, ttl))
                if episode is None and ended is not None:  # the replica that announced it is gone
                    episode = Episode(threshold, account, ended, value, sends, announced=False)
                if episode is not None:
                    # Its end is posted by the replica that ends it in Redis, or by the one that posted
                    # its start, unless another replica ended it (a Redis restart forgot it, say).
                    ended_elsewhere = ended_last == episode.started_at
                    self._end(episode, now, value, sends, announce=ended is not None or
                              (episode.announced and not ended_elsewhere))  # fmt: skip

    @staticmethod
    def _episode_ttl(threshold: Threshold) -> float:
        """How long a fleet episode outlives the last replica that saw it firing."""
        return threshold.window + 4 * _CHECK_INTERVAL

    async def _push(self, now: float) -> None:
        """The counts made here since the last push, into Redis; kept for the next one if it fails."""
        assert self._fleet is not None
        async with self._pushing:
            unpushed, self._unpushed = self._unpushed, {}
            if not unpushed:
                return
            try:
                await self._watch(self._fleet.push(unpushed, now))
            except SharedStateError:
                oldest = now - self.counts.horizon - _BUCKET
                for name, buckets in unpushed.items():
                    kept = self._unpushed.setdefault(name, {})
                    for start, n in buckets.items():
                        if start > oldest:  # past the horizon: no threshold can see it any more
                            kept[start] = kept.get(start, 0) + n
                raise

    async def _watch(self, call: Awaitable[T]) -> T:
        """A call to Redis: its answer, or its fault, keeps `shared_counts()` (and the log) current."""
        try:
            result = await call
        except SharedStateError as exc:
            self._fault(exc)
            raise
        self._answered()
        return result

    def _fault(self, exc: SharedStateError) -> None:
        if self._shared_fault is None:
            log.error("alert counts: %s; alerts are evaluated on this replica's counts until it answers", exc)
            self._shared_fault = {"ok": False, "since": self._clock(),
                                  "detail": "Redis is not answering: alerts see this replica's counts only"}  # fmt: skip

    def _answered(self) -> None:
        if self._shared_fault is not None:
            log.warning("alert counts: Redis answers again; alerts see the whole fleet")
            self._shared_fault = None

    async def check(self) -> None:
        """End the episodes whose condition no longer holds (counts age out of their window); with
        Redis, evaluate every account the fleet has counts for (episodes of replicas that are gone)."""
        now = self._clock()
        if self._fleet is None:
            for account, _name in list(self._firing):
                self._evaluate_here(account, None, now, can_end=True)
            return
        accounts = {acct for acct, _ in self._firing} | self.counts.accounts()
        try:
            accounts.update(await self._watch(self._fleet.accounts(now)))
        except SharedStateError:
            pass  # evaluated on this replica's counts
        for account in accounts:
            self._evaluate(account, None, now)
        await self.settle()

    def firing(self, account: str | None = None) -> list[dict[str, Any]]:
        return [
            self._describe(e, "firing")
            for (acct, _), e in sorted(self._firing.items())
            if account is None or acct == account
        ]

    def _describe(self, episode: Episode, status: str, **extra: Any) -> dict[str, Any]:
        t = episode.alert
        condition = f"at least {t.count}" if t.count is not None else f"more than {t.rate:.2%} of sends (min {t.min_sends})"
        what = {"errors": f"Meta errors {list(t.codes) or 'any'}", "rejections": f"rejections {list(t.rules) or 'any'}",
                "webhook_failures": "webhook failures"}[t.metric]  # fmt: skip
        return {
            "alert": t.name,
            "status": status,
            "account": episode.account,
            "metric": t.metric,
            "codes": list(t.codes),
            "rules": list(t.rules),
            "value": episode.value,
            "sends": episode.sends,
            "threshold": {"count": t.count, "rate": t.rate, "min_sends": t.min_sends},
            "window_seconds": t.window,
            "started_at": episode.started_at,
            "pause_marketing": t.pause_marketing,
            "message": f"{what}: {episode.value} in the last {t.window:g}s ({episode.sends} sends); threshold: {condition}",
            **extra,
        }

    def _start(self, episode: Episode) -> None:
        """An episode starts here: announced (logged, counted, paused, posted) unless it is another
        replica's that this one follows (it shows as firing here, nothing more)."""
        self._firing[(episode.account, episode.alert.name)] = episode
        label = self._metrics.account(episode.account)
        self._metrics.alert_firing.labels(label, episode.alert.name).set(1)
        if not episode.announced:
            return
        alert = self._describe(episode, "firing")
        log.warning("ALERT %s on account %s: %s", episode.alert.name, episode.account, alert["message"])
        self._metrics.alerts.labels(label, episode.alert.name).inc()
        if episode.alert.pause_marketing:
            self._spawn(self._state_tasks, self._pause(episode, alert["message"]))
        self._notify(alert)

    def _end(self, episode: Episode, now: float, value: int, sends: int, *, announce: bool) -> None:
        self._firing.pop((episode.account, episode.alert.name), None)
        self._metrics.alert_firing.labels(self._metrics.account(episode.account), episode.alert.name).set(0)
        if not announce:
            return
        log.warning("RESOLVED %s on account %s", episode.alert.name, episode.account)
        episode.value, episode.sends = value, sends
        self._notify(self._describe(episode, "resolved", ended_at=now))

    async def _pause(self, episode: Episode, message: str) -> None:
        created = await self._store().set_marketing_pause(episode.account, episode.alert.name, message, episode.started_at)
        if created:
            log.warning("marketing paused on account %s by alert %s until an operator clears it", episode.account, episode.alert.name)
        self._metrics.marketing_paused.labels(self._metrics.account(episode.account)).set(1)

    async def clear_pause(self, account: str) -> bool:
        cleared = await self._store().clear_marketing_pause(account)
        self._metrics.marketing_paused.labels(self._metrics.account(account)).set(0)
        if cleared:
            log.warning("marketing pause on account %s cleared by an operator", account)
        return cleared

    # -- alert delivery -------------------------------------------------------------------

    def _spawn(self, tasks: set[asyncio.Task[Any]], work: Coroutine[Any, Any, Any]) -> None:
        try:
            task = asyncio.get_running_loop().create_task(work)
        except RuntimeError:  # no loop (CLI use): nothing to deliver with
            work.close()
            return
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        task.add_done_callback(_log_failure)

    def _notify(self, alert: dict[str, Any]) -> None:
        if self._options.url is not None:
            self._spawn(self._background, self._post(alert))

    async def _post(self, alert: dict[str, Any]) -> None:
        assert self._options.url is not None
        session = self._session
        if session is None or session.closed:
            return
        try:
            async with session.post(
                self._options.url,
                data=orjson.dumps(alert),
                headers={"Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=self._options.timeout),
            ) as response:
                if response.status >= 300:
                    log.error("alert %s: %s answered %s", alert["alert"], self._options.url, response.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.error("alert %s: cannot reach %s: %s", alert["alert"], self._options.url, exc)

    async def settle(self) -> None:
        """Wait for the alert evaluation in flight (with Redis) and the store writes alerts started
        (a pause), so a webhook's answer implies them."""
        if self._evaluator is not None:
            await asyncio.wait([self._evaluator])  # (not gather: a cancelled caller must not cancel it)
        if self._state_tasks:
            await asyncio.gather(*list(self._state_tasks), return_exceptions=True)

    # -- lifecycle -------------------------------------------------------------------------

    def context(self) -> Callable[[web.Application], AsyncIterator[None]]:
        """A `cleanup_ctx` entry: the alert session, the periodic end-of-episode check and, with
        Redis, the periodic push of this replica's counts (a last one at shutdown)."""

        async def ctx(app: web.Application) -> AsyncIterator[None]:
            app[MONITOR] = self
            self._session = aiohttp.ClientSession()
            pauses = await self._store().marketing_pauses()
            for account in pauses:
                self._metrics.marketing_paused.labels(self._metrics.account(account)).set(1)
            ticker = asyncio.get_running_loop().create_task(self._tick())
            try:
                yield
            finally:
                ticker.cancel()
                await asyncio.gather(ticker, return_exceptions=True)
                if self._evaluator is not None:
                    await asyncio.wait([self._evaluator], timeout=self._options.timeout)
                if self._fleet is not None:
                    try:
                        await self._push(self._clock())
                    except SharedStateError as exc:
                        log.error("alert counts: this replica's last counts were not pushed: %s", exc)
                pending = list(self._state_tasks | self._background)
                if pending:
                    await asyncio.wait(pending, timeout=self._options.timeout)
                await self._session.close()

        return ctx

    async def _tick(self) -> None:
        period = _CHECK_INTERVAL if self._fleet is None else _PUSH_INTERVAL
        checks_every = round(_CHECK_INTERVAL / period)
        for tick in itertools.count(1):
            await asyncio.sleep(period)
            try:
                if tick % checks_every == 0:
                    await self.check()
                else:  # so the other replicas see this one's counts, sends included, within a second
                    await self._push(self._clock())
            except SharedStateError:
                pass  # logged, and shown in /monitoring, as the fault began
            except Exception:  # never let the ticker die
                log.exception("alert check failed")

    async def summary(self, account: str, window: float = 3600.0) -> dict[str, Any]:
        """The account's counts over the last `window` seconds: the fleet's with Redis (this
        replica's while Redis does not answer: `scope` says which)."""
        now = self._clock()
        keys = self.counts.keys(account)
        scope = "process" if self._fleet is None else "replica"

        def total(key: tuple[Any, ...], now: float, window: float) -> int:
            return self.counts.total(account, key, now, window)

        if self._fleet is not None:
            try:
                await self._push(now)
                names = await self._watch(self._fleet.names(account, now))
                buckets, _ = await self._watch(self._fleet.read(account, names, {}))
            except SharedStateError:
                pass  # this replica's counts, and `scope` says so
            else:
                keys, scope = [tuple(orjson.loads(name)) for name in names], "fleet"

                def total(key: tuple[Any, ...], now: float, window: float) -> int:
                    return _bucket_total(buckets.get(_name(key), {}), now, window)

        return {
            "window_seconds": window,
            "scope": scope,
            "sends": total(("sends",), now, window),
            "rejections": {k[1]: n for k in keys if k[0] == "rejection" and (n := total(k, now, window))},
            "errors": {str(k[1]): n for k in keys if k[0] == "error" and (n := total(k, now, window))},
            "webhook_failures": total(("webhook_failures",), now, window),
            "alerts": self.firing(account),
        }

    async def accounts(self) -> set[str]:
        """The accounts with counts or firing alerts (the fleet's with Redis, while it answers)."""
        found = self.counts.accounts() | {acct for acct, _ in self._firing}
        if self._fleet is not None:
            try:
                found.update(await self._watch(self._fleet.accounts(self._clock())))
            except SharedStateError:
                pass
        return found

    def shared_counts(self) -> dict[str, Any] | None:
        """With Redis: whether the alerts see the fleet's counts (`ok`), or since when only this replica's."""
        if self._fleet is None:
            return None
        return dict(self._shared_fault) if self._shared_fault is not None else {"ok": True}


MONITOR = web.AppKey("monitor", Monitor)

def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("monitoring task failed: %s", task.exception())


def recorder_hooks(metrics: Metrics, monitor: Monitor, mode: str) -> RecorderHooks:
    """The decision log's news into `sendgate_decisions`, the evaluation histogram and the monitor."""

    def recorded(call: SendCall, send: SendRecord | None) -> None:
        account = call.phone_number_id
        rule = primary_reason(call.reasons).get("rule", "none") if call.reasons else "none"
        metrics.decisions.labels(call.outcome, str(rule), mode, metrics.account(account)).inc()
        if call.eval_us is not None:
            metrics.evaluation.observe(call.eval_us / 1e6)
        if send is not None:
            monitor.sent(account)
        if call.outcome in ("deny", "defer"):
            monitor.rejected(account, [str(r.get("rule")) for r in call.reasons if r.get("rule")])

    def answered(call: SendCall, status: int, error_code: int | None) -> None:
        if status >= 300 and error_code is not None:
            monitor.upstream_error(call.phone_number_id, error_code, source="response")

    return RecorderHooks(on_record=[recorded], on_answer=[answered])


def upstream_hooks(metrics: Metrics) -> UpstreamHooks:
    """Each request to Meta into `sendgate_upstream_request_seconds`, by status (`timeout` / `error`: no answer)."""

    def answered(response: UpstreamResponse, seconds: float) -> None:
        metrics.upstream.labels(str(response.status)).observe(seconds)

    def failed(exc: UpstreamError, seconds: float) -> None:
        metrics.upstream.labels("timeout" if exc.timed_out else "error").observe(seconds)

    return UpstreamHooks(on_response=[answered], on_error=[failed])


# -- routes -----------------------------------------------------------------------------------


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(value), content_type="application/json")


def _admin_error(status: int, message: str, kind: str = "SendgateAdminError") -> web.Response:
    return _json({"error": {"message": message, "type": kind, "code": status}}, status)


class StoreProbe:
    """`/readyz`'s store check: a real write (`Store.ping`), at most once per `_PROBE_INTERVAL`
    however often it is asked; meanwhile callers get the last answer, or wait for the one in flight."""

    def __init__(self, store: Callable[[], Lifecycle], clock: Callable[[], float]) -> None:
        self._store = store
        self._clock = clock
        self._lock = asyncio.Lock()
        self._answer: dict[str, Any] | None = None
        self._at = 0.0

    async def check(self) -> dict[str, Any]:
        async with self._lock:
            age = self._clock() - self._at
            if self._answer is None or not 0 <= age < _PROBE_INTERVAL:  # (a clock set back re-probes)
                try:
                    await asyncio.wait_for(self._store().ping(), _READY_TIMEOUT)
                    self._answer = {"ok": True}
                except Exception as exc:
                    self._answer = {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
                self._at = self._clock()
            return self._answer


class MonitoredStore(AccountState, Lifecycle, Protocol):
    """What the monitoring routes read: account state and pauses, and the store's health."""


def monitoring_routes(
    config: Config,
    metrics: Metrics,
    monitor: Monitor,
    store: Callable[[], MonitoredStore],
    engine: Callable[[], PolicyEngine],
    guarded: Callable[[Handler], Handler],
    clock: Callable[[], float] = time.time,
) -> list[web.RouteDef]:
    """`/metrics`, `/readyz`, and the admin API's monitoring calls, each wrapped in `guarded` (the admin token check)."""
    probe = StoreProbe(store, clock)

    async def get_metrics(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def get_ready(request: web.Request) -> web.Response:
        checks: dict[str, Any] = {"store": await probe.check()}
        ready = bool(checks["store"]["ok"])
        checks["engine"] = await _engine_health(engine())
        ready = ready and bool(checks["engine"].get("ok"))
        reloader = request.app.get(RELOADER)
        if reloader is not None:  # a refused reload is reported, not unready: the old revision serves
            checks["policy_reload"] = reloader.status().as_json()
        shared = monitor.shared_counts()
        if shared is not None:  # reported, not unready: sends never wait on it, alerts fall back to this replica's
            checks["shared_counts"] = shared
        # `pid`: which process answered (with `serve --workers`, which worker).
        body = {"status": "ready" if ready else "not ready", "pid": os.getpid(), "checks": checks}
        return _json(body, 200 if ready else 503)

    async def account_view(phone_number_id: str) -> dict[str, Any]:
        account = config.account(phone_number_id)
        waba_id = account.waba_id if account else None
        return {
            "phone_number_id": phone_number_id,
            "waba_id": waba_id,
            "known": account is not None,
            # as the policy input shows it (and its portfolio's messaging limit)
            "state": await store().account_state(phone_number_id, waba_id, account.portfolio_id if account else None),
            "monitoring": await monitor.summary(phone_number_id),
        }

    async def get_monitoring(request: web.Request) -> web.Response:
        pauses = await store().marketing_pauses()
        ids = sorted({a.phone_number_id for a in config.accounts} | await monitor.accounts() | set(pauses))
        body: dict[str, Any] = {"accounts": [await account_view(pid) for pid in ids if pid != "unknown"], "firing": monitor.firing()}
        shared = monitor.shared_counts()  # after the reads above, so it says how they went
        if shared is not None:
            body["shared_counts"] = shared
        return _json(body)

    async def get_account(request: web.Request) -> web.Response:
        return _json(await account_view(request.match_info["phone_number_id"]))

    async def put_pause(request: web.Request) -> web.Response:
        phone_number_id = request.match_info["phone_number_id"]
        try:
            body = orjson.loads(await request.read() or b"{}")
        except orjson.JSONDecodeError:
            return _admin_error(400, "body must be JSON")
        message = body.get("message") if isinstance(body, dict) else None
        await store().set_marketing_pause(phone_number_id, "operator", str(message or "paused by an operator"), time.time())
        metrics.marketing_paused.labels(metrics.account(phone_number_id)).set(1)
        return _json(await account_view(phone_number_id))

    async def delete_pause(request: web.Request) -> web.Response:
        phone_number_id = request.match_info["phone_number_id"]
        if not await monitor.clear_pause(phone_number_id):
            return _admin_error(404, f"marketing is not paused on account {phone_number_id}")
        return _json(await account_view(phone_number_id))

    base = "/admin/v1"
    return [
        web.get("/metrics", get_metrics),
        web.get("/readyz", get_ready),
        web.get(f"{base}/monitoring", guarded(get_monitoring)),
        web.get(f"{base}/accounts/{{phone_number_id}}", guarded(get_account)),
        web.put(f"{base}/accounts/{{phone_number_id}}/pause", guarded(put_pause)),
        web.delete(f"{base}/accounts/{{phone_number_id}}/pause", guarded(delete_pause)),
    ]


async def _engine_health(engine: PolicyEngine) -> dict[str, Any]:
    """The engine's own health report where it has one, else a probe evaluation."""
    try:
        health = getattr(engine, "health", None)
        if health is not None:
            report = await asyncio.wait_for(health(), _READY_TIMEOUT)
            return dict(report) if isinstance(report, dict) else {"ok": bool(report)}
        await asyncio.wait_for(engine.evaluate({}), _READY_TIMEOUT)
        return {"ok": True, "revision": engine.revision}
    except Exception as exc:
        return {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}

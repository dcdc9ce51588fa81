"""The alerts' rolling counts across replicas (`redis_url`): a threshold sees the fleet's counts,
one replica announces each episode, and with Redis down alerts keep protecting on what each
replica knows, said in `/monitoring`, until Redis is back.

Two gateways here are two replicas: separate apps and monitors, each with its own Redis client,
on one Redis (and one SQLite file, which is where the marketing pause lives).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from sendgate.app import REDIS
from sendgate.monitoring import MONITOR

from .conftest import PHONE_NUMBER_ID, Clock, GatewayFactory, admin
from .services import RedisServer
from .test_webhooks_monitoring import ServerFactory, metrics_text, sample, start_alert_receiver
from .webhook_support import post_webhook, status_update, wamid, webhook_config

SPAM = {"name": "spam", "codes": [131048], "count": 4, "window": 600, "pause_marketing": True}


async def replicas(gateway_factory: GatewayFactory, redis_url: str, alert_url: str,
                   threshold: dict[str, Any] = SPAM) -> tuple[TestClient, TestClient]:  # fmt: skip
    settings = {"redis_url": redis_url, "webhooks": webhook_config(),
                "alerts": {"url": alert_url, "thresholds": [threshold]}}  # fmt: skip
    return await gateway_factory(**settings), await gateway_factory(**settings)


async def fail(client: TestClient, clock: Clock, code: int = 131048) -> None:
    """A failed-status webhook for one message (its answer implies the alert evaluation and pause)."""
    assert (await post_webhook(client, status_update(wamid(), "failed", clock.now, error=code)))[0] == 200


async def alerts_started(*clients: TestClient) -> float:
    """`sendgate_alerts_total` over the replicas: the episodes announced, fleet-wide."""
    return sum([sample(await metrics_text(c), "sendgate_alerts_total", alert="spam") or 0.0 for c in clients])


async def account_view(client: TestClient) -> tuple[dict[str, Any], dict[str, Any]]:
    """`/admin/v1/monitoring`: (the whole body, the account's `monitoring` part)."""
    status, view = await admin(client, "GET", "/monitoring")
    assert status == 200
    return view, next(a for a in view["accounts"] if a["phone_number_id"] == PHONE_NUMBER_ID)["monitoring"]


def logged(caplog: pytest.LogCaptureFixture, prefix: str) -> int:
    return len([r for r in caplog.records if r.getMessage().startswith(prefix)])


async def test_two_replicas_each_seeing_half_the_failures_raise_one_alert_for_the_fleet(
    gateway_factory: GatewayFactory, redis_url: str, aiohttp_server: ServerFactory, clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    receiver = await start_alert_receiver(aiohttp_server)
    a, b = await replicas(gateway_factory, redis_url, receiver.url)
    for client in (a, b, a):
        await fail(client, clock)
    assert await alerts_started(a, b) == 0  # 3 in the fleet, below 4
    await fail(b, clock)  # each replica has seen 2: only the fleet's count crosses the threshold
    assert await alerts_started(a, b) == 1
    assert logged(caplog, "ALERT spam") == 1
    alerts = await receiver.wait_for(1)
    assert alerts[0]["status"] == "firing" and alerts[0]["value"] == 4
    # The pause (in the store) is the policies' input on every replica.
    for client in (a, b):
        _, view = await admin(client, "GET", f"/accounts/{PHONE_NUMBER_ID}")
        assert view["state"]["marketing_paused"]["alert"] == "spam"

    # More failures on either replica, and the periodic checks: the same episode, announced once.
    await fail(a, clock)
    for client in (a, b):
        await client.app[MONITOR].check()
        view, monitoring = await account_view(client)
        assert [f["alert"] for f in view["firing"]] == ["spam"]  # both know it is firing
        assert view["shared_counts"] == {"ok": True}
        assert monitoring["scope"] == "fleet" and monitoring["errors"] == {"131048": 5}
    assert await alerts_started(a, b) == 1 and len(receiver.alerts) == 1

    # The counts age out: one "resolved" for the fleet, whichever replica sees it first.
    clock.advance(611)  # past the window, and its last 10-second bucket
    await b.app[MONITOR].check()
    await a.app[MONITOR].check()
    alerts = await receiver.wait_for(2)
    assert alerts[1]["status"] == "resolved" and logged(caplog, "RESOLVED spam") == 1
    assert a.app[MONITOR].firing() == [] and b.app[MONITOR].firing() == []
    # A new episode, from a concurrent burst over both replicas: announced once again.
    await asyncio.gather(*(fail(client, clock) for client in (a, b) * 4))
    assert await alerts_started(a, b) == 2 and logged(caplog, "ALERT spam") == 2


async def test_a_rate_threshold_counts_the_sends_of_every_replica(
    gateway_factory: GatewayFactory, redis_url: str, aiohttp_server: ServerFactory, clock: Clock
) -> None:
    """Sends are pushed without an evaluation of their own: the next evaluation sees them all."""
    receiver = await start_alert_receiver(aiohttp_server)
    threshold = {"name": "spam", "codes": [131048], "rate": 0.5, "min_sends": 2}
    a, b = await replicas(gateway_factory, redis_url, receiver.url, threshold)
    monitor = a.app[MONITOR]
    monitor.sent(PHONE_NUMBER_ID)  # (as the recorder reports a forwarded send)
    b.app[MONITOR].sent(PHONE_NUMBER_ID)
    await b.app[MONITOR].check()  # pushes B's send
    await fail(a, clock)  # 1 failure of 2 sends: not more than half
    assert await alerts_started(a, b) == 0
    await fail(a, clock)  # 2 of 2
    assert await alerts_started(a, b) == 1
    alerts = await receiver.wait_for(1)
    assert alerts[0]["sends"] == 2 and alerts[0]["value"] == 2


async def test_with_redis_down_alerts_keep_protecting_on_each_replicas_counts_and_recover(
    gateway_factory: GatewayFactory, make_redis: Callable[[], RedisServer], aiohttp_server: ServerFactory,
    clock: Clock, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    server = make_redis()
    receiver = await start_alert_receiver(aiohttp_server)
    a, b = await replicas(gateway_factory, server.url, receiver.url, {**SPAM, "count": 2})
    server.kill()
    # A alone crosses the threshold on its own counts: the alert fires (and pauses) without Redis.
    await fail(a, clock)
    await fail(a, clock)
    assert await alerts_started(a, b) == 1
    assert (await receiver.wait_for(1))[0]["status"] == "firing"
    assert logged(caplog, "alert counts: Redis did not answer") == 1  # once per fault, not per event
    # The admin API fails closed without Redis (its throttle is there); /readyz says what alerts see.
    assert (await admin(a, "GET", "/monitoring"))[0] == 503
    ready = await a.get("/readyz")
    checks = (await ready.json())["checks"]
    assert ready.status == 200  # sends do not wait on Redis: the replica stays in the load balancer
    assert checks["shared_counts"]["ok"] is False and "Redis" in checks["shared_counts"]["detail"]
    assert str(server.port) not in str(checks)  # where Redis is stays in the server log
    monitoring = await a.app[MONITOR].summary(PHONE_NUMBER_ID)
    assert monitoring["scope"] == "replica" and monitoring["errors"] == {"131048": 2}
    # B sees only its own share meanwhile.
    await fail(b, clock)
    assert b.app[MONITOR].firing() == []
    # No episode ends while the fleet's counts cannot be read: a local view cannot prove it over.
    clock.advance(611)  # past the window, and its last 10-second bucket
    await a.app[MONITOR].check()
    assert [f["alert"] for f in a.app[MONITOR].firing()] == ["spam"] and len(receiver.alerts) == 1
    clock.advance(-611)

    server.start()  # back, and empty (no persistence): what each replica counted meanwhile is pushed
    for client in (a, b):
        await client.app[MONITOR].check()
    for client in (a, b):
        view, monitoring = await account_view(client)
        assert view["shared_counts"] == {"ok": True} and monitoring["scope"] == "fleet"
        assert monitoring["errors"] == {"131048": 3}
        assert [f["alert"] for f in view["firing"]] == ["spam"]  # A's episode is now the fleet's
    assert await alerts_started(a, b) == 1 and len(receiver.alerts) == 1
    assert logged(caplog, "alert counts: Redis answers again") == 2

    # Redis restarts again (forgetting the episode) while the counts age out: A, which announced
    # the episode, announces its end; B, which followed it, stays quiet.
    server.restart()
    clock.advance(611)  # past the window, and its last 10-second bucket
    for client in (a, b):
        await client.app[MONITOR].check()
    alerts = await receiver.wait_for(2)
    assert alerts[1]["status"] == "resolved" and logged(caplog, "RESOLVED spam") == 1
    assert a.app[MONITOR].firing() == [] and b.app[MONITOR].firing() == []


async def test_every_alert_key_in_redis_expires(
    gateway_factory: GatewayFactory, redis_url: str, aiohttp_server: ServerFactory, clock: Clock
) -> None:
    """Memory in Redis is bounded: the counts live about the horizon, an episode about its window."""
    receiver = await start_alert_receiver(aiohttp_server)
    a, b = await replicas(gateway_factory, redis_url, receiver.url)
    for client in (a, b) * 2:
        await fail(client, clock)
    await receiver.wait_for(1)
    client = a.app[REDIS]
    keys = sorted(k.decode() for k in await client.keys("sendgate:alerts:*"))
    base = f"sendgate:alerts:{{{PHONE_NUMBER_ID}}}"
    assert keys == sorted([f'{base}:count:["error",131048]', f'{base}:count:["errors"]', f"{base}:names",
                           f"{base}:episode:spam", "sendgate:alerts:accounts"])  # fmt: skip
    horizon = 3600 + 10  # the longest window (at least an hour) and a bucket
    for key in keys:
        ttl = await client.pttl(key)
        assert 0 < ttl <= (600 + 60 if key.endswith(":episode:spam") else horizon) * 1000, key

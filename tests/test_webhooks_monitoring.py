"""Monitoring: /metrics, /healthz, /readyz, per-account early warnings (alert POSTs once per
episode) and the marketing pause an operator clears through the admin API."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from sendgate.monitoring import MONITOR

from .conftest import (
    CA_RECIPIENT,
    PHONE_NUMBER_ID,
    US_RECIPIENT,
    Clock,
    GatewayFactory,
    admin,
    send,
    store_of,
    template_message,
    text_message,
)
from .webhook_support import inbound_text, post_webhook, status_update, webhook_config

ServerFactory = Callable[..., Awaitable[TestServer]]


class AlertReceiver:
    def __init__(self) -> None:
        self.alerts: list[dict[str, Any]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.alerts.append(orjson.loads(await request.read()))
        return web.Response(text="ok")

    async def wait_for(self, count: int) -> list[dict[str, Any]]:
        for _ in range(500):  # polls; no timing is asserted
            if len(self.alerts) >= count:
                return self.alerts
            await asyncio.sleep(0.01)
        raise AssertionError(f"expected {count} alert POSTs, got {self.alerts}")


async def start_alert_receiver(aiohttp_server: ServerFactory) -> AlertReceiver:
    receiver = AlertReceiver()
    app = web.Application()
    app.router.add_post("/alerts", receiver.handle)
    server = await aiohttp_server(app)
    receiver.url = str(server.make_url("/alerts"))
    return receiver


async def metrics_text(client: TestClient) -> str:
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return await response.text()


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one series in Prometheus text format (labels in any order)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        series, value = line.rsplit(" ", 1)
        if all(f'{k}="{v}"' in series for k, v in labels.items()):
            return float(value)
    return None


async def test_metrics_cover_decisions_latency_upstream_and_webhooks(gateway_factory: GatewayFactory, clock: Clock) -> None:
    client = await gateway_factory(webhooks=webhook_config())
    assert (await send(client, text_message()))[0] == 400  # window.closed
    assert (await post_webhook(client, inbound_text("hi", clock.now - 60)))[0] == 200
    assert (await send(client, text_message()))[0] == 200
    text = await metrics_text(client)
    assert sample(text, "sendgate_decisions_total", decision="deny", rule="window.closed", account=PHONE_NUMBER_ID) == 1
    assert sample(text, "sendgate_decisions_total", decision="allow", rule="none", account=PHONE_NUMBER_ID) == 1
    assert sample(text, "sendgate_policy_evaluation_seconds_count") == 2
    assert sample(text, "sendgate_upstream_request_seconds_count", status="200") == 1
    assert sample(text, "sendgate_webhook_events_total", kind="message") == 1
    # A phone number id nobody configured does not become a label of its own.
    assert (await send(client, text_message(), phone_number_id="999000111"))[0] == 403
    text = await metrics_text(client)
    assert sample(text, "sendgate_decisions_total", rule="account.unknown", account="unknown") == 1
    assert "999000111" not in text


async def test_upstream_errors_by_meta_code(gateway_factory: GatewayFactory, fake_graph: Any, clock: Clock) -> None:
    fake, _ = fake_graph
    client = await gateway_factory(webhooks=webhook_config())
    assert (await post_webhook(client, inbound_text("hi", clock.now - 60)))[0] == 200
    fake.fail_next(code=131048)
    assert (await send(client, text_message()))[0] == 400
    text = await metrics_text(client)
    assert sample(text, "sendgate_upstream_errors_total", account=PHONE_NUMBER_ID, code="131048", source="response") == 1
    assert sample(text, "sendgate_upstream_request_seconds_count", status="400") == 1


async def test_unreachable_upstream_is_timed_under_error(gateway_factory: GatewayFactory, clock: Clock) -> None:
    """The upstream's `on_error` hook: a request that got no answer is timed under status "error"."""
    client = await gateway_factory(webhooks=webhook_config(), upstream_url="http://127.0.0.1:9")  # discard: refused
    assert (await post_webhook(client, inbound_text("hi", clock.now - 60)))[0] == 200
    assert (await send(client, text_message()))[0] == 502
    text = await metrics_text(client)
    assert sample(text, "sendgate_upstream_request_seconds_count", status="error") == 1
    assert sample(text, "sendgate_decisions_total", decision="allow", rule="none", account=PHONE_NUMBER_ID) == 1


async def test_healthz_and_readyz(gateway_factory: GatewayFactory) -> None:
    client = await gateway_factory()
    assert (await client.get("/healthz")).status == 200
    response = await client.get("/readyz")
    body = await response.json()
    assert response.status == 200 and body["status"] == "ready"
    assert body["checks"]["store"]["ok"] and body["checks"]["engine"]["ok"]


async def test_readyz_reports_a_broken_store(gateway_factory: GatewayFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    client = await gateway_factory()

    async def broken() -> None:
        raise OSError("disk I/O error")

    monkeypatch.setattr(store_of(client), "ping", broken)
    response = await client.get("/readyz")
    body = await response.json()
    assert response.status == 503 and body["status"] == "not ready"
    assert body["checks"]["store"] == {"ok": False, "detail": "OSError: disk I/O error"}


async def test_readyz_reports_an_unhealthy_engine(gateway_factory: GatewayFactory, default_engine: Any) -> None:
    class Down:
        revision = "sha256:down"

        async def evaluate(self, document: dict[str, Any]) -> Any:
            raise RuntimeError("unreachable")

        async def health(self) -> dict[str, Any]:
            return {"ok": False, "engine": "opa", "detail": "connection refused"}

        async def params(self) -> dict[str, Any]:
            return {}

        async def close(self) -> None:
            return None

    client = await gateway_factory(policy_engine=Down())
    response = await client.get("/readyz")
    body = await response.json()
    assert response.status == 503 and body["checks"]["engine"]["detail"] == "connection refused"


async def test_alert_once_per_episode_and_marketing_pause_until_cleared(
    gateway_factory: GatewayFactory, aiohttp_server: ServerFactory, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = await start_alert_receiver(aiohttp_server)
    client = await gateway_factory(
        webhooks=webhook_config(),
        alerts={"url": receiver.url, "thresholds": [
            {"name": "spam", "metric": "errors", "codes": [131048, 368], "count": 1, "pause_marketing": True}]},
    )  # fmt: skip
    status, _ = await admin(client, "PUT", f"/consent/{CA_RECIPIENT}",
                            {"status": "opted_in", "categories": ["marketing", "utility"], "recorded_at": clock.now - 3600})  # fmt: skip
    assert status == 200
    message_id = (await send(client, template_message("spring_sale", to=CA_RECIPIENT)))[2]["messages"][0]["id"]
    failure = status_update(message_id, "failed", clock.now + 1, error=131048, title="Spam rate limit hit",
                            recipient=CA_RECIPIENT)
    assert (await post_webhook(client, failure))[0] == 200
    alerts = await receiver.wait_for(1)
    assert alerts[0]["alert"] == "spam" and alerts[0]["status"] == "firing"
    assert alerts[0]["account"] == PHONE_NUMBER_ID and alerts[0]["value"] == 1 and alerts[0]["pause_marketing"]
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("ALERT spam")] == [
        f"ALERT spam on account {PHONE_NUMBER_ID}: {alerts[0]['message']}"]
    # Same episode: a redelivery and another failure raise nothing new.
    assert (await post_webhook(client, failure))[0] == 200
    other = status_update("wamid.OTHER", "failed", clock.now + 2, error=368)
    assert (await post_webhook(client, other))[0] == 200
    text = await metrics_text(client)
    assert len([r for r in caplog.records if r.getMessage().startswith("ALERT spam")]) == 1
    assert sample(text, "sendgate_alerts_total", account=PHONE_NUMBER_ID, alert="spam") == 1
    assert sample(text, "sendgate_alert_firing", account=PHONE_NUMBER_ID, alert="spam") == 1
    assert sample(text, "sendgate_marketing_paused", account=PHONE_NUMBER_ID) == 1

    # Marketing is paused on the account; utility still goes.
    clock.advance(3600 * 24 * 8)  # past the frequency caps
    status, _, answer = await send(client, template_message("spring_sale", to=CA_RECIPIENT))
    assert status == 403
    assert [r["rule"] for r in answer["error"]["sendgate"]["reasons"]] == ["account.paused"]
    assert (await send(client, template_message(to=CA_RECIPIENT)))[0] == 200
    _, view = await admin(client, "GET", "/monitoring")
    account = next(a for a in view["accounts"] if a["phone_number_id"] == PHONE_NUMBER_ID)
    assert account["state"]["marketing_paused"]["alert"] == "spam"

    # The episode ends when the counts age out; the pause stays until an operator clears it.
    await client.app[MONITOR].check()
    alerts = await receiver.wait_for(2)
    assert alerts[1]["status"] == "resolved" and alerts[1]["alert"] == "spam"
    assert (await send(client, template_message("spring_sale", to=CA_RECIPIENT)))[0] == 403
    assert (await admin(client, "DELETE", f"/accounts/{PHONE_NUMBER_ID}/pause"))[0] == 200
    assert (await admin(client, "DELETE", f"/accounts/{PHONE_NUMBER_ID}/pause"))[0] == 404
    clock.advance(10)  # past the pair rate limit
    assert (await send(client, template_message("spring_sale", to=CA_RECIPIENT)))[0] == 200
    assert len(receiver.alerts) == 2


async def test_rate_threshold_needs_enough_sends(gateway_factory: GatewayFactory, aiohttp_server: ServerFactory,
                                                 clock: Clock) -> None:  # fmt: skip
    receiver = await start_alert_receiver(aiohttp_server)
    client = await gateway_factory(
        webhooks=webhook_config(),
        alerts={"url": receiver.url, "thresholds": [
            {"name": "undeliverable", "codes": [131049, 131026], "rate": 0.05, "min_sends": 10}]},
    )  # fmt: skip
    recipients = [f"1650555{n:04d}" for n in range(12)]
    message_ids = []
    for recipient in recipients:
        assert (await post_webhook(client, inbound_text("hi", clock.now - 60, sender=recipient)))[0] == 200
        status, _, answer = await send(client, text_message(to=recipient))
        assert status == 200, answer
        message_ids.append(answer["messages"][0]["id"])
    # 1 of 12 sends failing is 8%: over 5%, with at least 10 sends.
    monitor = client.app[MONITOR]
    failure = status_update(message_ids[0], "failed", clock.now + 1, recipient=recipients[0], error=131049)
    assert (await post_webhook(client, failure))[0] == 200
    alerts = await receiver.wait_for(1)
    assert alerts[0]["alert"] == "undeliverable" and alerts[0]["sends"] == 12 and alerts[0]["value"] == 1
    assert monitor.firing(PHONE_NUMBER_ID)[0]["alert"] == "undeliverable"


async def test_rate_threshold_below_min_sends_stays_quiet(gateway_factory: GatewayFactory, aiohttp_server: ServerFactory,
                                                          clock: Clock) -> None:  # fmt: skip
    receiver = await start_alert_receiver(aiohttp_server)
    client = await gateway_factory(
        webhooks=webhook_config(),
        alerts={"url": receiver.url, "thresholds": [
            {"name": "undeliverable", "codes": [131049], "rate": 0.05, "min_sends": 10}]},
    )  # fmt: skip
    assert (await post_webhook(client, inbound_text("hi", clock.now - 60)))[0] == 200
    message_id = (await send(client, text_message()))[2]["messages"][0]["id"]
    failure = status_update(message_id, "failed", clock.now + 1, error=131049)
    assert (await post_webhook(client, failure))[0] == 200
    assert (await post_webhook(client, failure))[0] == 200  # Meta redelivers: counted once
    assert client.app[MONITOR].firing() == []
    _, view = await admin(client, "GET", f"/accounts/{PHONE_NUMBER_ID}")
    assert view["monitoring"]["errors"] == {"131049": 1} and view["monitoring"]["sends"] == 1


async def test_rejection_threshold(gateway_factory: GatewayFactory, clock: Clock) -> None:
    client = await gateway_factory(
        alerts={"thresholds": [{"name": "window_misses", "metric": "rejections", "rules": ["window.closed"], "count": 3}]}
    )
    for _ in range(2):
        assert (await send(client, text_message()))[0] == 400
    monitor = client.app[MONITOR]
    assert monitor.firing() == []
    assert (await send(client, text_message()))[0] == 400
    assert [a["alert"] for a in monitor.firing(PHONE_NUMBER_ID)] == ["window_misses"]
    _, view = await admin(client, "GET", f"/accounts/{PHONE_NUMBER_ID}")
    assert view["monitoring"]["rejections"] == {"window.closed": 3}


async def test_operator_can_pause_marketing_by_hand(gateway_factory: GatewayFactory, clock: Clock) -> None:
    client = await gateway_factory()
    await admin(client, "PUT", f"/consent/{US_RECIPIENT}",
                {"status": "opted_in", "categories": ["marketing"], "recorded_at": clock.now - 3600})  # fmt: skip
    status, view = await admin(client, "PUT", f"/accounts/{PHONE_NUMBER_ID}/pause", {"message": "campaign review"})
    assert status == 200 and view["state"]["marketing_paused"]["message"] == "campaign review"
    status, _, answer = await send(client, template_message("spring_sale"))
    assert status == 403 and answer["error"]["sendgate"]["reasons"][0]["rule"] == "account.paused"

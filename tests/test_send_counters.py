"""The send counters through the gateway (gateway/counting.py): Meta's throughput per number, its
messaging limit per portfolio, same-content pacing. Exact under concurrent bursts, in process and
across two gateways sharing Redis; a send that is not forwarded does not use up a limit; Redis
down fails closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from sendgate.app import RELOADER
from sendgate.config import Config, load_config
from sendgate.facts import messaging_limit, throughput_mps
from sendgate.fakegraph import FakeGraph
from sendgate.gateway.counting import content_hash, pacing_threshold
from sendgate.messages import normalize
from sendgate.options import DEFAULT_THRESHOLDS
from sendgate.state import ConsentRecord, Store
from sendgate.webhooks.apply import messaging_limit_value

from .conftest import (
    AFTERNOON,
    PHONE_NUMBER_ID,
    POLICIES,
    WABA_ID,
    Clock,
    GatewayFactory,
    edit_params,
    policies_with,
    send,
    store_of,
    template_message,
    text_message,
)
from .services import RedisServer
from .webhook_support import envelope, phone_quality, post_webhook, status_update, webhook_config

BURST = 200


def recipients(n: int, start: int = 0) -> list[str]:
    return [f"1604555{i:04d}" for i in range(start, start + n)]


def account(**settings: Any) -> list[dict[str, Any]]:
    """The test account, with counter settings (throughput_mps, messaging_limit, portfolio)."""
    return [{"phone_number_id": PHONE_NUMBER_ID, "waba_id": WABA_ID, "name": "Acme", "markets": ["US", "BR", "CA"], **settings}]


async def open_windows(store: Store, numbers: list[str]) -> None:
    for number in numbers:
        await store.record_inbound(PHONE_NUMBER_ID, number, AFTERNOON - 60)


async def opt_in(store: Store, numbers: list[str]) -> None:
    for number in numbers:
        await store.record_consent(
            ConsentRecord(number, "opted_in", ("marketing", "utility"), "web-form", "checkbox", AFTERNOON - 86400)
        )


def marketing(to: str, name: str = "Ana") -> dict[str, Any]:
    message = template_message("spring_sale", to=to)
    message["template"]["components"][0]["parameters"][0]["text"] = name
    return message


async def burst(clients: list[TestClient], bodies: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any], Any]]:
    """Every body at once, spread over the clients in turn."""
    return list(await asyncio.gather(*(send(clients[i % len(clients)], body) for i, body in enumerate(bodies))))


def codes(results: list[tuple[int, dict[str, Any], Any]]) -> dict[tuple[int, int | None], int]:
    out: dict[tuple[int, int | None], int] = {}
    for status, _, payload in results:
        key = (status, payload["error"]["code"] if status != 200 else None)
        out[key] = out.get(key, 0) + 1
    return out


# -- throughput -----------------------------------------------------------------------------------


async def test_a_burst_forwards_exactly_the_throughput_and_defers_the_rest_for_the_exact_wait(
    gateway_factory: GatewayFactory, fake_graph: tuple[FakeGraph, str], clock: Clock
) -> None:
    fake, _ = fake_graph
    client = await gateway_factory()  # throughput_mps: 80, Meta's default
    numbers = recipients(BURST)
    await open_windows(store_of(client), numbers)
    results = await burst([client], [text_message(to=n) for n in numbers])
    assert codes(results) == {(200, None): 80, (429, 130429): BURST - 80}
    assert len(fake.received) == 80
    deferred = [r for r in results if r[0] == 429]
    for _, headers, payload in deferred:
        assert headers["Retry-After"] == "1"  # whole seconds, rounded up
        reason = payload["error"]["sendgate"]["reasons"][0]
        assert reason["rule"] == "throughput.exceeded"
        assert (reason["limit"], reason["count"], reason["retry_after"]) == (80, 80, 1.0)
        assert "retry in 1000 ms" in reason["message"]  # the exact wait
    record = await store_of(client).decision(deferred[0][2]["error"]["fbtrace_id"])
    assert record is not None and (record.decision, record.forwarded) == ("defer", False)
    # 0.25 s later the window still holds the 80: the wait is exactly what is left of the second.
    clock.advance(0.25)
    status, headers, payload = await send(client, text_message(to=numbers[80]))
    assert (status, headers["Retry-After"]) == (429, "1")
    assert payload["error"]["sendgate"]["reasons"][0]["retry_after"] == pytest.approx(0.75)
    assert "retry in 750 ms" in payload["error"]["sendgate"]["reasons"][0]["message"]
    clock.advance(0.75)  # exactly when the first 80 leave
    results = await burst([client], [text_message(to=n) for n in numbers[80:]])
    assert codes(results) == {(200, None): 80, (429, 130429): BURST - 160}


async def test_a_send_denied_by_another_rule_does_not_use_up_the_throughput(
    gateway_factory: GatewayFactory, fake_graph: tuple[FakeGraph, str]
) -> None:
    client = await gateway_factory(accounts=account(throughput_mps=1))
    numbers = recipients(2)
    await open_windows(store_of(client), numbers[1:])
    # Counted, then denied (window.closed): taken back, so the second one still fits the second.
    status, _, payload = await send(client, text_message(to=numbers[0]))
    assert (status, payload["error"]["code"]) == (400, 131047)
    assert (await send(client, text_message(to=numbers[1])))[0] == 200
    status, _, payload = await send(client, text_message(to=numbers[1]))
    assert (status, payload["error"]["code"]) == (429, 130429)


async def test_shadow_mode_forwards_and_counts(gateway_factory: GatewayFactory, fake_graph: tuple[FakeGraph, str]) -> None:
    client = await gateway_factory(accounts=account(throughput_mps=1), mode="shadow")
    numbers = recipients(3)
    await open_windows(store_of(client), numbers)
    for number in numbers:
        status, headers, _ = await send(client, text_message(to=number))
        assert status == 200
    assert headers["X-Sendgate-Decision"] == "defer; mode=shadow"  # the last one was over the rate
    assert len(fake_graph[0].received) == 3


async def test_read_receipts_count_against_the_throughput(gateway_factory: GatewayFactory) -> None:
    client = await gateway_factory(accounts=account(throughput_mps=2))
    receipt = {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.X"}
    assert [(await send(client, receipt))[0] for _ in range(3)] == [200, 200, 429]


async def test_a_throughput_upgrade_raises_the_configured_rate(gateway_factory: GatewayFactory, clock: Clock) -> None:
    client = await gateway_factory(accounts=account(throughput_mps=2), webhooks=webhook_config())
    numbers = recipients(5)
    await open_windows(store_of(client), numbers)
    assert [(await send(client, text_message(to=n)))[0] for n in numbers[:3]] == [200, 200, 429]
    assert (await post_webhook(client, phone_quality("THROUGHPUT_UPGRADE", clock.now - 5)))[0] == 200
    assert (await store_of(client).account_state(PHONE_NUMBER_ID, WABA_ID))["throughput_mps"] == 1000
    assert [(await send(client, text_message(to=n)))[0] for n in numbers[2:]] == [200, 200, 200]


# -- the messaging limit ---------------------------------------------------------------------------


async def test_a_burst_of_templates_reaches_exactly_the_messaging_limit(
    gateway_factory: GatewayFactory, fake_graph: tuple[FakeGraph, str], clock: Clock
) -> None:
    fake, _ = fake_graph
    client = await gateway_factory(accounts=account(messaging_limit=50, throughput_mps=1000))
    numbers = recipients(BURST)
    await opt_in(store_of(client), numbers)
    results = await burst([client], [template_message(to=n) for n in numbers])
    assert codes(results) == {(200, None): 50, (403, 770700): BURST - 50}
    assert len(fake.received) == 50
    reached = [n for n, r in zip(numbers, results, strict=True) if r[0] == 200]
    reason = next(r for r in results if r[0] == 403)[2]["error"]["sendgate"]["reasons"][0]
    assert (reason["rule"], reason["portfolio"], reason["limit"], reason["count"]) == (
        "messaging_limit.reached", WABA_ID, 50, 50)
    assert reason["next_at"] == int(AFTERNOON + 86400)
    # A user already reached in the 24 h is reached again; a user inside a window does not count.
    clock.advance(3600)
    assert (await send(client, template_message(to=reached[0])))[0] == 200
    inside = numbers[-1]
    await store_of(client).record_inbound(PHONE_NUMBER_ID, inside, clock.now - 60)
    assert (await send(client, template_message(to=inside)))[0] == 200
    status, _, payload = await send(client, template_message(to=numbers[-2]))
    assert (status, payload["error"]["code"]) == (403, 770700)
    clock.advance(86400 - 3600)  # the first 50 leave the moving 24 h (the one reached again stays)
    assert (await send(client, template_message(to=numbers[-2])))[0] == 200


async def test_a_template_counted_then_denied_does_not_use_up_the_messaging_limit(
    gateway_factory: GatewayFactory,
) -> None:
    client = await gateway_factory(accounts=account(messaging_limit=1))
    numbers = recipients(2)
    await opt_in(store_of(client), numbers)
    wrong = template_message(to=numbers[0], components=[{"type": "body", "parameters": [{"type": "text", "text": "x"}]}])
    status, _, payload = await send(client, wrong)
    assert (status, payload["error"]["code"]) == (400, 132000)  # counted, then denied: taken back
    assert (await send(client, template_message(to=numbers[1])))[0] == 200
    status, _, payload = await send(client, template_message(to=numbers[0]))
    assert (status, payload["error"]["code"]) == (403, 770700)


async def test_the_portfolio_limit_from_the_webhook_wins_and_is_shared_by_its_numbers(
    gateway_factory: GatewayFactory, clock: Clock
) -> None:
    other = "106540352242933"
    accounts = account(messaging_limit=1000, portfolio="acme") + [
        {"phone_number_id": other, "waba_id": WABA_ID, "portfolio": "acme", "markets": ["US", "CA"]}]
    client = await gateway_factory(accounts=accounts, webhooks=webhook_config())
    capability = envelope("business_capability_update", {"max_daily_conversations_per_business": 2}, time=clock.now - 5)
    assert (await post_webhook(client, capability))[0] == 200
    state = await store_of(client).account_state(PHONE_NUMBER_ID, WABA_ID, "acme")
    assert state["portfolio_messaging_limit"] == 2
    numbers = recipients(3)
    await opt_in(store_of(client), numbers)
    assert (await send(client, template_message(to=numbers[0])))[0] == 200
    assert (await send(client, template_message(to=numbers[1]), phone_number_id=other))[0] == 200
    status, _, payload = await send(client, template_message(to=numbers[2]))
    assert (status, payload["error"]["sendgate"]["reasons"][0]["portfolio"]) == (403, "acme")
    unlimited = envelope("business_capability_update", {"max_daily_conversations_per_business": -1}, time=clock.now)
    assert (await post_webhook(client, unlimited))[0] == 200
    assert (await send(client, template_message(to=numbers[2])))[0] == 200


def test_the_messaging_limit_and_throughput_facts_and_their_precedence() -> None:
    config = load_config(None, env={"SENDGATE_ACCOUNTS": orjson.dumps(account(messaging_limit=2000, throughput_mps=20)).decode()})
    configured = config.account(PHONE_NUMBER_ID)
    state: dict[str, Any] = {"portfolio_messaging_limit": None, "messaging_limit": "TIER_1K", "throughput_mps": None}
    assert messaging_limit(configured, state) == 2000  # the configured one, before Meta reports
    assert messaging_limit(None, state) == 1000  # the number's old tier string, as a last resort
    assert messaging_limit(None, {**state, "messaging_limit": "TIER_UNLIMITED"}) == -1
    assert messaging_limit(configured, {**state, "portfolio_messaging_limit": 10000}) == 10000  # Meta's wins
    assert messaging_limit(None, {**state, "messaging_limit": None}) is None
    assert throughput_mps(configured, state) == 20  # a coexistence number
    assert throughput_mps(configured, {**state, "throughput_mps": 1000}) == 1000
    assert throughput_mps(None, state) == 80


# -- same-content pacing --------------------------------------------------------------------------


async def test_a_burst_of_one_marketing_content_is_paced_exactly(
    gateway_factory: GatewayFactory, fake_graph: tuple[FakeGraph, str], clock: Clock
) -> None:
    fake, _ = fake_graph
    client = await gateway_factory(accounts=account(throughput_mps=1000))
    numbers = recipients(BURST)
    await opt_in(store_of(client), numbers)
    results = await burst([client], [marketing(n) for n in numbers])
    assert codes(results) == {(200, None): 100, (429, 770701): BURST - 100}  # params.pacing: 100 per 60 s
    assert len(fake.received) == 100
    _, headers, payload = next(r for r in results if r[0] == 429)
    assert headers["Retry-After"] == "60"
    reason = payload["error"]["sendgate"]["reasons"][0]
    assert (reason["rule"], reason["category"], reason["threshold"], reason["limit"]) == (
        "pacing.same_content", "MARKETING", "category", 100)
    # Other content is counted apart; the same content goes again once the minute has moved on.
    waiting = [n for n, r in zip(numbers, results, strict=True) if r[0] == 429]
    assert (await send(client, marketing(waiting[0], name="Bea")))[0] == 200
    assert (await send(client, marketing(waiting[1], name="ANA ")))[0] == 429  # the same, normalized
    clock.advance(60)
    results = await burst([client], [marketing(n) for n in waiting[1:]])
    assert codes(results) == {(200, None): 99}  # 99 left, all within the new minute's 100


async def test_utility_is_not_paced_by_default_and_a_vetted_campaign_gets_its_ramp(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    def vetted(params: dict[str, Any]) -> None:
        params["pacing"]["same_content"]["vetted"] = {"spring_sale": {"max_recipients": 150, "window_seconds": 60}}

    policies = policies_with(tmp_path, vetted)
    client = await gateway_factory(accounts=account(throughput_mps=1000), policy_dir=str(policies))
    numbers = recipients(BURST)
    await opt_in(store_of(client), numbers)
    results = await burst([client], [marketing(n) for n in numbers])
    assert codes(results) == {(200, None): 150, (429, 770701): BURST - 150}
    assert next(r for r in results if r[0] == 429)[2]["error"]["sendgate"]["reasons"][0]["threshold"] == "vetted"
    utility = await burst([client], [template_message(to=n) for n in numbers])
    assert codes(utility) == {(200, None): BURST}


def test_the_pacing_threshold_per_category_vetting_and_template_quality() -> None:
    params = orjson.loads((POLICIES / "data.json").read_bytes())["sendgate"]["params"]
    message = normalize(marketing("16505550000"), "messages")
    doc: dict[str, Any] = {"endpoint": "messages", "message": message, "template": {"category": "MARKETING"}}
    digest = content_hash(message)
    assert digest is not None and digest == content_hash(normalize(marketing("16505550001", "  ana"), "messages"))
    assert digest != content_hash(normalize(marketing("16505550000", "Bea"), "messages"))
    assert pacing_threshold(params, doc, digest) == {"limit": 100, "window_seconds": 60, "category": "MARKETING",
                                                      "threshold": "category"}  # fmt: skip
    # A template whose quality is not green is paced lower; null (not known) is not.
    for quality, limit in (("GREEN", 100), (None, 100), ("YELLOW", 20), ("RED", 20)):
        threshold = pacing_threshold(params, {**doc, "template": {"category": "MARKETING", "quality": quality}}, digest)
        assert threshold is not None and threshold["limit"] == limit, quality
    assert pacing_threshold(params, {**doc, "template": {"category": "UTILITY"}}, digest) is None
    assert pacing_threshold(params, {**doc, "endpoint": "marketing_messages", "template": None}, digest) is not None
    vetted = {"pacing": {"same_content": {**params["pacing"]["same_content"],
                                          "vetted": {digest: {"max_recipients": 500, "window_seconds": 300}}}}}
    assert pacing_threshold(vetted, doc, digest) == {"limit": 500, "window_seconds": 300, "category": "MARKETING",
                                                      "threshold": "vetted"}  # fmt: skip
    low = {**doc, "template": {"category": "MARKETING", "quality": "RED"}}
    assert pacing_threshold(vetted, low, digest)["threshold"] == "low_quality"  # type: ignore[index]
    text = normalize(text_message(body="Hello  there"), "messages")
    assert content_hash(text) == content_hash(normalize(text_message(body="hello there"), "messages"))
    assert pacing_threshold(params, {"endpoint": "messages", "message": text, "template": None}, "x") is None


async def test_131048_pauses_marketing_by_default(gateway_factory: GatewayFactory, clock: Clock) -> None:
    assert next(t for t in DEFAULT_THRESHOLDS if 131048 in t.codes).pause_marketing
    client = await gateway_factory(webhooks=webhook_config())
    numbers = recipients(2)
    await opt_in(store_of(client), numbers)
    status, _, payload = await send(client, marketing(numbers[0]))
    assert status == 200
    blocked = status_update(payload["messages"][0]["id"], "failed", clock.now + 1, recipient=numbers[0], error=131048)
    assert (await post_webhook(client, blocked))[0] == 200
    for _ in range(50):  # the monitor applies the pause in the background
        if (await store_of(client).account_state(PHONE_NUMBER_ID, WABA_ID))["marketing_paused"] is not None:
            break
        await asyncio.sleep(0.05)
    status, _, payload = await send(client, marketing(numbers[1]))
    assert (status, payload["error"]["sendgate"]["reasons"][0]["rule"]) == (403, "account.paused")
    assert (await send(client, template_message(to=numbers[1])))[0] == 200  # utility still goes


# -- across gateways sharing Redis, and Redis down ----------------------------------------------------


async def test_two_gateways_on_one_redis_share_every_count_exactly(
    gateway_factory: GatewayFactory, fake_graph: tuple[FakeGraph, str], redis_url: str, clock: Clock
) -> None:
    fake, _ = fake_graph
    settings = {"redis_url": redis_url, "accounts": account(messaging_limit=50)}
    a, b = await gateway_factory(**settings), await gateway_factory(**settings)
    numbers = recipients(BURST)
    await open_windows(store_of(a), numbers)
    results = await burst([a, b], [text_message(to=n) for n in numbers])
    assert codes(results) == {(200, None): 80, (429, 130429): BURST - 80}
    clock.advance(1)
    await opt_in(store_of(a), numbers)
    outside = recipients(BURST, start=1000)
    await opt_in(store_of(a), outside)
    results = await burst([a, b], [template_message(to=n) for n in outside[:80]])
    assert codes(results) == {(200, None): 50, (403, 770700): 30}
    clock.advance(1)
    # 50 reached: every new user is over the limit (or, past the throughput, deferred first).
    results = await burst([a, b], [marketing(n) for n in outside[80:]])
    assert set(codes(results)) <= {(403, 770700), (429, 130429)}
    assert len(fake.received) == 130


async def test_two_gateways_on_one_redis_pace_one_content_exactly(
    gateway_factory: GatewayFactory, redis_url: str
) -> None:
    settings = {"redis_url": redis_url, "accounts": account(throughput_mps=1000)}
    a, b = await gateway_factory(**settings), await gateway_factory(**settings)
    numbers = recipients(BURST)
    await opt_in(store_of(a), numbers)
    results = await burst([a, b], [marketing(n) for n in numbers])
    assert codes(results) == {(200, None): 100, (429, 770701): BURST - 100}


async def test_with_redis_down_sends_fail_closed_with_their_own_error(
    gateway_factory: GatewayFactory, fake_graph: tuple[FakeGraph, str], make_redis: Callable[[], RedisServer]
) -> None:
    server = make_redis()
    client = await gateway_factory(redis_url=server.url)
    numbers = recipients(2)
    await open_windows(store_of(client), numbers)
    assert (await send(client, text_message(to=numbers[0])))[0] == 200
    server.kill()
    status, headers, payload = await send(client, text_message(to=numbers[1]))
    assert status == 503, payload
    error = payload["error"]
    assert (error["code"], error["type"]) == (2, "SendgateSharedStateError")
    assert error["sendgate"]["reasons"][0]["rule"] == "counters.unavailable"
    assert len(fake_graph[0].received) == 1
    await store_of(client).flush()
    record = await store_of(client).decision(headers["X-Sendgate-Decision-Id"])
    assert record is not None and (record.decision, record.forwarded) == ("error", False)
    server.start()
    assert (await send(client, text_message(to=numbers[1])))[0] == 200


def test_config_validates_the_counter_settings() -> None:
    def accounts(**settings: Any) -> Config:
        return load_config(None, env={"SENDGATE_ACCOUNTS": orjson.dumps(account(**settings)).decode()})

    assert accounts().account(PHONE_NUMBER_ID).throughput_mps == 80  # type: ignore[union-attr]
    assert accounts().account(PHONE_NUMBER_ID).portfolio_id == WABA_ID  # type: ignore[union-attr]
    assert accounts(portfolio="acme").account(PHONE_NUMBER_ID).portfolio_id == "acme"  # type: ignore[union-attr]
    assert accounts(messaging_limit=-1).account(PHONE_NUMBER_ID).messaging_limit == -1  # type: ignore[union-attr]
    for bad in ({"throughput_mps": 0}, {"throughput_mps": 1001}, {"throughput_mps": True}, {"messaging_limit": 0},
                {"messaging_limit": "TIER_1K"}):
        with pytest.raises(ValueError, match="throughput_mps|messaging_limit"):
            accounts(**bad)
    two = account(portfolio="a") + [{"phone_number_id": "2", "waba_id": WABA_ID, "portfolio": "b"}]
    with pytest.raises(ValueError, match="belongs to one"):
        load_config(None, env={"SENDGATE_ACCOUNTS": orjson.dumps(two).decode()})


async def test_a_quality_update_carrying_the_portfolio_limit_sets_it_too(gateway_factory: GatewayFactory, clock: Clock) -> None:
    assert [messaging_limit_value(v) for v in (2000, "10000", " -1 ", -1, 0, -5, "TIER_10K", True, None, 2.5)] == [
        2000, 10000, -1, -1, None, None, None, None, None, None]
    client = await gateway_factory(webhooks=webhook_config())
    update = phone_quality("UPGRADE", clock.now - 5)
    update["entry"][0]["changes"][0]["value"]["max_daily_conversations_per_business"] = "10000"  # Meta's string form
    assert (await post_webhook(client, update))[0] == 200
    state = await store_of(client).account_state(PHONE_NUMBER_ID, WABA_ID, WABA_ID)  # the WABA stands for its portfolio
    assert (state["portfolio_messaging_limit"], state["messaging_limit"]) == (10000, "TIER_10K")


def _marketing_pacing(params: dict[str, Any], max_recipients: int) -> None:
    params["pacing"]["same_content"]["categories"]["MARKETING"]["max_recipients"] = max_recipients


async def test_a_marketing_send_counted_then_denied_does_not_use_up_the_pacing(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    policies = policies_with(tmp_path, lambda params: _marketing_pacing(params, 1))
    client = await gateway_factory(policy_dir=str(policies))
    numbers = recipients(3)
    await opt_in(store_of(client), numbers[1:])
    status, _, payload = await send(client, marketing(numbers[0]))  # no consent: counted, denied, taken back
    assert (status, payload["error"]["code"]) == (403, 770100)
    assert (await send(client, marketing(numbers[1])))[0] == 200
    status, headers, payload = await send(client, marketing(numbers[2]))
    assert (status, payload["error"]["code"], headers["Retry-After"]) == (429, 770701, "60")


async def test_the_pacing_thresholds_follow_a_policy_reload(gateway_factory: GatewayFactory, tmp_path: Path) -> None:
    policies = policies_with(tmp_path)
    client = await gateway_factory(policy_dir=str(policies))
    numbers = recipients(3)
    await opt_in(store_of(client), numbers)
    assert (await send(client, marketing(numbers[0])))[0] == 200  # 1 of the default 100
    edit_params(policies, lambda params: _marketing_pacing(params, 2))
    ok, _, error = await client.app[RELOADER].reload("test")
    assert ok, error
    assert (await send(client, marketing(numbers[1])))[0] == 200
    status, _, payload = await send(client, marketing(numbers[2]))
    assert (status, payload["error"]["sendgate"]["reasons"][0]["limit"]) == (429, 2)

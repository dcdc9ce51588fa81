"""Issue 11's Meta signals end to end: Direct Send, the US marketing pause, backing off after Meta's
delivery failures, WABA restrictions, and counting marketing Meta's way. HTTP status, Graph code and
the decision record, on both engines and both backends."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from sendgate.fakegraph import FakeGraph
from sendgate.gateway.call import SendCall
from sendgate.state import ConsentRecord

from .conftest import (
    AFTERNOON,
    CA_RECIPIENT,
    ENGINES_AND_BACKENDS,
    PHONE_NUMBER_ID,
    POLICIES,
    US_RECIPIENT,
    WABA_ID,
    Clock,
    GatewayFactory,
    edit_params,
    send,
    store_of,
    template_message,
    text_message,
)
from .test_rules_e2e import _expect_rejection, _record
from .webhook_support import account_update, post_webhook, webhook_config

BSUID = "US.13491208655302741918"


@pytest.fixture(params=ENGINES_AND_BACKENDS, ids="-".join)
def gateway_kind(request: pytest.FixtureRequest) -> tuple[str, str]:
    kind: tuple[str, str] = request.param
    return kind


def _account(**extra: Any) -> list[dict[str, Any]]:
    return [{"phone_number_id": PHONE_NUMBER_ID, "waba_id": WABA_ID, "name": "Acme", "markets": ["US", "BR", "CA"],
             **extra}]


@pytest.fixture
async def direct(gateway_factory: GatewayFactory) -> TestClient:
    """A gateway whose account Meta enabled for Direct Send."""
    return await gateway_factory(accounts=_account(direct_send=True))


async def _opt_in(client: TestClient, recipient: str = US_RECIPIENT,
                  categories: tuple[str, ...] = ("marketing", "utility")) -> None:
    await store_of(client).record_consent(
        ConsentRecord(recipient, "opted_in", categories, "web-form", "checkbox", AFTERNOON - 86400 * 30))


def direct_send(category: str = "utility", **extra: Any) -> dict[str, Any]:
    # Meta's example (direct-send/send-utility-and-authentication-messages): a text with a category
    return {"messaging_product": "whatsapp", "recipient_type": "individual", "to": US_RECIPIENT, "type": "text",
            "text": {"body": "Your order A-1 has shipped."}, "category": category, **extra}


# -- Direct Send ---------------------------------------------------------------------------


async def test_direct_send_goes_out_of_the_window_as_utility(direct: TestClient, fake_graph: tuple[FakeGraph, str]) -> None:
    fake, _ = fake_graph
    await _opt_in(direct)
    body = direct_send(ttl_seconds=600)  # Meta's configure-message-ttl example
    status, headers, payload = await send(direct, body)  # the user never wrote: no window
    assert status == 200, payload
    assert fake.received[-1].body == body
    record = await _record(direct, headers["X-Sendgate-Decision-Id"])
    assert (record.decision, record.forwarded) == ("allow", True)
    facts = await store_of(direct).recipient_facts(PHONE_NUMBER_ID, WABA_ID, US_RECIPIENT, AFTERNOON + 1)
    assert facts.last_sent_at == AFTERNOON and facts.marketing_sent_at == []  # in the history, as utility


async def test_direct_send_needs_consent(direct: TestClient, fake_graph: tuple[FakeGraph, str]) -> None:
    await _expect_rejection(direct, fake_graph[0], direct_send(), status=403, code=770100, rule="consent.missing")


async def test_direct_send_refused_as_meta_does_for_an_ineligible_waba(gateway: TestClient,
                                                                       fake_graph: tuple[FakeGraph, str]) -> None:
    await _opt_in(gateway)
    payload = await _expect_rejection(gateway, fake_graph[0], direct_send(), status=400, code=100,
                                      rule="direct_send.not_enabled")
    assert [r["rule"] for r in payload["error"]["sendgate"]["reasons"]] == ["direct_send.not_enabled"]  # not window.closed


@pytest.mark.parametrize(("category", "ttl"), [("utility", 43201), ("utility", 29), ("authentication", 901)])
async def test_direct_send_ttl_outside_metas_range(direct: TestClient, fake_graph: tuple[FakeGraph, str],
                                                   category: str, ttl: int) -> None:
    await _opt_in(direct, categories=("marketing", "utility", "authentication"))
    await _expect_rejection(direct, fake_graph[0], direct_send(category, ttl_seconds=ttl), status=400, code=100,
                            rule="direct_send.ttl_range")


async def test_authentication_direct_send_to_a_bsuid(direct: TestClient, fake_graph: tuple[FakeGraph, str]) -> None:
    body = {k: v for k, v in direct_send("authentication").items() if k != "to"} | {"recipient": BSUID}
    await _expect_rejection(direct, fake_graph[0], body, status=400, code=131062,
                            rule="direct_send.authentication_bsuid")


async def test_direct_send_bad_category_is_bad_input(direct: TestClient) -> None:
    status, _, payload = await send(direct, direct_send("marketing"))
    assert (status, payload["error"]["code"]) == (400, 100)
    assert 'category must be "utility" or "authentication"' in payload["error"]["message"]


def test_send_call_category_is_the_direct_send_category() -> None:
    call = SendCall("d", 0.0, "messages", "v23.0", PHONE_NUMBER_ID, message={"category": "authentication"})
    assert call.category == "authentication"
    assert SendCall("d", 0.0, "messages", "v23.0", PHONE_NUMBER_ID, message={"category": None}).category is None


# -- marketing by country ------------------------------------------------------------------


async def test_marketing_to_us_numbers_is_paused_not_to_canada(gateway: TestClient,
                                                                fake_graph: tuple[FakeGraph, str]) -> None:
    await _opt_in(gateway)
    await _opt_in(gateway, CA_RECIPIENT)
    payload = await _expect_rejection(gateway, fake_graph[0], template_message("spring_sale"), status=400, code=131049,
                                      rule="delivery.marketing_country")
    assert payload["error"]["sendgate"]["reasons"][0]["country"] == "US"
    status, _, payload = await send(gateway, template_message("spring_sale", to=CA_RECIPIENT))  # +1 416: Canada
    assert status == 200, payload
    status, _, payload = await send(gateway, template_message("order_update"))  # utility to the US: unaffected
    assert status == 200, payload


async def test_marketing_burst_to_us_forwards_none(gateway: TestClient, fake_graph: tuple[FakeGraph, str]) -> None:
    await _opt_in(gateway)
    results = await asyncio.gather(*(send(gateway, template_message("spring_sale")) for _ in range(10)))
    assert {(status, payload["error"]["code"]) for status, _, payload in results} == {(400, 131049)}
    assert fake_graph[0].received == []


# -- backing off after Meta's failures -------------------------------------------------------


async def test_no_marketing_for_a_day_after_131049(gateway: TestClient, fake_graph: tuple[FakeGraph, str],
                                                   clock: Clock) -> None:
    await _opt_in(gateway, CA_RECIPIENT)
    await store_of(gateway).record_delivery_failure("wamid.1", 131049, CA_RECIPIENT, PHONE_NUMBER_ID, AFTERNOON - 3600)
    await _expect_rejection(gateway, fake_graph[0], template_message("spring_sale", to=CA_RECIPIENT), status=400,
                            code=131049, rule="delivery.marketing_limited")
    status, _, _ = await send(gateway, template_message("order_update", to=CA_RECIPIENT))
    assert status == 200  # utility is not held back
    clock.advance(82800)  # 24 h after the failure
    status, _, payload = await send(gateway, template_message("spring_sale", to=CA_RECIPIENT))
    assert status == 200, payload


async def test_an_undeliverable_number_is_held(gateway: TestClient, fake_graph: tuple[FakeGraph, str],
                                               clock: Clock) -> None:
    await _opt_in(gateway)
    for i in range(3):
        await store_of(gateway).record_delivery_failure(f"wamid.{i}", 131026, US_RECIPIENT, PHONE_NUMBER_ID,
                                                        AFTERNOON - 86400 * (i + 1))
    payload = await _expect_rejection(gateway, fake_graph[0], template_message("order_update"), status=400,
                                      code=131026, rule="delivery.undeliverable")
    assert payload["error"]["sendgate"]["reasons"][0]["count"] == 3
    # The user writes in: reachable after all; replies and templates go out again.
    await store_of(gateway).record_inbound(PHONE_NUMBER_ID, US_RECIPIENT, AFTERNOON - 60)
    status, _, payload = await send(gateway, text_message())
    assert status == 200, payload
    status, _, payload = await send(gateway, template_message("order_update"))
    assert status == 200, payload


# -- WABA restrictions -----------------------------------------------------------------------


async def _restrict(client: TestClient, kind: str, expires_at: float | None) -> None:
    value = "" if expires_at is None else repr(expires_at)
    await store_of(client).set_account_state("waba", WABA_ID, {f"restriction:{kind}": value}, AFTERNOON - 60)


async def test_business_initiated_restriction_until_it_expires(gateway: TestClient, fake_graph: tuple[FakeGraph, str],
                                                              clock: Clock) -> None:
    await _opt_in(gateway)
    await _restrict(gateway, "RESTRICTED_BIZ_INITIATED_MESSAGING", AFTERNOON + 3600)
    payload = await _expect_rejection(gateway, fake_graph[0], template_message("order_update"), status=403, code=368,
                                      rule="account.restricted")
    assert payload["error"]["sendgate"]["reasons"][0]["expires_at"] == AFTERNOON + 3600
    await store_of(gateway).record_inbound(PHONE_NUMBER_ID, US_RECIPIENT, AFTERNOON - 60)
    status, _, payload = await send(gateway, text_message())  # a reply is customer-initiated
    assert status == 200, payload
    clock.advance(3600)  # expired
    status, _, payload = await send(gateway, template_message("order_update"))
    assert status == 200, payload


async def test_restriction_from_metas_account_update_webhook(gateway_factory: GatewayFactory,
                                                             fake_graph: tuple[FakeGraph, str], clock: Clock) -> None:
    client = await gateway_factory(webhooks=webhook_config())
    await _opt_in(client)
    restriction = account_update("ACCOUNT_RESTRICTION", clock.now - 60, restriction_info=[
        {"restriction_type": "RESTRICTED_BIZ_INITIATED_MESSAGING", "expiration": int(clock.now + 7200)}])
    assert (await post_webhook(client, restriction))[0] == 200
    payload = await _expect_rejection(client, fake_graph[0], template_message("order_update"), status=403, code=368,
                                      rule="account.restricted")
    assert payload["error"]["sendgate"]["reasons"][0]["restriction"] == "RESTRICTED_BIZ_INITIATED_MESSAGING"
    lifted = account_update("ACCOUNT_RESTRICTION", clock.now - 30, restriction_info=[])
    assert (await post_webhook(client, lifted))[0] == 200
    status, _, payload = await send(client, template_message("order_update"))
    assert status == 200, payload


async def test_customer_initiated_restriction_holds_replies(gateway: TestClient, fake_graph: tuple[FakeGraph, str]) -> None:
    await _opt_in(gateway)
    await _restrict(gateway, "RESTRICTED_CUSTOMER_INITIATED_MESSAGING", None)  # no expiry: until lifted
    await store_of(gateway).record_inbound(PHONE_NUMBER_ID, US_RECIPIENT, AFTERNOON - 60)
    await _expect_rejection(gateway, fake_graph[0], text_message(), status=403, code=368, rule="account.restricted")
    status, _, payload = await send(gateway, template_message("order_update"))
    assert status == 200, payload


async def test_restriction_holds_direct_send(direct: TestClient, fake_graph: tuple[FakeGraph, str]) -> None:
    await _opt_in(direct)
    await _restrict(direct, "RESTRICTED_BIZ_INITIATED_MESSAGING", AFTERNOON + 60)
    await _expect_rejection(direct, fake_graph[0], direct_send(), status=403, code=368, rule="account.restricted")


# -- counting marketing Meta's way --------------------------------------------------------------


async def test_marketing_inside_a_window_is_recorded_so(gateway: TestClient) -> None:
    await _opt_in(gateway, CA_RECIPIENT)
    await store_of(gateway).record_inbound(PHONE_NUMBER_ID, CA_RECIPIENT, AFTERNOON - 3600)
    status, _, payload = await send(gateway, template_message("spring_sale", to=CA_RECIPIENT))
    assert status == 200, payload
    await store_of(gateway).flush()
    facts = await store_of(gateway).recipient_facts(PHONE_NUMBER_ID, WABA_ID, CA_RECIPIENT, AFTERNOON + 1)
    assert facts.marketing_sent_at == [AFTERNOON]
    assert facts.marketing_outside_window_sent_at == []


def _meta_way_policies(tmp_path: Path) -> Path:
    """The default policies with frequency.count_marketing_in_open_window false (without their
    tests, which check the defaults)."""
    target = tmp_path / "policies-meta-way"
    shutil.copytree(POLICIES, target, ignore=shutil.ignore_patterns("*_test.rego"))
    edit_params(target, lambda params: params["frequency"].update(count_marketing_in_open_window=False))
    return target


@pytest.mark.parametrize("gateway_kind", [("embedded", "sqlite"), ("embedded", "postgresql")], ids="-".join)
async def test_counted_metas_way_marketing_in_an_open_window_is_not_capped(
    gateway_factory: GatewayFactory, fake_graph: tuple[FakeGraph, str], tmp_path: Path, clock: Clock
) -> None:
    client = await gateway_factory(policy_dir=str(_meta_way_policies(tmp_path)))
    await _opt_in(client, CA_RECIPIENT)
    await store_of(client).record_inbound(PHONE_NUMBER_ID, CA_RECIPIENT, AFTERNOON - 3600)
    for _ in range(3):  # inside the window the user opened: Meta's limit does not count them
        status, _, payload = await send(client, template_message("spring_sale", to=CA_RECIPIENT))
        assert status == 200, payload
        clock.advance(10)
    clock.advance(86400)  # the window closed; the sends inside it still do not count
    status, _, payload = await send(client, template_message("spring_sale", to=CA_RECIPIENT))
    assert status == 200, payload
    clock.advance(3600)  # one outside the window in the last 24 h: the daily cap of 1 holds
    await _expect_rejection(client, fake_graph[0], template_message("spring_sale", to=CA_RECIPIENT), status=400,
                            code=131049, rule="frequency.marketing")


@pytest.mark.parametrize("gateway_kind", [("embedded", "sqlite"), ("embedded", "postgresql")], ids="-".join)
async def test_counted_metas_way_a_burst_outside_the_window_forwards_one(
    gateway_factory: GatewayFactory, fake_graph: tuple[FakeGraph, str], tmp_path: Path
) -> None:
    client = await gateway_factory(policy_dir=str(_meta_way_policies(tmp_path)))
    await _opt_in(client, CA_RECIPIENT)
    results = await asyncio.gather(*(send(client, template_message("spring_sale", to=CA_RECIPIENT)) for _ in range(10)))
    assert sorted(status for status, _, _ in results) == [200] + [400] * 9
    assert len(fake_graph[0].received) == 1

"""Webhook-fed facts decide the same on both engines: the opt-out keywords come from the serving
policies' data (`PolicyEngine.params()`), and the account rules read the state webhooks keep."""

from __future__ import annotations

import pytest

from .conftest import CA_RECIPIENT, PHONE_NUMBER_ID, US_RECIPIENT, Clock, GatewayFactory, admin, send, template_message
from .webhook_support import inbound_text, phone_quality, post_webhook, webhook_config


@pytest.fixture(params=["embedded", "opa"])
def engine_kind(request: pytest.FixtureRequest) -> str:
    return request.param


async def _opt_in(client: object, clock: Clock, recipient: str = US_RECIPIENT) -> None:
    body = {"status": "opted_in", "categories": ["marketing", "utility"], "recorded_at": clock.now - 3600}
    assert (await admin(client, "PUT", f"/consent/{recipient}", body))[0] == 200  # type: ignore[arg-type]


async def test_keyword_optout_from_policy_data(gateway_factory: GatewayFactory, clock: Clock) -> None:
    client = await gateway_factory(webhooks=webhook_config())
    await _opt_in(client, clock)
    assert (await post_webhook(client, inbound_text("Unsubscribe!", clock.now - 30)))[0] == 200
    status, body = await admin(client, "GET", f"/consent/{US_RECIPIENT}")
    assert body["current"]["status"] == "opted_out"
    status, _, answer = await send(client, template_message())
    assert status == 403 and answer["error"]["sendgate"]["reasons"][0]["rule"] == "consent.opted_out"


async def test_flagged_number_pauses_marketing_not_utility(gateway_factory: GatewayFactory, clock: Clock) -> None:
    client = await gateway_factory(webhooks=webhook_config())
    await _opt_in(client, clock, CA_RECIPIENT)  # US marketing: paused
    assert (await post_webhook(client, inbound_text("hi", clock.now - 600)))[0] == 200  # maps the display number
    assert (await post_webhook(client, phone_quality("FLAGGED", clock.now - 60)))[0] == 200
    status, _, answer = await send(client, template_message("spring_sale", to=CA_RECIPIENT))
    assert status == 403
    reasons = answer["error"]["sendgate"]["reasons"]
    assert [r["rule"] for r in reasons] == ["account.quality"]
    assert (reasons[0]["quality"], reasons[0]["status"]) == ("RED", "FLAGGED")
    assert answer["error"]["code"] == 770601
    assert (await send(client, template_message(to=CA_RECIPIENT)))[0] == 200  # utility goes on
    clock.advance(10)
    assert (await post_webhook(client, phone_quality("UNFLAGGED", clock.now - 5)))[0] == 200
    status, _, answer = await send(client, template_message("spring_sale", to=CA_RECIPIENT))
    assert status == 200, answer
    _, view = await admin(client, "GET", f"/accounts/{PHONE_NUMBER_ID}")
    assert view["state"]["status"] is None

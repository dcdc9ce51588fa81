"""The facts the policy saw in each record, the JSON admin API's review calls, and background retention."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from aiohttp.test_utils import TestClient

from sendgate.state import DecisionQuery

from .conftest import US_RECIPIENT, GatewayFactory, admin, send, store_of, template_message, text_message


async def test_rejections_keep_the_facts_the_policy_saw(gateway: TestClient) -> None:
    await admin(
        gateway, "PUT", f"/consent/{US_RECIPIENT}", {"status": "opted_in", "categories": ["utility"], "source": "web"}
    )
    await admin(gateway, "POST", "/inbound", {"phone_number_id": "106540352242922", "from": US_RECIPIENT})
    assert (await send(gateway, template_message("spring_sale")))[0] == 403  # marketing without marketing consent
    assert (await send(gateway, text_message()))[0] == 200
    allowed, denied = await store_of(gateway).decisions(DecisionQuery())
    assert allowed.decision == "allow" and allowed.facts is None  # allowed: only with keep_allowed_content
    facts = denied.facts
    assert facts is not None and set(facts) == {"recipient", "template"}
    assert facts["recipient"]["id"] == US_RECIPIENT
    assert facts["recipient"]["consent"]["categories"] == ["utility"]
    assert facts["recipient"]["last_inbound_at"] is not None
    assert facts["recipient"]["history"] == {"last_sent_at": None, "pair_sent_at": [], "marketing_sent_at": [],
                                             "marketing_outside_window_sent_at": []}
    assert facts["template"]["category"] == "MARKETING" and facts["template"]["status"] == "APPROVED"


async def test_masking_covers_facts_and_reason_texts(gateway_factory: GatewayFactory) -> None:
    client = await gateway_factory(log={"mask_recipients": True, "keep_allowed_content": True})
    await send(client, text_message())  # window closed: the reason names the recipient
    await admin(client, "POST", "/inbound", {"phone_number_id": "106540352242922", "from": US_RECIPIENT})
    await send(client, text_message())
    allowed, denied = await store_of(client).decisions(DecisionQuery())
    for record in (allowed, denied):
        assert record.facts is not None and record.facts["recipient"]["id"] == "*******1234"
    assert US_RECIPIENT not in str(denied.reasons) and "*******1234" in denied.reasons[0]["message"]
    # The app still gets the reason as the policy wrote it: it sent the number itself.
    status, _, body = await send(client, text_message(to="16505559999"))
    assert status == 400 and "16505559999" in body["error"]["message"]


async def test_admin_api_filters_reviews_and_stats(gateway: TestClient) -> None:
    await send(gateway, text_message())
    await send(gateway, template_message("paused_promo", components=[]))
    status, body = await admin(gateway, "GET", "/decisions?decision=rejected&template=paused_promo")
    assert status == 200 and [r["template"] for r in body["data"]] == ["paused_promo"]
    decision_id = body["data"][0]["id"]
    status, body = await admin(
        gateway, "POST", f"/decisions/{decision_id}/reviews", {"note": "known promo", "reviewer": "ana"}
    )
    assert status == 201 and body["reviewer"] == "ana" and body["seq"] >= 1
    status, body = await admin(gateway, "GET", f"/decisions/{decision_id}/reviews")
    assert status == 200 and [r["note"] for r in body["reviews"]] == ["known promo"]
    status, body = await admin(gateway, "GET", "/decisions?reviewed=no&decision=rejected")
    assert [r["type"] for r in body["data"]] == ["text"]
    assert (await admin(gateway, "POST", "/decisions/NOPE/reviews", {"note": "x"}))[0] == 404
    assert (await admin(gateway, "GET", "/decisions?reviewed=maybe"))[0] == 400
    status, body = await admin(gateway, "GET", "/stats?since=0&until=4000000000")  # the test clock is not now
    assert status == 200 and body["rejected"] == 2 and body["rules"]["window.closed"] == 1
    assert body["templates"] == {"paused_promo": 1}


async def test_retention_prunes_in_the_background(gateway_factory: GatewayFactory) -> None:
    first = await gateway_factory()
    await send(first, text_message())
    [record] = await store_of(first).decisions(DecisionQuery())
    old = replace(record, id="01OLD", timestamp=record.timestamp - 40 * 86400)
    await store_of(first).log_decision(old)
    await first.close()
    client = await gateway_factory(log={"retention_days": 30})  # prunes once at start, then hourly
    for _ in range(100):
        if await store_of(client).decision("01OLD") is None:
            break
        await asyncio.sleep(0.02)
    assert await store_of(client).decision("01OLD") is None
    assert await store_of(client).decision(record.id) is not None

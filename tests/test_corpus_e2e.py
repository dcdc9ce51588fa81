"""Every one of Meta's send examples gets a decision from the running gateway, and never a crash."""

from __future__ import annotations

import pytest

from sendgate.fakegraph import ERRORS, FakeGraph
from sendgate.messages import normalize
from sendgate.state import ConsentRecord

from .conftest import AFTERNOON, PHONE_NUMBER_ID, WABA_ID, GatewayFactory, send, store_of
from .corpus import filled_examples

CORPUS = filled_examples()


@pytest.mark.parametrize("key", sorted(CORPUS), ids=lambda k: f"{k[0]}/{k[1]}")
async def test_meta_example_gets_a_decision(gateway_factory: GatewayFactory, fake_graph: tuple[FakeGraph, str],
                                           key: tuple[str, str]) -> None:
    # Meta's examples go to several countries: an account without a market list.
    gateway = await gateway_factory(accounts=[{"phone_number_id": PHONE_NUMBER_ID, "waba_id": WABA_ID}])
    endpoint, _ = key
    body = CORPUS[key]
    message = normalize(body, endpoint)
    if message["recipient"]:
        await store_of(gateway).record_inbound(PHONE_NUMBER_ID, message["recipient"], AFTERNOON - 60)
        await store_of(gateway).record_consent(
            ConsentRecord(message["recipient"], "opted_in", ("marketing", "utility"), "test", None, AFTERNOON - 999))
    status, headers, payload = await send(gateway, body, endpoint=endpoint)
    assert status in (200, 400, 403, 404, 429), payload
    if status not in (200, 429):  # a denial answers with the status Meta gives its code (its fake's table)
        code = payload["error"]["code"]
        assert status == (ERRORS[code][1] if code in ERRORS else 403), payload
    await store_of(gateway).flush()
    record = await store_of(gateway).decision(headers["X-Sendgate-Decision-Id"])
    assert record is not None and record.type == message["type"]
    if status == 200:
        assert record.decision == "allow" and fake_graph[0].received[-1].body == body
    else:
        assert record.decision in ("deny", "defer") and payload["error"]["sendgate"]["reasons"]
    if message["type"] in ("text", "image", "location", "contacts", "interactive", "reaction"):
        # Free-form content inside an open window, to an opted-in recipient, with nothing banned in it.
        assert status == 200, payload
    if endpoint == "messages_encrypted":
        assert payload["error"]["sendgate"]["reasons"][0]["rule"] == "content.encrypted"

"""Each default rule end to end: HTTP status, Graph error code, and the decision record."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from sendgate.fakegraph import FakeGraph
from sendgate.policy.bundle import PolicyBundle
from sendgate.state import ConsentRecord

from .conftest import (
    ENGINES_AND_BACKENDS,
    admin,
    AFTERNOON,
    BR_RECIPIENT,
    CA_RECIPIENT,
    OTHER_PHONE_NUMBER_ID,
    POLICIES,
    PHONE_NUMBER_ID,
    US_RECIPIENT,
    WABA_ID,
    Clock,
    GatewayFactory,
    send,
    store_of,
    template_message,
    text_message,
)
from .corpus import filled_examples


@pytest.fixture(params=ENGINES_AND_BACKENDS, ids="-".join)
def gateway_kind(request: pytest.FixtureRequest) -> tuple[str, str]:
    """Every test here runs three times: on the embedded engine and against a real OPA server on
    SQLite, and on PostgreSQL."""
    kind: tuple[str, str] = request.param
    return kind


async def _opt_in(client: TestClient, recipient: str = US_RECIPIENT, categories: tuple[str, ...] = ("marketing", "utility")) -> None:
    await store_of(client).record_consent(ConsentRecord(recipient, "opted_in", categories, "web-form", "checkbox", AFTERNOON - 86400 * 30))


async def _opt_out(client: TestClient, recipient: str = US_RECIPIENT) -> None:
    await store_of(client).record_consent(ConsentRecord(recipient, "opted_out", (), "whatsapp", "STOP", AFTERNOON - 3600))


async def _user_wrote(client: TestClient, seconds_ago: float, recipient: str = US_RECIPIENT) -> None:
    await store_of(client).record_inbound(PHONE_NUMBER_ID, recipient, AFTERNOON - seconds_ago)


async def _record(client: TestClient, decision_id: str) -> Any:
    await store_of(client).flush()
    record = await store_of(client).decision(decision_id)
    assert record is not None
    return record


async def _expect_rejection(client: TestClient, fake: FakeGraph, body: dict[str, Any], *, status: int, code: int,
                            rule: str, endpoint: str = "messages", phone: str = PHONE_NUMBER_ID,
                            content: Any = None) -> dict[str, Any]:
    before = len(fake.received)
    got, headers, payload = await send(client, body, endpoint=endpoint, phone_number_id=phone)
    assert got == status, payload
    error = payload["error"]
    assert error["code"] == code
    assert error["message"].startswith(f"(#{code}) ")
    assert error["type"] == "SendgatePolicyError"
    assert error["error_data"]["messaging_product"] == "whatsapp"
    assert rule in error["error_data"]["details"]
    assert error["fbtrace_id"] == headers["X-Sendgate-Decision-Id"] == error["sendgate"]["decision_id"]
    assert rule in [r["rule"] for r in error["sendgate"]["reasons"]]
    assert len(fake.received) == before, "a rejected message must never reach Meta"
    record = await _record(client, error["fbtrace_id"])
    assert record.decision == ("defer" if status == 429 else "deny")
    assert record.mode == "enforce" and record.forwarded is False
    assert rule in [r["rule"] for r in record.reasons]
    assert record.content == (body if content is None else content)  # reviewers see what was rejected
    assert record.upstream_status is None
    return payload


async def test_allowed_message_is_forwarded_unchanged(gateway: TestClient, fake_graph: tuple[FakeGraph, str],
                                                      engine_kind: str) -> None:
    fake, _ = fake_graph
    await _user_wrote(gateway, 600)
    body = text_message()
    status, headers, payload = await send(gateway, body)
    assert status == 200
    assert payload["messages"][0]["id"].startswith("wamid.")
    assert payload["contacts"][0]["input"] == US_RECIPIENT
    assert fake.received[-1].body == body
    assert fake.received[-1].headers["Authorization"] == "Bearer EAAG-app-token-never-logged"
    record = await _record(gateway, headers["X-Sendgate-Decision-Id"])
    assert (record.decision, record.forwarded, record.upstream_status) == ("allow", True, 200)
    assert record.upstream_message_id == payload["messages"][0]["id"]
    assert record.content is None  # allowed content is not kept by default
    assert record.policy_revision and record.policy_revision.startswith("sha256:")
    # OPA serves the bundle of the same directory: same revision, plus OPA's own decision id.
    assert record.policy_revision == PolicyBundle.load(POLICIES).revision
    assert (record.engine_decision_id is not None) == (engine_kind == "opa")
    assert record.eval_us is not None and record.eval_us > 0


async def test_window_closed(gateway: TestClient, fake_graph: tuple[FakeGraph, str]) -> None:
    await _expect_rejection(gateway, fake_graph[0], text_message(), status=400, code=131047, rule="window.closed")
    await _user_wrote(gateway, 86400 + 1)  # the window expired a second ago
    await _expect_rejection(gateway, fake_graph[0], text_message(), status=400, code=131047, rule="window.closed")


async def test_consent_missing(gateway: TestClient, fake_graph: tuple[FakeGraph, str]) -> None:
    await _expect_rejection(gateway, fake_graph[0], template_message(), status=403, code=770100, rule="consent.missing")


async def test_consent_opted_out_uses_meta_code_for_marketing(gateway: TestClient, fake_graph: tuple[FakeGraph, str]) -> None:
    await _opt_out(gateway)
    await _expect_rejection(gateway, fake_graph[0], template_message("spring_sale"), status=400, code=131050,
                            rule="consent.opted_out")
    await _expect_rejection(gateway, fake_graph[0], template_message("order_update"), status=403, code=770101,
                            rule="consent.opted_out")


async def test_consent_category(gateway: TestClient, fake_graph: tuple[FakeGraph, str]) -> None:
    await _opt_in(gateway, categories=("utility",))
    await _expect_rejection(gateway, fake_graph[0], template_message("spring_sale"), status=403, code=770102,
                            rule="consent.category")
    status, _, _ = await send(gateway, template_message("order_update"))
    assert status == 200


@pytest.mark.parametrize(
    ("message", "status", "code", "rule"),
    [  # Meta answers 132001 with a 404, its other template errors with a 400
        (template_message("no_such_template", components=[]), 404, 132001, "template.unknown"),
        (template_message("spring_sale", language="de"), 404, 132001, "template.language"),
        (template_message("pending_notice", components=[]), 404, 132001, "template.not_approved"),
        (template_message("paused_promo", components=[]), 400, 132015, "template.paused"),
        (template_message("order_update", components=[{"type": "body", "parameters": [{"type": "text", "text": "x"}]}]),
         400, 132000, "template.params"),
    ],
)
async def test_template_rules(gateway: TestClient, fake_graph: tuple[FakeGraph, str], message: dict[str, Any],
                              status: int, code: int, rule: str) -> None:
    await _opt_in(gateway)
    await _expect_rejection(gateway, fake_graph[0], message, status=status, code=code, rule=rule)


async def test_template_with_named_parameters_passes(gateway: TestClient) -> None:
    await _opt_in(gateway, CA_RECIPIENT)
    status, _, payload = await send(gateway, template_message("spring_sale", to=CA_RECIPIENT))
    assert status == 200, payload


async def test_frequency_marketing(gateway: TestClient, fake_graph: tuple[FakeGraph, str], clock: Clock) -> None:
    await _opt_in(gateway, CA_RECIPIENT)  # marketing to the US is paused (delivery.marketing_country)
    status, _, _ = await send(gateway, template_message("spring_sale", to=CA_RECIPIENT))
    assert status == 200
    clock.advance(3600)
    await _expect_rejection(gateway, fake_graph[0], template_message("spring_sale", to=CA_RECIPIENT), status=400,
                            code=131049,
                            rule="frequency.marketing")
    clock.advance(86400)  # the 24 h cap has rolled over
    status, _, _ = await send(gateway, template_message("spring_sale", to=CA_RECIPIENT))
    assert status == 200
    clock.advance(86400 + 60)  # 2 in the last 7 days: the weekly cap holds
    await _expect_rejection(gateway, fake_graph[0], template_message("spring_sale", to=CA_RECIPIENT), status=400,
                            code=131049,
                            rule="frequency.marketing")


async def _deferred_for(client: TestClient, fake: FakeGraph, seconds: int) -> None:
    """The next text gets Meta's 429 (131056), told to retry in exactly `seconds`, and stays here."""
    before = len(fake.received)
    status, headers, payload = await send(client, text_message())
    assert (status, payload["error"]["code"]) == (429, 131056), payload
    assert headers["Retry-After"] == str(seconds), payload
    assert payload["error"]["sendgate"]["retry_after"] == seconds
    assert len(fake.received) == before


async def test_frequency_pair_rate_is_a_bucket(gateway: TestClient, fake_graph: tuple[FakeGraph, str],
                                               clock: Clock) -> None:
    fake, _ = fake_graph
    await _user_wrote(gateway, 60)
    # A bot's reply in parts (a text, an image, buttons...): the burst of 5 all goes out.
    for _ in range(5):
        status, _, payload = await send(gateway, text_message())
        assert status == 200, payload
        clock.advance(0.75)
    assert len(fake.received) == 5
    # 3.75 s after the first: the bucket refills one token 6 s after the first, in 2.25 s, rounded up.
    payload = await _expect_rejection(gateway, fake, text_message(), status=429, code=131056,
                                      rule="frequency.pair_rate")
    reason = payload["error"]["sendgate"]["reasons"][0]
    assert (reason["retry_after"], reason["burst"], reason["interval_seconds"], reason["sent_in_window"]) == (3, 5, 6, 5)
    clock.advance(2)
    await _deferred_for(gateway, fake, 1)  # 0.25 s to go
    clock.advance(0.25)  # exactly 6 s after the first
    status, _, payload = await send(gateway, text_message())
    assert status == 200, payload
    await _deferred_for(gateway, fake, 6)  # the burst is used up again: one token per 6 s from here
    clock.advance(6)
    status, _, payload = await send(gateway, text_message())
    assert status == 200, payload
    assert len(fake.received) == 7


async def test_deny_wins_over_defer(gateway: TestClient, fake_graph: tuple[FakeGraph, str], clock: Clock) -> None:
    await _user_wrote(gateway, 60)
    for _ in range(5):  # the pair rate's burst
        assert (await send(gateway, text_message()))[0] == 200
    clock.advance(1)
    await _deferred_for(gateway, fake_graph[0], 5)
    _, headers, payload = await send(gateway, text_message(body="Visit bit.ly/deal"))
    assert payload["error"]["code"] == 770401
    rules = {r["rule"] for r in payload["error"]["sendgate"]["reasons"]}
    assert "content.url_domain" in rules
    assert "Retry-After" not in headers


async def test_content_banned_term(gateway: TestClient, fake_graph: tuple[FakeGraph, str]) -> None:
    await _user_wrote(gateway, 60)
    await _expect_rejection(gateway, fake_graph[0], text_message(body="Buy FOLLOWERS cheap"), status=403,
                            code=770400, rule="content.banned_term")


@pytest.mark.parametrize(("text", "category", "term"), [
    ("Cheap FIREARMS delivered", "weapons", "firearms"),
    ("Vodka delivered to your door", "alcohol", "vodka"),
    ("Best online betting odds", "gambling", "online betting"),
])
async def test_content_prohibited_commerce(gateway: TestClient, fake_graph: tuple[FakeGraph, str], text: str,
                                           category: str, term: str) -> None:
    await _user_wrote(gateway, 60)
    payload = await _expect_rejection(gateway, fake_graph[0], text_message(body=text), status=403, code=770404,
                                      rule="content.prohibited_commerce")
    reason = payload["error"]["sendgate"]["reasons"][0]
    assert (reason["category"], reason["term"]) == (category, term)


def _order_update(order: str) -> dict[str, Any]:
    """The catalog's order_update template, its second body parameter (the order) as given."""
    message = template_message("order_update")
    message["template"]["components"][1]["parameters"][1]["text"] = order
    return message


async def test_content_prohibited_commerce_in_a_template(gateway: TestClient, fake_graph: tuple[FakeGraph, str]) -> None:
    await _opt_in(gateway)
    message = _order_update("cigarettes")
    await _expect_rejection(gateway, fake_graph[0], message, status=403, code=770404, rule="content.prohibited_commerce")


CARD = "4111 1111 1111 1111"  # Visa's published test number
IBAN = "DE89 3704 0044 0532 0130 00"  # the ISO 13616 example


async def _no_full_number_logged(client: TestClient, payload: dict[str, Any], *numbers: str) -> None:
    """Neither the answer, nor the decision record, nor the admin API's view of it holds the number."""
    decision_id = payload["error"]["fbtrace_id"]
    record = await _record(client, decision_id)
    status, shown = await admin(client, "GET", f"/decisions/{decision_id}")
    assert status == 200
    for number in numbers:
        for form in (number, number.replace(" ", ""), number.replace(" ", "-")):
            for where in (payload, record.as_json(), shown):
                assert form not in str(where), where


async def test_content_card_number(gateway: TestClient, fake_graph: tuple[FakeGraph, str]) -> None:
    await _user_wrote(gateway, 60)
    body = text_message(body=f"Your card {CARD} was charged $20")
    payload = await _expect_rejection(
        gateway, fake_graph[0], body, status=403, code=770405, rule="content.card_number",
        content=text_message(body="Your card **** **** **** 1111 was charged $20"))
    reason = payload["error"]["sendgate"]["reasons"][0]
    assert (reason["network"], reason["last4"], reason["masked"]) == ("visa", "1111", "**** **** **** 1111")
    await _no_full_number_logged(gateway, payload, CARD)


async def test_content_card_number_in_an_image_caption_and_a_template(gateway: TestClient,
                                                                      fake_graph: tuple[FakeGraph, str]) -> None:
    await _opt_in(gateway)
    await _user_wrote(gateway, 60)
    card = "5555-5555-5555-4444"
    image = {"messaging_product": "whatsapp", "to": US_RECIPIENT, "type": "image",
             "image": {"link": "https://cdn.acme.example/r.png", "caption": f"Receipt for {card}"}}
    masked_image = {**image, "image": {**image["image"], "caption": "Receipt for ****-****-****-4444"}}
    payload = await _expect_rejection(gateway, fake_graph[0], image, status=403, code=770405,
                                      rule="content.card_number", content=masked_image)
    await _no_full_number_logged(gateway, payload, card)
    payload = await _expect_rejection(gateway, fake_graph[0], _order_update(card), status=403, code=770405,
                                      rule="content.card_number", content=_order_update("****-****-****-4444"))
    await _no_full_number_logged(gateway, payload, card)


async def test_a_number_without_a_card_network_passes(gateway: TestClient) -> None:
    await _user_wrote(gateway, 60)
    status, _, payload = await send(gateway, text_message(body="Your order 1000000000009 has shipped"))
    assert status == 200, payload


async def test_content_iban(gateway: TestClient, fake_graph: tuple[FakeGraph, str]) -> None:
    await _user_wrote(gateway, 60)
    payload = await _expect_rejection(
        gateway, fake_graph[0], text_message(body=f"Pay to {IBAN} by Friday"), status=403, code=770406,
        rule="content.iban", content=text_message(body="Pay to **** **** **** **** **30 00 by Friday"))
    reason = payload["error"]["sendgate"]["reasons"][0]
    assert (reason["country"], reason["last4"]) == ("DE", "3000")
    await _no_full_number_logged(gateway, payload, IBAN)


async def test_card_number_masked_with_recipient_masking_too(gateway_factory: GatewayFactory,
                                                            fake_graph: tuple[FakeGraph, str]) -> None:
    client = await gateway_factory(log={"mask_recipients": True})
    await _user_wrote(client, 60)
    _, _, payload = await send(client, text_message(body=f"card {CARD} / {IBAN}"))
    assert payload["error"]["code"] in (770405, 770406)
    assert {r["rule"] for r in payload["error"]["sendgate"]["reasons"]} == {"content.card_number", "content.iban"}
    await _no_full_number_logged(client, payload, CARD, IBAN)


async def test_card_number_in_a_body_that_is_not_json_is_masked_in_the_log(gateway: TestClient) -> None:
    raw = f'{{"messaging_product": "whatsapp", "to": "{US_RECIPIENT}", "type": "text", "text": {{"body": "{CARD}"'.encode()
    status, headers, payload = await send(gateway, None, raw=raw)
    assert status == 400 and payload["error"]["code"] == 100
    record = await _record(gateway, headers["X-Sendgate-Decision-Id"])
    assert record.decision == "invalid"
    assert "**** **** **** 1111" in record.content and CARD not in str(record.as_json())


def _interactive(interactive: dict[str, Any]) -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "recipient_type": "individual", "to": US_RECIPIENT,
            "type": "interactive", "interactive": interactive}


def _reply_buttons(*titles: str, ids: tuple[str, ...] | None = None) -> dict[str, Any]:
    ids = ids or tuple(f"b{i}" for i in range(len(titles)))
    return _interactive({"type": "button", "body": {"text": "Pick one"}, "action": {
        "buttons": [{"type": "reply", "reply": {"id": i, "title": t}} for i, t in zip(ids, titles)]}})


def _list(rows_per_section: list[int], row_title: str = "Row") -> dict[str, Any]:
    sections = [{"title": f"S{i}", "rows": [{"id": f"r{i}-{j}", "title": row_title} for j in range(n)]}
                for i, n in enumerate(rows_per_section)]
    return _interactive({"type": "list", "body": {"text": "Pick"}, "action": {"button": "Options", "sections": sections}})


@pytest.mark.parametrize(("message", "rule", "detail"), [
    (_reply_buttons("Reschedule my appointment"), "payload.length", "reply button title"),
    (_reply_buttons("A", "B", "C", "D"), "payload.buttons", "4 buttons"),
    (_reply_buttons("Yes", "No", ids=("same", "same")), "payload.duplicate_button", "\"same\""),
    (_reply_buttons("Yes", ids=("x" * 257,)), "payload.length", "reply button id"),
    (_list([5, 6]), "payload.list", "11 rows"),
    (_list([1] * 10 + [0]), "payload.list", "11 sections"),
    (_list([2], row_title="r" * 25), "payload.length", "list row title"),
    (_interactive({"type": "cta_url", "body": {"text": "Tickets"}, "action": {"name": "cta_url", "parameters": {
        "display_text": "See all the tour dates", "url": "https://tickets.acme.example/tour"}}}),
     "payload.length", "cta_url display text"),
    (_interactive({"type": "button", "body": {"text": "b" * 1025}, "action": {
        "buttons": [{"type": "reply", "reply": {"id": "ok", "title": "OK"}}]}}), "payload.length", "body text"),
    ({"messaging_product": "whatsapp", "to": US_RECIPIENT, "type": "location",
      "location": {"latitude": 91.5, "longitude": -122.4}}, "payload.location", "latitude 91.5"),
    ({"messaging_product": "whatsapp", "to": US_RECIPIENT, "type": "location",
      "location": {"latitude": "37.7", "longitude": "-190"}}, "payload.location", "longitude -190"),
], ids=["button-title", "four-buttons", "duplicate-id", "button-id", "rows", "sections", "row-title", "cta-text",
        "body", "latitude", "longitude"])
async def test_payload_limits(gateway: TestClient, fake_graph: tuple[FakeGraph, str], message: dict[str, Any],
                              rule: str, detail: str) -> None:
    await _user_wrote(gateway, 60)
    payload = await _expect_rejection(gateway, fake_graph[0], message, status=400, code=131009, rule=rule)
    assert detail in payload["error"]["message"], payload


@pytest.mark.parametrize("name", ["Send Reply Button", "Send List Message", "Send Location Message",
                                  "Send Published Flow by ID", "Send Single Product Message"])
async def test_meta_interactive_and_location_examples_are_forwarded(gateway: TestClient,
                                                                    fake_graph: tuple[FakeGraph, str], name: str) -> None:
    await _user_wrote(gateway, 60)
    body = filled_examples()[("messages", name)]
    status, _, payload = await send(gateway, body)
    assert status == 200, payload
    assert fake_graph[0].received[-1].body == body


async def test_payload_limits_at_the_edge_are_forwarded(gateway: TestClient) -> None:
    await _user_wrote(gateway, 60)
    for message in (_reply_buttons("t" * 20, "u" * 20, "v" * 20), _list([4, 3, 3], row_title="r" * 24),
                    {"messaging_product": "whatsapp", "to": US_RECIPIENT, "type": "location",
                     "location": {"latitude": -90, "longitude": 180}}):
        status, _, payload = await send(gateway, message)
        assert status == 200, payload


@pytest.mark.parametrize("text", ["Deal at https://bit.ly/3xYz", "Deal at tinyurl.com/abc", "see www.BIT.ly/x"])
async def test_content_url_domain(gateway: TestClient, fake_graph: tuple[FakeGraph, str], text: str) -> None:
    await _user_wrote(gateway, 60)
    await _expect_rejection(gateway, fake_graph[0], text_message(body=text), status=403, code=770401,
                            rule="content.url_domain")


async def test_content_length(gateway: TestClient, fake_graph: tuple[FakeGraph, str]) -> None:
    await _user_wrote(gateway, 60)
    await _expect_rejection(gateway, fake_graph[0], text_message(body="a" * 4097), status=403, code=770402,
                            rule="content.length")
    caption = {"messaging_product": "whatsapp", "to": US_RECIPIENT, "type": "image",
               "image": {"link": "https://cdn.acme.example/a.png", "caption": "c" * 1025}}
    await _expect_rejection(gateway, fake_graph[0], caption, status=403, code=770402, rule="content.length")


async def test_content_encrypted(gateway: TestClient, fake_graph: tuple[FakeGraph, str]) -> None:
    body = {"messaging_product": "whatsapp", "encrypted_contents": "eyJhbGciOiJSU0EtT0FFUCJ9.x.y.z"}
    await _expect_rejection(gateway, fake_graph[0], body, status=403, code=770403, rule="content.encrypted",
                            endpoint="messages_encrypted")


async def test_quiet_hours_defers_marketing_until_morning(gateway: TestClient, fake_graph: tuple[FakeGraph, str],
                                                          clock: Clock) -> None:
    await _opt_in(gateway, CA_RECIPIENT)  # marketing to the US is paused (delivery.marketing_country)
    clock.advance(6 * 3600)  # 23:00 in Toronto
    payload = await _expect_rejection(gateway, fake_graph[0], template_message("spring_sale", to=CA_RECIPIENT),
                                      status=429, code=770500,
                                      rule="quiet_hours")
    assert payload["error"]["sendgate"]["retry_after"] == 9 * 3600  # until 08:00
    status, _, _ = await send(gateway, template_message("order_update", to=CA_RECIPIENT))  # utility is not held back
    assert status == 200


async def test_account_unknown(gateway_factory: GatewayFactory, fake_graph: tuple[FakeGraph, str]) -> None:
    client = await gateway_factory()
    await _expect_rejection(client, fake_graph[0], text_message(), status=403, code=770600, rule="account.unknown",
                            phone=OTHER_PHONE_NUMBER_ID)


async def test_unknown_accounts_allowed_by_config(gateway_factory: GatewayFactory) -> None:
    client = await gateway_factory(allow_unknown_accounts=True)
    await store_of(client).record_inbound(OTHER_PHONE_NUMBER_ID, US_RECIPIENT, AFTERNOON - 60)
    status, _, payload = await send(client, text_message(), phone_number_id=OTHER_PHONE_NUMBER_ID)
    assert status == 200, payload


async def test_account_market(gateway: TestClient, fake_graph: tuple[FakeGraph, str]) -> None:
    india = "919876543210"
    await _user_wrote(gateway, 60, recipient=india)
    await _expect_rejection(gateway, fake_graph[0], text_message(to=india), status=403, code=130497,
                            rule="account.market")
    await _user_wrote(gateway, 60, recipient=BR_RECIPIENT)
    assert (await send(gateway, text_message(to=BR_RECIPIENT)))[0] == 200


def _account(**settings: Any) -> list[dict[str, Any]]:
    return [{"phone_number_id": PHONE_NUMBER_ID, "waba_id": WABA_ID, "name": "Acme", "markets": ["US", "BR", "CA"], **settings}]


async def test_throughput_exceeded(gateway_factory: GatewayFactory, fake_graph: tuple[FakeGraph, str],
                                   clock: Clock) -> None:
    client = await gateway_factory(accounts=_account(throughput_mps=1))
    await _user_wrote(client, 60)
    await _user_wrote(client, 60, recipient=BR_RECIPIENT)
    assert (await send(client, text_message()))[0] == 200
    clock.advance(0.4)
    payload = await _expect_rejection(client, fake_graph[0], text_message(to=BR_RECIPIENT), status=429, code=130429,
                                      rule="throughput.exceeded")
    reason = payload["error"]["sendgate"]["reasons"][0]
    assert (reason["limit"], reason["count"], reason["retry_after_ms"]) == (1, 1, 600)
    assert payload["error"]["sendgate"]["retry_after"] == 1
    clock.advance(0.6)
    assert (await send(client, text_message(to=BR_RECIPIENT)))[0] == 200


async def test_messaging_limit_reached(gateway_factory: GatewayFactory, fake_graph: tuple[FakeGraph, str]) -> None:
    client = await gateway_factory(accounts=_account(messaging_limit=1, portfolio="acme"))
    await _opt_in(client)
    await _opt_in(client, BR_RECIPIENT)
    assert (await send(client, template_message()))[0] == 200
    payload = await _expect_rejection(client, fake_graph[0], template_message(to=BR_RECIPIENT), status=403,
                                      code=770700, rule="messaging_limit.reached")
    reason = payload["error"]["sendgate"]["reasons"][0]
    assert (reason["portfolio"], reason["limit"], reason["count"]) == ("acme", 1, 1)
    await _user_wrote(client, 60, recipient=BR_RECIPIENT)  # inside a window: not counted
    assert (await send(client, template_message(to=BR_RECIPIENT)))[0] == 200


async def test_pacing_same_content(gateway_factory: GatewayFactory, fake_graph: tuple[FakeGraph, str]) -> None:
    # The default threshold (params.pacing): 100 distinct recipients of one marketing content a minute.
    client = await gateway_factory(accounts=_account(throughput_mps=1000))
    numbers = [f"1604555{n:04d}" for n in range(101)]
    for number in numbers:
        await _opt_in(client, number)
    statuses = await asyncio.gather(*(send(client, template_message("spring_sale", to=n)) for n in numbers[:100]))
    assert [s[0] for s in statuses] == [200] * 100
    payload = await _expect_rejection(client, fake_graph[0], template_message("spring_sale", to=numbers[100]),
                                      status=429, code=770701, rule="pacing.same_content")
    assert payload["error"]["sendgate"]["retry_after"] == 60


async def test_payload_limits_hold_for_a_direct_send_interactive_message(gateway_factory: GatewayFactory,
                                                                         fake_graph: tuple[FakeGraph, str]) -> None:
    # Direct Send (a top-level category) skips the window, not Meta's interactive limits
    client = await gateway_factory(accounts=[{"phone_number_id": PHONE_NUMBER_ID, "waba_id": WABA_ID,
                                              "name": "Acme", "markets": ["US", "BR"], "direct_send": True}])
    await _opt_in(client)
    message = {**_reply_buttons("Reschedule my appointment"), "category": "utility"}
    await _expect_rejection(client, fake_graph[0], message, status=400, code=131009, rule="payload.length")
    status, _, payload = await send(client, {**_reply_buttons("Reschedule"), "category": "utility"})
    assert status == 200, payload

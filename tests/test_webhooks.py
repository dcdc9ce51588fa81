"""Meta's webhooks through the gateway: verification, signatures, the relay to the app, and what
each kind of event changes in the state the policies see. End to end: the real server, signed
payloads, the fake Graph API, and a tiny app webhook receiver."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestServer

from .conftest import (
    ADMIN_TOKEN,
    BR_RECIPIENT,
    CA_RECIPIENT,
    PHONE_NUMBER_ID,
    US_RECIPIENT,
    WABA_ID,
    Clock,
    GatewayFactory,
    admin,
    send,
    store_of,
    template_message,
    text_message,
)
from .webhook_support import (
    EXAMPLES,
    VERIFY_TOKEN,
    WEBHOOK_PATH,
    account_update,
    button_tap,
    inbound_text,
    phone_quality,
    post_webhook,
    sign,
    start_receiver,
    status_update,
    template_category,
    template_quality,
    template_status,
    user_preference,
    webhook_config,
)

ServerFactory = Callable[..., Awaitable[TestServer]]


async def consent(client: Any, recipient: str = US_RECIPIENT) -> dict[str, Any]:
    status, body = await admin(client, "GET", f"/consent/{recipient}")
    assert status == 200, body
    return body


async def opt_in(client: Any, at: float, categories: list[str] | None = None, recipient: str = US_RECIPIENT) -> None:
    body = {"status": "opted_in", "categories": categories or ["marketing", "utility"], "source": "web-form",
            "recorded_at": at}  # fmt: skip
    status, answer = await admin(client, "PUT", f"/consent/{recipient}", body)
    assert status == 200, answer


async def allowed_send(client: Any, body: dict[str, Any]) -> str:
    """Send; assert Meta accepted it; the wamid."""
    status, _, answer = await send(client, body)
    assert status == 200, answer
    return answer["messages"][0]["id"]


# -- the relay ----------------------------------------------------------------------------------


async def test_verification_answers_with_the_configured_token(gateway_factory: GatewayFactory) -> None:
    client = await gateway_factory(webhooks=webhook_config())
    ok = await client.get(WEBHOOK_PATH, params={"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN,
                                                "hub.challenge": "1158201444"})  # fmt: skip
    assert ok.status == 200 and await ok.text() == "1158201444"
    wrong = await client.get(WEBHOOK_PATH, params={"hub.mode": "subscribe", "hub.verify_token": "guess",
                                                   "hub.challenge": "1"})  # fmt: skip
    assert wrong.status == 403 and await wrong.text() != "1"
    not_subscribe = await client.get(WEBHOOK_PATH, params={"hub.mode": "unsubscribe",
                                                           "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"})  # fmt: skip
    assert not_subscribe.status == 403


async def test_without_app_secret_the_endpoint_is_off(gateway_factory: GatewayFactory, clock: Clock) -> None:
    client = await gateway_factory()  # no webhooks key
    response = await client.get(WEBHOOK_PATH, params={"hub.mode": "subscribe", "hub.verify_token": "x", "hub.challenge": "1"})
    assert response.status == 404
    status, _ = await post_webhook(client, inbound_text("hi", clock.now))
    assert status == 404
    assert (await store_of(client).recipient_facts(PHONE_NUMBER_ID, None, US_RECIPIENT, clock.now)).last_inbound_at is None


async def test_bad_or_missing_signature_is_refused_and_changes_nothing(
    gateway_factory: GatewayFactory, aiohttp_server: ServerFactory, clock: Clock
) -> None:
    app = await start_receiver(aiohttp_server)
    client = await gateway_factory(webhooks=webhook_config(app.url))
    payload = inbound_text("hello", clock.now - 60)
    assert (await post_webhook(client, payload, signed=False))[0] == 401
    assert (await post_webhook(client, payload, secret="someone-elses-secret"))[0] == 401
    assert (await post_webhook(client, payload, signature="sha256=" + "0" * 64))[0] == 401
    body = orjson.dumps(payload)
    tampered = body.replace(b"hello", b"STOP!")
    assert (await post_webhook(client, None, raw=tampered, signature=sign(body)))[0] == 401
    assert app.received == []  # nothing relayed
    assert (await store_of(client).recipient_facts(PHONE_NUMBER_ID, None, US_RECIPIENT, 0.0)).last_inbound_at is None
    status, _, answer = await send(client, text_message())
    assert status == 400 and answer["error"]["code"] == 131047  # the window is still closed


@pytest.mark.parametrize("name", sorted(EXAMPLES))
async def test_every_meta_example_is_accepted_and_relayed_untouched(
    name: str, gateway_factory: GatewayFactory, aiohttp_server: ServerFactory
) -> None:
    app = await start_receiver(aiohttp_server)
    client = await gateway_factory(webhooks=webhook_config(app.url))
    raw = json.dumps(EXAMPLES[name], indent=1, ensure_ascii=True).encode()  # bytes the app must see unchanged
    status, text = await post_webhook(client, None, raw=raw)
    assert status == 200, text
    assert len(app.received) == 1
    body, headers = app.received[0]
    assert body == raw
    assert headers["X-Hub-Signature-256"] == sign(raw)
    assert headers["Content-Type"] == "application/json"
    metrics = await (await client.get("/metrics")).text()
    assert "sendgate_webhook_requests_total{result=\"ok\"} 1.0" in metrics


async def test_meta_examples_update_the_window(gateway_factory: GatewayFactory) -> None:
    client = await gateway_factory(webhooks=webhook_config())
    store = store_of(client)
    for name in ("Text Message", "Reaction Message", "Image Message", "Location Message", "Contact Sharing Message",
                 "Unsupported Message", "Interactive List Reply Message", "Order Message", "System Message"):  # fmt: skip
        assert (await post_webhook(client, EXAMPLES[name]))[0] == 200
    # The newest of them (the system message, 1750269342) is the window's last inbound time.
    assert (await store.recipient_facts(PHONE_NUMBER_ID, None, US_RECIPIENT, 0.0)).last_inbound_at == 1750269342
    # A group lifecycle event changes no recipient state but is accepted.
    assert (await post_webhook(client, EXAMPLES["Group Create Message"]))[0] == 200
    metrics = await (await client.get("/metrics")).text()
    assert 'sendgate_webhook_events_total{kind="message"} 9.0' in metrics
    assert 'sendgate_webhook_events_total{kind="group_lifecycle_update"} 1.0' in metrics


async def test_app_down_answers_meta_with_an_error_and_the_retry_is_harmless(
    gateway_factory: GatewayFactory, aiohttp_server: ServerFactory, clock: Clock
) -> None:
    app = await start_receiver(aiohttp_server)
    healthy = await start_receiver(aiohttp_server)
    client = await gateway_factory(webhooks=webhook_config(healthy.url, app.url))
    await opt_in(client, clock.now - 3600)
    app.status = 500
    payload = inbound_text("STOP", clock.now - 60)
    status, text = await post_webhook(client, payload)
    assert status == 502 and app.url in text  # Meta will retry
    # The state was updated all the same...
    history = (await consent(client))["history"]
    assert [r["status"] for r in history] == ["opted_in", "opted_out"]
    # ...and Meta's retry, once the app is back, changes nothing twice.
    app.status = 200
    assert (await post_webhook(client, payload))[0] == 200
    assert [r["status"] for r in (await consent(client))["history"]] == ["opted_in", "opted_out"]
    assert len(app.received) == 2 and len(healthy.received) == 2  # both attempts relayed to both
    metrics = await (await client.get("/metrics")).text()
    assert 'sendgate_webhook_requests_total{result="forward_failed"} 1.0' in metrics


async def test_app_unreachable_is_an_error_too(gateway_factory: GatewayFactory, clock: Clock) -> None:
    client = await gateway_factory(webhooks=webhook_config("http://127.0.0.1:9/hook", forward_timeout=2))
    status, _ = await post_webhook(client, inbound_text("hi", clock.now - 60))
    assert status == 502
    assert (await store_of(client).recipient_facts(PHONE_NUMBER_ID, None, US_RECIPIENT, clock.now)).last_inbound_at == int(clock.now - 60)


async def test_without_forward_to_state_is_updated_and_meta_gets_200(gateway_factory: GatewayFactory, clock: Clock) -> None:
    client = await gateway_factory(webhooks=webhook_config())
    status, _ = await post_webhook(client, inbound_text("hi", clock.now - 60))
    assert status == 200


async def test_a_state_failure_answers_503_so_meta_retries(
    gateway_factory: GatewayFactory, aiohttp_server: ServerFactory, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = await start_receiver(aiohttp_server)
    client = await gateway_factory(webhooks=webhook_config(app.url))
    store = store_of(client)

    async def broken(*args: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(store, "record_inbound", broken)
    status, _ = await post_webhook(client, inbound_text("hi", clock.now - 60))
    assert status == 503
    assert len(app.received) == 1  # the app still gets it; Meta's retry brings it again


# -- inbound messages: the window, the free entry point ------------------------------------------


async def test_inbound_message_opens_the_window_for_free_form_sends(gateway_factory: GatewayFactory, clock: Clock) -> None:
    client = await gateway_factory(webhooks=webhook_config())
    status, _, answer = await send(client, text_message())
    assert status == 400 and answer["error"]["code"] == 131047
    assert (await post_webhook(client, inbound_text("Is my order ready?", clock.now - 300)))[0] == 200
    await allowed_send(client, text_message())
    # A redelivered older message never moves the window back.
    assert (await post_webhook(client, inbound_text("earlier", clock.now - 90000)))[0] == 200
    assert (await store_of(client).recipient_facts(PHONE_NUMBER_ID, None, US_RECIPIENT, clock.now)).last_inbound_at == int(clock.now - 300)


async def test_click_to_whatsapp_referral_marks_the_free_entry_point(gateway_factory: GatewayFactory, clock: Clock) -> None:
    client = await gateway_factory(webhooks=webhook_config(), log={"keep_allowed_content": True})
    payload = json.loads(json.dumps(EXAMPLES["Text Message from Click to WhatsApp Ad"]))
    message = payload["entry"][0]["changes"][0]["value"]["messages"][0]
    message["timestamp"] = str(int(clock.now - 600))
    assert (await post_webhook(client, payload))[0] == 200
    store = store_of(client)
    facts = await store.recipient_facts(PHONE_NUMBER_ID, None, US_RECIPIENT, clock.now)
    assert facts.free_entry_point_at == int(clock.now - 600)
    # The policy input carries it (kept in the decision record's facts here).
    _, headers, _ = await send(client, text_message())
    record = await store.decision(headers["X-Sendgate-Decision-Id"])
    assert record is not None and record.facts is not None
    assert record.facts["recipient"]["free_entry_point_at"] == int(clock.now - 600)
    # A plain message is no entry point.
    assert (await post_webhook(client, inbound_text("hi", clock.now - 60, sender="5511987654321")))[0] == 200
    assert (await store.recipient_facts(PHONE_NUMBER_ID, None, "5511987654321", clock.now)).free_entry_point_at is None


async def test_bsuid_sender_without_wa_id_is_keyed_by_user_id(gateway_factory: GatewayFactory, clock: Clock) -> None:
    client = await gateway_factory(webhooks=webhook_config())
    payload = inbound_text("hi", clock.now - 60)
    value = payload["entry"][0]["changes"][0]["value"]
    value["contacts"] = [{"profile": {"name": "Ana"}, "user_id": "US.13491208655302741918"}]
    del value["messages"][0]["from"]
    value["messages"][0]["from_user_id"] = "US.13491208655302741918"
    assert (await post_webhook(client, payload))[0] == 200
    assert (await store_of(client).recipient_facts(PHONE_NUMBER_ID, None, "US.13491208655302741918", clock.now)).last_inbound_at == int(clock.now - 60)


# -- opt-out and opt-in ------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["STOP", "stop!", "  Stop. ", "Unsubscribe", "PARAR", "Désabonner", "baja", "STOPP"])
async def test_optout_keyword_records_an_optout_with_the_message_as_evidence(
    text: str, gateway_factory: GatewayFactory, clock: Clock
) -> None:
    client = await gateway_factory(webhooks=webhook_config())
    await opt_in(client, clock.now - 3600)
    await allowed_send(client, template_message())
    message_id = "wamid.OPTOUT0001"
    assert (await post_webhook(client, inbound_text(text, clock.now - 30, message_id=message_id)))[0] == 200
    current = (await consent(client))["current"]
    assert current["status"] == "opted_out" and current["source"] == "whatsapp:keyword"
    assert current["categories"] == []  # everything
    evidence = json.loads(current["evidence"])
    assert evidence["message_id"] == message_id and evidence["text"] == text
    assert current["recorded_at"] == int(clock.now - 30)
    clock.advance(60)
    status, _, answer = await send(client, template_message())
    assert status == 403 and answer["error"]["sendgate"]["reasons"][0]["rule"] == "consent.opted_out"


@pytest.mark.parametrize("text", ["please stop by the store tomorrow", "stopwatch", "don't stop"])
async def test_text_that_only_contains_a_keyword_is_no_optout(
    text: str, gateway_factory: GatewayFactory, clock: Clock
) -> None:
    client = await gateway_factory(webhooks=webhook_config())
    await opt_in(client, clock.now - 3600)
    assert (await post_webhook(client, inbound_text(text, clock.now - 30)))[0] == 200
    assert (await consent(client))["current"]["status"] == "opted_in"


async def test_redelivered_optout_appends_once(gateway_factory: GatewayFactory, clock: Clock) -> None:
    client = await gateway_factory(webhooks=webhook_config())
    await opt_in(client, clock.now - 3600)
    payload = inbound_text("STOP", clock.now - 30)
    for _ in range(3):
        assert (await post_webhook(client, payload))[0] == 200
    assert [r["status"] for r in (await consent(client))["history"]] == ["opted_in", "opted_out"]


async def test_quick_reply_optout_payload_from_meta_example(gateway_factory: GatewayFactory, clock: Clock) -> None:
    client = await gateway_factory(webhooks=webhook_config())
    await opt_in(client, 1750000000)  # before the example's tap (1750091045)
    assert (await post_webhook(client, EXAMPLES["Button Message"]))[0] == 200
    current = (await consent(client))["current"]
    assert current["status"] == "opted_out" and current["source"] == "whatsapp:button"
    assert current["categories"] == ["marketing"]
    assert json.loads(current["evidence"])["button_payload"] == "Unsubscribe"
    # A tap on some other quick reply is not an opt-out.
    await opt_in(client, clock.now - 3600, recipient=BR_RECIPIENT)
    assert (await post_webhook(client, button_tap("Track my order", clock.now - 10, sender=BR_RECIPIENT)))[0] == 200
    assert (await consent(client, BR_RECIPIENT))["current"]["status"] == "opted_in"


async def test_optin_keyword_does_not_resubscribe_by_default(gateway_factory: GatewayFactory, clock: Clock) -> None:
    client = await gateway_factory(webhooks=webhook_config())
    await opt_in(client, clock.now - 3600)
    assert (await post_webhook(client, inbound_text("STOP", clock.now - 120)))[0] == 200
    assert (await post_webhook(client, inbound_text("START", clock.now - 60)))[0] == 200
    assert (await consent(client))["current"]["status"] == "opted_out"


async def test_user_preferences_stop_and_resume(gateway_factory: GatewayFactory, clock: Clock) -> None:
    client = await gateway_factory(webhooks=webhook_config())
    await opt_in(client, clock.now - 3600, ["utility", "marketing"], CA_RECIPIENT)  # US marketing: paused
    assert (await post_webhook(client, user_preference("stop", clock.now - 120, recipient=CA_RECIPIENT)))[0] == 200
    current = (await consent(client, CA_RECIPIENT))["current"]
    assert (current["status"], current["categories"], current["source"]) == (
        "opted_out", ["marketing"], "whatsapp:user_preferences")
    status, _, answer = await send(client, template_message("spring_sale", to=CA_RECIPIENT))
    assert status == 400 and answer["error"]["code"] == 131050  # Meta's own code for it
    assert (await post_webhook(client, user_preference("resume", clock.now - 60, recipient=CA_RECIPIENT)))[0] == 200
    current = (await consent(client, CA_RECIPIENT))["current"]
    assert current["status"] == "opted_in" and sorted(current["categories"]) == ["marketing", "utility"]
    await allowed_send(client, template_message("spring_sale", to=CA_RECIPIENT))


async def test_out_of_order_preferences_the_late_stop_wins(gateway_factory: GatewayFactory, clock: Clock) -> None:
    client = await gateway_factory(webhooks=webhook_config())
    await opt_in(client, clock.now - 3600, ["marketing"])
    # The user stopped, then resumed; Meta delivers the resume first (the state holds it already).
    assert (await post_webhook(client, user_preference("resume", clock.now - 60)))[0] == 200
    # The late stop is never dropped for ordering: the safe side wins until consent is confirmed again.
    assert (await post_webhook(client, user_preference("stop", clock.now - 120)))[0] == 200
    assert (await consent(client))["current"]["status"] == "opted_out"
    assert (await post_webhook(client, user_preference("resume", clock.now - 30)))[0] == 200
    assert (await consent(client))["current"]["status"] == "opted_in"


# -- statuses --------------------------------------------------------------------------------------


async def test_statuses_complete_the_decision_record(gateway_factory: GatewayFactory, clock: Clock) -> None:
    client = await gateway_factory(webhooks=webhook_config())
    await opt_in(client, clock.now - 3600)
    sent_id = await allowed_send(client, template_message())
    store = store_of(client)
    await store.flush()
    # read arrives before delivered: the record ends at read.
    for state, offset in (("sent", 1), ("read", 3), ("delivered", 2)):
        assert (await post_webhook(client, status_update(sent_id, state, clock.now + offset)))[0] == 200
    _, page = await admin(client, "GET", "/decisions?decision=allow")
    record = next(r for r in page["data"] if r["upstream_message_id"] == sent_id)
    assert (record["delivery_status"], record["delivery_at"]) == ("read", int(clock.now + 3))

    clock.advance(10)
    failed_id = await allowed_send(client, template_message())
    await store.flush()
    payload = status_update(failed_id, "failed", clock.now + 1, error=131026, title="Message Undeliverable.")
    assert (await post_webhook(client, payload))[0] == 200
    _, page = await admin(client, "GET", "/decisions?decision=allow")
    record = next(r for r in page["data"] if r["upstream_message_id"] == failed_id)
    assert record["delivery_status"] == "failed" and record["delivery_error"].startswith("131026")


async def test_failed_131047_closes_the_window_until_the_user_writes_again(
    gateway_factory: GatewayFactory, clock: Clock
) -> None:
    client = await gateway_factory(webhooks=webhook_config())
    assert (await post_webhook(client, inbound_text("hi", clock.now - 600)))[0] == 200
    message_id = await allowed_send(client, text_message())
    payload = status_update(message_id, "failed", clock.now + 1, error=131047, title="Re-engagement message")
    assert (await post_webhook(client, payload))[0] == 200
    clock.advance(10)
    status, _, answer = await send(client, text_message())
    assert status == 400 and answer["error"]["code"] == 131047
    assert (await post_webhook(client, inbound_text("still there?", clock.now - 1)))[0] == 200
    await allowed_send(client, text_message())


async def test_failed_131049_and_131026_are_recorded_against_the_recipient(
    gateway_factory: GatewayFactory, clock: Clock
) -> None:
    client = await gateway_factory(webhooks=webhook_config(), log={"keep_allowed_content": True})
    await opt_in(client, clock.now - 3600)
    store = store_of(client)
    first = await allowed_send(client, template_message())
    clock.advance(10)
    second = await allowed_send(client, template_message())
    for message_id, code, at in ((first, 131049, clock.now - 5), (second, 131026, clock.now - 2)):
        payload = status_update(message_id, "failed", at, error=code)
        assert (await post_webhook(client, payload))[0] == 200
        assert (await post_webhook(client, payload))[0] == 200  # a duplicate
    facts = await store.recipient_facts(PHONE_NUMBER_ID, None, US_RECIPIENT, clock.now)
    assert facts.delivery_failures == [{"code": 131026, "at": int(clock.now - 2)},
                                            {"code": 131049, "at": int(clock.now - 5)}]  # fmt: skip
    clock.advance(10)
    _, headers, _ = await send(client, template_message())
    record = await store.decision(headers["X-Sendgate-Decision-Id"])
    assert record is not None and record.facts is not None
    assert [f["code"] for f in record.facts["recipient"]["delivery_failures"]] == [131026, 131049]
    # Older than 30 days: gone from the input.
    later = await store.recipient_facts(PHONE_NUMBER_ID, None, US_RECIPIENT, clock.now + 31 * 86400)
    assert later.delivery_failures == []


async def test_failed_131050_records_a_marketing_optout(gateway_factory: GatewayFactory, clock: Clock) -> None:
    client = await gateway_factory(webhooks=webhook_config())
    await opt_in(client, clock.now - 3600)
    message_id = await allowed_send(client, template_message())
    payload = status_update(message_id, "failed", clock.now + 1, error=131050, title="User stopped marketing")
    assert (await post_webhook(client, payload))[0] == 200
    assert (await post_webhook(client, payload))[0] == 200  # redelivered
    history = (await consent(client))["history"]
    assert [r["status"] for r in history] == ["opted_in", "opted_out"]
    assert history[-1]["source"] == "whatsapp:status_131050" and history[-1]["categories"] == ["marketing"]
    assert json.loads(history[-1]["evidence"])["message_id"] == message_id


# -- templates -----------------------------------------------------------------------------------------


async def test_template_status_webhook_pauses_and_reinstates(gateway_factory: GatewayFactory, clock: Clock) -> None:
    client = await gateway_factory(webhooks=webhook_config())
    await opt_in(client, clock.now - 3600)
    assert (await post_webhook(client, template_status("PAUSED", clock.now - 100)))[0] == 200
    status, _, answer = await send(client, template_message())
    assert status == 400 and answer["error"]["code"] == 132015
    # An older event delivered late does not undo the newer one.
    assert (await post_webhook(client, template_status("APPROVED", clock.now - 200)))[0] == 200
    assert (await send(client, template_message()))[0] == 400
    assert (await post_webhook(client, template_status("REINSTATED", clock.now - 50)))[0] == 200
    await allowed_send(client, template_message())
    catalog = await store_of(client).templates(WABA_ID)
    assert catalog is not None
    assert next(t for t in catalog["data"] if t["id"] == "11")["status"] == "APPROVED"


async def test_template_quality_and_category_webhooks(gateway_factory: GatewayFactory, clock: Clock) -> None:
    client = await gateway_factory(webhooks=webhook_config())
    await opt_in(client, clock.now - 3600, ["utility"])
    assert (await post_webhook(client, template_quality("RED", clock.now - 100)))[0] == 200
    assert (await post_webhook(client, template_category("MARKETING", clock.now - 90)))[0] == 200
    status, catalog = await admin(client, "GET", f"/templates/{WABA_ID}")
    entry = next(t for t in catalog["data"] if t["id"] == "11")
    assert entry["quality_score"]["score"] == "RED"
    assert (entry["category"], entry["previous_category"]) == ("MARKETING", "UTILITY")
    # Now a marketing template: this recipient only opted in to utility.
    status, _, answer = await send(client, template_message())
    assert status == 403 and answer["error"]["sendgate"]["reasons"][0]["rule"] == "consent.category"


async def test_status_update_for_a_template_not_in_the_catalog_is_accepted(
    gateway_factory: GatewayFactory, clock: Clock
) -> None:
    client = await gateway_factory(webhooks=webhook_config())
    payload = template_status("APPROVED", clock.now, name="brand_new", template_id=999)
    assert (await post_webhook(client, payload))[0] == 200
    catalog = await store_of(client).templates(WABA_ID)
    assert catalog is not None and all(t["name"] != "brand_new" for t in catalog["data"])


# -- account state -----------------------------------------------------------------------------------------


async def account_state(client: Any) -> dict[str, Any]:
    status, body = await admin(client, "GET", f"/accounts/{PHONE_NUMBER_ID}")
    assert status == 200, body
    return body["state"]


async def test_phone_number_quality_update_sets_account_state(gateway_factory: GatewayFactory, clock: Clock) -> None:
    client = await gateway_factory(webhooks=webhook_config())
    # A message webhook first: it tells which phone number id the display number is.
    assert (await post_webhook(client, inbound_text("hi", clock.now - 600)))[0] == 200
    assert (await post_webhook(client, phone_quality("FLAGGED", clock.now - 60)))[0] == 200
    state = await account_state(client)
    assert (state["quality"], state["status"], state["messaging_limit"]) == ("RED", "FLAGGED", "TIER_10K")
    # An older UNFLAGGED arriving late changes nothing; a newer one clears the flag.
    assert (await post_webhook(client, phone_quality("UNFLAGGED", clock.now - 120)))[0] == 200
    assert (await account_state(client))["status"] == "FLAGGED"
    assert (await post_webhook(client, phone_quality("UNFLAGGED", clock.now - 30)))[0] == 200
    state = await account_state(client)
    assert (state["quality"], state["status"]) == (None, None)


async def test_quality_update_for_an_unseen_number_applies_to_the_wabas_numbers(
    gateway_factory: GatewayFactory, clock: Clock
) -> None:
    client = await gateway_factory(webhooks=webhook_config())
    assert (await post_webhook(client, phone_quality("FLAGGED", clock.now - 60, display="15550009999")))[0] == 200
    assert (await account_state(client))["status"] == "FLAGGED"


async def test_account_update_sets_the_waba_status(gateway_factory: GatewayFactory, clock: Clock) -> None:
    client = await gateway_factory(webhooks=webhook_config(), log={"keep_allowed_content": True})
    payload = account_update("DISABLED_UPDATE", clock.now - 60, ban_info={"waba_ban_state": ["DISABLE"],
                                                                          "waba_ban_date": "2026-11-24"})  # fmt: skip
    assert (await post_webhook(client, payload))[0] == 200
    assert (await account_state(client))["status"] == "DISABLED"
    reinstated = account_update("DISABLED_UPDATE", clock.now - 30, ban_info={"waba_ban_state": ["REINSTATE"]})
    assert (await post_webhook(client, reinstated))[0] == 200
    assert (await account_state(client))["status"] is None
    # Not about status: verification events leave it alone.
    assert (await post_webhook(client, account_update("VERIFIED_ACCOUNT", clock.now - 10)))[0] == 200
    assert (await account_state(client))["status"] is None


async def test_admin_account_view_needs_the_token(gateway_factory: GatewayFactory) -> None:
    client = await gateway_factory(webhooks=webhook_config())
    assert (await admin(client, "GET", f"/accounts/{PHONE_NUMBER_ID}", token="wrong"))[0] == 401
    assert (await admin(client, "GET", f"/accounts/{PHONE_NUMBER_ID}", token=ADMIN_TOKEN))[0] == 200


async def test_large_payload_is_relayed_whole_and_oversized_refused(
    gateway_factory: GatewayFactory, aiohttp_server: ServerFactory, clock: Clock
) -> None:
    app = await start_receiver(aiohttp_server)
    client = await gateway_factory(webhooks=webhook_config(app.url, max_body_bytes=4 * 1024 * 1024))
    payload = inbound_text("x" * (2 * 1024 * 1024), clock.now - 60)  # read in many chunks
    raw = orjson.dumps(payload)
    assert (await post_webhook(client, None, raw=raw))[0] == 200
    assert app.received[0][0] == raw
    too_big = orjson.dumps(inbound_text("x" * (5 * 1024 * 1024), clock.now - 30))
    assert (await post_webhook(client, None, raw=too_big))[0] == 413
    assert len(app.received) == 1


async def test_a_failed_marketing_send_no_longer_counts_toward_the_cap(gateway_factory: GatewayFactory, clock: Clock) -> None:
    client = await gateway_factory(webhooks=webhook_config())
    await opt_in(client, clock.now - 3600, recipient=CA_RECIPIENT)  # US marketing: paused
    message_id = await allowed_send(client, template_message("spring_sale", to=CA_RECIPIENT))
    clock.advance(60)
    status, _, answer = await send(client, template_message("spring_sale", to=CA_RECIPIENT))
    assert status == 400 and answer["error"]["code"] == 131049  # frequency.marketing: 1 a day
    payload = status_update(message_id, "failed", clock.now - 30, error=131026, recipient=CA_RECIPIENT)
    assert (await post_webhook(client, payload))[0] == 200
    await allowed_send(client, template_message("spring_sale", to=CA_RECIPIENT))

"""Webhook event times against the state: whole seconds, the opt-out's side on every tie or doubt,
and no bogus time (future, NaN, text, negative, before WhatsApp) shadowing later events.

Store and applier units first, then the real gateway: signed webhooks, then sends."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from sendgate.config import load_config
from sendgate.state import ConsentRecord, Store
from sendgate.webhooks.apply import WebhookApplier
from sendgate.webhooks.events import MAX_FUTURE_SECONDS, parse_webhook

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
from .webhook_support import (
    inbound_text,
    phone_quality,
    post_webhook,
    status_update,
    template_status,
    user_preference,
    webhook_config,
)

NOW = 1795557600.0
YEAR_2100 = 4102444800  # 2100-01-01 UTC
UNUSABLE = ["NaN", "abc", "-5", "0", "inf", "1e400", "", "1230000000"]  # the last: 2008, before WhatsApp


def _value(payload: dict[str, Any]) -> dict[str, Any]:
    return payload["entry"][0]["changes"][0]["value"]


def with_time(payload: dict[str, Any], timestamp: Any) -> dict[str, Any]:
    """`payload` (one message, status or user preference) with its own timestamp replaced."""
    value = _value(payload)
    for key in ("messages", "statuses", "user_preferences"):
        if key in value:
            value[key][0]["timestamp"] = timestamp
    return payload


def record(status: str, at: float, categories: tuple[str, ...] = ("marketing",), source: str = "test") -> ConsentRecord:
    return ConsentRecord(US_RECIPIENT, status, categories, source, "{}", at)


async def consent(client: Any, recipient: str = US_RECIPIENT) -> dict[str, Any]:
    status, body = await admin(client, "GET", f"/consent/{recipient}")
    assert status == 200, body
    return body


async def opt_in(client: Any, at: float, categories: list[str] | None = None, recipient: str = US_RECIPIENT) -> None:
    body = {"status": "opted_in", "categories": categories or ["marketing", "utility"], "source": "web-form",
            "recorded_at": at}  # fmt: skip
    status, answer = await admin(client, "PUT", f"/consent/{recipient}", body)
    assert status == 200, answer


async def assert_marketing_denied(client: Any, to: str = US_RECIPIENT) -> None:
    status, _, answer = await send(client, template_message("spring_sale", to=to))
    assert status == 400 and answer["error"]["code"] == 131050, answer


# -- parsing: clamped and unusable times -----------------------------------------------------------


def test_a_future_time_is_clamped_to_the_received_time() -> None:
    parsed = parse_webhook(inbound_text("hi", YEAR_2100), NOW)
    (message,) = parsed.messages
    assert (message.timestamp, message.unusable_time) == (NOW, None)
    assert any("clamped" in p for p in parsed.problems)
    # Within the allowance (clocks differ a little): kept as Meta gave it.
    near = parse_webhook(inbound_text("hi", NOW + MAX_FUTURE_SECONDS), NOW).messages[0]
    assert near.timestamp == NOW + MAX_FUTURE_SECONDS


@pytest.mark.parametrize("timestamp", [*UNUSABLE, True, [1795557600], {"t": 1}])
def test_an_unusable_time_is_reported_with_the_received_time(timestamp: Any) -> None:
    (message,) = parse_webhook(with_time(inbound_text("hi", NOW), timestamp), NOW).messages
    assert message.unusable_time is not None and message.timestamp == NOW
    (preference,) = parse_webhook(with_time(user_preference("stop", NOW), timestamp), NOW).preferences
    assert preference.unusable_time is not None
    (status,) = parse_webhook(with_time(status_update("wamid.X", "read", NOW), timestamp), NOW).statuses
    assert status.unusable_time is not None


def test_an_unusable_entry_time_is_unusable_for_events_without_their_own() -> None:
    payload = template_status("PAUSED", NOW)
    payload["entry"][0]["time"] = "NaN"
    (event,) = parse_webhook(payload, NOW).templates
    assert event.unusable_time is not None and "entry.time" in event.unusable_time
    # An event with its own good time does not care.
    message = inbound_text("hi", NOW - 10)
    message["entry"][0]["time"] = "NaN"
    assert parse_webhook(message, NOW).messages[0].unusable_time is None


# -- the store: whole seconds, opt-outs first, what is marked seen ---------------------------------


async def test_optout_in_the_same_second_as_a_fractional_optin_goes_in(store: Store) -> None:
    await store.record_consent(record("opted_in", NOW + 0.4, source="web"))  # the app's time.time()
    stop = record("opted_out", NOW, (), "whatsapp:keyword")  # Meta's whole second
    assert await store.apply_consent_event("message:stop", stop, "opt_out") == stop
    facts = await store.recipient_facts(PHONE_NUMBER_ID, None, US_RECIPIENT, NOW)
    assert facts.consent is not None and facts.consent.status == "opted_out"


async def test_an_older_optout_still_goes_in_after_a_newer_optin(store: Store) -> None:
    await store.record_consent(record("opted_in", NOW, source="web"))
    late = record("opted_out", NOW - 3600, ("marketing",), "whatsapp:user_preferences")
    assert await store.apply_consent_event("late-stop", late, "opt_out") == late
    # Covered by the latest record: nothing appended, marked seen.
    again = record("opted_out", NOW - 7200, ("marketing",), "whatsapp:status_131050")
    assert await store.apply_consent_event("older-stop", again, "opt_out") is None
    assert len(await store.consent_history(US_RECIPIENT)) == 2


async def test_an_optin_must_be_strictly_newer_in_whole_seconds(store: Store) -> None:
    await store.record_consent(record("opted_in", NOW - 900, source="web"))
    assert await store.apply_consent_event("stop", record("opted_out", NOW), "opt_out") is not None
    # Later by a fraction (a time clamped to when it was received): the same second, the opt-out wins.
    tie = record("opted_in", NOW + 0.5, source="whatsapp:user_preferences")
    assert await store.apply_consent_event("resume-tie", tie, "resume") is None
    newer = record("opted_in", NOW + 1, source="whatsapp:user_preferences")
    assert await store.apply_consent_event("resume-newer", newer, "resume") is not None


async def test_an_optin_loses_to_a_newer_optout_event_that_appended_nothing(store: Store) -> None:
    await store.record_consent(record("opted_out", NOW - 100, ("marketing",), "web"))
    covered = record("opted_out", NOW, ("marketing",), "whatsapp:user_preferences")
    assert await store.apply_consent_event("stop", covered, "opt_out") is None  # held already
    for key, at in (("resume-tie", NOW), ("resume-older", NOW - 50)):
        assert await store.apply_consent_event(key, record("opted_in", at), "resume") is None
    assert await store.apply_consent_event("resume", record("opted_in", NOW + 1), "resume") is not None


async def test_an_event_not_applied_is_applied_by_its_redelivery(store: Store) -> None:
    await store.record_consent(record("opted_in", NOW - 100, ("marketing", "utility"), "web"))
    resume = record("opted_in", NOW - 110, ("marketing",), "whatsapp:user_preferences")
    assert await store.apply_consent_event("resume", resume, "resume") is None  # older than the app's record
    stop = record("opted_out", NOW - 120, ("marketing",), "whatsapp:user_preferences")
    assert await store.apply_consent_event("stop", stop, "opt_out") is not None  # late, in all the same
    # The resume came after that stop: its redelivery now applies.
    applied = await store.apply_consent_event("resume", resume, "resume")
    assert applied is not None and set(applied.categories) == {"marketing", "utility"}
    assert await store.apply_consent_event("resume", resume, "resume") is None  # seen now
    assert [r.status for r in await store.consent_history(US_RECIPIENT)] == ["opted_in", "opted_out", "opted_in"]


async def test_an_optin_the_state_already_holds_is_marked_seen(store: Store) -> None:
    await store.record_consent(record("opted_in", NOW - 100, ("marketing",), "web"))
    resume = record("opted_in", NOW - 50, ("marketing",), "whatsapp:user_preferences")
    assert await store.apply_consent_event("resume", resume, "resume") is None  # held
    await store.apply_consent_event("stop", record("opted_out", NOW - 200), "opt_out")  # late, appended
    # A redelivery of the held resume changes nothing: it was handled.
    assert await store.apply_consent_event("resume", resume, "resume") is None
    assert (await store.consent_history(US_RECIPIENT))[-1].status == "opted_out"


@pytest.mark.parametrize("order", [("STOP", "START"), ("START", "STOP")])
async def test_start_in_the_same_second_as_stop_loses_in_either_order(store: Store, order: tuple[str, str]) -> None:
    params = {"optout": {"keywords": ["stop"], "optin_keywords": ["start"], "resubscribe_on_optin": True,
                         "optin_categories": ["marketing"]}}  # fmt: skip

    async def get_params() -> dict[str, Any]:
        return params

    applier = WebhookApplier(load_config(None, env={}), lambda: store, get_params)
    await store.record_consent(record("opted_out", NOW - 900, source="web"))  # START may resubscribe
    for body in order:
        await applier.apply(parse_webhook(inbound_text(body, NOW - 60), NOW), NOW)
    facts = await store.recipient_facts(PHONE_NUMBER_ID, None, US_RECIPIENT, NOW)
    assert facts.consent is not None and facts.consent.status == "opted_out"


# -- end to end: opt-outs --------------------------------------------------------------------------------


async def test_stop_in_the_same_second_as_the_apps_optin_is_applied(gateway_factory: GatewayFactory, clock: Clock) -> None:
    client = await gateway_factory(webhooks=webhook_config())
    second = int(clock.now) - 30
    await opt_in(client, second + 0.4)  # recorded by the app a moment before, with fractions
    assert (await post_webhook(client, inbound_text("STOP", second)))[0] == 200
    current = (await consent(client))["current"]
    assert (current["status"], current["recorded_at"]) == ("opted_out", second)
    await assert_marketing_denied(client)


async def test_a_stop_older_than_a_newer_optin_still_goes_in(gateway_factory: GatewayFactory, clock: Clock) -> None:
    client = await gateway_factory(webhooks=webhook_config())
    await opt_in(client, clock.now - 60)
    # Sent by the user before the app's opt-in, delivered after it: the safe side wins.
    assert (await post_webhook(client, inbound_text("STOP", clock.now - 120)))[0] == 200
    assert [r["status"] for r in (await consent(client))["history"]] == ["opted_in", "opted_out"]
    await assert_marketing_denied(client)


async def test_resume_in_the_same_second_as_a_stop_loses(gateway_factory: GatewayFactory, clock: Clock) -> None:
    client = await gateway_factory(webhooks=webhook_config())
    await opt_in(client, clock.now - 3600, ["marketing"])
    second = clock.now - 30
    assert (await post_webhook(client, user_preference("stop", second)))[0] == 200
    assert (await post_webhook(client, user_preference("resume", second)))[0] == 200
    assert (await consent(client))["current"]["status"] == "opted_out"
    await assert_marketing_denied(client)


async def test_a_redelivery_applies_what_the_first_delivery_did_not(gateway_factory: GatewayFactory, clock: Clock) -> None:
    client = await gateway_factory(webhooks=webhook_config())
    await opt_in(client, clock.now - 100, recipient=CA_RECIPIENT)  # US marketing: paused
    resume = user_preference("resume", clock.now - 110, recipient=CA_RECIPIENT)
    assert (await post_webhook(client, resume))[0] == 200  # older than the app's opt-in: nothing
    assert (await post_webhook(client, user_preference("stop", clock.now - 120, recipient=CA_RECIPIENT)))[0] == 200  # late, in all the same
    await assert_marketing_denied(client, CA_RECIPIENT)
    # Meta redelivers the resume (the user's latest word): now it goes in.
    assert (await post_webhook(client, resume))[0] == 200
    history = (await consent(client, CA_RECIPIENT))["history"]
    assert [(r["status"], r["recorded_at"]) for r in history] == [
        ("opted_in", clock.now - 100), ("opted_out", clock.now - 120), ("opted_in", clock.now - 110)]
    status, _, answer = await send(client, template_message("spring_sale", to=CA_RECIPIENT))
    assert status == 200, answer


@pytest.mark.parametrize("first", ["stop", "resume"])
async def test_an_event_dated_2100_blocks_no_later_optout(first: str, gateway_factory: GatewayFactory, clock: Clock) -> None:
    client = await gateway_factory(webhooks=webhook_config())
    await opt_in(client, clock.now - 3600, ["marketing"])
    received = clock.now
    assert (await post_webhook(client, user_preference(first, YEAR_2100)))[0] == 200
    assert all(r["recorded_at"] <= received for r in (await consent(client))["history"])
    clock.advance(60)
    assert (await post_webhook(client, inbound_text("STOP", clock.now - 10)))[0] == 200
    current = (await consent(client))["current"]
    assert (current["status"], current["recorded_at"]) == ("opted_out", clock.now - 10)
    await assert_marketing_denied(client)
    # Nor a later resume.
    clock.advance(60)
    assert (await post_webhook(client, user_preference("resume", clock.now - 10)))[0] == 200
    assert (await consent(client))["current"]["status"] == "opted_in"


# -- end to end: unusable and future times -----------------------------------------------------------


@pytest.mark.parametrize("timestamp", UNUSABLE)
async def test_unusable_times_are_refused_except_for_optouts(
    timestamp: str, gateway_factory: GatewayFactory, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    client = await gateway_factory(webhooks=webhook_config())
    store = store_of(client)
    await opt_in(client, clock.now - 3600)
    _, headers, _ = await send(client, template_message())
    decision_id = headers["X-Sendgate-Decision-Id"]
    await store.flush()  # Meta's answer completes the record after the send
    sent = (await store.decision(decision_id)).upstream_message_id  # type: ignore[union-attr]
    assert sent is not None
    caplog.set_level(logging.INFO, "sendgate.webhooks")
    # A message: the window must not open at a time nobody knows.
    assert (await post_webhook(client, with_time(inbound_text("hello", clock.now), timestamp)))[0] == 200
    assert (await store.recipient_facts(PHONE_NUMBER_ID, None, US_RECIPIENT, clock.now)).last_inbound_at is None
    status, _, answer = await send(client, text_message())
    assert status == 400 and answer["error"]["code"] == 131047
    # A status: not applied.
    assert (await post_webhook(client, with_time(status_update(sent, "delivered", clock.now), timestamp)))[0] == 200
    assert (await store.decision(decision_id)).delivery_status is None  # type: ignore[union-attr]
    # An opt-out: applied, at the time it was received.
    assert (await post_webhook(client, with_time(user_preference("stop", clock.now - 5), timestamp)))[0] == 200
    current = (await consent(client))["current"]
    assert (current["status"], current["recorded_at"]) == ("opted_out", clock.now)
    assert json.loads(current["evidence"])["unusable_time"].startswith("timestamp ")  # why that time
    await assert_marketing_denied(client)
    # An opt-in: refused.
    clock.advance(60)
    assert (await post_webhook(client, with_time(user_preference("resume", clock.now), timestamp)))[0] == 200
    assert (await consent(client))["current"]["status"] == "opted_out"
    logged = [r.getMessage() for r in caplog.records if r.name == "sendgate.webhooks"]
    assert sum("not applied" in m for m in logged) == 3, logged
    assert any("applied at the time it was received" in m for m in logged), logged


async def test_refusals_mask_the_number_when_masking_is_on(
    gateway_factory: GatewayFactory, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    client = await gateway_factory(webhooks=webhook_config(), log={"mask_recipients": True})
    caplog.set_level(logging.INFO, "sendgate.webhooks")
    for value in ("stop", "resume"):
        assert (await post_webhook(client, with_time(user_preference(value, clock.now), "abc")))[0] == 200
    logged = [r.getMessage() for r in caplog.records if r.name == "sendgate.webhooks"]
    assert any("resume for *******1234 not applied" in m for m in logged), logged
    assert all(US_RECIPIENT not in m for m in logged), logged


async def test_a_future_inbound_message_opens_the_window_at_the_received_time(
    gateway_factory: GatewayFactory, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    client = await gateway_factory(webhooks=webhook_config())
    caplog.set_level(logging.WARNING, "sendgate.webhooks")
    received = clock.now
    assert (await post_webhook(client, inbound_text("hi", YEAR_2100)))[0] == 200
    facts = await store_of(client).recipient_facts(PHONE_NUMBER_ID, None, US_RECIPIENT, clock.now)
    assert facts.last_inbound_at == received
    assert any("clamped" in r.getMessage() for r in caplog.records)
    clock.advance(24 * 3600 + 60)  # a day after it was received: closed, not open until 2100
    status, _, answer = await send(client, text_message())
    assert status == 400 and answer["error"]["code"] == 131047


async def test_a_future_status_neither_sticks_the_window_nor_the_record(gateway_factory: GatewayFactory, clock: Clock) -> None:
    client = await gateway_factory(webhooks=webhook_config())
    store = store_of(client)
    assert (await post_webhook(client, inbound_text("hi", clock.now - 10)))[0] == 200
    _, headers, _ = await send(client, text_message())
    decision_id = headers["X-Sendgate-Decision-Id"]
    await store.flush()
    message_id = (await store.decision(decision_id)).upstream_message_id  # type: ignore[union-attr]
    assert message_id is not None
    assert (await post_webhook(client, status_update(message_id, "delivered", YEAR_2100)))[0] == 200
    assert (await store.decision(decision_id)).delivery_at == clock.now  # type: ignore[union-attr]
    # Meta found the window closed (dated 2100): closed now, not until 2100.
    failed = status_update(message_id, "failed", YEAR_2100, error=131047, title="Re-engagement message")
    assert (await post_webhook(client, failed))[0] == 200
    status, _, answer = await send(client, text_message())
    assert status == 400 and answer["error"]["code"] == 131047
    clock.advance(30)
    assert (await post_webhook(client, inbound_text("still there?", clock.now - 1)))[0] == 200
    status, _, answer = await send(client, text_message())
    assert status == 200, answer


async def test_template_and_account_events_with_bogus_times(gateway_factory: GatewayFactory, clock: Clock) -> None:
    client = await gateway_factory(webhooks=webhook_config())
    await opt_in(client, clock.now - 3600)
    paused = template_status("PAUSED", clock.now)
    paused["entry"][0]["time"] = "NaN"
    assert (await post_webhook(client, paused))[0] == 200  # refused: answered, not applied
    status, _, answer = await send(client, template_message())
    assert status == 200, answer
    # A flag dated 2100 is clamped: a later UNFLAGGED clears it.
    assert (await post_webhook(client, inbound_text("hi", clock.now - 600)))[0] == 200  # maps the display number
    assert (await post_webhook(client, phone_quality("FLAGGED", YEAR_2100)))[0] == 200
    _, state = await admin(client, "GET", f"/accounts/{PHONE_NUMBER_ID}")
    assert state["state"]["status"] == "FLAGGED"
    clock.advance(60)
    assert (await post_webhook(client, phone_quality("UNFLAGGED", clock.now - 10)))[0] == 200
    _, state = await admin(client, "GET", f"/accounts/{PHONE_NUMBER_ID}")
    assert state["state"]["status"] is None

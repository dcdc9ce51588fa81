"""The pieces under the webhook path: parsing Meta's payloads, keyword matching, the idempotent
store writes, and the config keys."""

from __future__ import annotations

from typing import Any

import pytest

from sendgate.config import ConfigError, load_config
from sendgate.state import ConsentRecord, Store
from sendgate.webhooks.apply import OptOutRules, WebhookApplier, normalize_keyword
from sendgate.webhooks.events import parse_webhook

from .conftest import CATALOG, PHONE_NUMBER_ID, US_RECIPIENT, WABA_ID
from .webhook_support import EXAMPLES, account_update, inbound_text, status_update, user_preference

NOW = 1795557600.0


def test_every_example_parses_without_problems() -> None:
    for name, payload in EXAMPLES.items():
        parsed = parse_webhook(payload, NOW)
        assert parsed.problems == [], name
        assert parsed.kinds(), name
    text = parse_webhook(EXAMPLES["Text Message"], NOW)
    (message,) = text.messages
    assert (message.phone_number_id, message.sender, message.timestamp, message.text) == (
        PHONE_NUMBER_ID, US_RECIPIENT, 1749416383.0, "Does it come in another color?")
    assert text.phone_numbers == {PHONE_NUMBER_ID: ("15550783881", "419561257915477")}
    button = parse_webhook(EXAMPLES["Button Message"], NOW).messages[0]
    assert (button.type, button.button_payload) == ("button", "Unsubscribe")
    referral = parse_webhook(EXAMPLES["Text Message from Click to WhatsApp Ad"], NOW).messages[0].referral
    assert referral is not None and referral["source_type"] == "ad"
    assert parse_webhook(EXAMPLES["Group Create Message"], NOW).unknown == ["group_lifecycle_update"]


def test_odd_payloads_are_problems_not_crashes() -> None:
    assert parse_webhook(None, NOW).problems == ["body is not a JSON object"]
    assert parse_webhook({"object": "page", "entry": []}, NOW).unknown == ["object:page"]
    broken = {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
        {"field": "messages", "value": {"messages": [{"from": "1650"}]}},
        {"field": "messages", "value": "nope"}]}]}  # fmt: skip
    assert len(parse_webhook(broken, NOW).problems) == 2
    status = parse_webhook(status_update("wamid.X", "FAILED", NOW, error=131049), NOW).statuses[0]
    assert (status.status, status.errors) == ("failed", ((131049, "error 131049"),))


@pytest.mark.parametrize(
    ("text", "normalized"),
    [("STOP", "stop"), ("  Stop!! ", "stop"), ("opt-out", "opt out"), ("Désabonner", "desabonner"),
     ("STOP 🛑", "stop"), ("Cancelar inscrição", "cancelar inscricao"), ("ＳＴＯＰ", "stop")],
)  # fmt: skip
def test_keyword_normalization(text: str, normalized: str) -> None:
    assert normalize_keyword(text) == normalized


def test_optout_rules_read_policy_params() -> None:
    rules = OptOutRules({"optout": {"keywords": ["STOP", "Baja"], "optin_keywords": ["start"],
                                    "button_payloads": ["Stop promotions"], "resubscribe_on_optin": True,
                                    "optin_categories": ["marketing", "bogus"]}})  # fmt: skip
    assert rules.is_optout_text("baja.") and not rules.is_optout_text("bajamos")
    assert rules.is_optout_button("STOP_PROMOTIONS", None) and rules.is_optout_button(None, "stop promotions")
    assert rules.resubscribe_on_optin and rules.optin_categories == ("marketing",)
    empty = OptOutRules({})
    assert not empty.is_optout_text("stop") and not empty.resubscribe_on_optin


async def test_optin_keyword_resubscribes_when_policy_data_says_so(store: Store) -> None:
    params = {"optout": {"keywords": ["stop"], "optin_keywords": ["start"], "resubscribe_on_optin": True,
                         "optin_categories": ["utility"]}}  # fmt: skip

    async def get_params() -> dict[str, Any]:
        return params

    applier = WebhookApplier(load_config(None, env={}), lambda: store, get_params)
    await store.record_consent(ConsentRecord(US_RECIPIENT, "opted_in", ("marketing", "utility"), "web", None, NOW - 900))
    for body, at in (("START", NOW - 800), ("STOP", NOW - 600), ("start", NOW - 300)):
        await applier.apply(parse_webhook(inbound_text(body, at), NOW), NOW)
    history = await store.consent_history(US_RECIPIENT)
    # START while opted in changes nothing; after STOP it restores the last opt-in's categories.
    assert [(r.status, r.categories) for r in history] == [
        ("opted_in", ("marketing", "utility")), ("opted_out", ()), ("opted_in", ("marketing", "utility"))]
    assert history[-1].source == "whatsapp:keyword"
    # Never opted in before: the configured categories.
    other = "5511987654321"
    await applier.apply(parse_webhook(inbound_text("stop", NOW - 200, sender=other), NOW), NOW)
    await applier.apply(parse_webhook(inbound_text("start", NOW - 100, sender=other), NOW), NOW)
    assert (await store.recipient_facts(PHONE_NUMBER_ID, None, other, NOW)).consent.categories == ("utility",)  # type: ignore[union-attr]


async def test_consent_events_are_idempotent_and_never_go_back(store: Store) -> None:
    optout = ConsentRecord(US_RECIPIENT, "opted_out", ("marketing",), "whatsapp:user_preferences", "{}", NOW - 100)
    assert await store.apply_consent_event("k1", optout, "opt_out") is not None
    assert await store.apply_consent_event("k1", optout, "opt_out") is None  # same event again
    broader = ConsentRecord(US_RECIPIENT, "opted_out", (), "whatsapp:keyword", "{}", NOW - 50)
    assert await store.apply_consent_event("k2", broader, "opt_out") is not None  # everything now
    narrower = ConsentRecord(US_RECIPIENT, "opted_out", ("marketing",), "whatsapp:status_131050", "{}", NOW - 40)
    assert await store.apply_consent_event("k3", narrower, "opt_out") is None  # covered already
    older = ConsentRecord(US_RECIPIENT, "opted_in", ("marketing",), "whatsapp:user_preferences", "{}", NOW - 500)
    assert await store.apply_consent_event("k4", older, "resume") is None  # older than the latest record
    assert len(await store.consent_history(US_RECIPIENT)) == 2
    with pytest.raises(ValueError):
        await store.apply_consent_event("k5", older, "maybe")


async def test_delivery_status_moves_forward_only(store: Store) -> None:
    from sendgate.state import DecisionRecord

    record = DecisionRecord(id="01TEST", timestamp=NOW, endpoint="messages", api_version="v23.0",
                            account=PHONE_NUMBER_ID, waba_id=WABA_ID, recipient=US_RECIPIENT, type="text",
                            template=None, category=None, decision="allow", mode="enforce", forwarded=True)  # fmt: skip
    await store.log_decision(record)
    store.log_upstream("01TEST", 200, "wamid.A", None, None, False)
    assert await store.record_delivery_status("wamid.A", "delivered", NOW + 2, None) == ("01TEST", PHONE_NUMBER_ID)
    assert await store.record_delivery_status("wamid.A", "sent", NOW + 1, None) is None  # late, older
    assert await store.record_delivery_status("wamid.A", "delivered", NOW + 2, None) is None  # duplicate
    assert await store.record_delivery_status("wamid.A", "warning", NOW + 3, None) is None  # not a delivery state
    assert await store.record_delivery_status("wamid.unknown", "read", NOW, None) is None
    saved = await store.decision("01TEST")
    assert saved is not None and (saved.delivery_status, saved.delivery_at) == ("delivered", NOW + 2)


async def test_template_updates_need_the_template_and_keep_order(store: Store) -> None:
    await store.put_templates(WABA_ID, CATALOG)
    common = {"template_id": None, "name": "order_update", "language": "en_US"}
    assert await store.update_template(WABA_ID, at=NOW, status="PAUSED", **common) is True
    assert await store.update_template(WABA_ID, at=NOW - 1, status="APPROVED", **common) is False
    assert (await store.template_facts(WABA_ID, "order_update", "en_US")).status == "PAUSED"
    assert await store.update_template(WABA_ID, at=NOW, status="PAUSED", template_id="0", name="nope", language=None) is None
    assert await store.update_template("other-waba", at=NOW, status="PAUSED", **common) is None
    # By id, every language of a name when no language is given.
    assert await store.update_template(WABA_ID, at=NOW, category="UTILITY", template_id=None, name="spring_sale",
                                       language=None) is True  # fmt: skip
    facts = [await store.template_facts(WABA_ID, "spring_sale", lang) for lang in ("en_US", "pt_BR")]
    assert [f.category for f in facts] == ["UTILITY", "UTILITY"]


async def test_account_state_keeps_the_newest_and_the_most_severe_status(store: Store) -> None:
    assert await store.set_account_state("phone", PHONE_NUMBER_ID, {"status": "FLAGGED", "quality": "RED"}, NOW)
    assert not await store.set_account_state("phone", PHONE_NUMBER_ID, {"status": None}, NOW - 10)
    await store.set_account_state("waba", WABA_ID, {"status": "DISABLED"}, NOW)
    state = await store.account_state(PHONE_NUMBER_ID, WABA_ID)
    assert (state["quality"], state["status"]) == ("RED", "DISABLED")
    assert (await store.account_state(PHONE_NUMBER_ID, None))["status"] == "FLAGGED"
    assert await store.set_marketing_pause(PHONE_NUMBER_ID, "spam", "m", NOW)
    assert not await store.set_marketing_pause(PHONE_NUMBER_ID, "spam", "m", NOW)
    assert (await store.account_state(PHONE_NUMBER_ID, None))["marketing_paused"]["alert"] == "spam"
    assert await store.clear_marketing_pause(PHONE_NUMBER_ID)
    assert (await store.account_state(PHONE_NUMBER_ID, None))["marketing_paused"] is None


async def test_account_state_keeps_a_portfolio_limit_and_a_number_throughput(store: Store) -> None:
    state = await store.account_state(PHONE_NUMBER_ID, WABA_ID, "acme")
    assert (state["portfolio_messaging_limit"], state["throughput_mps"]) == (None, None)
    assert await store.set_account_state("portfolio", "acme", {"messaging_limit": "2000"}, NOW)
    assert not await store.set_account_state("portfolio", "acme", {"messaging_limit": "250"}, NOW - 10)  # older
    assert await store.set_account_state("phone", PHONE_NUMBER_ID, {"throughput_mps": "1000"}, NOW)
    state = await store.account_state(PHONE_NUMBER_ID, WABA_ID, "acme")
    assert (state["portfolio_messaging_limit"], state["throughput_mps"]) == (2000, 1000)
    assert (await store.account_state(PHONE_NUMBER_ID, WABA_ID, "other"))["portfolio_messaging_limit"] is None
    assert (await store.account_state(PHONE_NUMBER_ID, WABA_ID))["portfolio_messaging_limit"] is None
    await store.set_account_state("portfolio", "acme", {"messaging_limit": "-1"}, NOW + 1)
    assert (await store.account_state(PHONE_NUMBER_ID, WABA_ID, "acme"))["portfolio_messaging_limit"] == -1
    with pytest.raises(ValueError):
        await store.set_account_state("business", "acme", {"messaging_limit": "1"}, NOW)


async def test_window_closure_and_reopening(store: Store) -> None:
    await store.record_inbound(PHONE_NUMBER_ID, US_RECIPIENT, NOW - 100)
    await store.close_window(PHONE_NUMBER_ID, US_RECIPIENT, NOW - 50)
    assert (await store.recipient_facts(PHONE_NUMBER_ID, None, US_RECIPIENT, NOW)).last_inbound_at is None
    await store.close_window(PHONE_NUMBER_ID, US_RECIPIENT, NOW - 80)  # an older report changes nothing
    await store.record_inbound(PHONE_NUMBER_ID, US_RECIPIENT, NOW - 10)
    assert (await store.recipient_facts(PHONE_NUMBER_ID, None, US_RECIPIENT, NOW)).last_inbound_at == NOW - 10


async def test_user_preference_other_categories_are_ignored(store: Store) -> None:
    async def params() -> dict[str, Any]:
        return {}

    applier = WebhookApplier(load_config(None, env={}), lambda: store, params)
    payload = user_preference("stop", NOW)
    payload["entry"][0]["changes"][0]["value"]["user_preferences"][0]["category"] = "calls"
    await applier.apply(parse_webhook(payload, NOW), NOW)
    assert (await store.recipient_facts(PHONE_NUMBER_ID, None, US_RECIPIENT, NOW)).consent is None


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("WEBHOOKS", "{path: /admin/hook}", "would shadow"),
        ("WEBHOOKS", "{path: /v23.0/hook}", "would shadow"),
        ("WEBHOOKS", "{forward_to: [ftp://app/hook]}", "http(s) URL"),
        ("WEBHOOKS", "{secret: x}", "unknown keys"),
        ("TEMPLATE_SYNC", "{interval: -5}", "positive number"),
        ("TEMPLATE_SYNC", "{api_version: '23'}", "v23.0"),
        ("ALERTS", "{thresholds: [{name: a, count: 1, rate: 0.1}]}", "exactly one of count or rate"),
        ("ALERTS", "{thresholds: [{name: a, rate: 5}]}", "below 1"),
        ("ALERTS", "{thresholds: [{name: a, metric: sends, count: 1}]}", "metric must be one of"),
        ("ALERTS", "{thresholds: [{name: a, count: 1}, {name: a, count: 2}]}", "every name must be different"),
        ("ACCOUNTS", "[{phone_number_id: '1', waba_id: '2', display: x}]", "unknown keys"),
    ],
)  # fmt: skip
def test_config_errors_name_the_key(key: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, env={f"SENDGATE_{key}": value})
    assert message in str(info.value)


def test_config_from_environment() -> None:
    config = load_config(None, env={
        "SENDGATE_WEBHOOKS": "{app_secret: s3cret, verify_token: v, forward_to: [http://app:3000/hook], path: /meta/hook}",
        "SENDGATE_TEMPLATE_SYNC": "{token: t, interval: 3600, wabas: ['1']}",
        "SENDGATE_ALERTS": "{url: http://ops/alerts, thresholds: [{name: spam, codes: [131048], count: 1, pause_marketing: true}]}",
        "SENDGATE_ACCOUNTS": "[{phone_number_id: '1', waba_id: '2', display_phone_number: '+1 555 078 3881'}]",
    })  # fmt: skip
    assert config.webhooks.enabled and config.webhooks.path == "/meta/hook"
    assert config.webhooks.forward_to == ("http://app:3000/hook",)
    assert "s3cret" not in repr(config)  # secrets stay out of reprs and logs
    assert (config.template_sync.interval, config.template_sync.wabas) == (3600.0, ("1",))
    assert config.alerts.thresholds[0].pause_marketing and config.alerts.url == "http://ops/alerts"
    assert config.accounts[0].display_phone_number == "15550783881"
    defaults = load_config(None, env={})
    assert not defaults.webhooks.enabled and defaults.template_sync.interval is None
    assert [t.name for t in defaults.alerts.thresholds] == ["undeliverable_rate", "spam_or_policy_block"]


def _restriction(at: float, *items: dict[str, Any]) -> dict[str, Any]:
    # Meta's account_update for a restriction (track-waba-policy-violations): restriction_info, a list
    return account_update("ACCOUNT_RESTRICTION", at, restriction_info=list(items))


async def test_account_restrictions_are_kept_until_lifted(store: Store) -> None:
    async def get_params() -> dict[str, Any]:
        return {}

    applier = WebhookApplier(load_config(None, env={}), lambda: store, get_params)
    payload = _restriction(
        NOW - 60,
        {"restriction_type": "RESTRICTED_BIZ_INITIATED_MESSAGING", "expiration": int(NOW + 86400)},
        {"restriction_type": "RESTRICTED_ADD_PHONE_NUMBER_ACTION", "expiration": "2026-12-30T13:38:04+0000"},
    )
    await applier.apply(parse_webhook(payload, NOW), NOW)
    state = await store.account_state(PHONE_NUMBER_ID, WABA_ID)
    assert state["status"] == "RESTRICTED"
    assert state["restrictions"] == [
        {"type": "RESTRICTED_ADD_PHONE_NUMBER_ACTION", "expires_at": 1798637884.0},
        {"type": "RESTRICTED_BIZ_INITIATED_MESSAGING", "expires_at": NOW + 86400},
    ]
    assert (await store.account_state(PHONE_NUMBER_ID, None))["restrictions"] == []  # the WABA's, not the number's
    # An older event changes nothing; a newer one states what is restricted now.
    older = _restriction(NOW - 120, {"restriction_type": "RESTRICTED_CUSTOMER_INITIATED_MESSAGING"})
    await applier.apply(parse_webhook(older, NOW), NOW)
    assert len((await store.account_state(PHONE_NUMBER_ID, WABA_ID))["restrictions"]) == 2
    newer = _restriction(NOW - 30, {"restriction_type": "RESTRICTED_CUSTOMER_INITIATED_MESSAGING"})
    await applier.apply(parse_webhook(newer, NOW), NOW)
    assert (await store.account_state(PHONE_NUMBER_ID, WABA_ID))["restrictions"] == [
        {"type": "RESTRICTED_CUSTOMER_INITIATED_MESSAGING", "expires_at": None}]  # no expiry given
    lifted = _restriction(NOW - 10)
    await applier.apply(parse_webhook(lifted, NOW), NOW)
    state = await store.account_state(PHONE_NUMBER_ID, WABA_ID)
    assert state["restrictions"] == [] and state["status"] is None


def test_restriction_info_shapes() -> None:
    from sendgate.webhooks.events import restriction_expiries

    assert restriction_expiries({"restriction_info": {"restriction_type": "restricted_biz_initiated_messaging",
                                                      "expiration": "1798637884"}}) == {
        "RESTRICTED_BIZ_INITIATED_MESSAGING": 1798637884.0}  # fmt: skip
    assert restriction_expiries({"restriction_info": [{"expiration": 5}, {"restriction_type": "X", "expiration": "soon"},
                                                      {"restriction_type": "Y", "expiration": True}]}) == {
        "X": None, "Y": None}  # fmt: skip
    assert restriction_expiries({}) == {}

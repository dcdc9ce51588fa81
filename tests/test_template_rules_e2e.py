"""Template statuses and parameters as Meta validates them, end to end on every engine and backend:
HTTP status, Graph code and the decision record; and Meta's own template examples as a corpus."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from sendgate.fakegraph import FakeGraph
from sendgate.state import ConsentRecord

from .conftest import (
    AFTERNOON,
    ENGINES_AND_BACKENDS,
    SHARED,
    US_RECIPIENT,
    WABA_ID,
    Clock,
    GatewayFactory,
    send,
    store_of,
    template_message,
)
from .webhook_support import post_webhook, template_status, webhook_config


@pytest.fixture(params=ENGINES_AND_BACKENDS, ids="-".join)
def gateway_kind(request: pytest.FixtureRequest) -> tuple[str, str]:
    kind: tuple[str, str] = request.param
    return kind


# Templates with the parts the parameter rules read (Graph's shape, as a sync stores it).
CATALOG: dict[str, Any] = {"data": [
    {"name": "order_update", "language": "en_US", "status": "APPROVED", "category": "UTILITY", "id": "11",
     "components": [{"type": "HEADER", "format": "IMAGE"},
                    {"type": "BODY", "text": "Hi {{1}}, order {{2}} ships on {{3}}."},
                    {"type": "FOOTER", "text": "Acme"}]},
    {"name": "summer", "language": "en_US", "status": "APPROVED", "category": "UTILITY", "id": "21",
     "components": [{"type": "HEADER", "format": "TEXT", "text": "Our {{1}} is on!"},
                    {"type": "BODY", "text": "Shop through {{1}} with code {{2}}."}]},
    {"name": "greeting", "language": "en_US", "status": "APPROVED", "category": "UTILITY", "id": "22",
     "parameter_format": "NAMED", "components": [{"type": "BODY", "text": "Hi {{first_name}}!"}]},
    {"name": "long_note", "language": "en_US", "status": "APPROVED", "category": "UTILITY", "id": "23",
     "components": [{"type": "BODY", "text": "Note: {{1}}"}]},
    {"name": "otp", "language": "en_US", "status": "APPROVED", "category": "AUTHENTICATION", "id": "24",
     "components": [{"type": "BODY", "text": "*{{1}}* is your verification code."},
                    {"type": "BUTTONS", "buttons": [{"type": "URL", "text": "Copy code",
                                                     "url": "https://www.whatsapp.com/otp/code/?otp_type=COPY_CODE&code=otp{{1}}"}]}]},
]}  # fmt: skip


async def _gateway(gateway_factory: GatewayFactory, **overrides: Any) -> TestClient:
    client = await gateway_factory(**overrides)
    await store_of(client).put_templates(WABA_ID, CATALOG)
    await _opt_in(client, US_RECIPIENT)
    return client


async def _opt_in(client: TestClient, recipient: str) -> None:
    record = ConsentRecord(recipient, "opted_in", ("marketing", "utility"), "web-form", "checkbox", AFTERNOON - 86400)
    await store_of(client).record_consent(record)


async def _rejected(client: TestClient, fake: FakeGraph, body: dict[str, Any], status: int, code: int,
                    rule: str) -> dict[str, Any]:
    before = len(fake.received)
    got, headers, payload = await send(client, body)
    assert (got, payload["error"]["code"]) == (status, code), payload
    assert payload["error"]["message"].startswith(f"(#{code}) ")
    assert rule in [r["rule"] for r in payload["error"]["sendgate"]["reasons"]]
    assert len(fake.received) == before, "a rejected message must never reach Meta"
    await store_of(client).flush()
    record = await store_of(client).decision(headers["X-Sendgate-Decision-Id"])
    assert record is not None
    assert (record.decision, record.forwarded) == ("deny", False)
    assert rule in [r["rule"] for r in record.reasons]
    assert record.content == body
    reason: dict[str, Any] = next(r for r in record.reasons if r["rule"] == rule)
    return reason


def _text(value: str, name: str | None = None) -> dict[str, Any]:
    return {"type": "text", "text": value} | ({} if name is None else {"parameter_name": name})


def _summer(header: str = "Summer Sale", body: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return template_message("summer", components=[
        {"type": "header", "parameters": [_text(header)]},
        {"type": "body", "parameters": body if body is not None else [_text("August"), _text("25OFF")]},
    ])  # fmt: skip


async def test_clean_parameters_pass(gateway_factory: GatewayFactory) -> None:
    client = await _gateway(gateway_factory)
    for message in (_summer(), template_message("order_update"),
                    template_message("greeting", components=[{"type": "body", "parameters": [_text("Ana", "first_name")]}])):  # fmt: skip
        status, _, payload = await send(client, message)
        assert status == 200, payload


@pytest.mark.parametrize("bad", ["two\nlines", "a\ttab", "five     spaces"])
async def test_param_format_132018(gateway_factory: GatewayFactory, fake_graph: tuple[FakeGraph, str], bad: str) -> None:
    client = await _gateway(gateway_factory)
    reason = await _rejected(client, fake_graph[0], _summer(body=[_text(bad), _text("25OFF")]), 400, 132018,
                             "template.param_format")
    assert (reason["component"], reason["parameter"]) == ("body", 0)
    assert (await send(client, _summer(body=[_text("four    ok"), _text("25OFF")])))[0] == 200


async def test_param_empty_100(gateway_factory: GatewayFactory, fake_graph: tuple[FakeGraph, str]) -> None:
    client = await _gateway(gateway_factory)
    await _rejected(client, fake_graph[0], _summer(body=[_text("August"), _text("")]), 400, 100, "template.param_empty")


async def test_header_length_132005(gateway_factory: GatewayFactory, fake_graph: tuple[FakeGraph, str]) -> None:
    client = await _gateway(gateway_factory)
    assert (await send(client, _summer(header="h" * 60)))[0] == 200
    reason = await _rejected(client, fake_graph[0], _summer(header="h" * 61), 400, 132005, "template.header_length")
    assert (reason["length"], reason["limit"]) == (61, 60)


async def test_body_length_once_filled_in_132005(gateway_factory: GatewayFactory,
                                                 fake_graph: tuple[FakeGraph, str]) -> None:
    client = await _gateway(gateway_factory)
    # order_update has a header and a footer: 1,024. Its body is 22 characters around 3 placeholders.
    fits = template_message("order_update", components=[
        {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://cdn.acme.example/a.png"}}]},
        {"type": "body", "parameters": [_text("a" * 996), _text("A-1"), _text("Fri")]},
    ])  # fmt: skip
    assert (await send(client, fits))[0] == 200, "22 + 996 + 3 + 3 = 1,024"
    fits["template"]["components"][1]["parameters"][0]["text"] = "a" * 997
    reason = await _rejected(client, fake_graph[0], fits, 400, 132005, "template.body_length")
    assert (reason["length"], reason["limit"]) == (1025, 1024)
    # long_note is body-only: 32,768 (a parameter text may be that long, OAS TextParameter).
    note = template_message("long_note", components=[{"type": "body", "parameters": [_text("n" * 30000)]}])
    assert (await send(client, note))[0] == 200
    note["template"]["components"][0]["parameters"][0]["text"] = "n" * 32763
    reason = await _rejected(client, fake_graph[0], note, 400, 132005, "template.body_length")
    assert (reason["length"], reason["limit"]) == (32769, 32768)


async def test_auth_code_length_131009(gateway_factory: GatewayFactory, fake_graph: tuple[FakeGraph, str]) -> None:
    client = await _gateway(gateway_factory)

    def otp(code: str) -> dict[str, Any]:
        return template_message("otp", components=[
            {"type": "body", "parameters": [_text(code)]},
            {"type": "button", "sub_type": "url", "index": "0", "parameters": [_text(code)]},
        ])  # fmt: skip

    assert (await send(client, otp("1" * 15)))[0] == 200
    reason = await _rejected(client, fake_graph[0], otp("1" * 16), 400, 131009, "template.auth_code_length")
    assert (reason["length"], reason["limit"]) == (16, 15)


async def test_param_name_100(gateway_factory: GatewayFactory, fake_graph: tuple[FakeGraph, str]) -> None:
    client = await _gateway(gateway_factory)
    wrong = template_message("greeting", components=[{"type": "body", "parameters": [_text("Ana", "name")]}])
    reason = await _rejected(client, fake_graph[0], wrong, 400, 100, "template.param_name")
    assert (reason["parameter_name"], reason["declared"]) == ("name", ["first_name"])
    unnamed = template_message("greeting", components=[{"type": "body", "parameters": [_text("Ana")]}])
    await _rejected(client, fake_graph[0], unnamed, 400, 100, "template.param_name")


async def test_header_format_132012(gateway_factory: GatewayFactory, fake_graph: tuple[FakeGraph, str]) -> None:
    client = await _gateway(gateway_factory)
    video = template_message("order_update", components=[
        {"type": "header", "parameters": [{"type": "video", "video": {"link": "https://cdn.acme.example/a.mp4"}}]},
        {"type": "body", "parameters": [_text("Ana"), _text("A-1"), _text("Friday")]},
    ])  # fmt: skip
    reason = await _rejected(client, fake_graph[0], video, 400, 132012, "template.header_format")
    assert (reason["expected"], reason["got"]) == ("IMAGE", "video")


# -- statuses from Meta's webhooks ------------------------------------------------------------


async def _status(client: TestClient, event: str, at: float, extra: dict[str, Any] | None = None) -> None:
    payload = template_status(event, at)
    payload["entry"][0]["changes"][0]["value"].update(extra or {})
    assert (await post_webhook(client, payload))[0] == 200


async def test_flagged_stays_sendable_until_its_disable_date_then_132016(
    gateway_factory: GatewayFactory, fake_graph: tuple[FakeGraph, str], clock: Clock
) -> None:
    client = await _gateway(gateway_factory, webhooks=webhook_config())
    await _status(client, "FLAGGED", clock.now - 60, {"disable_info": {"disable_date": int(clock.now + 3600)}})
    facts = await store_of(client).template_facts(WABA_ID, "order_update", "en_US")
    assert (facts.status, facts.flagged, facts.flagged_until) == ("APPROVED", True, int(clock.now + 3600))
    assert (await send(client, template_message("order_update")))[0] == 200
    clock.advance(3600)  # the disable date: Meta disables it now, webhook or not
    reason = await _rejected(client, fake_graph[0], template_message("order_update"), 400, 132016, "template.disabled")
    assert reason["flagged_until"] == int(clock.now)


async def test_disabled_is_132016_not_132001(gateway_factory: GatewayFactory, fake_graph: tuple[FakeGraph, str],
                                             clock: Clock) -> None:
    client = await _gateway(gateway_factory, webhooks=webhook_config())
    await _status(client, "DISABLED", clock.now - 60, {"disable_info": {"disable_date": int(clock.now - 60)}})
    await _rejected(client, fake_graph[0], template_message("order_update"), 400, 132016, "template.disabled")
    await _status(client, "REINSTATED", clock.now - 30)
    assert (await send(client, template_message("order_update")))[0] == 200


async def test_locked_stays_approved(gateway_factory: GatewayFactory, clock: Clock) -> None:
    client = await _gateway(gateway_factory, webhooks=webhook_config())
    await _status(client, "LOCKED", clock.now - 60, {"other_info": {"title": "LOCKED", "description": "Locked"}})
    facts = await store_of(client).template_facts(WABA_ID, "order_update", "en_US")
    assert (facts.status, facts.locked) == ("APPROVED", True)
    assert (await send(client, template_message("order_update")))[0] == 200


async def test_unarchived_restores_the_status_before_the_archive(
    gateway_factory: GatewayFactory, fake_graph: tuple[FakeGraph, str], clock: Clock
) -> None:
    client = await _gateway(gateway_factory, webhooks=webhook_config())
    await _status(client, "PAUSED", clock.now - 300)
    await _status(client, "ARCHIVED", clock.now - 200)
    await _rejected(client, fake_graph[0], template_message("order_update"), 404, 132001, "template.not_approved")
    await store_of(client).put_templates(WABA_ID, _archived(CATALOG))  # a sync meanwhile: Graph says ARCHIVED
    await _status(client, "UNARCHIVED", clock.now - 100)
    await _rejected(client, fake_graph[0], template_message("order_update"), 400, 132015, "template.paused")
    await _status(client, "APPROVED", clock.now - 50)
    assert (await send(client, template_message("order_update")))[0] == 200


def _archived(catalog: dict[str, Any]) -> dict[str, Any]:
    data = json.loads(json.dumps(catalog["data"]))
    data[0]["status"] = "ARCHIVED"
    return {"data": data}


async def test_quality_reaches_the_input(gateway_factory: GatewayFactory, clock: Clock) -> None:
    client = await _gateway(gateway_factory, webhooks=webhook_config())
    assert (await store_of(client).template_facts(WABA_ID, "order_update", "en_US")).quality is None
    payload = template_status("APPROVED", clock.now - 60)
    payload["entry"][0]["changes"][0].update(field="message_template_quality_update", value={
        "previous_quality_score": "GREEN", "new_quality_score": "YELLOW", "message_template_id": 11,
        "message_template_name": "order_update", "message_template_language": "en_US"})  # fmt: skip
    assert (await post_webhook(client, payload))[0] == 200
    assert (await store_of(client).template_facts(WABA_ID, "order_update", "en_US")).quality == "YELLOW"


# -- Meta's template examples as a corpus ------------------------------------------------------


def _meta_templates() -> list[dict[str, Any]]:
    """Every template of template-examples.json (the list response and the create requests), as the
    catalog stores them: approved, each name once."""
    examples = json.loads((SHARED / "template-examples.json").read_text())
    listed = examples["list_response"]["200 Example response"]["data"]
    created = [dict(t, status="APPROVED", id=str(9000 + i)) for i, t in enumerate(examples["create_requests"].values())]
    by_name = {t["name"]: t for t in [*listed, *created] if not t["name"].startswith("<")}
    return list(by_name.values())


def _matching_send(template: dict[str, Any], to: str) -> dict[str, Any]:
    """The send Meta's documentation pairs with a template: its examples as the parameters."""
    components: list[dict[str, Any]] = []
    for component in template.get("components", []):
        kind = component["type"].upper()
        example = component.get("example", {})
        if kind == "HEADER" and component.get("format", "TEXT") == "TEXT" and "{{" in component.get("text", ""):
            components.append({"type": "header", "parameters": [_text(v) for v in example["header_text"]]})
        elif kind == "HEADER" and component["format"] in ("IMAGE", "VIDEO", "DOCUMENT"):
            media = component["format"].lower()
            components.append({"type": "header", "parameters": [{"type": media, media: {"link": f"https://cdn.acme.example/h.{media}"}}]})  # fmt: skip
        elif kind == "HEADER" and component["format"] == "LOCATION":
            location = {"latitude": 37.48, "longitude": -122.14, "name": "Acme", "address": "1 Hacker Way"}
            components.append({"type": "header", "parameters": [{"type": "location", "location": location}]})
        elif kind == "BODY" and "body_text" in example:
            components.append({"type": "body", "parameters": [_text(v) for v in example["body_text"][0]]})
        elif kind == "BODY" and template["category"] == "AUTHENTICATION":
            components.append({"type": "body", "parameters": [_text("123456")]})
        elif kind == "BUTTONS":
            for index, button in enumerate(component["buttons"]):
                if button["type"] == "URL" and "{{" in button["url"]:
                    params = [_text(button["example"][0])]
                elif button["type"] == "OTP":
                    params = [_text("123456")]
                elif button["type"] == "MPM":
                    params = [{"type": "action", "action": {"thumbnail_product_retailer_id": "sku-1", "sections": [
                        {"title": "Cart", "product_items": [{"product_retailer_id": "sku-1"}]}]}}]
                else:
                    continue
                sub_type = "mpm" if button["type"] == "MPM" else "url"
                components.append({"type": "button", "sub_type": sub_type, "index": str(index), "parameters": params})
    return template_message(template["name"], language=template["language"], to=to, components=components)


async def test_meta_template_examples_become_catalog_facts_and_their_sends_pass(
    gateway_factory: GatewayFactory, fake_graph: tuple[FakeGraph, str]
) -> None:
    client = await gateway_factory()
    templates = _meta_templates()
    assert await store_of(client).put_templates(WABA_ID, {"data": templates}) == len(templates) >= 9
    for i, template in enumerate(templates):
        facts = await store_of(client).template_facts(WABA_ID, template["name"], template["language"])
        assert facts.status == "APPROVED" and facts.components is not None, template["name"]
        texts = {c["type"].upper(): c.get("text") for c in template["components"]}
        assert facts.components["body"]["text"] == texts.get("BODY"), template["name"]
        header = facts.components["header"]
        assert (header or {}).get("format") == next(
            (c.get("format", "TEXT") for c in template["components"] if c["type"].upper() == "HEADER"), None)
        to = f"1416555{i:04d}"  # Toronto (marketing to US numbers is paused), one each: the cap is per recipient
        await _opt_in(client, to)
        status, _, payload = await send(client, _matching_send(template, to))
        assert status == 200, (template["name"], payload)
    assert len(fake_graph[0].received) == len(templates)

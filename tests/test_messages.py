"""sendgate.messages: Meta's send examples and hand-made payloads into the policy input's `message`."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

import orjson

from sendgate.messages import MESSAGE_TYPES, InvalidMessage, normalize, normalize_recipient
from sendgate.policy.bundle import PolicyBundle
from sendgate.policy.embedded import compile_bundle
from sendgate.sensitive import find, iban_valid, luhn_valid, mask_sensitive

from .conftest import POLICIES
from .corpus import filled_examples

PHONE = "16505551234"
CORPUS = filled_examples()


def example(name: str, endpoint: str = "messages") -> dict[str, Any]:
    return copy.deepcopy(CORPUS[(endpoint, name)])


def norm(name: str, endpoint: str = "messages") -> dict[str, Any]:
    return normalize(example(name, endpoint), endpoint)


def send(**fields: Any) -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "recipient_type": "individual", "to": PHONE, **fields}


# --- the whole corpus -------------------------------------------------------------------------

_TYPES_BY_NAME: dict[str, list[str]] = {
    "text": ["Send Text Message", "Send Text Message with Preview URL", "Send Reply to Text Message"],
    "image": ["Send Image Message by ID", "Send Image Message by URL",
              "Send Reply to Image Message by ID", "Send Reply to Image Message by URL"],
    "video": ["Send Video Message by ID", "Send Video Message by URL",
              "Send Reply to Video Message by ID", "Send Reply to Video Message by URL"],
    "audio": ["Send Audio Message by ID", "Send Audio Message by URL",
              "Send Reply to Audio Message by ID", "Send Reply to Audio Message by URL"],
    "document": ["Send Document Message by ID", "Send Document Message by URL",
                 "Send Reply to Document Message by ID", "Send Reply to Document Message by URL"],
    "sticker": ["Send Sticker Message by ID", "Send Sticker Message by URL",
                "Send Reply to Sticker Message by ID", "Send Reply to Sticker Message by URL"],
    "location": ["Send Location Message", "Send Reply to Location Message"],
    "contacts": ["Send Contact Message", "Send Reply to Contact Message"],
    "reaction": ["Send Reply with Reaction Message"],
    "status": ["Send typing indicator and read receipt"],
    "interactive": ["Send Catalog Message", "Send Draft Flow by ID", "Send Draft Flow by Name", "Send List Message",
                    "Send Multi-Product Message", "Send Order Details Message", "Send Order Status Message",
                    "Send Published Flow by ID", "Send Published Flow by Name", "Send Reply Button", "Send Reply to List Message",
                    "Send Single Product Message"],
    "template": ["Send Catalog Template Message", "Send Flow Template Message", "Send Message Template Interactive",
                 "Send Message Template Media", "Send Message Template Text", "Send Sample Issue Resolution Template",
                 "Send Sample Shipping Confirmation Template", "Send Sample Text Message", "Send Test Message"],
}
EXPECTED_TYPES: dict[tuple[str, str], str] = {
    ("messages", name): message_type for message_type, names in _TYPES_BY_NAME.items() for name in names
}
EXPECTED_TYPES.update({("marketing_messages", name): "template" for name in
                       ("Simple Template Message", "Template with Product Policy", "Parameterized Template")})
EXPECTED_TYPES.update({("messages_encrypted", name): "encrypted" for name in
                       ("Send Encrypted Text Message", "Send Encrypted Media Message", "Send Encrypted Template Message")})

CONTRACT_KEYS = {"type", "recipient", "recipient_type", "is_status", "context_message_id", "texts", "words", "urls",
                 "links", "limited_texts", "media", "interactive_type", "template",
                 "category", "ttl_seconds", "recipient_field", "interactive", "location", "card_numbers", "ibans"}


def test_expected_types_cover_the_corpus() -> None:
    # A new example in send-examples.json must be classified here, not silently skipped.
    assert set(EXPECTED_TYPES) == set(CORPUS)
    assert len(CORPUS) == 56


@pytest.mark.parametrize("key", sorted(CORPUS), ids=lambda k: f"{k[0]}/{k[1]}")
def test_every_meta_example_normalizes(key: tuple[str, str]) -> None:
    endpoint, _ = key
    message = normalize(CORPUS[key], endpoint)
    assert set(message) == CONTRACT_KEYS  # absent facts are null, never missing keys
    assert message["type"] == EXPECTED_TYPES[key]
    assert message["is_status"] is (message["type"] == "status")
    assert message["recipient_type"] == "individual"
    if message["type"] in ("status", "encrypted"):
        assert message["recipient"] is None
    else:
        assert message["recipient"] is not None and message["recipient"].isdigit()
    assert (message["template"] is not None) is (message["type"] == "template")
    assert (message["media"] is not None) is (message["type"] in {"image", "video", "audio", "document", "sticker"})
    assert (message["interactive_type"] is not None) is (message["type"] == "interactive")
    assert len(message["urls"]) == len(set(message["urls"]))


def test_missing_type_comes_from_the_one_content_object() -> None:
    m = norm("Send Reply to List Message")  # Meta's own example omits `type`
    assert (m["type"], m["interactive_type"]) == ("interactive", "list")


def test_corpus_has_no_unfilled_placeholders() -> None:
    text = repr(CORPUS)
    for marker in ("{{", "<", "http(s)", "language-and-locale-code", "text-string"):
        assert marker not in text


def test_message_types_constant() -> None:
    assert MESSAGE_TYPES == {"text", "image", "video", "audio", "document", "sticker", "location", "contacts",
                             "interactive", "template", "reaction"}


# --- spot checks on Meta's examples ------------------------------------------------------------


def test_text_without_type_defaults_to_text() -> None:
    m = norm("Send Text Message with Preview URL")
    assert m["type"] == "text"
    assert m["recipient"] == PHONE
    assert m["texts"] == ["Please visit https://youtu.be/hpltvTEiRrY."]
    assert m["urls"] == ["https://youtu.be/hpltvTEiRrY"]  # the sentence's full stop is not part of it
    assert m["limited_texts"] == [{"field": "text.body", "kind": "body", "length": 42}]
    assert m["media"] is None and m["template"] is None and m["context_message_id"] is None


def test_reply_to_text_carries_context() -> None:
    m = norm("Send Reply to Text Message")
    assert m["context_message_id"] == "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQUI4RjdEMUI0NjM5MjFFRjk4MwA="
    assert m["texts"] == ["Your order has shipped and should arrive on Friday."]


def test_image_by_url() -> None:
    m = norm("Send Image Message by URL")
    assert m["media"] == {"kind": "image", "id": None, "link": "https://cdn.example.com/media/spring-sale.jpg"}
    assert m["urls"] == ["https://cdn.example.com/media/spring-sale.jpg"]
    assert m["texts"] == [] and m["limited_texts"] == []


def test_document_by_id_caption_and_filename() -> None:
    m = norm("Send Document Message by ID")
    assert m["media"] == {"kind": "document", "id": "1376223850470848", "link": None}
    assert m["texts"] == ["Your invoice for October", "invoice-2291.pdf"]
    assert m["limited_texts"] == [{"field": "document.caption", "kind": "caption", "length": 24}]
    assert m["urls"] == []  # "invoice-2291.pdf" is a filename, not a host


def test_video_caption_is_limited() -> None:
    m = norm("Send Reply to Video Message by URL")
    assert m["media"]["kind"] == "video"
    assert m["limited_texts"] == [{"field": "video.caption", "kind": "caption", "length": 27}]
    assert m["urls"] == ["https://cdn.example.com/media/unboxing.mp4"]


@pytest.mark.parametrize("name,kind", [("Send Audio Message by URL", "audio"), ("Send Sticker Message by URL", "sticker")])
def test_audio_and_sticker_have_no_caption(name: str, kind: str) -> None:
    payload = example(name)
    payload[kind]["caption"] = "not shown by WhatsApp"
    m = normalize(payload)
    assert m["media"]["kind"] == kind and m["media"]["link"].startswith("https://cdn.example.com/")
    assert m["texts"] == [] and m["limited_texts"] == []


def test_template_positional_parameters_and_buttons() -> None:
    m = norm("Send Message Template Interactive")
    t = m["template"]
    assert t["name"] == "order_confirmation" and t["language"] == "en_US"
    assert [c["key"] for c in t["components"]] == ["header", "body", "button_0", "button_1"]
    header, body, button0, button1 = t["components"]
    assert header == {"key": "header", "type": "header", "sub_type": None, "index": None, "parameter_count": 1,
                      "parameter_names": [], "parameters": example("Send Message Template Interactive")
                      ["template"]["components"][0]["parameters"]}
    assert body["parameter_count"] == 3 and body["parameter_names"] == []
    assert button0["sub_type"] == "quick_reply" and button0["index"] == "0"
    assert button1["index"] == "1" and button1["parameters"] == [{"payload": "9rwnB8RbYmPF5t2Mn09x4h", "type": "payload"}]
    # parameter texts, currency and date_time fallbacks; quick-reply payloads are not shown
    assert m["texts"] == ["Jessica", "$100.99", "February 25, 1977"]
    assert m["urls"] == ["https://cdn.example.com/media/order-header.jpg"]


def test_template_integer_index_and_upper_case_sub_type() -> None:
    t = norm("Send Catalog Template Message")["template"]
    assert t["name"] == "intro_catalog_offer"
    button = t["components"][1]
    assert (button["key"], button["type"], button["sub_type"], button["index"]) == ("button_0", "button", "catalog", "0")
    assert button["parameter_count"] == 1


def test_template_without_components() -> None:
    m = norm("Send Test Message")
    assert m["template"] == {"name": "hello_world", "language": "en_US", "components": []}
    assert m["texts"] == []


def test_template_button_text_parameters_are_not_texts() -> None:
    # Meta's example sends booleans as quick-reply "text": tolerated, never shown.
    m = norm("Send Sample Issue Resolution Template")
    assert m["texts"] == ["*Mr. Jones*"]
    assert [c["key"] for c in m["template"]["components"]] == ["body", "button_0", "button_1"]


def test_template_named_parameters() -> None:
    payload = send(type="template", template={
        "name": "spring_sale", "language": {"code": "en_US"},
        "components": [
            {"type": "BODY", "parameters": [
                {"type": "text", "parameter_name": "first_name", "text": "Jessica"},
                {"type": "text", "parameter_name": "discount", "text": "20%"}]},
            {"type": "button", "sub_type": "url", "index": "1",
             "parameters": [{"type": "text", "text": "summer?ref=https://evil.example.net/x"}]},
        ]})
    m = normalize(payload)
    body, button = m["template"]["components"]
    assert body["key"] == "body" and body["type"] == "body"  # lower-cased
    assert body["parameter_names"] == ["first_name", "discount"] and body["parameter_count"] == 2
    assert button["key"] == "button_1" and button["sub_type"] == "url"
    assert m["texts"] == ["Jessica", "20%"]  # the URL suffix is not a text...
    assert m["urls"] == ["https://evil.example.net/x"]  # ...but a URL inside it is found


def test_template_header_media_location_and_coupon() -> None:
    m = normalize(send(type="template", template={
        "name": "pickup_ready", "language": {"code": "en_US"},
        "components": [
            {"type": "header", "parameters": [{"type": "location", "location": {
                "latitude": 37.48, "longitude": -122.15, "name": "Acme Downtown", "address": "1 Main St"}}]},
            {"type": "button", "sub_type": "copy_code", "index": 0,
             "parameters": [{"type": "coupon_code", "coupon_code": "SPRING25"}]},
        ]}))
    assert m["texts"] == ["Acme Downtown", "1 Main St", "SPRING25"]
    m = normalize(send(type="template", template={
        "name": "invoice", "language": {"code": "en_US"},
        "components": [{"type": "header", "parameters": [{"type": "document", "document": {
            "link": "https://cdn.example.com/inv.pdf", "filename": "Invoice 2291.pdf"}}]}]}))
    assert m["urls"] == ["https://cdn.example.com/inv.pdf"]
    assert m["texts"] == ["Invoice 2291.pdf"]


def test_template_carousel_cards_are_scanned() -> None:
    m = normalize(send(type="template", template={
        "name": "carousel_promo", "language": {"code": "en_US"},
        "components": [
            {"type": "body", "parameters": [{"type": "text", "text": "Jessica"}]},
            {"type": "carousel", "cards": [{"card_index": 0, "components": [
                {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://cdn.example.com/c0.jpg"}}]},
                {"type": "body", "parameters": [{"type": "text", "text": "Only 9.99 at shop.example.com"}]},
            ]}]},
        ]}))
    assert [c["key"] for c in m["template"]["components"]] == ["body", "carousel"]
    assert m["texts"] == ["Jessica", "Only 9.99 at shop.example.com"]
    assert m["urls"] == ["https://cdn.example.com/c0.jpg", "shop.example.com"]


def test_marketing_parameterized_template() -> None:
    m = norm("Parameterized Template", "marketing_messages")
    assert m["recipient"] == "16315552222"
    assert m["template"]["name"] == "promotional_offer" and m["template"]["language"] == "en"
    assert m["texts"] == ["John Doe", "$25.00"]


def test_interactive_reply_buttons() -> None:
    m = norm("Send Reply Button")
    assert m["interactive_type"] == "button"
    assert m["texts"] == ["Choose an option", "Confirm", "Reschedule"]  # ids are not texts


def test_interactive_list() -> None:
    m = norm("Send List Message")
    assert m["interactive_type"] == "list"
    assert m["texts"] == [
        "Delivery options", "How would you like to receive your order?", "Acme Outfitters", "Choose an option",
        "Shipping", "Standard", "3 to 5 business days", "Express", "Next business day",
        "Pick up", "Downtown store", "Ready in 2 hours", "Airport kiosk", "Ready tomorrow",
    ]
    assert m["limited_texts"] == []  # only text.body and captions are tracked


def test_interactive_cta_url() -> None:
    m = normalize(send(type="interactive", interactive={
        "type": "cta_url",
        "header": {"type": "image", "image": {"link": "https://cdn.example.com/tour.jpg"}},
        "body": {"text": "Tickets for the tour are on sale."},
        "footer": {"text": "Acme Live"},
        "action": {"name": "cta_url", "parameters": {"display_text": "See Dates", "url": "https://tickets.example.com/tour"}},
    }))
    assert m["interactive_type"] == "cta_url"
    assert m["texts"] == ["Tickets for the tour are on sale.", "Acme Live", "See Dates"]
    assert m["urls"] == ["https://cdn.example.com/tour.jpg", "https://tickets.example.com/tour"]


@pytest.mark.parametrize("name,cta", [("Send Published Flow by ID", "Open Flow!"), ("Send Draft Flow by Name", "Not shown in draft mode")])
def test_interactive_flow(name: str, cta: str) -> None:
    m = norm(name)
    assert m["interactive_type"] == "flow"
    assert m["texts"][-1] == cta and len(m["texts"]) == 4
    assert m["urls"] == []


def test_interactive_flow_data_urls_are_swept() -> None:
    payload = example("Send Published Flow by ID")
    payload["interactive"]["action"]["parameters"]["flow_action_payload"]["data"]["promo"] = "see https://promo.example.org/a"
    assert normalize(payload)["urls"] == ["https://promo.example.org/a"]


def test_interactive_product_and_product_list_and_catalog() -> None:
    product = norm("Send Single Product Message")
    assert product["interactive_type"] == "product"
    assert product["texts"] == ["Our best-selling tee, back in stock.", "Acme Outfitters"]
    product_list = norm("Send Multi-Product Message")
    assert product_list["interactive_type"] == "product_list"
    assert product_list["texts"] == ["New arrivals", "Picked for you this week", "Acme Outfitters", "T-shirts", "Hoodies"]
    catalog = norm("Send Catalog Message")
    assert catalog["interactive_type"] == "catalog_message"
    assert catalog["texts"] == ["Hello! Thanks for your interest. Ordering is easy. Just visit our catalog and add items to purchase.",
                                "Best grocery deals on WhatsApp!"]


def test_interactive_order_details_and_status() -> None:
    details = norm("Send Order Details Message")
    assert details["interactive_type"] == "order_details"
    assert details["recipient"] == "919876543210"
    assert "bread" in details["texts"] and details["texts"][0] == "Thanks for your order! Review it and pay below."
    assert details["urls"] == ["https://upload.wikimedia.org/wikipedia/commons/thumb/3/3b/"
                               "Home_made_sour_dough_bread.jpg/640px-Home_made_sour_dough_bread.jpg"]
    status = norm("Send Order Status Message")
    assert status["interactive_type"] == "order_status"
    assert status["texts"] == ["Thanks for your order! Review it and pay below.", "optional-text"]


def test_interactive_carousel_cards() -> None:
    m = normalize(send(type="interactive", interactive={
        "type": "carousel", "body": {"text": "Our picks"},
        "action": {"cards": [{"card_index": 0, "type": "cta_url",
                              "header": {"type": "image", "image": {"link": "https://cdn.example.com/1.jpg"}},
                              "body": {"text": "Tee"},
                              "action": {"name": "cta_url", "parameters": {"display_text": "Buy", "url": "https://shop.example.com/1"}}}]},
    }))
    assert m["texts"] == ["Our picks", "Tee", "Buy"]
    assert m["urls"] == ["https://cdn.example.com/1.jpg", "https://shop.example.com/1"]


def test_contacts() -> None:
    m = norm("Send Contact Message")
    assert m["type"] == "contacts"
    for text in ("John Smith", "Smith", "WhatsApp", "Manager", "1 Hacker Way", "Menlo Park",
                 "+1 (650) 555-1234", "test@fb.com", "2012-08-18"):
        assert text in m["texts"]
    assert "WORK" not in m["texts"] and "16505551234" not in m["texts"]  # labels and wa_ids are not shown
    assert m["urls"] == ["https://www.facebook.com", "https://www.whatsapp.com"]  # not "fb.com" from the e-mail


def test_location() -> None:
    m = norm("Send Reply to Location Message")
    assert m["type"] == "location"
    assert m["texts"] == ["META HQ", "1 Hacker Way, Menlo Park, CA 94025"]
    assert m["context_message_id"].startswith("wamid.")


def test_reaction_emoji_is_not_a_text() -> None:
    m = norm("Send Reply with Reaction Message")
    assert m["type"] == "reaction" and m["texts"] == [] and m["urls"] == []
    assert m["context_message_id"] is None


def test_read_receipt_and_typing_indicator() -> None:
    m = norm("Send typing indicator and read receipt")
    assert m["type"] == "status" and m["is_status"] is True
    assert m["recipient"] is None
    assert m["context_message_id"] == "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUYzMjEzNDM2RTZGQ0MzMDJBRgA="
    assert m["texts"] == [] and m["template"] is None


def test_a_status_field_on_a_message_is_judged_as_the_message() -> None:
    m = normalize(send(type="text", text={"body": "Buy followers"}, status="read", message_id="wamid.x"))
    assert (m["type"], m["is_status"], m["recipient"]) == ("text", False, PHONE)
    assert m["texts"] == ["Buy followers"]


def test_encrypted() -> None:
    m = norm("Send Encrypted Media Message", "messages_encrypted")
    assert m["type"] == "encrypted" and m["recipient"] is None and m["texts"] == [] and m["urls"] == []
    payload = example("Send Encrypted Text Message", "messages_encrypted")
    payload["to"] = "+55 11 98765-4321"
    assert normalize(payload, "messages_encrypted")["recipient"] == "5511987654321"


# --- recipients --------------------------------------------------------------------------------


@pytest.mark.parametrize("to,expected", [
    ("+16505551234", "16505551234"),
    ("+1 (650) 555-1234", "16505551234"),
    (" 1-650-555-1234 ", "16505551234"),
    ("+55 11 98765.4321", "5511987654321"),
    ("Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD", "Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD"),
])
def test_to_normalization(to: str, expected: str) -> None:
    assert normalize(send(to=to, type="text", text={"body": "hi"}))["recipient"] == expected
    assert normalize_recipient(to) == expected


def test_bsuid_recipient_is_kept_as_is() -> None:
    payload = send(type="text", text={"body": "hi"})
    del payload["to"]
    payload["recipient"] = "US.13491208655302741918"
    assert normalize(payload)["recipient"] == "US.13491208655302741918"
    payload["to"] = "+1 650 555 1234"  # both sent: the phone number wins
    assert normalize(payload)["recipient"] == PHONE


def test_group_recipient_type_and_default() -> None:
    payload = send(type="text", text={"body": "hi"}, recipient_type="group", to="Y2FwaV9ncm91cDox")
    m = normalize(payload)
    assert m["recipient_type"] == "group" and m["recipient"] == "Y2FwaV9ncm91cDox"
    del payload["recipient_type"]
    assert normalize(payload)["recipient_type"] == "individual"


# --- URLs --------------------------------------------------------------------------------------


def test_shortener_in_text_caption_url_and_cta_url_all_land_in_urls() -> None:
    text = normalize(send(type="text", text={"body": "Flash sale! Grab it at bit.ly/3xYz9 before midnight"}))
    assert text["urls"] == ["bit.ly/3xYz9"]
    caption = normalize(send(type="image", image={"link": "https://cdn.example.com/a.jpg",
                                                 "caption": "Details: https://promo.example.com/spring?src=wa"}))
    assert caption["urls"] == ["https://cdn.example.com/a.jpg", "https://promo.example.com/spring?src=wa"]
    cta = normalize(send(type="interactive", interactive={
        "type": "cta_url", "body": {"text": "More at www.example.org/deals."},
        "action": {"name": "cta_url", "parameters": {"display_text": "Open", "url": "https://tinyurl.com/acme"}}}))
    assert cta["urls"] == ["www.example.org/deals", "https://tinyurl.com/acme"]


@pytest.mark.parametrize("body,urls", [
    ("Version 3.5 costs $100.99, e.g. today", []),
    ("Write to sales@acme-shop.com or john.smith@example.co.uk", []),
    ("Hello.My name is Ana. Thanks.So see you", []),
    ("Attached: report.pdf and photo.jpg", []),
    ("Visit https://a.example.com/x, then (see t.co/abc) and wa.me/16505551234!", [
        "https://a.example.com/x", "t.co/abc", "wa.me/16505551234"]),
    ("*https://bold.example.com*  _www.italic.example.com_ ~bit.ly/gone~", [
        "https://bold.example.com", "www.italic.example.com", "bit.ly/gone"]),
    ("https://en.wikipedia.org/wiki/Foo_(bar) and example.com.", ["https://en.wikipedia.org/wiki/Foo_(bar)", "example.com"]),
    ("same https://x.example.com twice https://x.example.com", ["https://x.example.com"]),
    ("shop at ACME.COM or localhost:8080", ["ACME.COM"]),
])
def test_urls_inside_text(body: str, urls: list[str]) -> None:
    assert normalize(send(type="text", text={"body": body}))["urls"] == urls


def test_limited_text_length_counts_characters() -> None:
    m = normalize(send(type="text", text={"body": "olá 😀" * 1000}))
    assert m["limited_texts"] == [{"field": "text.body", "kind": "body", "length": 5000}]


# --- invalid payloads --------------------------------------------------------------------------

_TEMPLATE = {"name": "order_update", "language": {"code": "en_US"}}


def _template(**changes: Any) -> dict[str, Any]:
    return send(type="template", template={**copy.deepcopy(_TEMPLATE), **changes})


INVALID: list[tuple[str, object, str, str]] = [
    # (id, payload, endpoint, the words the message must contain)
    ("not-object", [1, 2], "messages", "request body must be a JSON object"),
    ("string-body", "hi", "messages", "request body must be a JSON object"),
    ("no-recipient", {"messaging_product": "whatsapp", "type": "text", "text": {"body": "hi"}}, "messages", "to is required"),
    ("to-number", send(to=16505551234, type="text", text={"body": "hi"}), "messages", "to must be a string"),
    ("to-empty", send(to="  ", type="text", text={"body": "hi"}), "messages", "to must not be empty"),
    ("recipient-number", {"messaging_product": "whatsapp", "recipient": 5, "type": "text", "text": {"body": "hi"}}, "messages",
     "recipient must be a string"),
    ("no-type", send(), "messages", "type is required: no message content"),
    ("ambiguous-type", send(image={"id": "1"}, text={"body": "x"}), "messages", "several content objects"),
    ("unknown-type", send(type="foo", foo={}), "messages", "unknown message type 'foo'"),
    ("type-number", send(type=3, text={"body": "hi"}), "messages", "type must be a string"),
    ("status-as-type", send(type="status"), "messages", "unknown message type 'status'"),
    ("image-missing", send(type="image"), "messages", "image is required"),
    ("image-not-object", send(type="image", image="https://x.example.com/a.jpg"), "messages", "image must be an object"),
    ("image-no-id-or-link", send(type="image", image={"caption": "hi"}), "messages", "image needs an id or a link"),
    ("caption-number", send(type="video", video={"id": "1", "caption": 5}), "messages", "video.caption must be a string"),
    ("text-not-object", send(type="text", text="hi"), "messages", "text must be an object"),
    ("body-not-string", send(type="text", text={"body": ["hi"]}), "messages", "text.body must be a string"),
    ("body-missing", send(type="text", text={"preview_url": True}), "messages", "text.body is required"),
    ("recipient-type", send(recipient_type="broadcast", type="text", text={"body": "hi"}), "messages",
     "recipient_type must be \"individual\" or \"group\""),
    ("marketing-text", send(type="text", text={"body": "hi"}), "marketing_messages", "marketing_messages only sends templates"),
    ("marketing-default-text", send(text={"body": "hi"}), "marketing_messages", "marketing_messages only sends templates"),
    ("encrypted-missing", {"messaging_product": "whatsapp"}, "messages_encrypted", "encrypted_contents"),
    ("encrypted-not-string", {"messaging_product": "whatsapp", "encrypted_contents": {"a": 1}}, "messages_encrypted",
     "encrypted_contents"),
    ("status-not-read", {"messaging_product": "whatsapp", "status": "delivered", "message_id": "wamid.x"}, "messages",
     "status must be \"read\""),
    ("status-no-id", {"messaging_product": "whatsapp", "status": "read"}, "messages", "message_id is required"),
    ("status-id-number", {"messaging_product": "whatsapp", "status": "read", "message_id": 7}, "messages",
     "message_id must be a string"),
    ("status-extra-field", {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.x", "context": {}},
     "messages", "carries only messaging_product, status, message_id and typing_indicator, not context"),
    ("status-typing-kind", {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.x",
                            "typing_indicator": {"type": "voice"}}, "messages", "typing_indicator.type must be \"text\""),
    ("status-typing-extra", {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.x",
                             "typing_indicator": {"type": "text", "ttl": 5}}, "messages", "typing_indicator must be exactly"),
    ("status-with-to-only", {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.x", "to": PHONE},
     "messages", "type is required"),
    ("product-missing", {"to": PHONE, "type": "text", "text": {"body": "hi"}}, "messages",
     "The parameter messaging_product is required."),
    ("product-missing-status", {"status": "read", "message_id": "wamid.x"}, "messages",
     "The parameter messaging_product is required."),
    ("product-missing-encrypted", {"encrypted_contents": "eyJ..."}, "messages_encrypted",
     "The parameter messaging_product is required."),
    ("product-number", send(messaging_product=1, type="text", text={"body": "hi"}), "messages",
     "messaging_product must be the string \"whatsapp\", not a number"),
    ("product", send(messaging_product="sms", type="text", text={"body": "hi"}), "messages",
     'Param messaging_product must be one of {WHATSAPP} - got "sms".'),
    ("context", send(type="text", text={"body": "hi"}, context="wamid.x"), "messages", "context must be an object"),
    ("context-id", send(type="text", text={"body": "hi"}, context={}), "messages", "context.message_id is required"),
    ("template-name-missing", send(type="template", template={"language": {"code": "en_US"}}), "messages",
     "template.name is required"),
    ("template-name-number", _template(name=7), "messages", "template.name must be a string"),
    ("template-language-string", _template(language="en_US"), "messages", "template.language must be an object"),
    ("template-language-code", _template(language={"policy": "deterministic"}), "messages", "template.language.code is required"),
    ("components-object", _template(components={"type": "body"}), "messages", "template.components must be a list"),
    ("component-not-object", _template(components=["body"]), "messages", "template.components[0] must be an object"),
    ("component-type", _template(components=[{"parameters": []}]), "messages", "template.components[0].type is required"),
    ("parameters-not-list", _template(components=[{"type": "body"}, {"type": "body", "parameters": {"type": "text"}}]),
     "messages", "template.components[1].parameters must be a list"),
    ("parameter-not-object", _template(components=[{"type": "body", "parameters": ["Jessica"]}]), "messages",
     "template.components[0].parameters[0] must be an object"),
    ("parameter-text", _template(components=[{"type": "body", "parameters": [{"type": "text", "text": 5}]}]), "messages",
     "template.components[0].parameters[0].text must be a string"),
    ("parameter-name", _template(components=[{"type": "body", "parameters": [
        {"type": "text", "text": "a", "parameter_name": 1}]}]), "messages",
     "template.components[0].parameters[0].parameter_name must be a string"),
    ("parameter-currency", _template(components=[{"type": "body", "parameters": [{"type": "currency"}]}]), "messages",
     "template.components[0].parameters[0].currency is required"),
    ("button-index-float", _template(components=[{"type": "button", "sub_type": "url", "index": 1.5, "parameters": []}]),
     "messages", "template.components[0].index must be a string or an integer"),
    ("button-index-word", _template(components=[{"type": "button", "sub_type": "url", "index": "first"}]), "messages",
     "template.components[0].index must be a button position"),
    ("button-index-missing", _template(components=[{"type": "button", "sub_type": "quick_reply"}]), "messages",
     "template.components[0].index is required"),
    ("interactive-type", send(type="interactive", interactive={"body": {"text": "hi"}}), "messages", "interactive.type is required"),
    ("interactive-body", send(type="interactive", interactive={"type": "button", "body": {"text": 1}}), "messages",
     "interactive.body.text must be a string"),
    ("interactive-buttons", send(type="interactive", interactive={"type": "button", "action": {"buttons": {}}}), "messages",
     "interactive.action.buttons must be a list"),
    ("interactive-row-title", send(type="interactive", interactive={"type": "list", "action": {
        "button": "Go", "sections": [{"rows": [{"id": "1", "title": None}, {"id": "2", "title": 2}]}]}}), "messages",
     "interactive.action.sections[0].rows[1].title must be a string"),
    ("cta-url", send(type="interactive", interactive={"type": "cta_url", "action": {"parameters": {"url": ["x"]}}}),
     "messages", "interactive.action.parameters.url must be a string"),
    ("contacts-object", send(type="contacts", contacts={"name": {}}), "messages", "contacts must be a list"),
    ("contacts-empty", send(type="contacts", contacts=[]), "messages", "contacts must not be empty"),
    ("contact-name", send(type="contacts", contacts=[{"phones": []}]), "messages", "contacts[0].name is required"),
    ("contact-phones", send(type="contacts", contacts=[{"name": {"formatted_name": "A"}, "phones": "1"}]), "messages",
     "contacts[0].phones must be a list"),
    ("location-lat", send(type="location", location={"longitude": 1}), "messages", "location.latitude is required"),
    ("location-lat-word", send(type="location", location={"latitude": "north", "longitude": 1}), "messages",
     "location.latitude must be a number"),
    ("reaction-id", send(type="reaction", reaction={"emoji": "x"}), "messages", "reaction.message_id is required"),
]


@pytest.mark.parametrize("payload,endpoint,words", [case[1:] for case in INVALID], ids=[case[0] for case in INVALID])
def test_invalid_payloads_name_the_problem(payload: object, endpoint: str, words: str) -> None:
    with pytest.raises(InvalidMessage) as err:
        normalize(payload, endpoint)
    assert words in str(err.value)
    assert isinstance(err.value, ValueError)


def test_unknown_type_message_is_short() -> None:
    with pytest.raises(InvalidMessage) as err:
        normalize(send(type="x" * 5000))
    assert len(str(err.value)) < 300


def test_unknown_endpoint_is_a_caller_bug() -> None:
    with pytest.raises(ValueError) as err:
        normalize(send(type="text", text={"body": "hi"}), "calls")
    assert not isinstance(err.value, InvalidMessage)


def test_template_parameters_are_passed_through_as_sent() -> None:
    payload = example("Send Message Template Media")
    sent = payload["template"]["components"][1]["parameters"]
    component = normalize(payload)["template"]["components"][1]
    assert component["parameters"] == sent and component["parameter_count"] == len(sent) == 3


def test_words_and_links_are_derived_for_cheap_matching() -> None:
    m = normalize(send(type="text", text={"body": "Buy-Followers now! https://Go.Bit.ly:443/x"}))
    assert m["words"] == " buy followers now https go bit ly 443 x "
    assert m["links"] == [{"url": "https://Go.Bit.ly:443/x", "host": "go.bit.ly",
                           "domains": ["go.bit.ly", "bit.ly", "ly"]}]
    two = normalize(send(type="image", image={"link": "https://www.Acme.example/a.png", "caption": "Ça va?"}))
    assert two["words"] == " ça va "
    assert [link["host"] for link in two["links"]] == ["acme.example"]
    assert normalize(send(type="reaction", reaction={"message_id": "wamid.x", "emoji": "x"}))["words"] == ""


# --- interactive and location facts (payload.rego) --------------------------------------------

PAYLOAD_ENGINE = compile_bundle(PolicyBundle.load(POLICIES))


def payload_reasons(message: dict[str, Any]) -> list[dict[str, Any]]:
    """What payload.rego says about a normalized message (the default policies and data)."""
    PAYLOAD_ENGINE.set_input_json(orjson.dumps({"message": message}).decode())
    reasons: list[dict[str, Any]] = orjson.loads(PAYLOAD_ENGINE.eval_rule_as_json("data.sendgate.payload.deny"))
    return reasons


INTERACTIVE_OR_LOCATION = sorted(key for key, kind in EXPECTED_TYPES.items() if kind in ("interactive", "location"))


@pytest.mark.parametrize("key", INTERACTIVE_OR_LOCATION, ids=lambda k: k[1])
def test_every_meta_interactive_and_location_example_passes_the_payload_rules(key: tuple[str, str]) -> None:
    message = normalize(CORPUS[key], key[0])
    assert (message["interactive"] is None) is (message["type"] != "interactive")
    assert (message["location"] is None) is (message["type"] != "location")
    assert payload_reasons(message) == []


def test_payload_facts_are_null_for_other_messages() -> None:
    for key in ("Send Text Message", "Send Message Template Text", "Send Image Message by URL"):
        m = norm(key)
        assert m["interactive"] is None and m["location"] is None
        assert m["card_numbers"] == [] and m["ibans"] == []


def test_reply_button_facts() -> None:
    m = norm("Send Reply Button")
    assert m["interactive"] == {
        "type": "button",
        "fields": [
            {"field": "interactive.body.text", "kind": "body", "length": 16},
            {"field": "interactive.action.buttons[0].reply.title", "kind": "button_title", "length": 7},
            {"field": "interactive.action.buttons[0].reply.id", "kind": "button_id", "length": 19},
            {"field": "interactive.action.buttons[1].reply.title", "kind": "button_title", "length": 10},
            {"field": "interactive.action.buttons[1].reply.id", "kind": "button_id", "length": 22},
        ],
        "button_count": 2,
        "duplicate_button_ids": [],
        "duplicate_button_titles": [],
        "section_count": 0,
        "row_count": 0,
    }


def test_list_facts() -> None:
    facts = norm("Send List Message")["interactive"]
    assert (facts["type"], facts["section_count"], facts["row_count"], facts["button_count"]) == ("list", 2, 4, 0)
    kinds = [f["kind"] for f in facts["fields"]]
    assert kinds[:4] == ["header_text", "body", "footer", "list_button"]
    assert kinds.count("section_title") == 2 and kinds.count("row_title") == 4
    assert kinds.count("row_description") == 4 and kinds.count("row_id") == 4
    assert {"field": "interactive.action.sections[1].rows[0].description", "kind": "row_description",
            "length": len("Ready in 2 hours")} in facts["fields"]


def test_cta_url_display_text_and_media_header() -> None:
    m = normalize(send(type="interactive", interactive={
        "type": "cta_url",
        "header": {"type": "image", "image": {"link": "https://cdn.example.com/tour.jpg"}},
        "body": {"text": "Tickets for the tour are on sale."},
        "action": {"name": "cta_url", "parameters": {"display_text": "See Dates", "url": "https://tickets.example.com/t"}},
    }))
    assert m["interactive"]["fields"] == [
        {"field": "interactive.body.text", "kind": "body", "length": 33},
        {"field": "interactive.action.parameters.display_text", "kind": "cta_display_text", "length": 9},
    ]  # an image header has no text to cap
    assert payload_reasons(m) == []


def test_lengths_are_characters_not_bytes() -> None:
    title = "Sí, confirmar 👍🏽ñ"  # 17 code points, 26 bytes in UTF-8
    m = normalize(send(type="interactive", interactive={
        "type": "button", "body": {"text": "¿Confirmas?"},
        "action": {"buttons": [{"type": "reply", "reply": {"id": "yes", "title": title}}]},
    }))
    assert {"field": "interactive.action.buttons[0].reply.title", "kind": "button_title", "length": 17} in m["interactive"]["fields"]
    assert payload_reasons(m) == []


def _buttons(*replies: tuple[str, str]) -> dict[str, Any]:
    return send(type="interactive", interactive={
        "type": "button", "body": {"text": "Pick one"},
        "action": {"buttons": [{"type": "reply", "reply": {"id": i, "title": t}} for i, t in replies]},
    })


def test_broken_limits_are_facts_not_invalid_messages() -> None:
    # normalize() accepts what only Meta's limits forbid: the policies decide (and can be tuned)
    m = normalize(_buttons(("a", "x" * 21), ("a", "Same"), ("b", "Same"), ("c" * 257, "Four")))
    facts = m["interactive"]
    assert facts["button_count"] == 4
    assert facts["duplicate_button_ids"] == ["a"] and facts["duplicate_button_titles"] == ["Same"]
    reasons = payload_reasons(m)
    assert sorted(r["rule"] for r in reasons) == ["payload.buttons", "payload.duplicate_button",
                                                  "payload.duplicate_button", "payload.length", "payload.length"]
    assert {(r["kind"], r["length"]) for r in reasons if r["rule"] == "payload.length"} == {("button_title", 21), ("button_id", 257)}


def test_no_buttons_at_all() -> None:
    m = normalize(send(type="interactive", interactive={"type": "button", "body": {"text": "?"}, "action": {}}))
    assert m["interactive"]["button_count"] == 0
    assert [r["rule"] for r in payload_reasons(m)] == ["payload.buttons"]


def test_list_over_ten_rows_in_all() -> None:
    sections = [{"title": f"S{i}", "rows": [{"id": f"r{i}{j}", "title": f"Row {j}"} for j in range(4)]} for i in range(3)]
    m = normalize(send(type="interactive", interactive={
        "type": "list", "body": {"text": "Pick"}, "action": {"button": "Options", "sections": sections}}))
    assert (m["interactive"]["section_count"], m["interactive"]["row_count"]) == (3, 12)
    reasons = payload_reasons(m)
    assert [(r["rule"], r["rows"]) for r in reasons] == [("payload.list", 12)]


@pytest.mark.parametrize(("latitude", "longitude", "expected"), [
    (37.758056, -122.425332, {"latitude": 37.758056, "longitude": -122.425332}),
    ("-33.8688", "151.2093", {"latitude": -33.8688, "longitude": 151.2093}),  # numeric strings, as SDKs send
    (90, -180, {"latitude": 90.0, "longitude": -180.0}),
    (123.4, 0, {"latitude": 123.4, "longitude": 0.0}),  # out of range: a fact, payload.location decides
])
def test_location_facts(latitude: Any, longitude: Any, expected: dict[str, float]) -> None:
    m = normalize(send(type="location", location={"latitude": latitude, "longitude": longitude}))
    assert m["location"] == expected
    assert [r["axis"] for r in payload_reasons(m)] == (["latitude"] if expected["latitude"] > 90 else [])


@pytest.mark.parametrize("value", ["nan", "inf", "-Infinity", "1e999", True, [1]])
def test_location_not_a_number_is_invalid(value: Any) -> None:
    with pytest.raises(InvalidMessage, match="location.latitude must be a number"):
        normalize(send(type="location", location={"latitude": value, "longitude": 1}))


# --- card numbers and IBANs ------------------------------------------------------------------

# Test numbers the card networks publish for integration tests; none is a real card.
VISA = "4111 1111 1111 1111"
AMEX = "378282246310005"
MASTERCARD = "5555-5555-5555-4444"
DE_IBAN = "DE89 3704 0044 0532 0130 00"  # the ISO 13616 example IBAN
GB_IBAN = "GB82WEST12345698765432"


def test_luhn_and_mod97() -> None:
    assert luhn_valid("4111111111111111") and luhn_valid("378282246310005")
    assert not luhn_valid("4111111111111112")
    assert iban_valid("DE89370400440532013000") and iban_valid("GB82WEST12345698765432")
    assert not iban_valid("DE89370400440532013001")


@pytest.mark.parametrize(("text", "masked", "network"), [
    (f"Your card {VISA} was charged", "Your card **** **** **** 1111 was charged", "visa"),
    (f"card:{AMEX}.", "card:***********0005.", "amex"),
    (f"({MASTERCARD})", "(****-****-****-4444)", "mastercard"),
    ("ref 79927398713 ok", "ref 79927398713 ok", None),  # 11 digits: too short for a card
    ("order 1000000000009", "order *********0009", None),  # Luhn-valid, 13 digits, no network
])
def test_card_numbers_found_and_masked(text: str, masked: str, network: str | None) -> None:
    m = normalize(send(type="text", text={"body": text}))
    assert m["texts"] == [masked]
    assert text == masked or m["card_numbers"][0]["network"] == network
    assert all("1111 1111 1111" not in w for w in (m["words"], *m["texts"]))


@pytest.mark.parametrize("text", [
    "4111 1111 1111 1112",  # fails Luhn
    "call +4111111111111111",  # a leading "+": a phone number
    "4111111111111111111111",  # 22 digits: not a card, nor a card inside it
    "0000 0000 0000 0000",  # one digit repeated passes Luhn but is no card
    "4111  1111  1111  1111",  # two spaces between groups
    "id A4111111111111111",  # glued to a letter
])
def test_not_card_numbers(text: str) -> None:
    m = normalize(send(type="text", text={"body": text}))
    assert m["card_numbers"] == [] and m["texts"] == [text]


def test_phone_numbers_of_the_corpus_are_not_card_numbers() -> None:
    for key in sorted(CORPUS):
        message = normalize(CORPUS[key], key[0])
        assert message["card_numbers"] == [] and message["ibans"] == [], key


@pytest.mark.parametrize(("text", "country", "last4"), [
    (f"IBAN: {DE_IBAN}", "DE", "3000"),
    (f"pay to {GB_IBAN} today", "GB", "5432"),
    ("nl91abna0417164300", "NL", "4300"),  # lower case still counts
])
def test_ibans_found_and_masked(text: str, country: str, last4: str) -> None:
    m = normalize(send(type="text", text={"body": text}))
    assert [(i["country"], i["last4"]) for i in m["ibans"]] == [(country, last4)]
    assert m["card_numbers"] == []  # an IBAN's digits are not also a card number
    assert m["ibans"][0]["masked"] in m["texts"][0]
    assert m["ibans"][0]["masked"].endswith(last4[:2] + " " + last4[2:]) or m["ibans"][0]["masked"].endswith(last4)
    assert "3704 0044" not in m["texts"][0] and "WEST1234" not in m["texts"][0]


@pytest.mark.parametrize("text", [
    "DE89 3704 0044 0532 0130 01",  # fails mod 97
    "DE89 3704 0044 0532 0130 001",  # one character too many for DE
    "XX89 3704 0044 0532 0130 00",  # no such country
    "PRODUCT DE89370400440532013000X",  # runs on
])
def test_not_ibans(text: str) -> None:
    assert normalize(send(type="text", text={"body": text}))["ibans"] == []


def test_card_numbers_in_every_kind_of_text_and_nowhere_in_the_input() -> None:
    payload = send(type="template", template={
        "name": "payment_failed", "language": {"code": "en_US"},
        "components": [{"type": "body", "parameters": [{"type": "text", "text": f"card {VISA}"}]},
                       {"type": "button", "sub_type": "url", "index": "0",
                        "parameters": [{"type": "text", "text": "4111111111111111"}]}],
    })
    m = normalize(payload)
    assert [c["last4"] for c in m["card_numbers"]] == ["1111"]  # the button suffix is not shown, so not a text
    dumped = orjson.dumps(m).decode()
    assert "4111" not in dumped and "1111 1111 1111" not in dumped  # the parameters "as sent" are masked too
    assert payload["template"]["components"][0]["parameters"][0]["text"] == f"card {VISA}"  # the body is not changed


def test_card_numbers_in_urls_and_button_ids_are_masked() -> None:
    m = normalize(send(type="interactive", interactive={
        "type": "button", "body": {"text": "See https://pay.example/?c=4111111111111111"},
        "action": {"buttons": [{"type": "reply", "reply": {"id": "4111111111111111", "title": "A"}},
                               {"type": "reply", "reply": {"id": "4111111111111111", "title": "B"}}]},
    }))
    assert "4111111111111111" not in orjson.dumps(m).decode()
    assert m["urls"] == ["https://pay.example/?c=************1111"]
    assert m["interactive"]["duplicate_button_ids"] == ["************1111"]


def test_graph_object_ids_are_not_card_numbers() -> None:
    # a media id that happens to pass Luhn, with a Maestro prefix: an id, kept for reviewers
    body = {"type": "image", "image": {"id": "5700292204016914"}, "catalog_id": 4111111111111111,
            "reply": {"id": "card 4111111111111111"}}
    assert mask_sensitive(body) == {**body, "reply": {"id": "card ************1111"}}


def test_mask_sensitive_walks_json_and_skips_recipient_fields() -> None:
    body = {"to": "4111111111111111", "text": {"body": f"{VISA} / {DE_IBAN}"}, "n": 4111111111111111, "ok": 3}
    masked = mask_sensitive(body, frozenset({"to"}))
    assert masked == {"to": "4111111111111111", "text": {"body": "**** **** **** 1111 / **** **** **** **** **30 00"},
                      "n": "************1111", "ok": 3}
    assert find("no digits here") == ("no digits here", [])


# -- Direct Send (Meta: direct-send/send-utility-and-authentication-messages, api-reference) ----

DIRECT_SEND = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": "+1 650 555 1234", "type": "text",
               "text": {"body": "Your order 4411 shipped"}, "category": "utility"}


def test_direct_send_category_and_ttl() -> None:
    m = normalize({**DIRECT_SEND, "ttl_seconds": 600})  # Meta's configure-message-ttl example
    assert (m["category"], m["ttl_seconds"], m["recipient_field"]) == ("utility", 600, "to")
    m = normalize({**DIRECT_SEND, "category": "Authentication"})
    assert (m["category"], m["ttl_seconds"]) == ("authentication", None)


def test_without_category_an_ordinary_free_form_send() -> None:
    m = normalize({k: v for k, v in DIRECT_SEND.items() if k != "category"})
    assert (m["category"], m["ttl_seconds"]) == (None, None)


def test_direct_send_to_a_bsuid_names_the_field() -> None:
    body = {k: v for k, v in DIRECT_SEND.items() if k != "to"} | {"recipient": "US.13491208655302741918"}
    assert normalize(body)["recipient_field"] == "recipient"


def test_direct_send_interactive() -> None:
    body = {k: v for k, v in DIRECT_SEND.items() if k != "text"} | {"type": "interactive", "interactive": {
        "type": "button", "body": {"text": "Confirm?"},
        "action": {"buttons": [{"type": "reply", "reply": {"id": "y", "title": "Yes"}}]}}}
    assert normalize(body)["category"] == "utility"


@pytest.mark.parametrize(("patch", "needle"), [
    ({"category": "marketing"}, 'category must be "utility" or "authentication"'),
    ({"category": 3}, "category must be a string"),
    ({"category": None, "ttl_seconds": 600}, "ttl_seconds is only supported with Direct Send"),
    ({"ttl_seconds": "600"}, "ttl_seconds must be a whole number"),
    ({"ttl_seconds": 60.5}, "ttl_seconds must be a whole number"),
    ({"ttl_seconds": True}, "ttl_seconds must be a whole number"),
    ({"type": "image", "image": {"id": "1"}}, "only goes with a text or interactive message"),
])
def test_direct_send_bad_input(patch: dict[str, Any], needle: str) -> None:
    body = {k: v for k, v in ({**DIRECT_SEND, **patch}).items() if v is not None}
    with pytest.raises(InvalidMessage, match=re.escape(needle)):
        normalize(body)

"""Meta's own send examples (send-examples.json), with their placeholders filled in.

The examples come from Meta's OpenAPI file, so they are shapes nobody on this
project wrote. Their placeholders ("{{Recipient-Phone-Number}}",
"<AUDIO_OBJECT_ID>", "http(s)://image-url"...) are replaced by concrete,
realistic values so the payloads look like real traffic. A placeholder this
module does not know makes `filled_examples()` fail, so a refreshed corpus
cannot slip unfilled strings into the tests.

Set SENDGATE_CLOUD_API_DIR to read the corpus from somewhere other than
/work/shared/cloud-api.
"""

from __future__ import annotations

import copy
import json
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["PLACEHOLDERS", "corpus_path", "filled_examples"]

# Exact placeholder strings -> values. Keys of objects are filled the same way.
PLACEHOLDERS: dict[str, str] = {
    # recipients and ids
    "{{Recipient-Phone-Number}}": "16505551234",
    "{{Recipient-WA-Phone-Number}}": "919876543210",
    "{{Flow-ID}}": "1184512859243613",
    "{{Flow-Name}}": "appointment_booking",
    "<AUDIO_OBJECT_ID>": "1013859600285441",
    "<DOCUMENT_OBJECT_ID>": "1376223850470848",
    "<IMAGE_OBJECT_ID>": "1479537139650973",
    "<VIDEO_OBJECT_ID>": "1166846181421424",
    "<MEDIA_OBJECT_ID>": "2029542057497361",
    "<MSGID_OF_MSG_YOU_ARE_REPLYING_TO>": "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQTdCNTg5RjY1MEMyRTNGQjlEQQA=",
    "<MSGID_OF_PREV_MSG>": "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQUI4RjdEMUI0NjM5MjFFRjk4MwA=",
    "<FLOW_TOKEN>": "AQAAAAACS5FpgQ_cAAAAAD0QI3s.",
    "<SCREEN_ID>": "BOOKING_DETAILS",
    "<CUSTOM_KEY>": "customer_name",
    "<CUSTOM_VALUE>": "Jessica Alvarez",
    "<ID_TEST_ITEM_1>": "SKU-TS-0001",
    "<YOUR_PRODUCT1_SKU_IN_CATALOG>": "SKU-TS-0001",
    "<YOUR_SECOND_PRODUCT1_SKU_IN_CATALOG>": "SKU-TS-0002",
    "<YOUR_PRODUCT2_SKU_IN_CATALOG>": "SKU-HD-0101",
    "<YOUR_SECOND_PRODUCT2_SKU_IN_CATALOG>": "SKU-HD-0102",
    "<UNIQUE_BUTTON_ID_1>": "confirm-appointment",
    "<UNIQUE_BUTTON_ID_2>": "reschedule-appointment",
    "<LIST_SECTION_1_ROW_1_ID>": "ship-standard",
    "<LIST_SECTION_1_ROW_2_ID>": "ship-express",
    "<LIST_SECTION_2_ROW_1_ID>": "pickup-downtown",
    "<LIST_SECTION_2_ROW_2_ID>": "pickup-airport",
    "<TEMPLATE_NAME>": "book_appointment",
    "template-name": "order_confirmation",
    "language-and-locale-code": "en_US",
    "<HEADER_TYPE>": "text",
    # media links
    "<http(s)://audio-url>": "https://cdn.example.com/media/voice-note.ogg",
    "http(s)://audio-url": "https://cdn.example.com/media/voice-note.ogg",
    "<http(s)://document-url>": "https://cdn.example.com/media/invoice-2291.pdf",
    "<http(s)://sticker-url>": "https://cdn.example.com/media/thumbs-up.webp",
    "<http(s)://video-url>": "https://cdn.example.com/media/unboxing.mp4",
    "http(s)://image-url": "https://cdn.example.com/media/spring-sale.jpg",
    "http(s)://the-image-url": "https://cdn.example.com/media/order-header.jpg",
    # human-visible texts
    "text-message-content": "Hi Jessica, your table for 4 is confirmed for 7 pm tonight.",
    "<TEXT_MSG_CONTENT>": "Your order has shipped and should arrive on Friday.",
    "<DOCUMENT_CAPTION_TO_SEND>": "Your invoice for October",
    "<DOCUMENT-CAPTION-TEXT>": "Your invoice for October",
    "<DOCUMENT_CAPTION_TEXT>": "Your invoice for October",
    "<DOCUMENT_FILENAME>": "invoice-2291.pdf",
    "<VIDEO_CAPTION_TEXT>": "Unboxing the new headphones",
    "<BODY_TEXT>": "How would you like to receive your order?",
    "<FOOTER_TEXT>": "Acme Outfitters",
    "<HEADER_TEXT>": "Delivery options",
    "<BUTTON_TEXT>": "Choose an option",
    "<BUTTON_TITLE_1>": "Confirm",
    "<BUTTON_TITLE_2>": "Reschedule",
    "<LIST_SECTION_1_TITLE>": "Shipping",
    "<LIST_SECTION_2_TITLE>": "Pick up",
    "<SECTION_1_ROW_1_TITLE>": "Standard",
    "<SECTION_1_ROW_1_DESC>": "3 to 5 business days",
    "<SECTION_1_ROW_2_TITLE>": "Express",
    "<SECTION_1_ROW_2_DESC>": "Next business day",
    "<SECTION_2_ROW_1_TITLE>": "Downtown store",
    "<SECTION_2_ROW_1_DESC>": "Ready in 2 hours",
    "<SECTION_2_ROW_2_TITLE>": "Airport kiosk",
    "<SECTION_2_ROW_2_DESC>": "Ready tomorrow",
    "<OPTIONAL_BODY_TEXT>": "Our best-selling tee, back in stock.",
    "<OPTIONAL_FOOTER_TEXT>": "Acme Outfitters",
    "<YOUR_TEXT_BODY_CONTENT>": "Picked for you this week",
    "<YOUR_TEXT_FOOTER_CONTENT>": "Acme Outfitters",
    "<YOUR_TEXT_HEADER_CONTENT>": "New arrivals",
    "<SECTION1_TITLE>": "T-shirts",
    "<SECTION2_TITLE>": "Hoodies",
    "text-string": "Jessica",
    "your-text-body-content": "Thanks for your order! Review it and pay below.",
    "your-text-footer-content": "Acme Grocers",
}

# Anything still shaped like a placeholder after filling.
_LEFTOVER = re.compile(r"<[A-Z0-9_-]+>|\{\{[^}]+\}\}|http\(s\)")

def corpus_path() -> Path:
    # shared/ sits beside the checkout, in development and in CI alike.
    default = Path(__file__).resolve().parents[2] / "shared" / "cloud-api"
    base = Path(os.environ.get("SENDGATE_CLOUD_API_DIR", default))
    return base / "send-examples.json"


def _fill(value: Any, where: str) -> Any:
    if isinstance(value, dict):
        return {_fill(key, where): _fill(item, where) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, where) for item in value]
    if isinstance(value, str):
        filled = PLACEHOLDERS.get(value, value)
        if _LEFTOVER.search(filled):
            raise ValueError(f"{where}: no value for placeholder {filled!r}; add it to PLACEHOLDERS")
        return filled
    return value


@lru_cache(maxsize=1)
def _load() -> dict[tuple[str, str], dict[str, Any]]:
    raw = json.loads(corpus_path().read_text(encoding="utf-8"))
    return {
        (endpoint, name): _fill(example, f"{endpoint}/{name}")
        for endpoint, examples in raw.items()
        for name, example in examples.items()
    }


def filled_examples() -> dict[tuple[str, str], dict[str, Any]]:
    """Every example as {(endpoint, name): payload}; endpoint is the send-examples.json key.

    Returns fresh copies, so callers may mutate them.
    """
    return copy.deepcopy(_load())

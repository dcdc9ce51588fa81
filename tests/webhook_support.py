"""Signed webhooks for the tests: Meta's payload shapes, the signature Meta sends, a tiny app receiver."""

from __future__ import annotations

import hashlib
import hmac
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from .conftest import PHONE_NUMBER_ID, SHARED, US_RECIPIENT, WABA_ID

APP_SECRET = "meta-app-secret-for-tests"
VERIFY_TOKEN = "verify-me-please"
WEBHOOK_PATH = "/webhook"
DISPLAY_NUMBER = "15550783881"
EXAMPLES: dict[str, Any] = orjson.loads((SHARED / "webhook-examples.json").read_bytes())

_ids = itertools.count(1)


def sign(body: bytes, secret: str = APP_SECRET) -> str:
    """`X-Hub-Signature-256` as Meta computes it: HMAC-SHA256 of the raw body with the app secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def post_webhook(
    client: TestClient,
    payload: Any,
    *,
    raw: bytes | None = None,
    secret: str = APP_SECRET,
    signature: str | None = None,
    signed: bool = True,
) -> tuple[int, str]:
    body = raw if raw is not None else orjson.dumps(payload)
    headers = {"Content-Type": "application/json", "User-Agent": "facebookexternalua"}
    if signed:
        headers["X-Hub-Signature-256"] = signature if signature is not None else sign(body, secret)
    response = await client.post(WEBHOOK_PATH, data=body, headers=headers)
    return response.status, await response.text()


def webhook_config(*forward_to: str, **extra: Any) -> dict[str, Any]:
    return {"app_secret": APP_SECRET, "verify_token": VERIFY_TOKEN, "forward_to": list(forward_to), **extra}


def wamid() -> str:
    return f"wamid.TEST{next(_ids):08d}"


def envelope(field_name: str, value: dict[str, Any], *, waba_id: str = WABA_ID, time: float | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": waba_id, "changes": [{"value": value, "field": field_name}]}
    if time is not None:
        entry["time"] = int(time)
    return {"object": "whatsapp_business_account", "entry": [entry]}


def messages_value(
    *, messages: list[dict[str, Any]] | None = None, statuses: list[dict[str, Any]] | None = None,
    sender: str = US_RECIPIENT, phone_number_id: str = PHONE_NUMBER_ID,
) -> dict[str, Any]:  # fmt: skip
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": DISPLAY_NUMBER, "phone_number_id": phone_number_id},
    }
    if messages is not None:
        value["contacts"] = [{"profile": {"name": "Sheena Nelson"}, "wa_id": sender}]
        value["messages"] = messages
    if statuses is not None:
        value["statuses"] = statuses
    return value


def inbound_text(body: str, at: float, *, sender: str = US_RECIPIENT, message_id: str | None = None,
                 phone_number_id: str = PHONE_NUMBER_ID) -> dict[str, Any]:  # fmt: skip
    message = {"from": sender, "id": message_id or wamid(), "timestamp": str(int(at)), "type": "text",
               "text": {"body": body}}  # fmt: skip
    return envelope("messages", messages_value(messages=[message], sender=sender, phone_number_id=phone_number_id))


def button_tap(payload: str, at: float, *, sender: str = US_RECIPIENT) -> dict[str, Any]:
    message = {"context": {"from": DISPLAY_NUMBER, "id": wamid()}, "from": sender, "id": wamid(),
               "timestamp": str(int(at)), "type": "button", "button": {"payload": payload, "text": payload}}  # fmt: skip
    return envelope("messages", messages_value(messages=[message], sender=sender))


def status_update(message_id: str, status: str, at: float, *, recipient: str = US_RECIPIENT,
                  error: int | None = None, title: str = "") -> dict[str, Any]:  # fmt: skip
    item: dict[str, Any] = {"id": message_id, "status": status, "timestamp": str(int(at)), "recipient_id": recipient}
    if status != "failed":
        item["pricing"] = {"billable": True, "pricing_model": "PMP", "category": "utility", "type": "regular"}
    if error is not None:
        item["errors"] = [{"code": error, "title": title or f"error {error}", "message": title or f"error {error}",
                           "error_data": {"details": "details"}, "href": "https://developers.facebook.com/"}]  # fmt: skip
    return envelope("messages", messages_value(statuses=[item]))


def user_preference(value: str, at: float, *, recipient: str = US_RECIPIENT) -> dict[str, Any]:
    return envelope(
        "user_preferences",
        {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": DISPLAY_NUMBER, "phone_number_id": PHONE_NUMBER_ID},
            "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": recipient}],
            "user_preferences": [{"wa_id": recipient, "detail": f"User requested to {value} marketing messages",
                                  "category": "marketing_messages", "value": value, "timestamp": int(at)}],
        },
    )  # fmt: skip


def template_status(event: str, at: float, *, name: str = "order_update", language: str = "en_US",
                    template_id: int | None = 11) -> dict[str, Any]:  # fmt: skip
    return envelope(
        "message_template_status_update",
        {"event": event, "message_template_id": template_id, "message_template_name": name,
         "message_template_language": language, "reason": "NONE"},
        time=at,
    )  # fmt: skip


def template_quality(score: str, at: float, *, name: str = "order_update", previous: str = "GREEN") -> dict[str, Any]:
    return envelope(
        "message_template_quality_update",
        {"previous_quality_score": previous, "new_quality_score": score, "message_template_id": 11,
         "message_template_name": name, "message_template_language": "en_US"},
        time=at,
    )  # fmt: skip


def template_category(new: str, at: float, *, name: str = "order_update", previous: str = "UTILITY") -> dict[str, Any]:
    return envelope(
        "template_category_update",
        {"message_template_id": 11, "message_template_name": name, "message_template_language": "en_US",
         "previous_category": previous, "new_category": new},
        time=at,
    )  # fmt: skip


def phone_quality(event: str, at: float, *, display: str = DISPLAY_NUMBER, limit: str = "TIER_10K") -> dict[str, Any]:
    return envelope(
        "phone_number_quality_update",
        {"display_phone_number": display, "event": event, "current_limit": limit,
         "max_daily_conversations_per_business": limit},
        time=at,
    )  # fmt: skip


def account_update(event: str, at: float, **detail: Any) -> dict[str, Any]:
    return envelope("account_update", {"event": event, **detail}, time=at)


@dataclass
class AppReceiver:
    """The app's own webhook endpoint: records what it got; `status` makes it answer an error."""

    status: int = 200
    received: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((await request.read(), dict(request.headers)))
        return web.Response(status=self.status, text="ok" if self.status < 300 else "down")

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/hook", self.handle)
        return app


async def start_receiver(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> AppReceiver:
    receiver = AppReceiver()
    server = await aiohttp_server(receiver.app())
    receiver.url = str(server.make_url("/hook"))
    return receiver

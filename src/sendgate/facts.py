"""Gather the facts a decision needs into the policy input document (docs/input.md)."""

from __future__ import annotations

import datetime as dt
import re
from functools import lru_cache
from typing import Any, Protocol
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sendgate.config import Config
from sendgate.places import recipient_place
from sendgate.state import AccountState, MediaCatalog, RecipientReads, TemplateCatalog, TemplateFacts

__all__ = ["WINDOW_SECONDS", "FactSources", "build_input", "in_open_window"]

# Meta's customer service window: 24 h from the user's last message (FACTS.md §4).
WINDOW_SECONDS = 86400


class FactSources(RecipientReads, TemplateCatalog, AccountState, MediaCatalog, Protocol):
    """What the input document is gathered from: the store's roles the send path reads."""


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _local_time(zone_name: str | None, now: float) -> dict[str, int] | None:
    zone = _zone(zone_name) if zone_name else None
    if zone is None:
        return None
    local = dt.datetime.fromtimestamp(now, zone)
    return {"hour": local.hour, "minute": local.minute, "weekday": local.weekday()}


def in_open_window(document: dict[str, Any] | None, now: float) -> bool | None:
    """Whether a send decided on `document` goes inside a window the user opened; None when the
    input was not built (the engine failed and on_engine_error let the send through)."""
    if document is None:
        return None
    last = (document.get("recipient") or {}).get("last_inbound_at")
    return isinstance(last, (int, float)) and now - last < WINDOW_SECONDS


_EXTENSION = re.compile(r"^[a-z0-9]{1,10}$")


def link_extension(link: str | None) -> str | None:
    """The file extension of a media link's path, lower-cased ("https://x/a.PDF?v=2" -> "pdf"), or None."""
    if not link:
        return None
    try:
        path = urlsplit(link.strip()).path
    except ValueError:  # an unreadable URL (a broken IPv6 host...): Meta's to refuse
        return None
    name = path.rsplit("/", 1)[-1]
    stem, dot, extension = name.rpartition(".")
    extension = extension.lower()
    return extension if dot and stem and _EXTENSION.match(extension) else None


def _mime(value: str | None) -> str | None:
    """A MIME type without its parameters, lower-cased: "audio/ogg; codecs=opus" -> "audio/ogg"."""
    base = value.split(";", 1)[0].strip().lower() if value else ""
    return base or None


async def _media_input(
    store: MediaCatalog, phone_number_id: str, media: dict[str, Any], now: float
) -> dict[str, Any]:
    """`message.media` with what sendgate knows of the file: from the media catalog for an id
    uploaded through sendgate, the link's extension for a link (docs/input.md)."""
    media_id = media.get("id")
    facts = await store.media_facts(phone_number_id, media_id, now) if media_id else None
    declared = _mime(facts.declared_type) if facts else None
    return {
        **media,
        "extension": link_extension(media.get("link")),
        "known": facts is not None,
        # The file part's type is what Meta checks an upload by; the form's `type` when it had none.
        "mime_type": (_mime(facts.mime_type) or declared) if facts else None,
        "declared_type": declared,
        "size": facts.size if facts else None,
        "animated": facts.animated if facts else None,
    }


async def build_input(
    config: Config, store: FactSources, endpoint: str, api_version: str, phone_number_id: str, message: dict[str, Any], now: float
) -> dict[str, Any]:
    account = config.account(phone_number_id)
    waba_id = account.waba_id if account else None
    recipient_id: str | None = message.get("recipient")
    template = message.get("template")

    recipient: dict[str, Any] | None = None
    template_facts: dict[str, Any] | None = None
    if recipient_id is not None and not message.get("is_status"):
        known = await store.recipient_facts(phone_number_id, waba_id, recipient_id, now)
        # Stored for every number with consent or an inbound message; worked out here otherwise.
        country, zone_name = known.place if known.place is not None else recipient_place(recipient_id)
        consent = known.consent
        recipient = {
            "id": recipient_id,
            "country": country,
            "timezone": zone_name,
            "local_time": _local_time(zone_name, now),
            "consent": None
            if consent is None
            else {
                "status": consent.status,
                "categories": list(consent.categories),
                "source": consent.source,
                "updated_at": consent.recorded_at,
            },
            "last_inbound_at": known.last_inbound_at,
            "history": {
                "last_sent_at": known.last_sent_at,
                "pair_sent_at": known.pair_sent_at,
                "marketing_sent_at": known.marketing_sent_at,
                "marketing_outside_window_sent_at": known.marketing_outside_window_sent_at,
            },
            "delivery_failures": known.delivery_failures,
            "free_entry_point_at": known.free_entry_point_at,
        }
    if template is not None:
        if waba_id is None:
            template_facts = TemplateFacts(False, False, [], None, None, {}).as_input()  # no catalog to look in
        else:
            facts = await store.template_facts(waba_id, template["name"], template["language"])
            template_facts = facts.as_input()

    media = message.get("media")
    if media is not None:
        message = {**message, "media": await _media_input(store, phone_number_id, media, now)}

    state = await store.account_state(phone_number_id, waba_id)  # from webhooks and alerts
    return {
        "now": now,
        "endpoint": endpoint,
        "api_version": api_version,
        "gateway": {"mode": config.mode, "allow_unknown_accounts": config.allow_unknown_accounts},
        "account": {
            "phone_number_id": phone_number_id,
            "known": account is not None,
            "waba_id": waba_id,
            "name": account.name if account else None,
            "markets": list(account.markets) if account and account.markets is not None else None,
            "direct_send": account.direct_send if account else False,
            "restrictions": state.get("restrictions", []),
            "quality": state["quality"],
            "status": state["status"],
            "messaging_limit": state["messaging_limit"],
            "marketing_paused": state["marketing_paused"],
        },
        "message": message,
        "recipient": recipient,
        "template": template_facts,
    }

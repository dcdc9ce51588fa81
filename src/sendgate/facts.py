"""Gather the facts a decision needs into the policy input document (docs/input.md)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Protocol
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sendgate.config import Account, Config
from sendgate.places import recipient_place
from sendgate.state import AccountState, MediaCatalog, RecipientReads, TemplateCatalog, TemplateFacts

__all__ = [
    "DEFAULT_THROUGHPUT_MPS", "WINDOW_SECONDS", "FactSources", "build_input", "in_open_window", "messaging_limit",
    "throughput_mps",
]  # fmt: skip

# Meta's customer service window: 24 h from the user's last message (FACTS.md §4).
WINDOW_SECONDS = 86400

DEFAULT_THROUGHPUT_MPS = 80  # Meta's default per number (FACTS.md §3)

# The number's tier as phone_number_quality_update's `current_limit` named it (removed by Meta in
# 2026): the messaging limit it meant, for a portfolio Meta has not reported on yet. -1: unlimited.
_TIER_LIMITS = {
    "TIER_50": 50, "TIER_250": 250, "TIER_1K": 1000, "TIER_2K": 2000, "TIER_10K": 10000, "TIER_100K": 100000,
    "TIER_UNLIMITED": -1,
}  # fmt: skip


def throughput_mps(account: Account | None, state: dict[str, Any]) -> int:
    """The number's throughput: the higher of the configured one (80 unless set; an unknown number
    gets Meta's default) and the one a THROUGHPUT_UPGRADE reported. An upgrade is Meta's word that
    the number may send more; a lower configured rate (20 for a coexistence number) stands until then."""
    configured = account.throughput_mps if account is not None else DEFAULT_THROUGHPUT_MPS
    upgraded: int | None = state.get("throughput_mps")
    return configured if upgraded is None else max(configured, upgraded)


def messaging_limit(account: Account | None, state: dict[str, Any]) -> int | None:
    """The portfolio's messaging limit: Meta's (business_capability_update) when it reported one,
    else the configured one, else the number's old tier string; None when nothing says (-1: unlimited)."""
    reported: int | None = state.get("portfolio_messaging_limit")
    if reported is not None:
        return reported
    if account is not None and account.messaging_limit is not None:
        return account.messaging_limit
    tier = state.get("messaging_limit")
    return _TIER_LIMITS.get(tier) if isinstance(tier, str) else None


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


def in_open_window(document: Mapping[str, Any] | None, now: float, seconds: float = WINDOW_SECONDS) -> bool | None:
    """Whether a send decided on `document` goes inside a window the user opened (their last
    message less than `seconds` ago); None when the input was not built (the engine failed and
    on_engine_error let the send through)."""
    if document is None:
        return None
    last = (document.get("recipient") or {}).get("last_inbound_at")
    return isinstance(last, (int, float)) and now - last < seconds


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

    portfolio = account.portfolio_id if account else None
    state = await store.account_state(phone_number_id, waba_id, portfolio)  # from webhooks and alerts
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
            "marketing_paused": state["marketing_paused"],
            # Meta's limits and sendgate's counts of them (gateway/counting.py fills the counts in).
            "portfolio": portfolio,
            "messaging_limit": messaging_limit(account, state),
            "throughput_mps": throughput_mps(account, state),
            "throughput": None,
            "reach": None,
            "same_content": None,
        },
        "message": message,
        "recipient": recipient,
        "template": template_facts,
    }

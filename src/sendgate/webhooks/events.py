"""A Meta webhook body into typed events (FACTS.md §7).

`parse_webhook` never raises on odd shapes: Meta adds fields and kinds over time, and a
webhook sendgate does not understand is still relayed to the app. What it cannot read it
reports in `Parsed.unknown` (the kinds) and `Parsed.problems` (malformed parts).

Event times are checked against the time the webhook was received, so that no bogus time
can open, extend or close a window, or shadow later events, for good:

- more than `MAX_FUTURE_SECONDS` after it was received: clamped to the received time (a problem);
- not a number, not finite, not positive, or before `EARLIEST_EVENT_TIME`: unusable. The event
  carries the reason in `unusable_time` and the received time as its `timestamp`; the applier
  refuses it, except an opt-out, which it applies at that time (the safe side).

A missing time is no error: the entry's `time`, else the received time, stands in (Meta gives
none for template and account events).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

from sendgate.messages import normalize_recipient

__all__ = [
    "EARLIEST_EVENT_TIME",
    "MAX_FUTURE_SECONDS",
    "AccountEvent",
    "InboundMessage",
    "Parsed",
    "StatusEvent",
    "TemplateEvent",
    "UserPreference",
    "parse_webhook",
    "restriction_expiries",
]

# How far after the webhook's receipt an event may be dated (clocks differ a little) before its
# time is taken for what it is, an error, and clamped to the received time.
MAX_FUTURE_SECONDS = 300
EARLIEST_EVENT_TIME = 1230768000.0  # 2009-01-01 UTC: WhatsApp did not exist before, no event is older

# (seconds, why they are unusable or None)
_When = tuple[float, str | None]


@dataclass(frozen=True)
class InboundMessage:
    """A user wrote to a business number (any type, including button taps and system messages)."""

    waba_id: str | None
    phone_number_id: str
    display_phone_number: str | None
    sender: str  # normalized wa_id, or the BSUID when there is no phone number
    message_id: str
    timestamp: float
    type: str
    text: str | None  # text.body
    button_payload: str | None  # type "button": a template quick-reply tap
    button_text: str | None
    referral: dict[str, Any] | None  # Click-to-WhatsApp ad / Page CTA entry
    unusable_time: str | None = None  # why Meta's time could not be used; `timestamp` is then the received time


@dataclass(frozen=True)
class StatusEvent:
    """What became of a message the business sent."""

    waba_id: str | None
    phone_number_id: str
    display_phone_number: str | None
    message_id: str
    status: str  # sent | delivered | read | played | failed | ...
    timestamp: float
    recipient: str | None
    errors: tuple[tuple[int, str], ...]  # (code, title)
    unusable_time: str | None = None


@dataclass(frozen=True)
class UserPreference:
    """`user_preferences`: the user stopped or resumed a category (marketing) in WhatsApp."""

    waba_id: str | None
    phone_number_id: str | None
    recipient: str
    category: str
    value: str  # stop | resume
    timestamp: float
    detail: str | None
    unusable_time: str | None = None


@dataclass(frozen=True)
class TemplateEvent:
    """A template's status, quality or category changed."""

    waba_id: str
    field: str  # message_template_status_update | message_template_quality_update | template_category_update
    template_id: str | None
    name: str | None
    language: str | None
    status: str | None
    quality: str | None
    category: str | None
    timestamp: float
    detail: dict[str, Any]
    unusable_time: str | None = None
    disable_at: float | None = None  # disable_info.disable_date (FLAGGED: when Meta will disable it)


@dataclass(frozen=True)
class AccountEvent:
    """`phone_number_quality_update` (one number), `account_update` (the whole WABA) or
    `business_capability_update` (the WABA's portfolio: its messaging limit)."""

    waba_id: str
    field: str
    event: str | None
    display_phone_number: str | None
    timestamp: float
    detail: dict[str, Any]
    unusable_time: str | None = None


@dataclass
class Parsed:
    messages: list[InboundMessage] = field(default_factory=list)
    statuses: list[StatusEvent] = field(default_factory=list)
    preferences: list[UserPreference] = field(default_factory=list)
    templates: list[TemplateEvent] = field(default_factory=list)
    accounts: list[AccountEvent] = field(default_factory=list)
    phone_numbers: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)  # id -> (display, waba)
    unknown: list[str] = field(default_factory=list)  # fields sendgate does not act on
    problems: list[str] = field(default_factory=list)

    def kinds(self) -> list[str]:
        """One label per event, for the webhook events metric."""
        out = ["message"] * len(self.messages)
        out += [f"status.{s.status}" for s in self.statuses]
        out += ["user_preferences"] * len(self.preferences)
        out += [t.field for t in self.templates]
        out += [a.field for a in self.accounts]
        out += self.unknown
        return out


def _str(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _excerpt(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _time(
    parsed: Parsed, value: Any, fallback: _When, received_at: float, what: str, name: str = "timestamp"
) -> _When:
    """`value` (Unix seconds, a number or a numeric string) checked; `fallback` when it is absent.

    `what` names the event for the logged problem, `name` the field for the reason."""
    if value is None:
        return fallback
    shown = f"{name} {_excerpt(value)}"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return received_at, f"{shown} is not a number"
    try:
        seconds = float(value)
    except (ValueError, OverflowError):
        return received_at, f"{shown} is not a number"
    if not math.isfinite(seconds):
        return received_at, f"{shown} is not a finite number"
    if seconds <= 0:
        return received_at, f"{shown} is not a positive Unix time"
    if seconds < EARLIEST_EVENT_TIME:
        return received_at, f"{shown} is before 2009-01-01, when WhatsApp began"
    if seconds > received_at + MAX_FUTURE_SECONDS:
        parsed.problems.append(
            f"{what}: {shown} is {seconds - received_at:.0f} s after the webhook was received (more than"
            f" {MAX_FUTURE_SECONDS} s): clamped to the received time"
        )
        return received_at, None
    return seconds, None


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def parse_webhook(body: Any, received_at: float) -> Parsed:
    """Every event in a webhook body, its time checked against `received_at` (see the module's doc)."""
    parsed = Parsed()
    if not isinstance(body, dict):
        parsed.problems.append("body is not a JSON object")
        return parsed
    if body.get("object") not in (None, "whatsapp_business_account"):
        parsed.unknown.append(f"object:{body.get('object')}")
        return parsed
    for entry in _dicts(body.get("entry")):
        waba_id = _str(entry.get("id"))
        entry_time = _time(parsed, entry.get("time"), (received_at, None), received_at, f"entry {waba_id}", "entry.time")
        for change in _dicts(entry.get("changes")):
            name = change.get("field")
            value = change.get("value")
            if not isinstance(value, dict):
                parsed.problems.append(f"{name}: value is not an object")
                continue
            if name == "messages":
                _messages(parsed, waba_id, value, entry_time, received_at)
            elif name == "user_preferences":
                _preferences(parsed, waba_id, value, entry_time, received_at)
            elif name in ("message_template_status_update", "message_template_quality_update", "template_category_update"):
                if waba_id is None:
                    parsed.problems.append(f"{name}: entry has no WABA id")
                else:
                    parsed.templates.append(_template(parsed, waba_id, name, value, entry_time, received_at))
            elif name in ("phone_number_quality_update", "account_update", "business_capability_update"):
                if waba_id is None:
                    parsed.problems.append(f"{name}: entry has no WABA id")
                else:
                    at, unusable = _time(parsed, value.get("timestamp"), entry_time, received_at, f"{name} of {waba_id}")
                    parsed.accounts.append(
                        AccountEvent(
                            waba_id=waba_id,
                            field=name,
                            event=_str(value.get("event")),
                            display_phone_number=_digits(value.get("display_phone_number")),
                            timestamp=at,
                            detail=value,
                            unusable_time=unusable,
                        )
                    )
            else:
                parsed.unknown.append(str(name))
    return parsed


# What Meta restricts a WABA from (account_update, event ACCOUNT_RESTRICTION): sending
# business-initiated messages, answering users, adding phone numbers.
RESTRICTION_TYPES = (
    "RESTRICTED_BIZ_INITIATED_MESSAGING",
    "RESTRICTED_CUSTOMER_INITIATED_MESSAGING",
    "RESTRICTED_ADD_PHONE_NUMBER_ACTION",
)


def restriction_expiries(detail: dict[str, Any]) -> dict[str, float | None]:
    """An ACCOUNT_RESTRICTION's `restriction_info`: restriction type -> expiry (Unix seconds; None
    when Meta gave none or one that cannot be read).

    `restriction_info` is a list of {restriction_type, expiration} (Meta's track-waba-policy-violations
    example); a single object is read as a list of one. `expiration` is Unix seconds (a number or a
    numeric string) or an ISO 8601 time ("2026-10-30T13:38:04+0000", as BSPs relay it)."""
    info = detail.get("restriction_info")
    items = [info] if isinstance(info, dict) else _dicts(info)
    out: dict[str, float | None] = {}
    for item in items:
        kind = _str(item.get("restriction_type"))
        if kind is None:
            continue
        expires_at = _moment(item.get("expiration"))
        out[kind.upper()] = expires_at if expires_at is not None and expires_at > 0 else None
    return out


def _moment(value: Any) -> float | None:
    """Unix seconds (a number or a numeric string) or an ISO 8601 time (without a zone: UTC), as
    Unix seconds; None when absent, unreadable or not finite."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        seconds = float(value)
    except (ValueError, OverflowError):
        try:
            moment = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.timezone.utc)
        seconds = moment.timestamp()
    return seconds if math.isfinite(seconds) else None


def _digits(value: Any) -> str | None:
    text = _str(value)
    if text is None:
        return None
    digits = "".join(ch for ch in text if ch.isdigit())
    return digits or None


def _metadata(parsed: Parsed, waba_id: str | None, value: dict[str, Any]) -> tuple[str | None, str | None]:
    metadata = found if isinstance(found := value.get("metadata"), dict) else {}
    phone_number_id = _str(metadata.get("phone_number_id"))
    display = _digits(metadata.get("display_phone_number"))
    if phone_number_id is not None:
        parsed.phone_numbers[phone_number_id] = (display, waba_id)
    return phone_number_id, display


def _sender(message: dict[str, Any], contacts: list[dict[str, Any]]) -> str | None:
    """The user's wa_id (normalized as sends are), or their BSUID when Meta sends no phone number."""
    for key in ("from", "from_user_id", "user_id"):
        value = _str(message.get(key))
        if value:
            return normalize_recipient(value)
    if len(contacts) == 1:
        for key in ("wa_id", "user_id"):
            value = _str(contacts[0].get(key))
            if value:
                return normalize_recipient(value)
    return None


def _messages(
    parsed: Parsed, waba_id: str | None, value: dict[str, Any], entry_time: _When, received_at: float
) -> None:
    phone_number_id, display = _metadata(parsed, waba_id, value)
    contacts = _dicts(value.get("contacts"))
    messages = _dicts(value.get("messages"))
    statuses = _dicts(value.get("statuses"))
    if phone_number_id is None and (messages or statuses):
        parsed.problems.append("messages: metadata.phone_number_id is missing")
        return
    for message in messages:
        sender = _sender(message, contacts)
        message_id = _str(message.get("id"))
        if sender is None or message_id is None:
            parsed.problems.append("messages: a message without a sender or id")
            continue
        text = found if isinstance(found := message.get("text"), dict) else {}
        button = found if isinstance(found := message.get("button"), dict) else {}
        referral = found if isinstance(found := message.get("referral"), dict) else None
        at, unusable = _time(parsed, message.get("timestamp"), entry_time, received_at, f"message {message_id}")
        parsed.messages.append(
            InboundMessage(
                waba_id=waba_id,
                phone_number_id=phone_number_id,  # type: ignore[arg-type]
                display_phone_number=display,
                sender=sender,
                message_id=message_id,
                timestamp=at,
                type=str(message.get("type") or "unknown"),
                text=text.get("body") if isinstance(text.get("body"), str) else None,
                button_payload=button.get("payload") if isinstance(button.get("payload"), str) else None,
                button_text=button.get("text") if isinstance(button.get("text"), str) else None,
                referral=referral,
                unusable_time=unusable,
            )
        )
    for status in statuses:
        message_id = _str(status.get("id"))
        state = _str(status.get("status"))
        if message_id is None or state is None:
            parsed.problems.append("messages: a status without an id or status")
            continue
        recipient = _str(status.get("recipient_id")) or _str(status.get("recipient_user_id"))
        errors = tuple(
            (error["code"], str(error.get("title") or error.get("message") or ""))
            for error in _dicts(status.get("errors"))
            if isinstance(error.get("code"), int) and not isinstance(error.get("code"), bool)
        )
        what = f"status {state.lower()} of {message_id}"
        at, unusable = _time(parsed, status.get("timestamp"), entry_time, received_at, what)
        parsed.statuses.append(
            StatusEvent(
                waba_id=waba_id,
                phone_number_id=phone_number_id,  # type: ignore[arg-type]
                display_phone_number=display,
                message_id=message_id,
                status=state.lower(),
                timestamp=at,
                recipient=None if recipient is None else normalize_recipient(recipient),
                errors=errors,
                unusable_time=unusable,
            )
        )


def _preferences(
    parsed: Parsed, waba_id: str | None, value: dict[str, Any], entry_time: _When, received_at: float
) -> None:
    phone_number_id, _ = _metadata(parsed, waba_id, value)
    for item in _dicts(value.get("user_preferences")):
        recipient = _str(item.get("wa_id")) or _str(item.get("user_id"))
        choice = _str(item.get("value"))
        if recipient is None or choice is None:
            parsed.problems.append("user_preferences: an item without wa_id or value")
            continue
        what = f"user_preferences {choice.lower()}"
        at, unusable = _time(parsed, item.get("timestamp"), entry_time, received_at, what)
        parsed.preferences.append(
            UserPreference(
                waba_id=waba_id,
                phone_number_id=phone_number_id,
                recipient=normalize_recipient(recipient),
                category=str(item.get("category") or "marketing_messages"),
                value=choice.lower(),
                timestamp=at,
                detail=_str(item.get("detail")),
                unusable_time=unusable,
            )
        )


def _template(
    parsed: Parsed, waba_id: str, name: str, value: dict[str, Any], entry_time: _When, received_at: float
) -> TemplateEvent:
    status = quality = category = None
    if name == "message_template_status_update":
        status = _str(value.get("event"))
    elif name == "message_template_quality_update":
        quality = _str(value.get("new_quality_score"))
    else:
        category = _str(value.get("new_category")) or _str(value.get("category"))
    at, unusable = _time(parsed, value.get("timestamp"), entry_time, received_at, f"{name} of {waba_id}")
    return TemplateEvent(
        waba_id=waba_id,
        field=name,
        template_id=_str(value.get("message_template_id")),
        name=_str(value.get("message_template_name")),
        language=_str(value.get("message_template_language")),
        status=None if status is None else status.upper(),
        quality=None if quality is None else quality.upper(),
        category=None if category is None else category.upper(),
        timestamp=at,
        detail=value,
        unusable_time=unusable,
        disable_at=_disable_date(value) if status is not None else None,
    )


def _disable_date(value: dict[str, Any]) -> float | None:
    """disable_info.disable_date: Unix seconds (a number or a numeric string, Meta's reference) or
    an ISO 8601 date; None when absent or unreadable. Not checked against the received time: a
    FLAGGED event's date is in the future by design."""
    info = value.get("disable_info")
    raw = info.get("disable_date") if isinstance(info, dict) else None
    seconds = _moment(raw)
    return seconds if seconds is not None and seconds >= EARLIEST_EVENT_TIME else None

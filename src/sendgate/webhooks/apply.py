"""Webhook events into the gateway's state: what each kind changes (README "Webhooks").

Every store call here is idempotent (see `state/roles.py`), so Meta's retries,
duplicates and out-of-order deliveries are harmless; a store failure raises, and the
receiver answers Meta with an error so that it retries.

An event whose time is unusable (`unusable_time`, see `events.py`) is refused with a logged
reason and answered like any other (its redelivery would bring the same time), except an
opt-out: it goes in at the time the webhook was received, and opens no window.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from sendgate.config import MAX_THROUGHPUT_MPS, Config, portfolio_of
from sendgate.masking import mask_recipient
from sendgate.state import (
    CONSENT_CATEGORIES,
    AccountState,
    ConsentLedger,
    ConsentRecord,
    TemplateCatalog,
    WebhookState,
)
from sendgate.state.rules import RESTRICTION_FIELD
from sendgate.webhooks.events import (
    RESTRICTION_TYPES,
    AccountEvent,
    InboundMessage,
    Parsed,
    StatusEvent,
    TemplateEvent,
    UserPreference,
    restriction_expiries,
)

if TYPE_CHECKING:
    from sendgate.monitoring import Monitor

__all__ = [
    "CODE_OPTED_OUT",
    "CODE_WINDOW_CLOSED",
    "RECIPIENT_FAILURE_CODES",
    "OptOutRules",
    "WebhookApplier",
    "normalize_keyword",
]

log = logging.getLogger("sendgate.webhooks")

CODE_WINDOW_CLOSED = 131047  # the window was closed when Meta tried to deliver
CODE_OPTED_OUT = 131050  # the user stopped marketing messages from the business
RECIPIENT_FAILURE_CODES = frozenset({131049, 131026})  # kept against the recipient: policies may back off
_MARKETING = ("marketing",)


def normalize_keyword(text: str) -> str:
    """Case, accents, punctuation and spacing folded away: "  Stop! " and "STOP" are both "stop"."""
    decomposed = unicodedata.normalize("NFKD", text)
    letters = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()
    return " ".join("".join(ch if ch.isalnum() else " " for ch in letters).split())


class OptOutRules:
    """`data.sendgate.params.optout`, normalized for matching."""

    def __init__(self, params: dict[str, Any]) -> None:
        optout = found if isinstance(found := params.get("optout"), dict) else {}
        self.keywords = _keywords(optout.get("keywords"))
        self.optin_keywords = _keywords(optout.get("optin_keywords"))
        self.button_payloads = _keywords(optout.get("button_payloads"))
        self.resubscribe_on_optin = optout.get("resubscribe_on_optin") is True
        categories = optout.get("optin_categories")
        self.optin_categories = tuple(
            c for c in (categories if isinstance(categories, list) else []) if c in CONSENT_CATEGORIES
        )

    def is_optout_text(self, text: str | None) -> bool:
        return text is not None and normalize_keyword(text) in self.keywords

    def is_optin_text(self, text: str | None) -> bool:
        return text is not None and normalize_keyword(text) in self.optin_keywords

    def is_optout_button(self, payload: str | None, text: str | None) -> bool:
        return any(v is not None and normalize_keyword(v) in self.button_payloads for v in (payload, text))


def _keywords(value: Any) -> frozenset[str]:
    if not isinstance(value, list):
        return frozenset()
    return frozenset(k for k in (normalize_keyword(v) for v in value if isinstance(v, str)) if k)


@lru_cache(maxsize=8)
def _rules(encoded: bytes) -> OptOutRules:
    return OptOutRules(orjson.loads(encoded))


def _evidence(**fields: Any) -> str:
    return orjson.dumps({k: v for k, v in fields.items() if v is not None}).decode()


class WebhookStore(ConsentLedger, TemplateCatalog, WebhookState, AccountState, Protocol):
    """The store's roles webhook events change (and the template sync, which shares them)."""


class WebhookApplier:
    """Applies parsed webhook events to the store (and tells the monitor what failed)."""

    def __init__(
        self,
        config: Config,
        store: Callable[[], WebhookStore],
        params: Callable[[], Awaitable[dict[str, Any]]],
        monitor: Monitor | None = None,
        on_unknown_template: Callable[[str], None] | None = None,
    ) -> None:
        self._config = config
        self._store = store
        self._params = params
        self._monitor = monitor
        self._on_unknown_template = on_unknown_template
        self._learned: dict[str, tuple[str | None, str | None]] = {}  # numbers already written to the store

    async def optout_rules(self) -> OptOutRules:
        params = await self._params()
        optout = params.get("optout") if isinstance(params, dict) else None
        return _rules(orjson.dumps({"optout": optout}, option=orjson.OPT_SORT_KEYS))

    async def apply(self, parsed: Parsed, now: float) -> None:
        store = self._store()
        for problem in parsed.problems:
            log.warning("webhook: %s", problem)
        new = {k: v for k, v in parsed.phone_numbers.items() if self._learned.get(k) != v}
        if new:  # status webhooks come by the thousand: write a number's mapping once per process
            await store.learn_phone_numbers(new, now)
            self._learned.update(new)
        if parsed.messages:
            rules = await self.optout_rules()
            for message in parsed.messages:
                await self._inbound(store, rules, message)
        for status in parsed.statuses:
            await self._status(store, status)
        for preference in parsed.preferences:
            await self._preference(store, preference)
        for template in parsed.templates:
            await self._template(store, template)
        for account in parsed.accounts:
            await self._account(store, account)

    def _shown(self, recipient: str) -> str:
        return mask_recipient(recipient) if self._config.log.mask_recipients else recipient

    @staticmethod
    def _time_usable(what: str, unusable: str | None, optout: bool) -> bool:
        """Whether to apply an event: not when its time is unusable (logged), unless it is an opt-out."""
        if unusable is None:
            return True
        if optout:
            log.warning("webhook: %s: %s; the opt-out is applied at the time it was received", what, unusable)
            return True
        log.warning("webhook: %s not applied: %s", what, unusable)
        return False

    # -- messages ---------------------------------------------------------------------

    async def _inbound(self, store: WebhookStore, rules: OptOutRules, message: InboundMessage) -> None:
        keyword = message.type == "text" and rules.is_optout_text(message.text)
        button = message.type == "button" and rules.is_optout_button(message.button_payload, message.button_text)
        what = f"message {message.message_id} ({message.type})"
        if not self._time_usable(what, message.unusable_time, keyword or button):
            return
        if message.unusable_time is None:  # a window opens only at a time Meta gave
            await store.record_inbound(message.phone_number_id, message.sender, message.timestamp)
            referral = message.referral
            if referral is not None and (referral.get("source_type") == "ad" or referral.get("ctwa_clid")):
                await store.record_entry_point(
                    message.phone_number_id, message.sender, message.timestamp, str(referral.get("source_type") or "ad")
                )
        evidence = _evidence(
            webhook="messages",
            message_id=message.message_id,
            phone_number_id=message.phone_number_id,
            type=message.type,
            text=message.text,
            button_payload=message.button_payload,
            button_text=message.button_text,
            timestamp=message.timestamp,
            unusable_time=message.unusable_time,
        )
        key = f"message:{message.message_id}"
        if keyword:
            await self._consent(store, key, message.sender, "opted_out", (), "whatsapp:keyword", evidence, message.timestamp, "opt_out")
        elif button:
            await self._consent(store, key, message.sender, "opted_out", _MARKETING, "whatsapp:button", evidence, message.timestamp, "opt_out")
        elif message.type == "text" and rules.resubscribe_on_optin and rules.is_optin_text(message.text):
            await self._consent(
                store, key, message.sender, "opted_in", rules.optin_categories, "whatsapp:keyword", evidence,
                message.timestamp, "resubscribe",
            )  # fmt: skip

    async def _consent(
        self,
        store: WebhookStore,
        key: str,
        recipient: str,
        status: str,
        categories: tuple[str, ...],
        source: str,
        evidence: str,
        at: float,
        action: str,
    ) -> None:
        record = ConsentRecord(recipient, status, categories, source, evidence, at)
        appended = await store.apply_consent_event(key, record, action)
        if appended is not None:
            shown = self._shown(recipient)
            log.info("consent: %s %s %s (%s)", shown, appended.status, list(appended.categories) or "all", source)

    # -- statuses ---------------------------------------------------------------------

    async def _status(self, store: WebhookStore, status: StatusEvent) -> None:
        optout = status.status == "failed" and status.recipient is not None and any(
            code == CODE_OPTED_OUT for code, _ in status.errors
        )
        if not self._time_usable(f"status {status.status} of {status.message_id}", status.unusable_time, optout):
            return
        if status.unusable_time is not None:  # only the opt-out it reports, at the received time
            await self._status_optout(store, status)
            return
        error = "; ".join(f"{code} {title}".strip() for code, title in status.errors) or None
        await store.record_delivery_status(status.message_id, status.status, status.timestamp, error)
        if status.status != "failed":
            return
        for code, _title in status.errors:
            if self._monitor is not None:
                self._monitor.upstream_error(status.phone_number_id, code, f"{status.message_id}:{code}")
            if status.recipient is None:
                continue
            if code == CODE_WINDOW_CLOSED:
                await store.close_window(status.phone_number_id, status.recipient, status.timestamp)
            elif code in RECIPIENT_FAILURE_CODES:
                await store.record_delivery_failure(
                    status.message_id, code, status.recipient, status.phone_number_id, status.timestamp
                )
            elif code == CODE_OPTED_OUT:
                await self._status_optout(store, status)

    async def _status_optout(self, store: WebhookStore, status: StatusEvent) -> None:
        """A failed status with 131050: the user stopped marketing messages."""
        assert status.recipient is not None
        evidence = _evidence(
            webhook="messages", status="failed", code=CODE_OPTED_OUT, message_id=status.message_id,
            phone_number_id=status.phone_number_id, timestamp=status.timestamp, unusable_time=status.unusable_time,
        )  # fmt: skip
        await self._consent(
            store, f"status:{status.message_id}:{CODE_OPTED_OUT}", status.recipient, "opted_out", _MARKETING,
            "whatsapp:status_131050", evidence, status.timestamp, "opt_out",
        )  # fmt: skip

    # -- user preferences ------------------------------------------------------------------

    async def _preference(self, store: WebhookStore, preference: UserPreference) -> None:
        if preference.category != "marketing_messages" or preference.value not in ("stop", "resume"):
            log.info("user_preferences: %s %s not acted on", preference.category, preference.value)
            return
        what = f"user_preferences {preference.value} for {self._shown(preference.recipient)}"
        if not self._time_usable(what, preference.unusable_time, preference.value == "stop"):
            return
        evidence = _evidence(
            webhook="user_preferences", category=preference.category, value=preference.value,
            detail=preference.detail, phone_number_id=preference.phone_number_id, timestamp=preference.timestamp,
            unusable_time=preference.unusable_time,
        )  # fmt: skip
        key = f"preference:{preference.recipient}:{preference.value}:{preference.timestamp:.0f}"
        if preference.value == "stop":
            await self._consent(
                store, key, preference.recipient, "opted_out", _MARKETING, "whatsapp:user_preferences", evidence,
                preference.timestamp, "opt_out",
            )  # fmt: skip
        else:
            await self._consent(
                store, key, preference.recipient, "opted_in", _MARKETING, "whatsapp:user_preferences", evidence,
                preference.timestamp, "resume",
            )  # fmt: skip

    # -- templates -----------------------------------------------------------------------

    async def _template(self, store: WebhookStore, event: TemplateEvent) -> None:
        what = f"{event.field} for template {event.name} ({event.language}, id {event.template_id})"
        if not self._time_usable(what, event.unusable_time, False):
            return
        # Meta's event name: the store works out the status it leaves (rules.apply_status_event).
        result = await store.update_template(
            event.waba_id,
            template_id=event.template_id,
            name=event.name,
            language=event.language,
            at=event.timestamp,
            status=event.status,
            quality=event.quality,
            category=event.category,
            disable_at=event.disable_at,
        )
        if result is None:
            log.warning(
                "%s for template %s (%s, id %s) of WABA %s: not in the catalog; a template sync will bring it",
                event.field, event.name, event.language, event.template_id, event.waba_id,
            )  # fmt: skip
            if self._on_unknown_template is not None:
                self._on_unknown_template(event.waba_id)

    # -- account state ---------------------------------------------------------------------

    async def _account(self, store: WebhookStore, event: AccountEvent) -> None:
        if not self._time_usable(f"{event.field} {event.event} for WABA {event.waba_id}", event.unusable_time, False):
            return
        if event.field == "account_update":
            status = _waba_status(event)
            if status is not _UNCHANGED:
                await store.set_account_state("waba", event.waba_id, {"status": status}, event.timestamp, event.detail)
                log.warning("account_update for WABA %s: %s -> status %s", event.waba_id, event.event, status)
            if event.event == "ACCOUNT_RESTRICTION":
                await self._restrictions(store, event)
            return
        detail = event.detail
        # The portfolio's messaging limit: business_capability_update's integer (phone_number_quality_update
        # carries the same field, as a string in Meta's reference).
        portfolio_limit = messaging_limit_value(detail.get("max_daily_conversations_per_business"))
        if portfolio_limit is not None:
            portfolio = portfolio_of(self._config, event.waba_id)
            await store.set_account_state(
                "portfolio", portfolio, {"messaging_limit": str(portfolio_limit)}, event.timestamp, detail
            )
            log.info("%s for WABA %s: portfolio %s messaging limit %d", event.field, event.waba_id, portfolio, portfolio_limit)
        if event.field == "business_capability_update":
            return
        values: dict[str, str | None] = {}
        limit = detail.get("current_limit")
        if isinstance(limit, str) and limit:
            values["messaging_limit"] = limit  # the number's tier (TIER_1K...), which Meta removes in 2026
        if event.event == "THROUGHPUT_UPGRADE":
            values["throughput_mps"] = str(MAX_THROUGHPUT_MPS)  # Meta's one upgrade: 80 -> 1,000 (FACTS.md §3)
        if event.event == "FLAGGED":
            values["status"] = "FLAGGED"
            values["quality"] = "RED"  # Meta flags a number when its quality rating reaches Low
        elif event.event == "UNFLAGGED":
            values["status"] = None
            values["quality"] = None  # no longer Low; Meta does not say what it is now
        rating = detail.get("quality_rating") or detail.get("quality_score")
        if isinstance(rating, dict):
            rating = rating.get("score")
        if isinstance(rating, str) and rating:
            values["quality"] = rating.upper()
        if not values:
            return
        for phone_number_id in await self._phone_number_ids(store, event):
            await store.set_account_state("phone", phone_number_id, values, event.timestamp, detail)
        if "status" in values or "quality" in values:
            log.warning(
                "phone_number_quality_update for %s (WABA %s): %s", event.display_phone_number, event.waba_id, event.event
            )

    async def _restrictions(self, store: WebhookStore, event: AccountEvent) -> None:
        """The WABA's typed restrictions, as this event lists them: each listed type until its
        expiry, each known type it does not list lifted (an ACCOUNT_RESTRICTION states what is
        restricted now; one with an empty list lifts them all)."""
        listed = restriction_expiries(event.detail)
        values: dict[str, str | None] = {RESTRICTION_FIELD + kind: None for kind in RESTRICTION_TYPES}
        for kind, expires_at in listed.items():
            values[RESTRICTION_FIELD + kind] = "" if expires_at is None else repr(expires_at)
        await store.set_account_state("waba", event.waba_id, values, event.timestamp, event.detail)
        if listed:
            log.warning(
                "account_update for WABA %s: restricted: %s", event.waba_id,
                ", ".join(f"{kind} until {expires_at}" for kind, expires_at in sorted(listed.items())),
            )  # fmt: skip

    async def _phone_number_ids(self, store: WebhookStore, event: AccountEvent) -> list[str]:
        """The configured or learned numbers this display number is; else every configured number of the WABA."""
        display = event.display_phone_number
        found: list[str] = []
        if display is not None:
            found = [a.phone_number_id for a in self._config.accounts if a.display_phone_number == display]
            found += [pid for pid in await store.phone_number_ids(display) if pid not in found]
        if found:
            return found
        fallback = [a.phone_number_id for a in self._config.accounts if a.waba_id == event.waba_id]
        if fallback:
            log.warning(
                "phone_number_quality_update names %s, a number sendgate has not seen; applying it to every configured"
                " number of WABA %s (set accounts[].display_phone_number to be precise)",
                display, event.waba_id,
            )  # fmt: skip
        return fallback


_UNCHANGED: Any = object()


def messaging_limit_value(value: Any) -> int | None:
    """`max_daily_conversations_per_business` as an integer (-1: unlimited), from an integer or a
    numeric string; None when absent or not one (Meta's tier names are the number's, not this)."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if value >= 1 or value == -1 else None


def _waba_status(event: AccountEvent) -> Any:
    """The WABA's status after an account_update, None when cleared, `_UNCHANGED` when not about status."""
    detail = event.detail
    if event.event == "DISABLED_UPDATE":
        ban = found if isinstance(found := detail.get("ban_info"), dict) else {}
        states = ban.get("waba_ban_state")
        states = states if isinstance(states, list) else [states]
        if "DISABLE" in states:
            return "DISABLED"
        if "SCHEDULE_FOR_DISABLE" in states:
            return "SCHEDULED_FOR_DISABLE"
        if "REINSTATE" in states:
            return None
        return _UNCHANGED
    if event.event == "ACCOUNT_RESTRICTION":
        return "RESTRICTED" if detail.get("restriction_info") else None
    if event.event == "ACCOUNT_VIOLATION":
        return "VIOLATION"
    if event.event == "ACCOUNT_DELETED":
        return "DELETED"
    return _UNCHANGED

"""Records and the `Store` interface every backend implements."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from itertools import islice, takewhile
from typing import Any, Protocol

__all__ = [
    "CONSENT_CATEGORIES",
    "CONSENT_STATUSES",
    "DECISION_FILTERS",
    "OUTCOME_UNKNOWN",
    "ConsentRecord",
    "DecisionCount",
    "DecisionQuery",
    "DecisionRecord",
    "InvalidRecord",
    "PAIR_HISTORY_LIMIT",
    "PAIR_HISTORY_SECONDS",
    "PruneResult",
    "RecipientFacts",
    "ReviewRecord",
    "SendRecord",
    "Store",
    "StoreError",
    "TemplateFacts",
    "pair_history",
]

CONSENT_STATUSES = frozenset({"opted_in", "opted_out"})
CONSENT_CATEGORIES = frozenset({"marketing", "utility", "authentication"})
# `DecisionQuery.decision`: a recorded decision, or `rejected` (anything but allow, shadow included)
# or `shadow` (deny/defer recorded in shadow mode: would-be rejections that were forwarded).
DECISION_FILTERS = frozenset({"allow", "deny", "defer", "invalid", "error", "rejected", "shadow"})
# `upstream_error` of a forwarded send whose answer from Meta was never recorded (the process was
# killed in between): Meta may or may not have taken it, so its send still counts.
OUTCOME_UNKNOWN = "outcome unknown: sendgate stopped before Meta's answer was recorded"


class InvalidRecord(ValueError):
    """A record given to the store is malformed; the message says which field."""


class StoreError(Exception):
    """The store could not do what it was asked (disk full or read-only, I/O error, a lock held
    too long...): nothing of a failed write was kept. The backend's own error is the cause."""


@dataclass(frozen=True)
class ConsentRecord:
    recipient: str
    status: str
    categories: tuple[str, ...]
    source: str | None
    evidence: str | None
    recorded_at: float

    def __post_init__(self) -> None:
        if not self.recipient:
            raise InvalidRecord("recipient is required")
        if self.status not in CONSENT_STATUSES:
            raise InvalidRecord(f"status must be one of {sorted(CONSENT_STATUSES)}, got {self.status!r}")
        unknown = set(self.categories) - CONSENT_CATEGORIES
        if unknown:
            raise InvalidRecord(f"unknown consent categories {sorted(unknown)}; use {sorted(CONSENT_CATEGORIES)}")

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["categories"] = list(self.categories)
        return out


@dataclass(frozen=True)
class TemplateFacts:
    """What the catalog knows of one template name in one WABA (see docs/input.md `template`)."""

    found: bool
    language_found: bool
    languages: list[str]
    status: str | None
    category: str | None
    placeholders: dict[str, int]

    def as_input(self) -> dict[str, Any]:
        # Spelled out: built on every template send, and asdict() deep-copies through reflection.
        return {
            "found": self.found,
            "language_found": self.language_found,
            "languages": list(self.languages),
            "status": self.status,
            "category": self.category,
            "placeholders": dict(self.placeholders),
        }


# What the pair rate (policies/frequency.rego) can need of the sends from one number to one
# recipient: those of the last hour, at most 64. The rule decides exactly on that: a list of
# PAIR_HISTORY_LIMIT may have been cut, and the rule then assumes the worst of what came
# before; sends older than the hour cannot matter while PAIR_HISTORY_LIMIT intervals fit in
# it (policies/frequency_test.rego checks data.json). Short, because it is part of every
# message's input document.
PAIR_HISTORY_SECONDS = 3600
PAIR_HISTORY_LIMIT = 64


def pair_history(sent_at: Iterable[float], now: float) -> list[float]:
    """`RecipientFacts.pair_sent_at` from the sends from this number to this recipient, newest first."""
    since = now - PAIR_HISTORY_SECONDS
    return list(islice(takewhile(lambda at: at > since, sent_at), PAIR_HISTORY_LIMIT))


@dataclass(frozen=True)
class RecipientFacts:
    """What the store knows of one recipient, for the policy input (docs/input.md `recipient`)."""

    consent: ConsentRecord | None  # the latest ledger record
    place: tuple[str | None, str | None] | None  # (country, time zone) as stored; None: not stored
    last_inbound_at: float | None  # None too once Meta reported the window closed after it
    last_sent_at: float | None  # from this phone number
    pair_sent_at: list[float]  # from this phone number, newest first: `pair_history()`
    marketing_sent_at: list[float]  # same business (WABA, else phone number), newest first
    delivery_failures: list[dict[str, Any]]  # {"code", "at"}, newest first
    free_entry_point_at: float | None


@dataclass
class SendRecord:
    """A message forwarded to Meta: the counters frequency rules need."""

    decision_id: str
    phone_number_id: str
    waba_id: str | None
    recipient: str
    category: str | None  # template category, lower case; None for free-form
    sent_at: float


@dataclass
class DecisionRecord:
    """One call to a send endpoint, whatever happened to it."""

    id: str
    timestamp: float
    endpoint: str
    api_version: str
    account: str
    waba_id: str | None
    recipient: str | None
    type: str | None
    template: str | None
    category: str | None
    decision: str  # allow | deny | defer | invalid | error
    mode: str  # enforce | shadow
    forwarded: bool
    reasons: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    retry_after: int | None = None
    policy_revision: str | None = None
    eval_us: float | None = None
    upstream_status: int | None = None
    upstream_message_id: str | None = None
    upstream_error_code: int | None = None
    upstream_error: str | None = None
    content: Any = None  # the request body, kept for rejected sends
    recipient_key: str | None = None  # hash of the unmasked recipient, for filtering
    # The input document's `recipient` and `template` facts the policy saw (kept like `content`).
    facts: dict[str, Any] | None = None
    # Meta's later status of the forwarded message (sent, delivered, read, failed), set by the
    # webhook receiver by `upstream_message_id`; None until one arrives.
    delivery_status: str | None = None
    delivery_at: float | None = None
    delivery_error: str | None = None
    # The engine's own id of this decision, when it has one (OPA's `decision_id`, with its decision
    # logs on), to find the decision in the engine's logs.
    engine_decision_id: str | None = None

    @property
    def outcome_unknown(self) -> bool:
        """Forwarded, but whether Meta took it is not known (see `OUTCOME_UNKNOWN`)."""
        return self.forwarded and self.upstream_status is None and self.upstream_error == OUTCOME_UNKNOWN

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("recipient_key")
        return out


@dataclass(frozen=True)
class DecisionQuery:
    decision: str | None = None
    rule: str | None = None
    recipient_key: str | None = None
    account: str | None = None
    since: float | None = None
    until: float | None = None
    before_id: str | None = None  # paging cursor: records older than this id
    limit: int = 50
    template: str | None = None
    reviewed: bool | None = None  # True: with at least one review note; False: without
    after_id: str | None = None  # paging cursor: records newer than this id (still returned newest first)


@dataclass(frozen=True)
class ReviewRecord:
    """One entry of the append-only review trail: who looked at a decision, when, and what they noted."""

    decision_id: str
    reviewer: str
    note: str
    reviewed_at: float
    seq: int | None = None  # assigned by the store

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DecisionCount:
    """How many decisions fell in one bucket, per dimension.

    `dimension` is `all` (key ""), `account`, `template` or `rule`. `all` and `account` count
    every decision; `template` and `rule` count rejections only (a decision with two rules counts
    once under each). `bucket` is the bucket's start (Unix seconds, UTC-aligned), or None when
    the whole range was asked for at once.
    """

    bucket: float | None
    dimension: str
    key: str
    decision: str
    mode: str
    count: int


@dataclass(frozen=True)
class PruneResult:
    decisions: int
    reviews: int
    sends: int


class Store(Protocol):
    """Everything sendgate keeps. Writes that the send path awaits are committed when they return."""

    # Consent ledger: append-only; the latest record per recipient is its state.
    async def record_consent(self, record: ConsentRecord) -> None: ...
    async def import_consent(self, records: list[ConsentRecord]) -> int: ...
    async def consent_history(self, recipient: str) -> list[ConsentRecord]: ...

    # Template catalog, per WABA, in Graph's message_templates shape.
    async def put_templates(self, waba_id: str, body: dict[str, Any]) -> int: ...
    async def templates(self, waba_id: str) -> dict[str, Any] | None: ...
    async def template_facts(self, waba_id: str, name: str, language: str) -> TemplateFacts: ...

    # Inbound messages: the 24-hour customer-service window.
    async def record_inbound(self, phone_number_id: str, recipient: str, at: float) -> None: ...

    # Everything the send path reads about a recipient, in one call per message: the latest
    # consent record, the window, the send history (last 30 days), Meta's delivery failures
    # (last 30 days) and the free entry point, from webhooks, and where the number is.
    async def recipient_facts(
        self, phone_number_id: str, waba_id: str | None, recipient: str, now: float
    ) -> RecipientFacts: ...

    # Decision log.
    async def log_decision(self, record: DecisionRecord, send: SendRecord | None = None) -> None: ...
    def log_upstream(
        self,
        decision_id: str,
        status: int | None,
        message_id: str | None,
        error_code: int | None,
        error: str | None,
        send_failed: bool,
    ) -> None: ...
    async def decisions(self, query: DecisionQuery) -> list[DecisionRecord]: ...
    async def decision(self, decision_id: str) -> DecisionRecord | None: ...
    async def decision_counts(
        self, since: float, until: float, bucket: int | None = None, dimension: str | None = None
    ) -> list[DecisionCount]: ...
    async def prune_decisions(self, before: float, now: float) -> PruneResult: ...
    # Forwarded records from before `started_at` with no answer from Meta get `OUTCOME_UNKNOWN`;
    # returns how many. Called once when the gateway starts serving.
    async def mark_outcome_unknown(self, started_at: float) -> int: ...

    # Review trail: append-only notes on decisions.
    async def add_review(self, review: ReviewRecord) -> ReviewRecord | None: ...  # None: no such decision
    async def reviews(self, decision_ids: list[str]) -> dict[str, list[ReviewRecord]]: ...

    # What Meta's webhooks report (sendgate/webhooks); every write idempotent under redelivery.
    # SQLite: state/sqlite_webhooks.py documents each.
    async def record_entry_point(self, phone_number_id: str, recipient: str, at: float, source: str | None) -> None: ...
    async def close_window(self, phone_number_id: str, recipient: str, at: float) -> None: ...
    async def record_delivery_failure(
        self, message_id: str, code: int, recipient: str, phone_number_id: str | None, at: float
    ) -> bool: ...
    async def record_delivery_status(
        self, message_id: str, status: str, at: float, error: str | None
    ) -> tuple[str, str] | None: ...
    async def apply_consent_event(self, key: str, record: ConsentRecord, action: str) -> ConsentRecord | None: ...
    async def update_template(
        self,
        waba_id: str,
        *,
        template_id: str | None,
        name: str | None,
        language: str | None,
        at: float,
        status: str | None = None,
        quality: str | None = None,
        category: str | None = None,
    ) -> bool | None: ...
    async def learn_phone_numbers(self, numbers: dict[str, tuple[str | None, str | None]], at: float) -> None: ...
    async def phone_number_ids(self, display_phone_number: str) -> list[str]: ...
    async def set_account_state(
        self, scope: str, key: str, values: dict[str, str | None], at: float, detail: dict[str, Any] | None = None
    ) -> bool: ...
    async def account_state(self, phone_number_id: str, waba_id: str | None) -> dict[str, Any]: ...
    async def set_marketing_pause(self, phone_number_id: str, alert: str, message: str, since: float) -> bool: ...
    async def clear_marketing_pause(self, phone_number_id: str) -> bool: ...
    async def marketing_pauses(self) -> dict[str, dict[str, Any]]: ...
    # Health: a real, tiny write through the path the send path's writes take; raises StoreError.
    async def ping(self) -> None: ...

    async def flush(self) -> None: ...
    async def close(self) -> None: ...

"""The records the store keeps and returns (the interface itself, by role: `state/roles.py`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

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
    "PruneResult",
    "RecipientFacts",
    "ReviewRecord",
    "SendRecord",
    "StoreError",
    "TemplateFacts",
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
    # From the catalog entry (`catalog.template_details`); None / False when not found.
    quality: str | None = None  # GREEN | YELLOW | RED | UNKNOWN (Graph's quality_score, or the webhook's)
    flagged: bool = False  # Meta flagged it (FLAGGED): still sendable until `flagged_until`
    flagged_until: float | None = None  # the disable date the FLAGGED event gave
    locked: bool = False  # LOCKED: not editable; sendable
    parameter_format: str | None = None  # POSITIONAL | NAMED
    components: dict[str, Any] | None = None  # header/body/footer texts, header format, buttons

    def as_input(self) -> dict[str, Any]:
        # Spelled out: built on every template send, and asdict() deep-copies through reflection.
        # The components are read-only for the policy, and parsed anew from the row when cached.
        return {
            "found": self.found,
            "language_found": self.language_found,
            "languages": list(self.languages),
            "status": self.status,
            "category": self.category,
            "placeholders": dict(self.placeholders),
            "quality": self.quality,
            "flagged": self.flagged,
            "flagged_until": self.flagged_until,
            "locked": self.locked,
            "parameter_format": self.parameter_format,
            "components": self.components,
        }


@dataclass(frozen=True)
class RecipientFacts:
    """What the store knows of one recipient, for the policy input (docs/input.md `recipient`)."""

    consent: ConsentRecord | None  # the latest ledger record
    place: tuple[str | None, str | None] | None  # (country, time zone) as stored; None: not stored
    last_inbound_at: float | None  # None too once Meta reported the window closed after it
    last_sent_at: float | None  # from this phone number
    pair_sent_at: list[float]  # from this phone number, newest first: `rules.pair_history()`
    marketing_sent_at: list[float]  # same business (WABA, else phone number), newest first
    delivery_failures: list[dict[str, Any]]  # {"code", "at"}, newest first
    free_entry_point_at: float | None
    # those of marketing_sent_at not sent inside a window the user opened (unknown counts as outside)
    marketing_outside_window_sent_at: list[float] = field(default_factory=list)


@dataclass
class SendRecord:
    """A message forwarded to Meta: the counters frequency rules need."""

    decision_id: str
    phone_number_id: str
    waba_id: str | None
    recipient: str
    category: str | None  # template category, lower case; None for free-form
    sent_at: float
    # Inside a customer service window the user opened (their last inbound message less than 24 h
    # before): Meta's per-user marketing limit does not count such marketing. None: not known.
    in_window: bool | None = None


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

"""Records and the `Store` interface every backend implements."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

__all__ = [
    "CONSENT_CATEGORIES",
    "CONSENT_STATUSES",
    "ConsentRecord",
    "DecisionQuery",
    "DecisionRecord",
    "InvalidRecord",
    "SendRecord",
    "Store",
    "TemplateFacts",
]

CONSENT_STATUSES = frozenset({"opted_in", "opted_out"})
CONSENT_CATEGORIES = frozenset({"marketing", "utility", "authentication"})


class InvalidRecord(ValueError):
    """A record given to the store is malformed; the message says which field."""


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
        return asdict(self)


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


class Store(Protocol):
    """Everything sendgate keeps. Writes that the send path awaits are committed when they return."""

    # Consent ledger: append-only; the latest record per recipient is its state.
    async def record_consent(self, record: ConsentRecord) -> None: ...
    async def import_consent(self, records: list[ConsentRecord]) -> int: ...
    async def consent(self, recipient: str) -> ConsentRecord | None: ...
    async def consent_history(self, recipient: str) -> list[ConsentRecord]: ...

    # Template catalog, per WABA, in Graph's message_templates shape.
    async def put_templates(self, waba_id: str, body: dict[str, Any]) -> int: ...
    async def templates(self, waba_id: str) -> dict[str, Any] | None: ...
    async def template_facts(self, waba_id: str, name: str, language: str) -> TemplateFacts: ...

    # Inbound messages: the 24-hour customer-service window.
    async def record_inbound(self, phone_number_id: str, recipient: str, at: float) -> None: ...
    async def last_inbound(self, phone_number_id: str, recipient: str) -> float | None: ...

    # Send history.
    async def send_history(
        self, phone_number_id: str, waba_id: str | None, recipient: str, now: float
    ) -> dict[str, Any]: ...

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

    async def flush(self) -> None: ...
    async def close(self) -> None: ...

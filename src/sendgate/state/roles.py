"""The state layer's interface, by role: what every backend implements, and what each method promises.

A consumer depends on the roles it uses (the send path's facts on `RecipientReads`,
`TemplateCatalog` and `AccountState`, the recorder on `DecisionLog`...); `Store` is all of
them, for what opens, serves and closes a store. The rules these contracts state (consent
merging, event ordering, ranks, windows) are pure functions in `state/rules.py`, shared by
every backend: a backend only reads, writes and keeps transactions, calling them.

Common to every role:

- a write is committed when its coroutine returns (`DecisionLog.log_upstream`, which is not
  awaited, excepted); a failed write keeps nothing of itself and raises `StoreError`;
- a malformed record raises `InvalidRecord` before anything is written;
- writes from Meta's webhooks are idempotent under redelivery, duplicates and out-of-order
  arrival, as each method says; their times come checked by `webhooks/events.py` (none far in
  the future), so no "only forward" rule can be held by a bogus time.

Admission (deciding and recording atomically per key) is its own seam:
`state/admission.py`'s `Admission`, beside the store rather than in it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from sendgate.state.base import (
    ConsentRecord,
    DecisionCount,
    DecisionQuery,
    DecisionRecord,
    PruneResult,
    RecipientFacts,
    ReviewRecord,
    SendRecord,
    TemplateFacts,
)
from sendgate.state.media import MediaFacts

__all__ = [
    "AccountState",
    "ConsentLedger",
    "DecisionLog",
    "Lifecycle",
    "Maintenance",
    "MediaCatalog",
    "RecipientReads",
    "ReviewTrail",
    "Store",
    "TemplateCatalog",
    "WebhookState",
]


class ConsentLedger(Protocol):
    """Append-only consent records per recipient; the latest one (in append order) is the state."""

    async def record_consent(self, record: ConsentRecord) -> None:
        """Append one record (from the app or an operator): it becomes the recipient's state."""
        ...

    async def import_consent(self, records: list[ConsentRecord]) -> int:
        """Append all of `records` in one transaction, in order; returns how many."""
        ...

    async def consent_history(self, recipient: str) -> list[ConsentRecord]:
        """Every record of `recipient`, oldest first (empty when none)."""
        ...

    async def apply_consent_event(self, key: str, record: ConsentRecord, action: str) -> ConsentRecord | None:
        """Merge a consent event from Meta's webhooks (`key` names the event) for `action`
        (`opt_out`, `resubscribe`, `resume`), as `rules.merge_consent_event` decides; returns the
        record appended, or None.

        Times are compared at Meta's resolution, whole seconds (floor). An `opt_out` goes in
        unless the latest record already is an opt-out covering its categories (none: all), even
        when older than a later opt-in: the safe side wins. `resubscribe` and `resume` go in only
        when strictly newer than the latest record and than the newest opt-out event seen (on a
        tie the opt-out wins); `resubscribe` needs the latest record to be an opt-out and restores
        the last opt-in's categories (else `record`'s), `resume` adds `record`'s categories to the
        last opt-in's unless the latest record already holds them. The key is marked seen when
        the event went in or the state already held it; an opt-in refused for ordering is not,
        so a redelivery after a later change can still apply.

        In one transaction: read the latest record, the latest opt-in and the newest opt-out
        event seen for the recipient; for an `opt_out`, raise that newest opt-out (whole
        seconds) whether or not it is appended; append what the rule says; mark `key` seen when
        the rule says so. A key already seen changes nothing and returns None.
        """
        ...


class TemplateCatalog(Protocol):
    """Each WABA's templates, in Graph's `message_templates` shape."""

    async def put_templates(self, waba_id: str, body: dict[str, Any]) -> int:
        """Replace the WABA's whole catalog with `body` (`{"data": [...]}`, checked by
        `catalog.validate_catalog`) in one transaction; returns how many templates. What status
        webhooks told of a template still in it is kept (`rules.carry_webhook_facts`)."""
        ...

    async def templates(self, waba_id: str) -> dict[str, Any] | None:
        """The catalog as last put (and changed by `update_template`), or None when none was."""
        ...

    async def template_facts(self, waba_id: str, name: str, language: str) -> TemplateFacts:
        """What the policy input says of one template (docs/input.md `template`); may lag a write
        by a few seconds (a cache), never more."""
        ...

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
        disable_at: float | None = None,
    ) -> bool | None:
        """Change one template's status, quality score or category from a webhook event at `at`.

        `status` is Meta's status event (`rules.apply_status_event`: FLAGGED keeps the template
        approved and records `disable_at`, UNARCHIVED restores the status before the archive...).

        Matches by template id, else by name (and language when given: `rules.match_templates`);
        each field changes unless a change to that field newer than `at` was applied
        (`rules.template_event_applies`) (kept per template and field,
        in the same transaction). Returns True when applied, False when an event at
        least as new was applied before (or nothing to change), None when the catalog has no
        such template (a sync will bring it).
        """
        ...


class RecipientReads(Protocol):
    """The send path's one read per message."""

    async def recipient_facts(
        self, phone_number_id: str, waba_id: str | None, recipient: str, now: float
    ) -> RecipientFacts:
        """Everything the policy input says of a recipient (docs/input.md `recipient`), built by
        `rules.recipient_facts` from: the latest consent record; where the number is
        (as placed with today's `places.PLACE_DATA`, else None); the last inbound message from it
        to this number, unless Meta reported the window closed at or after it; the forwarded,
        not failed sends to it of the last `rules.HISTORY_SECONDS` (30 days), newest first; Meta's delivery failures for it
        of the same window, newest first, at most `rules.FAILURE_LIMIT`; the free entry point. Sends from this
        number give `last_sent_at` and `pair_sent_at` (`pair_history`); marketing sends of the
        same business (the WABA when known, else the number) give `marketing_sent_at`. Sees every write committed before it was called; times come back exact."""
        ...


class DecisionLog(Protocol):
    """One record per call to a send endpoint, whatever happened to it, with its send history."""

    async def log_decision(self, record: DecisionRecord, send: SendRecord | None = None) -> None:
        """Insert the record (and the send it forwards, if any) in one transaction, with its
        hourly and daily counts; committed when it returns: the write-ahead promise (a message
        is forwarded only after this returns). A duplicate id raises and keeps nothing."""
        ...

    def log_upstream(
        self,
        decision_id: str,
        status: int | None,
        message_id: str | None,
        error_code: int | None,
        error: str | None,
        send_failed: bool,
    ) -> None:
        """Complete a logged record with Meta's answer (and mark its send failed, so counters
        leave it out). Not awaited: queued behind the record, committed soon after; a failure is
        logged, and the record keeps saying it was forwarded."""
        ...

    async def decisions(self, query: DecisionQuery) -> list[DecisionRecord]:
        """The records matching every filter of `query`, newest first (by id: ids are
        time-ordered), at most `query.limit`; `before_id`/`after_id` page from a cursor."""
        ...

    async def decision(self, decision_id: str) -> DecisionRecord | None: ...

    async def decision_counts(
        self, since: float, until: float, bucket: int | None = None, dimension: str | None = None
    ) -> list[DecisionCount]:
        """Exact counts of the records with `since <= timestamp < until`, per `bucket` seconds (a
        whole number of hours; None: one bucket) and dimension (see `DecisionCount`; which keys a
        record counts under: `rules.count_keys`)."""
        ...

    async def prune_decisions(self, before: float, now: float) -> PruneResult:
        """Delete the records older than `before`, with their review notes and rule index; the
        counts stay exact. Send history goes once older than both `before` and
        `rules.HISTORY_SECONDS` before `now`. In short transactions, so sends keep flowing."""
        ...


class ReviewTrail(Protocol):
    """Append-only notes on decisions: who looked, when, what they noted. Never updated."""

    async def add_review(self, review: ReviewRecord) -> ReviewRecord | None:
        """Append a note (checked by `rules.check_review`) and return it with its `seq` (increasing
        in append order); None when there is no such decision."""
        ...

    async def reviews(self, decision_ids: list[str]) -> dict[str, list[ReviewRecord]]:
        """The trail of each given decision, oldest note first; decisions without notes are left out."""
        ...


class WebhookState(Protocol):
    """What Meta's webhooks say of recipients and numbers; every write idempotent under redelivery."""

    async def record_inbound(self, phone_number_id: str, recipient: str, at: float) -> None:
        """An inbound message: the 24-hour window's start moves forward only (`max`)."""
        ...

    async def record_entry_point(self, phone_number_id: str, recipient: str, at: float, source: str | None) -> None:
        """A free entry point (ad click...): kept only when newer than the one held."""
        ...

    async def close_window(self, phone_number_id: str, recipient: str, at: float) -> None:
        """Meta said the window was closed at `at` (131047): inbound messages up to then no longer
        count. The closing time moves forward only."""
        ...

    async def record_delivery_failure(
        self, message_id: str, code: int, recipient: str, phone_number_id: str | None, at: float
    ) -> bool:
        """Keyed by (message id, code): True when new, False for a redelivery."""
        ...

    async def record_delivery_status(
        self, message_id: str, status: str, at: float, error: str | None
    ) -> tuple[str, str] | None:
        """Set the delivery status of the record that got `message_id` from Meta, moving only forward
        (`rules.delivery_status_advances`); a `failed` one also marks its send failed, in the same
        transaction. Returns (decision id, account) when a record changed, else None (unknown
        message or status, or not newer than the one recorded)."""
        ...

    async def learn_phone_numbers(self, numbers: dict[str, tuple[str | None, str | None]], at: float) -> None:
        """phone_number_id -> (display number, WABA id), as message webhooks' metadata show them; a
        None leaves what is known."""
        ...

    async def phone_number_ids(self, display_phone_number: str) -> list[str]: ...


class AccountState(Protocol):
    """Numbers' and WABAs' standing with Meta, and marketing pauses (alerts, operators)."""

    async def set_account_state(
        self, scope: str, key: str, values: dict[str, str | None], at: float, detail: dict[str, Any] | None = None
    ) -> bool:
        """Set fields (`quality`, `status`, `messaging_limit`, `throughput_mps`) of a `phone` (phone
        number id), a `waba` or a `portfolio` (`messaging_limit`): a field changes only if `at` is not
        older than its last change. True when any did."""
        ...

    async def account_state(
        self, phone_number_id: str, waba_id: str | None, portfolio: str | None = None
    ) -> dict[str, Any]:
        """`quality`, `status` (`rules.most_severe_status` of the number's and the WABA's),
        `messaging_limit` (the number's tier string), `marketing_paused`, `restrictions` (the WABA's,
        `rules.restrictions`), and `rules.counter_state`: `throughput_mps` (the number's, from
        THROUGHPUT_UPGRADE) and `portfolio_messaging_limit` (`portfolio`'s, an integer, -1 unlimited);
        may lag a write by a few seconds, never more."""
        ...

    async def set_marketing_pause(self, phone_number_id: str, alert: str, message: str, since: float) -> bool:
        """Pause marketing on a number until `clear_marketing_pause`; False if already paused."""
        ...

    async def clear_marketing_pause(self, phone_number_id: str) -> bool:
        """True when a pause was cleared."""
        ...

    async def marketing_pauses(self) -> dict[str, dict[str, Any]]: ...


class MediaCatalog(Protocol):
    """Media uploaded through sendgate (`POST /{phone_number_id}/media`): what each media id Meta
    answered holds, for the send path's media facts."""

    async def record_media(
        self,
        phone_number_id: str,
        media_id: str,
        mime_type: str | None,
        size: int | None,
        at: float,
        *,
        declared_type: str | None = None,
        animated: bool | None = None,
    ) -> None:
        """Keep one upload (checked by `media.check_media`); the same id again replaces it."""
        ...

    async def media_facts(self, phone_number_id: str, media_id: str, now: float) -> MediaFacts | None:
        """What was kept of `media_id` uploaded for this number, or None: never uploaded through
        sendgate (or for another number), or older than `media.MEDIA_SECONDS` (Meta expired it).
        Sees every write committed before it was called."""
        ...


class Lifecycle(Protocol):
    """Opening is `open_store(url)`; the rest of a store's life."""

    async def mark_outcome_unknown(self, started_at: float) -> int:
        """Give `OUTCOME_UNKNOWN` to the forwarded records from before `started_at` that have no
        answer from Meta: their process was killed between forwarding and recording the answer.
        Their sends keep counting (Meta may have taken them). Returns how many. Called once when
        the gateway starts serving.

        A backend serving one process per database may take "older than this start" for "left
        by a process that is gone"; one shared by several processes must know each record's
        owner (and whether it is alive) instead."""
        ...

    async def ping(self) -> None:
        """A real, tiny write through the path the send path's writes take, then a read: raises
        `StoreError` when a write cannot commit (disk full or read-only, database away...)."""
        ...

    async def flush(self) -> None:
        """Return once every write submitted so far (`log_upstream`'s included) is committed."""
        ...

    async def close(self) -> None:
        """Flush and release everything; idempotent."""
        ...


class Store(
    ConsentLedger,
    TemplateCatalog,
    RecipientReads,
    DecisionLog,
    ReviewTrail,
    WebhookState,
    AccountState,
    MediaCatalog,
    Lifecycle,
    Protocol,
):
    """Everything sendgate keeps: what `open_store` returns."""


class Maintenance(Protocol):
    """What `sendgate db` does to a backend, with no gateway serving from it: bring its schema up to
    date, and count, read and write whole tables (`rows.COPIED_TABLES`, in their column order).
    Opened by `open_maintenance(url)`; not part of `Store`."""

    async def migrate(self) -> int:
        """Apply the migrations the database lacks; its schema version after."""
        ...

    async def count(self, table: str) -> int: ...

    def read(self, table: str, batch: int) -> AsyncIterator[list[tuple[Any, ...]]]:
        """The table's rows in batches of at most `batch`, in `COPIED_TABLES[table]`'s column order."""
        ...

    async def write(self, tables: AsyncIterator[tuple[str, list[tuple[Any, ...]]]]) -> None:
        """Insert every batch of `(table, rows)` into this store, all in one transaction: either
        everything is there after, or nothing. Refused (`StoreError`) unless the store holds no
        row of `COPIED_TABLES`. Keeps the rows' own ids and sequence numbers."""
        ...

    async def close(self) -> None: ...

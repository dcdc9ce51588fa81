"""PostgreSQL store: many sendgate processes on one database.

Reads take a connection of the pool and are one statement each (the send path's
`recipient_facts` included). The send path's writes (decision records, their sends,
Meta's answers) go through the group-committing writer (`writer.py`): a send awaits the
commit of its record before it is forwarded, and a burst of sends shares one transaction.
Other writes (consent, catalogs) are a transaction each, straight on the pool. Each store
instance is an owner (`owner.py`) whose liveness other processes can see, so that
`mark_outcome_unknown` leaves alone the records of processes still serving.

The review side is in `review.py`; what webhooks record in `webhooks.py`; the schema in
`schema.py`; the pool and errors in `database.py`.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
from cachetools import TTLCache

from sendgate.places import PLACE_DATA
from sendgate.state.base import (
    OUTCOME_UNKNOWN,
    ConsentRecord,
    DecisionRecord,
    RecipientFacts,
    SendRecord,
    TemplateFacts,
)
from sendgate.state.catalog import validate_catalog
from sendgate.state.postgresql.database import Database
from sendgate.state.postgresql.media import MediaQueries
from sendgate.state.postgresql.owner import LIVE_OWNERS, OWNER_LOCKS, OwnerLock, forget_dead_owners
from sendgate.state.postgresql.review import ReviewQueries
from sendgate.state.postgresql.schema import Connection
from sendgate.state.postgresql.webhooks import WebhookQueries, lock_ledger, lock_recipient
from sendgate.state.postgresql.writer import GroupCommitWriter, Rows, Statement
from sendgate.state.rows import (
    DECISION_COLUMNS,
    PlaceRow,
    consent_from_row,
    consent_row,
    count_rows,
    decision_from_row,
    decision_row,
    place_rows,
    template_facts_from_rows,
    template_rows,
)
from sendgate.state.rules import FAILURE_LIMIT, HISTORY_SECONDS, carry_webhook_facts, decision_rules, recipient_facts

__all__ = ["PostgresStore"]

_CONSENT_COLUMNS = ("recipient", "status", "categories", "source", "evidence", "recorded_at")
_INSERT_CONSENT = f"INSERT INTO consent ({', '.join(_CONSENT_COLUMNS)}) VALUES ($1, $2, $3, $4, $5, $6)"

_INSERT_DECISION = (
    f"INSERT INTO decisions ({', '.join(DECISION_COLUMNS)}, owner)"
    f" VALUES ({', '.join(f'${i}' for i in range(1, len(DECISION_COLUMNS) + 2))})"
)
_INSERT_RULES = "INSERT INTO decision_rules VALUES ($1, $2) ON CONFLICT DO NOTHING"
_INSERT_SEND = "INSERT INTO sends VALUES ($1, $2, $3, $4, $5, $6, false, $7)"
_UPDATE_UPSTREAM = (
    "UPDATE decisions SET upstream_status = $1, upstream_message_id = $2, upstream_error_code = $3,"
    " upstream_error = $4 WHERE id = $5"
)
_SEND_FAILED = "UPDATE sends SET failed = true WHERE decision_id = $1"
_IN_FLIGHT = "INSERT INTO in_flight VALUES ($1, $2, $3)"
_ANSWERED = "DELETE FROM in_flight WHERE decision_id = $1"
_MESSAGE_ID = "INSERT INTO message_ids VALUES ($1, $2) ON CONFLICT DO NOTHING"
_PROBE = (
    "INSERT INTO health VALUES ($1, $2) ON CONFLICT (owner) DO UPDATE SET probed_at = excluded.probed_at"
)

# The send path's per-message read, one statement: the lists come back as arrays of rows
# (double precision travels in binary: every time comes back exact).
_RECIPIENT_FACTS = """
SELECT c.status, c.categories, c.source, c.evidence, c.recorded_at,
    p.recipient IS NOT NULL, p.country, p.timezone,
    ARRAY(SELECT ROW(phone_number_id, waba_id, category, sent_at, in_window) FROM sends
          WHERE recipient = $1 AND sent_at > $3 AND NOT failed ORDER BY sent_at DESC),
    -- None too once Meta reported the window closed (131047) after the last inbound message.
    (SELECT last_at FROM inbound i WHERE phone_number_id = $2 AND recipient = $1 AND NOT EXISTS
        (SELECT 1 FROM window_closures w WHERE w.phone_number_id = i.phone_number_id
         AND w.recipient = i.recipient AND w.closed_at >= i.last_at)),
    ARRAY(SELECT ROW(code, at) FROM delivery_failures WHERE recipient = $1 AND at > $3
          ORDER BY at DESC LIMIT $4),
    (SELECT at FROM entry_points WHERE phone_number_id = $2 AND recipient = $1)
FROM (SELECT $1::text AS recipient) k
LEFT JOIN LATERAL (SELECT * FROM consent WHERE recipient = k.recipient ORDER BY seq DESC LIMIT 1) c ON true
LEFT JOIN places p ON p.recipient = k.recipient AND p.data = $5
"""
_STORE_PLACES = """INSERT INTO places (recipient, country, timezone, data)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
ON CONFLICT (recipient) DO UPDATE SET country = excluded.country, timezone = excluded.timezone, data = excluded.data
"""
# Unanswered forwarded records (`in_flight`) left by a process that is gone: its owner holds no
# lock; a record with no owner (copied from SQLite) if older than this start.
_MARK_OUTCOME_UNKNOWN = f"""WITH gone AS (
    DELETE FROM in_flight WHERE owner NOT IN ({LIVE_OWNERS}) OR (owner IS NULL AND ts < $3) RETURNING decision_id
)
UPDATE decisions d SET upstream_error = $2 FROM gone
WHERE d.id = gone.decision_id AND d.upstream_status IS NULL AND d.upstream_error IS NULL
"""


class PostgresStore(ReviewQueries, WebhookQueries, MediaQueries):
    """The `Store` on one PostgreSQL database, shared by any number of sendgate processes."""

    def __init__(self, url: str) -> None:
        self._db = Database(url)
        # This store's name in the records it writes (`decisions.owner`), one per process.
        self.owner = uuid.uuid4().hex
        self._owner_lock = OwnerLock(self._db, self.owner)
        self._writer = GroupCommitWriter(self._db, self._owner_lock)
        # Catalog facts change rarely and are read on every template send ("may lag a few seconds").
        self._template_cache: TTLCache[tuple[str, str], list[tuple[Any, ...]]] = TTLCache(maxsize=4096, ttl=5.0)
        self._account_cache: TTLCache[tuple[str, str | None, str | None], dict[str, Any]] = TTLCache(maxsize=1024, ttl=5.0)
        self._closed = False

    # -- consent ledger -------------------------------------------------------------

    async def record_consent(self, record: ConsentRecord) -> None:
        places = await self._places_to_store({record.recipient})

        async def op(conn: Connection) -> None:
            # After any merge of a webhook's consent event for the recipient, in whichever process:
            # one that read the ledger before this append must not append after it (`lock_recipient`).
            await lock_recipient(conn, record.recipient)
            await conn.execute(_INSERT_CONSENT, *consent_row(record))
            await _store_places(conn, places)

        await self._db.transaction(op)

    async def import_consent(self, records: list[ConsentRecord]) -> int:
        """COPY, in one transaction, holding the whole ledger (`lock_ledger`): no webhook merge
        reads a recipient's ledger before the import and appends after it."""
        rows = [consent_row(r) for r in records]
        places = await self._places_to_store({r.recipient for r in records})

        async def op(conn: Connection) -> int:
            await lock_ledger(conn)
            # COPY appends in the order given: the ledger's `seq` follows it.
            await conn.copy_records_to_table("consent", records=rows, columns=_CONSENT_COLUMNS)
            await _store_places(conn, places)
            return len(rows)

        return await self._db.transaction(op)

    async def consent_history(self, recipient: str) -> list[ConsentRecord]:
        rows = await self._db.fetch(
            f"SELECT {', '.join(_CONSENT_COLUMNS)} FROM consent WHERE recipient = $1 ORDER BY seq", recipient
        )
        return [consent_from_row(tuple(row)) for row in rows]

    # -- template catalog -----------------------------------------------------------

    async def put_templates(self, waba_id: str, body: dict[str, Any]) -> int:
        templates = [dict(t) for t in validate_catalog(body)]  # the caller's body stays as it was

        async def op(conn: Connection) -> None:
            # The catalog row first: its row lock orders concurrent replacements of one WABA's
            # catalog (and webhook changes, `update_template`), so what webhooks told is kept.
            await conn.execute(
                "INSERT INTO catalogs VALUES ($1, '{}', 0) ON CONFLICT (waba_id) DO NOTHING", waba_id
            )
            old = await conn.fetchval("SELECT body FROM catalogs WHERE waba_id = $1 FOR UPDATE", waba_id)
            carry_webhook_facts(orjson.loads(old).get("data", []), templates)
            rows = template_rows(waba_id, templates)
            await conn.execute(
                "UPDATE catalogs SET body = $2, updated_at = $3 WHERE waba_id = $1",
                waba_id, orjson.dumps({"data": templates}).decode(), time.time(),
            )  # fmt: skip
            await conn.execute("DELETE FROM templates WHERE waba_id = $1", waba_id)
            await conn.executemany(
                "INSERT INTO templates VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (waba_id, name, language)"
                " DO UPDATE SET status = excluded.status, category = excluded.category,"
                " placeholders = excluded.placeholders, details = excluded.details",
                rows,
            )

        await self._db.transaction(op)
        self._template_cache.clear()
        return len(templates)

    async def templates(self, waba_id: str) -> dict[str, Any] | None:
        body = await self._db.fetchval("SELECT body FROM catalogs WHERE waba_id = $1", waba_id)
        return None if body is None else orjson.loads(body)

    async def template_facts(self, waba_id: str, name: str, language: str) -> TemplateFacts:
        key = (waba_id, name)
        rows = self._template_cache.get(key)
        if rows is None:
            records = await self._db.fetch(
                "SELECT language, status, category, placeholders, details FROM templates WHERE waba_id = $1 AND name = $2",
                waba_id, name,
            )  # fmt: skip
            rows = [tuple(r) for r in records]
            self._template_cache[key] = rows
        return template_facts_from_rows(rows, language)

    # -- inbound window -------------------------------------------------------------

    async def record_inbound(self, phone_number_id: str, recipient: str, at: float) -> None:
        places = await self._places_to_store({recipient})

        async def op(conn: Connection) -> None:
            # greatest(): redelivered or out-of-order events never move the window back.
            await conn.execute(
                "INSERT INTO inbound VALUES ($1, $2, $3) ON CONFLICT (phone_number_id, recipient)"
                " DO UPDATE SET last_at = greatest(inbound.last_at, excluded.last_at)",
                phone_number_id, recipient, at,
            )  # fmt: skip
            await _store_places(conn, places)

        await self._db.transaction(op)

    async def _places_to_store(self, recipients: set[str]) -> list[PlaceRow]:
        """`places` rows for the numbers not yet stored with today's metadata, placed before the
        transaction (on a worker thread when many)."""
        stored = await self._db.fetch(
            "SELECT recipient FROM places WHERE data = $1 AND recipient = ANY($2::text[])",
            PLACE_DATA, sorted(recipients),
        )  # fmt: skip
        return await place_rows(recipients - {r[0] for r in stored})

    # -- what the send path reads per message -------------------------------------------

    async def recipient_facts(
        self, phone_number_id: str, waba_id: str | None, recipient: str, now: float
    ) -> RecipientFacts:
        row = await self._db.fetchrow(
            _RECIPIENT_FACTS, recipient, phone_number_id, now - HISTORY_SECONDS, FAILURE_LIMIT, PLACE_DATA
        )
        assert row is not None  # one row, whatever is stored
        consent = None
        if row[0] is not None:
            consent = ConsentRecord(recipient, row[0], tuple(orjson.loads(row[1])), row[2], row[3], row[4])
        return recipient_facts(
            phone_number_id,
            waba_id,
            now,
            consent=consent,
            place=(row[6], row[7]) if row[5] else None,
            last_inbound_at=row[9],
            sends=row[8],
            failures=row[10],
            free_entry_point_at=row[11],
        )

    # -- decision log ---------------------------------------------------------------

    async def log_decision(self, record: DecisionRecord, send: SendRecord | None = None) -> None:
        rules = decision_rules(record.reasons)
        statements: list[Statement] = [(_INSERT_DECISION, [(*decision_row(record), self.owner)])]
        if rules:
            statements.append((_INSERT_RULES, [(record.id, rule) for rule in rules]))
        if record.forwarded and record.upstream_status is None and record.upstream_error is None:
            statements.append((_IN_FLIGHT, [(record.id, self.owner, record.timestamp)]))
        if send is not None:
            statements.append((
                _INSERT_SEND,
                [(send.decision_id, send.phone_number_id, send.waba_id, send.recipient, send.category, send.sent_at,
                  send.in_window)],
            ))  # fmt: skip
        # With the hourly and daily rollup the overview reads, in the same transaction.
        await self._writer.write(Rows(statements, count_rows(record, rules), name=f"decision {record.id}"))

    def log_upstream(
        self,
        decision_id: str,
        status: int | None,
        message_id: str | None,
        error_code: int | None,
        error: str | None,
        send_failed: bool,
    ) -> None:
        statements: list[Statement] = [
            (_UPDATE_UPSTREAM, [(status, message_id, error_code, error, decision_id)]),
            (_ANSWERED, [(decision_id,)]),
        ]
        if message_id is not None:
            statements.append((_MESSAGE_ID, [(message_id, decision_id)]))
        if send_failed:
            statements.append((_SEND_FAILED, [(decision_id,)]))
        # Not awaited: the record was committed before forwarding; this only completes it.
        self._writer.queue(Rows(statements, name=f"upstream outcome of {decision_id}"))

    async def decision(self, decision_id: str) -> DecisionRecord | None:
        row = await self._db.fetchrow(f"SELECT {', '.join(DECISION_COLUMNS)} FROM decisions WHERE id = $1", decision_id)
        return None if row is None else decision_from_row(tuple(row))

    # -- lifecycle ------------------------------------------------------------------

    async def mark_outcome_unknown(self, started_at: float) -> int:
        """Marks the unanswered records of owners that are gone, whenever written; and those with
        no owner from before `started_at` (see `Lifecycle.mark_outcome_unknown`)."""
        await self._owner_lock.hold()  # this store's own records are a live owner's

        async def op(conn: Connection) -> int:
            status = await conn.execute(_MARK_OUTCOME_UNKNOWN, OWNER_LOCKS, OUTCOME_UNKNOWN, started_at)
            await forget_dead_owners(conn)
            return int(status.rsplit(" ", 1)[1])  # "UPDATE <count>"

        return await self._db.transaction(op)

    async def ping(self) -> None:
        """A one-row upsert through the writer, committed as a send's record is, then a read."""
        await self._writer.write(Rows([(_PROBE, [(self.owner, time.time())])], name="health probe"))
        await self._db.fetchval("SELECT probed_at FROM health WHERE owner = $1", self.owner)

    async def flush(self) -> None:
        await self._writer.flush()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._writer.close()
        finally:
            await self._owner_lock.release()
            await self._db.close()


async def _store_places(conn: Connection, places: list[PlaceRow]) -> None:
    if places:
        await conn.execute(_STORE_PLACES, *(list(column) for column in zip(*places, strict=True)))

"""SQLite store: reads on the caller's thread, writes through one group-committing writer.

Reads are short indexed lookups, cheaper than a thread hop, so they run inline.
Writes go to a single writer thread (`writer.py`) that commits whatever has
queued up in one transaction (group commit): a send awaits the commit of its
decision record before it is forwarded, so every message that reached Meta has a
committed record even if the process is killed, and a burst of sends shares one
commit. WAL with synchronous=NORMAL survives a process kill; only an OS crash can
lose the last transactions.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import orjson
from cachetools import TTLCache

from sendgate.places import PLACE_DATA
from sendgate.state.base import (
    OUTCOME_UNKNOWN,
    ConsentRecord,
    DecisionRecord,
    RecipientFacts,
    SendRecord,
    StoreError,
    TemplateFacts,
)
from sendgate.state.catalog import validate_catalog
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
from sendgate.state.sqlite.media import MediaQueries
from sendgate.state.sqlite.review import UPSERT_COUNT, ReviewQueries
from sendgate.state.sqlite.schema import migrate
from sendgate.state.sqlite.webhooks import WebhookQueries
from sendgate.state.sqlite.writer import GroupCommitWriter, Rows, Statement

__all__ = ["SQLiteStore"]

T = TypeVar("T")

_INSERT_DECISION = (
    f"INSERT INTO decisions ({', '.join(DECISION_COLUMNS)}) VALUES ({', '.join('?' * len(DECISION_COLUMNS))})"
)

# The send path's per-message read (`recipient_facts`). Lists come back as JSON arrays, their
# times as text with 17 significant digits: JSON's own rendering of a REAL keeps only 15.
_RECIPIENT_FACTS = """
SELECT c.status, c.categories, c.source, c.evidence, c.recorded_at,
    p.recipient IS NOT NULL, p.country, p.timezone,
    (SELECT json_group_array(json_array(phone_number_id, waba_id, category, printf('%!.17g', sent_at), in_window))
        FROM (SELECT phone_number_id, waba_id, category, sent_at, in_window FROM sends
              WHERE recipient = :r AND sent_at > :sends_since AND failed = 0 ORDER BY sent_at DESC)),
    -- None too once Meta reported the window closed (131047) after the last inbound message.
    (SELECT last_at FROM inbound i WHERE phone_number_id = :p AND recipient = :r AND NOT EXISTS
        (SELECT 1 FROM window_closures w WHERE w.phone_number_id = i.phone_number_id
         AND w.recipient = i.recipient AND w.closed_at >= i.last_at)),
    (SELECT json_group_array(json_array(code, printf('%!.17g', at)))
        FROM (SELECT code, at FROM delivery_failures WHERE recipient = :r AND at > :failures_since
              ORDER BY at DESC LIMIT :failures_limit)),
    (SELECT at FROM entry_points WHERE phone_number_id = :p AND recipient = :r)
FROM (SELECT :r AS recipient) k
LEFT JOIN (SELECT * FROM consent WHERE recipient = :r ORDER BY seq DESC LIMIT 1) c
LEFT JOIN places p ON p.recipient = k.recipient AND p.data = :data
"""
_STORE_PLACE = (
    "INSERT INTO places VALUES (?, ?, ?, ?) ON CONFLICT (recipient)"
    " DO UPDATE SET country = excluded.country, timezone = excluded.timezone, data = excluded.data"
)
_UPDATE_UPSTREAM = (
    "UPDATE decisions SET upstream_status = ?, upstream_message_id = ?, upstream_error_code = ?, upstream_error = ?"
    " WHERE id = ?"
)
_MARK_OUTCOME_UNKNOWN = (  # its WHERE implies the partial index decisions_unanswered's
    "UPDATE decisions SET upstream_error = ?"
    " WHERE forwarded = 1 AND upstream_status IS NULL AND upstream_error IS NULL AND ts < ?"
)
_PROBE = "INSERT INTO health VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET probed_at = excluded.probed_at"


class _Connection(sqlite3.Connection):
    """A connection that fails with `StoreError`: what is above the state layer knows no sqlite3.

    (A failure while stepping through the rows of a result after the first stays sqlite3's own;
    every read here is a single row or a short list that SQLite has in hand by then.)
    """

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        try:
            return super().execute(sql, parameters)
        except sqlite3.Error as exc:
            raise _store_error(exc) from exc

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        try:
            return super().executemany(sql, parameters)
        except sqlite3.Error as exc:
            raise _store_error(exc) from exc

    def executescript(self, script: str, /) -> sqlite3.Cursor:
        try:
            return super().executescript(script)
        except sqlite3.Error as exc:
            raise _store_error(exc) from exc


def _store_error(exc: sqlite3.Error) -> StoreError:
    name = getattr(exc, "sqlite_errorname", None)  # SQLITE_FULL, SQLITE_IOERR_WRITE, SQLITE_READONLY...
    return StoreError(f"{exc} ({name})" if name else str(exc))


def connect(path: Path) -> sqlite3.Connection:
    """A connection to the file, its failures as `StoreError`, in WAL mode."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30, factory=_Connection)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


class SQLiteStore(ReviewQueries, WebhookQueries, MediaQueries):
    """The `Store` on one SQLite file. Listing, counts, reviews and pruning: `review.py`;
    what webhooks record (delivery status, failures, account state...): `webhooks.py`; media
    uploaded through sendgate: `media.py`; the
    schema and its migrations: `schema.py`."""

    _select_columns = ", ".join(f"d.{column}" for column in DECISION_COLUMNS)

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._read = connect(self.path)
        migrate(self._read)
        self._writer = GroupCommitWriter(lambda: connect(self.path), UPSERT_COUNT)
        self._writer.start()
        # Catalog facts change rarely and are read on every template send.
        self._template_cache: TTLCache[tuple[str, str], list[tuple[Any, ...]]] = TTLCache(maxsize=4096, ttl=5.0)
        self._closed = False

    async def _write(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Run `op` in the writer's next transaction; its result once committed."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._writer.submit(op, future)
        return await future

    # -- consent ledger -------------------------------------------------------------

    async def record_consent(self, record: ConsentRecord) -> None:
        await self.import_consent([record])

    async def import_consent(self, records: list[ConsentRecord]) -> int:
        rows = [consent_row(r) for r in records]

        places = await self._places_to_store({r.recipient for r in records})

        def op(conn: sqlite3.Connection) -> int:
            conn.executemany(
                "INSERT INTO consent (recipient, status, categories, source, evidence, recorded_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            conn.executemany(_STORE_PLACE, places)
            return len(rows)

        return await self._write(op)

    async def consent_history(self, recipient: str) -> list[ConsentRecord]:
        rows = self._read.execute(
            "SELECT recipient, status, categories, source, evidence, recorded_at FROM consent"
            " WHERE recipient = ? ORDER BY seq",
            (recipient,),
        ).fetchall()
        return [consent_from_row(row) for row in rows]

    # -- template catalog -----------------------------------------------------------

    async def put_templates(self, waba_id: str, body: dict[str, Any]) -> int:
        templates = [dict(t) for t in validate_catalog(body)]  # the caller's body stays as it was

        def op(conn: sqlite3.Connection) -> int:
            # Replace the WABA's catalog as a whole, in one transaction, keeping what webhooks told.
            old = conn.execute("SELECT body FROM catalogs WHERE waba_id = ?", (waba_id,)).fetchone()
            if old is not None:
                carry_webhook_facts(orjson.loads(old[0]).get("data", []), templates)
            rows = template_rows(waba_id, templates)
            raw = orjson.dumps({"data": templates}).decode()
            conn.execute("DELETE FROM templates WHERE waba_id = ?", (waba_id,))
            conn.executemany("INSERT OR REPLACE INTO templates VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            conn.execute("INSERT OR REPLACE INTO catalogs VALUES (?, ?, ?)", (waba_id, raw, time.time()))
            return len(rows)

        count = await self._write(op)
        self._template_cache.clear()
        return count

    async def templates(self, waba_id: str) -> dict[str, Any] | None:
        row = self._read.execute("SELECT body FROM catalogs WHERE waba_id = ?", (waba_id,)).fetchone()
        return orjson.loads(row[0]) if row else None

    async def template_facts(self, waba_id: str, name: str, language: str) -> TemplateFacts:
        key = (waba_id, name)
        rows = self._template_cache.get(key)
        if rows is None:
            rows = self._read.execute(
                "SELECT language, status, category, placeholders, details FROM templates WHERE waba_id = ? AND name = ?",
                key,
            ).fetchall()
            self._template_cache[key] = rows
        return template_facts_from_rows(rows, language)

    # -- inbound window -------------------------------------------------------------

    async def record_inbound(self, phone_number_id: str, recipient: str, at: float) -> None:
        places = await self._places_to_store({recipient})

        def op(conn: sqlite3.Connection) -> None:
            # max(): redelivered or out-of-order events never move the window back.
            conn.execute(
                "INSERT INTO inbound VALUES (?, ?, ?) ON CONFLICT (phone_number_id, recipient)"
                " DO UPDATE SET last_at = max(last_at, excluded.last_at)",
                (phone_number_id, recipient, at),
            )
            conn.executemany(_STORE_PLACE, places)

        await self._write(op)

    async def _places_to_store(self, recipients: set[str]) -> list[PlaceRow]:
        """`_STORE_PLACE` rows for the numbers not yet stored with today's metadata, placed
        before the transaction (on a worker thread when many), so sends keep being committed."""
        stored = {
            r for (r,) in self._read.execute(
                "SELECT recipient FROM places WHERE data = ? AND recipient IN (SELECT value FROM json_each(?))",
                (PLACE_DATA, orjson.dumps(sorted(recipients)).decode()),
            )
        }  # fmt: skip
        return await place_rows(recipients - stored)

    # -- what the send path reads per message -------------------------------------------

    async def recipient_facts(
        self, phone_number_id: str, waba_id: str | None, recipient: str, now: float
    ) -> RecipientFacts:
        # One statement for all of it: a statement costs more than the index lookups it makes.
        params = {
            "p": phone_number_id,
            "r": recipient,
            "sends_since": now - HISTORY_SECONDS,
            "failures_since": now - HISTORY_SECONDS,
            "failures_limit": FAILURE_LIMIT,
            "data": PLACE_DATA,
        }
        row = self._read.execute(_RECIPIENT_FACTS, params).fetchone()
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
            sends=[
                (pid, wid, category, float(at), None if inside is None else bool(inside))
                for pid, wid, category, at, inside in orjson.loads(row[8])
            ],
            failures=[(code, float(at)) for code, at in orjson.loads(row[10])],
            free_entry_point_at=row[11],
        )

    # -- decision log ---------------------------------------------------------------

    async def log_decision(self, record: DecisionRecord, send: SendRecord | None = None) -> None:
        rules = decision_rules(record.reasons)
        statements: list[Statement] = [(_INSERT_DECISION, [decision_row(record)])]
        if rules:
            statements.append(("INSERT OR IGNORE INTO decision_rules VALUES (?, ?)", [(record.id, r) for r in rules]))
        if send is not None:
            statements.append((
                "INSERT INTO sends VALUES (?, ?, ?, ?, ?, ?, 0, ?)",
                [(send.decision_id, send.phone_number_id, send.waba_id, send.recipient, send.category, send.sent_at,
                  send.in_window)],
            ))  # fmt: skip
        # With the hourly rollup the overview reads, in the same transaction.
        rows = Rows(statements, count_rows(record, rules), name=f"decision {record.id}")
        await self._writer.write_rows(rows)
        if rows.error is not None:
            raise rows.error

    def log_upstream(
        self,
        decision_id: str,
        status: int | None,
        message_id: str | None,
        error_code: int | None,
        error: str | None,
        send_failed: bool,
    ) -> None:
        statements: list[Statement] = [(_UPDATE_UPSTREAM, [(status, message_id, error_code, error, decision_id)])]
        if send_failed:
            statements.append(("UPDATE sends SET failed = 1 WHERE decision_id = ?", [(decision_id,)]))
        # Not awaited: the record was committed before forwarding; this only completes it.
        self._writer.queue_rows(Rows(statements, name=f"upstream outcome of {decision_id}"))

    def _to_record(self, row: Sequence[Any]) -> DecisionRecord:
        return decision_from_row(row)

    async def decision(self, decision_id: str) -> DecisionRecord | None:
        row = self._read.execute(
            f"SELECT {', '.join(DECISION_COLUMNS)} FROM decisions WHERE id = ?", (decision_id,)
        ).fetchone()
        return decision_from_row(row) if row else None

    async def mark_outcome_unknown(self, started_at: float) -> int:
        """One serving process per SQLite file: what is older than this start and unanswered was
        left by a process that is gone (see `Lifecycle.mark_outcome_unknown`)."""

        def op(conn: sqlite3.Connection) -> int:
            return int(conn.execute(_MARK_OUTCOME_UNKNOWN, (OUTCOME_UNKNOWN, started_at)).rowcount)

        return int(await self._write(op))

    # -- lifecycle ------------------------------------------------------------------

    async def ping(self) -> None:
        """A one-row upsert through the writer, committed as a send's record is, then a read."""
        rows = Rows([(_PROBE, [(time.time(),)])], name="health probe")
        await self._writer.write_rows(rows)
        if rows.error is not None:
            raise rows.error
        self._read.execute("SELECT probed_at FROM health").fetchone()

    async def flush(self) -> None:
        await self._write(lambda conn: None)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.stop()
        await asyncio.get_running_loop().run_in_executor(None, self._writer.join)
        self._read.close()


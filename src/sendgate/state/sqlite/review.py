"""The decision log's review side on SQLite: filtered listing, hourly counts, the review trail, pruning.

`SQLiteStore` mixes `ReviewQueries` in; the tables and indexes are in `schema.py`.

Listing stays fast on millions of records because every filter has an index that also yields
rows newest first, so a page reads about as many rows as it shows:

- rejections (`decision != 'allow'`) and shadow would-be rejections have partial indexes on `id`;
- `account`, `recipient_key`, `template`, `decision` have `(column, id)` indexes;
- a rule filter walks `decision_rules (rule, decision_id)` backwards;
- decision ids are time-ordered (ULID layout, never earlier than the record's timestamp), so a
  `since` bound becomes an `id` range too.

The overview and `sendgate log stats` read `decision_counts`, a rollup per hour and per day (UTC)
maintained in the same transaction as each decision record: a month of counts is a few thousand
day rows, whatever the traffic. A range reads day rows for its whole days, hour rows for its
whole hours around them, and the records themselves for partial hours at its ends, so counts
are exact for any range.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from sendgate.state.base import (
    DECISION_FILTERS,
    DecisionCount,
    DecisionQuery,
    DecisionRecord,
    InvalidRecord,
    PruneResult,
    ReviewRecord,
)
from sendgate.state.rows import DAY, HOUR, count_plan, counts_from, id_floor
from sendgate.state.rules import HISTORY_SECONDS, check_review, count_keys, decision_rules

__all__ = ["ReviewQueries", "rebuild_counts"]

T = TypeVar("T")

PRUNE_BATCH = 2000  # records per write transaction: pruning never holds the writer for long

UPSERT_COUNT = (  # parameters: a count_rows() row, then how many decisions it counts
    "INSERT INTO decision_counts (span, start, dim, key, decision, mode, n) VALUES (?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (span, start, dim, key, decision, mode) DO UPDATE SET n = n + excluded.n"
)

_HOURS_FROM_RECORDS = (
    "INSERT INTO decision_counts (span, start, dim, key, decision, mode, n)"
    " SELECT 3600, CAST(ts / 3600 AS INTEGER) * 3600, 'all', '', decision, mode, count(*) FROM decisions"
    " WHERE ts >= ? AND ts < ? GROUP BY 2, 5, 6",
    "INSERT INTO decision_counts (span, start, dim, key, decision, mode, n)"
    " SELECT 3600, CAST(ts / 3600 AS INTEGER) * 3600, 'account', account, decision, mode, count(*) FROM decisions"
    " WHERE ts >= ? AND ts < ? GROUP BY 2, 4, 5, 6",
    "INSERT INTO decision_counts (span, start, dim, key, decision, mode, n)"
    " SELECT 3600, CAST(ts / 3600 AS INTEGER) * 3600, 'template', template, decision, mode, count(*) FROM decisions"
    " WHERE ts >= ? AND ts < ? AND decision != 'allow' AND template IS NOT NULL GROUP BY 2, 4, 5, 6",
    "INSERT INTO decision_counts (span, start, dim, key, decision, mode, n)"
    " SELECT 3600, CAST(d.ts / 3600 AS INTEGER) * 3600, 'rule', r.rule, d.decision, d.mode, count(*)"
    " FROM decision_rules r JOIN decisions d ON d.id = r.decision_id"
    " WHERE d.ts >= ? AND d.ts < ? AND d.decision != 'allow' GROUP BY 2, 4, 5, 6",
)
_DAYS_FROM_HOURS = (
    "INSERT INTO decision_counts (span, start, dim, key, decision, mode, n)"
    " SELECT 86400, start / 86400 * 86400, dim, key, decision, mode, sum(n) FROM decision_counts"
    " WHERE span = 3600 AND start >= ? AND start < ? GROUP BY 2, 3, 4, 5, 6"
)

def _hour(ts: float) -> int:
    return int(ts // HOUR) * HOUR


def rebuild_counts(conn: sqlite3.Connection, since: int | None = None, until: int | None = None) -> None:
    """Recompute `decision_counts` from the records: everything, or the hours [since, until) and their days."""
    if since is None or until is None:
        since, until = -(2**62), 2**62
    day_since, day_until = since // DAY * DAY, -(-until // DAY) * DAY
    conn.execute("DELETE FROM decision_counts WHERE span = ? AND start >= ? AND start < ?", (HOUR, since, until))
    for sql in _HOURS_FROM_RECORDS:
        conn.execute(sql, (since, until))
    conn.execute("DELETE FROM decision_counts WHERE span = ? AND start >= ? AND start < ?", (DAY, day_since, day_until))
    conn.execute(_DAYS_FROM_HOURS, (day_since, day_until))


def _placeholders(n: int) -> str:
    return ", ".join("?" * n)


def _chunks(values: Sequence[str], size: int = 500) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


class ReviewQueries:
    """Mixed into `SQLiteStore`: `_read`, `_write`, `_select` and `_to_record` come from there."""

    _read: sqlite3.Connection

    if TYPE_CHECKING:  # SQLiteStore's, typed per operation

        async def _write(self, op: Callable[[sqlite3.Connection], T]) -> T: ...

    _select_columns: str  # the decision columns, each as d.<column>
    _to_record: Callable[[Sequence[Any]], DecisionRecord]

    # -- listing --------------------------------------------------------------------

    async def decisions(self, query: DecisionQuery) -> list[DecisionRecord]:
        sql, args = self._list_sql(query)
        rows = self._read.execute(sql, args).fetchall()
        if query.after_id is not None:
            rows.reverse()  # fetched oldest first to find the page right after the cursor
        return [self._to_record(row) for row in rows]

    def _list_sql(self, query: DecisionQuery) -> tuple[str, list[Any]]:
        if query.decision is not None and query.decision not in DECISION_FILTERS:
            raise InvalidRecord(f"decision must be one of {sorted(DECISION_FILTERS)}")
        where: list[str] = []
        args: list[Any] = []
        # Paging and time bounds go on the id the rows are ordered by: the rule table's copy of it
        # when the rule filter drives the scan.
        id_column = "d.id"
        source = "decisions d"
        if query.rule is not None:
            source = "decision_rules dr CROSS JOIN decisions d ON d.id = dr.decision_id"
            id_column = "dr.decision_id"
            where.append("dr.rule = ?")
            args.append(query.rule)
        if query.decision == "rejected":
            where.append("d.decision != 'allow'")  # exactly the partial index's condition
        elif query.decision == "shadow":
            where.append("d.mode = 'shadow' AND d.decision IN ('deny', 'defer')")
            if query.rule is None:  # the planner would rather sort the (decision, id) index's two ranges
                source = "decisions d INDEXED BY decisions_shadow"
        elif query.decision is not None:
            where.append("d.decision = ?")
            args.append(query.decision)
        for column, value in (
            ("d.account", query.account),
            ("d.recipient_key", query.recipient_key),
            ("d.template", query.template),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if query.since is not None:
            # `+` keeps the planner off the ts index: newest-first pages come from the id order.
            where.append(f"+d.ts >= ? AND {id_column} >= ?")
            args += [query.since, id_floor(query.since)]
        if query.until is not None:
            where.append("+d.ts < ?")
            args.append(query.until)
        if query.before_id is not None:
            where.append(f"{id_column} < ?")
            args.append(query.before_id)
        if query.after_id is not None:
            where.append(f"{id_column} > ?")
            args.append(query.after_id)
        if query.reviewed is True:
            where.append("d.id IN (SELECT decision_id FROM reviews)")
        elif query.reviewed is False:
            where.append("NOT EXISTS (SELECT 1 FROM reviews rv WHERE rv.decision_id = d.id)")
        sql = f"SELECT {self._select_columns} FROM {source}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {id_column} {'ASC' if query.after_id is not None else 'DESC'} LIMIT ?"
        args.append(query.limit)
        return sql, args

    # -- counts ---------------------------------------------------------------------

    async def decision_counts(
        self, since: float, until: float, bucket: int | None = None, dimension: str | None = None
    ) -> list[DecisionCount]:
        plan = count_plan(since, until, bucket)
        totals: Counter[tuple[Any, ...]] = Counter()
        for span, start, end in plan.rollups:
            self._count_rollup(span, start, end, bucket, dimension, totals)
        for start_ts, end_ts in plan.records:
            self._count_records(start_ts, end_ts, bucket, dimension, totals)
        return counts_from(totals)

    def _count_rollup(
        self,
        span: int,
        since: int,
        until: int,
        bucket: int | None,
        dimension: str | None,
        totals: Counter[tuple[Any, ...]],
    ) -> None:
        where = "span = ? AND start >= ? AND start < ?" + (" AND dim = ?" if dimension is not None else "")
        args: list[Any] = [span, since, until] + ([dimension] if dimension is not None else [])
        if bucket is None:
            sql = (
                f"SELECT NULL, dim, key, decision, mode, sum(n) FROM decision_counts WHERE {where} GROUP BY 2, 3, 4, 5"
            )
        elif bucket == span:  # the rows are the buckets: nothing to group
            sql = f"SELECT start, dim, key, decision, mode, n FROM decision_counts WHERE {where}"
        else:
            sql = f"SELECT start / ? * ?, dim, key, decision, mode, sum(n) FROM decision_counts WHERE {where} GROUP BY 1, 2, 3, 4, 5"
            args = [bucket, bucket, *args]
        for b, dim, key, decision, mode, n in self._read.execute(sql, args):
            totals[(None if b is None else float(b), dim, key, decision, mode)] += n

    def _count_records(
        self, since: float, until: float, bucket: int | None, dimension: str | None, totals: Counter[tuple[Any, ...]]
    ) -> None:
        """Count partial hours from the records themselves (rules from their reasons, as `decision_rules`)."""
        rows = self._read.execute(
            "SELECT ts, decision, mode, account, template, reasons FROM decisions WHERE ts >= ? AND ts < ?",
            (since, until),
        )
        for ts, decision, mode, account, template, reasons in rows:
            b = None if bucket is None else float(int(ts // bucket) * bucket)
            rules = decision_rules(orjson.loads(reasons)) if decision != "allow" else ()
            for dim, key in count_keys(decision, account, template, rules):
                if dimension is None or dim == dimension:
                    totals[(b, dim, key, decision, mode)] += 1

    # -- review trail ---------------------------------------------------------------

    async def add_review(self, review: ReviewRecord) -> ReviewRecord | None:
        check_review(review)

        def op(conn: sqlite3.Connection) -> int | None:
            # The decision looked up in the note's own transaction: a prune in between leaves no orphan note.
            cursor = conn.execute(
                "INSERT INTO reviews (decision_id, reviewer, note, reviewed_at)"
                " SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM decisions WHERE id = ?)",
                (review.decision_id, review.reviewer, review.note, review.reviewed_at, review.decision_id),
            )
            return int(cursor.lastrowid or 0) if cursor.rowcount > 0 else None

        seq = await self._write(op)
        if seq is None:
            return None
        return ReviewRecord(review.decision_id, review.reviewer, review.note, review.reviewed_at, seq)

    async def reviews(self, decision_ids: list[str]) -> dict[str, list[ReviewRecord]]:
        trail: dict[str, list[ReviewRecord]] = {}
        for chunk in _chunks(list(dict.fromkeys(decision_ids))):
            rows = self._read.execute(
                "SELECT seq, decision_id, reviewer, note, reviewed_at FROM reviews"
                f" WHERE decision_id IN ({_placeholders(len(chunk))}) ORDER BY seq",
                list(chunk),
            ).fetchall()
            for seq, decision_id, reviewer, note, reviewed_at in rows:
                trail.setdefault(decision_id, []).append(ReviewRecord(decision_id, reviewer, note, reviewed_at, seq))
        return trail

    # -- retention ------------------------------------------------------------------

    async def prune_decisions(self, before: float, now: float) -> PruneResult:
        """In batches of `PRUNE_BATCH` records, each its own transaction through the writer."""
        decisions = reviews = sends = 0

        def prune_batch(conn: sqlite3.Connection) -> tuple[int, int]:
            rows = conn.execute(
                "SELECT id, reasons FROM decisions WHERE ts < ? ORDER BY ts LIMIT ?", (before, PRUNE_BATCH)
            ).fetchall()
            if not rows:
                return 0, 0
            ids = [row[0] for row in rows]
            pairs = [(rule, row[0]) for row in rows for rule in decision_rules(orjson.loads(row[1]))]
            conn.executemany("DELETE FROM decision_rules WHERE rule = ? AND decision_id = ?", pairs)
            removed_reviews = conn.execute(
                f"DELETE FROM reviews WHERE decision_id IN ({_placeholders(len(ids))})", ids
            ).rowcount
            conn.execute(f"DELETE FROM decisions WHERE id IN ({_placeholders(len(ids))})", ids)
            return len(ids), removed_reviews

        while True:
            removed, removed_reviews = await self._write(prune_batch)
            decisions += removed
            reviews += removed_reviews
            if removed < PRUNE_BATCH:
                break

        boundary = _hour(before)

        def fix_counts(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM decision_counts WHERE span = ? AND start < ?", (HOUR, boundary))
            conn.execute("DELETE FROM decision_counts WHERE span = ? AND start < ?", (DAY, boundary // DAY * DAY))
            # The hour and the day `before` falls in lost their first part: count them again.
            rebuild_counts(conn, boundary, boundary + HOUR if boundary < before else boundary)

        await self._write(fix_counts)

        sends_before = min(before, now - HISTORY_SECONDS)

        def prune_sends(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM sends WHERE rowid IN (SELECT rowid FROM sends WHERE sent_at < ? LIMIT ?)",
                (sends_before, PRUNE_BATCH),
            ).rowcount

        while True:
            removed = await self._write(prune_sends)
            sends += removed
            if removed < PRUNE_BATCH:
                break
        return PruneResult(decisions=decisions, reviews=reviews, sends=sends)

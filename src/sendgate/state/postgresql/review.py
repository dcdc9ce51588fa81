"""The decision log's review side on PostgreSQL: filtered listing, hourly counts, the review trail, pruning.

`PostgresStore` mixes `ReviewQueries` in; the tables and indexes are in `schema.py`, the same
as SQLite's, and the queries lean on them the same way (`state/sqlite/review.py` says how): a
page reads about as many rows as it shows, newest first by id, and a `since` bound is an id
range too (`rows.id_floor`).

Counts read the `decision_counts` rollup where whole hours and days allow and the records for
partial hours (`rows.count_plan`), all in one snapshot. Pruning takes off the rollup exactly
what each batch of records it deletes had added, in the batch's transaction: counts stay exact
at every commit, and a record logged meanwhile by another process is never counted twice or
lost, which recomputing an hour from its records could not promise without a lock.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

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
from sendgate.state.postgresql.database import Database
from sendgate.state.postgresql.schema import Connection
from sendgate.state.rows import DECISION_COLUMNS, count_plan, counts_from, decision_from_row, id_floor, rollup_rows
from sendgate.state.rules import HISTORY_SECONDS, check_review, decision_rules

__all__ = ["PRUNE_BATCH", "ReviewQueries"]

PRUNE_BATCH = 2000  # records per transaction: pruning never holds rows other writers wait on for long

_SELECT = ", ".join(f"d.{column}" for column in DECISION_COLUMNS)

# The partial-hour counts from the records themselves: per dimension, as `rules.count_keys`
# (rules from `decision_rules`, which holds exactly `rules.decision_rules` of each record).
# `{b}` is the bucket expression; $1, $2 the range.
_RECORD_COUNTS = {
    "all": "SELECT {b}, 'all', '', decision, mode, count(*) FROM decisions d"
    " WHERE ts >= $1 AND ts < $2 GROUP BY 1, 4, 5",
    "account": "SELECT {b}, 'account', account, decision, mode, count(*) FROM decisions d"
    " WHERE ts >= $1 AND ts < $2 GROUP BY 1, 3, 4, 5",
    "template": "SELECT {b}, 'template', template, decision, mode, count(*) FROM decisions d"
    " WHERE ts >= $1 AND ts < $2 AND decision <> 'allow' AND template IS NOT NULL GROUP BY 1, 3, 4, 5",
    "rule": "SELECT {b}, 'rule', r.rule, d.decision, d.mode, count(*)"
    " FROM decision_rules r JOIN decisions d ON d.id = r.decision_id"
    " WHERE d.ts >= $1 AND d.ts < $2 AND d.decision <> 'allow' GROUP BY 1, 3, 4, 5",
}

_DECREMENT_COUNT = (
    "UPDATE decision_counts SET n = n - $7"
    " WHERE span = $1 AND start = $2 AND dim = $3 AND key = $4 AND decision = $5 AND mode = $6"
)
_DROP_EMPTY_COUNT = (
    "DELETE FROM decision_counts"
    " WHERE span = $1 AND start = $2 AND dim = $3 AND key = $4 AND decision = $5 AND mode = $6 AND n <= 0"
)


class _Params:
    """Query parameters as they are added: each call returns its `$n`."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def __call__(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


class ReviewQueries:
    """Mixed into `PostgresStore`: `_db` comes from there."""

    _db: Database

    # -- listing --------------------------------------------------------------------

    async def decisions(self, query: DecisionQuery) -> list[DecisionRecord]:
        sql, args = _list_sql(query)
        rows = await self._db.fetch(sql, *args)
        if query.after_id is not None:
            rows.reverse()  # fetched oldest first to find the page right after the cursor
        return [decision_from_row(tuple(row)) for row in rows]

    # -- counts ---------------------------------------------------------------------

    async def decision_counts(
        self, since: float, until: float, bucket: int | None = None, dimension: str | None = None
    ) -> list[DecisionCount]:
        plan = count_plan(since, until, bucket)
        totals: Counter[tuple[Any, ...]] = Counter()
        if not plan.rollups and not plan.records:
            return []
        async with self._db.connection() as conn:
            # One snapshot: a record committed meanwhile is in both the rollup and the records, or in neither.
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                for span, start, end in plan.rollups:
                    await _count_rollup(conn, span, start, end, bucket, dimension, totals)
                for start_ts, end_ts in plan.records:
                    await _count_records(conn, start_ts, end_ts, bucket, dimension, totals)
        return counts_from(totals)

    # -- review trail ---------------------------------------------------------------

    async def add_review(self, review: ReviewRecord) -> ReviewRecord | None:
        check_review(review)

        async def op(conn: Connection) -> int | None:
            # KEY SHARE: a prune deleting the decision waits for this note, then deletes it too.
            if await conn.fetchval("SELECT 1 FROM decisions WHERE id = $1 FOR KEY SHARE", review.decision_id) is None:
                return None
            seq: int = await conn.fetchval(
                "INSERT INTO reviews (decision_id, reviewer, note, reviewed_at) VALUES ($1, $2, $3, $4) RETURNING seq",
                review.decision_id,
                review.reviewer,
                review.note,
                review.reviewed_at,
            )
            return seq

        seq = await self._db.transaction(op)
        if seq is None:
            return None
        return ReviewRecord(review.decision_id, review.reviewer, review.note, review.reviewed_at, seq)

    async def reviews(self, decision_ids: list[str]) -> dict[str, list[ReviewRecord]]:
        trail: dict[str, list[ReviewRecord]] = {}
        if not decision_ids:
            return trail
        rows = await self._db.fetch(
            "SELECT seq, decision_id, reviewer, note, reviewed_at FROM reviews"
            " WHERE decision_id = ANY($1::text[]) ORDER BY seq",
            list(dict.fromkeys(decision_ids)),
        )
        for seq, decision_id, reviewer, note, reviewed_at in rows:
            trail.setdefault(decision_id, []).append(ReviewRecord(decision_id, reviewer, note, reviewed_at, seq))
        return trail

    # -- retention ------------------------------------------------------------------

    async def prune_decisions(self, before: float, now: float) -> PruneResult:
        """In batches of `PRUNE_BATCH` records, each its own transaction with its rollup change."""
        decisions = reviews = sends = 0
        while True:
            removed, removed_reviews = await self._db.transaction(lambda conn: _prune_batch(conn, before))
            decisions += removed
            reviews += removed_reviews
            if removed < PRUNE_BATCH:
                break
        sends_before = min(before, now - HISTORY_SECONDS)
        while True:
            status: str = await self._db.transaction(
                lambda conn: conn.execute(
                    "DELETE FROM sends WHERE decision_id IN"
                    " (SELECT decision_id FROM sends WHERE sent_at < $1 LIMIT $2)",
                    sends_before,
                    PRUNE_BATCH,
                )
            )
            removed = int(status.rsplit(" ", 1)[1])  # "DELETE <n>"
            sends += removed
            if removed < PRUNE_BATCH:
                break
        return PruneResult(decisions=decisions, reviews=reviews, sends=sends)


def _list_sql(query: DecisionQuery) -> tuple[str, list[Any]]:
    if query.decision is not None and query.decision not in DECISION_FILTERS:
        raise InvalidRecord(f"decision must be one of {sorted(DECISION_FILTERS)}")
    p = _Params()
    where: list[str] = []
    # Paging and time bounds go on the id the rows are ordered by: the rule table's copy of it
    # when the rule filter drives the scan (its primary key is (rule, decision_id)).
    id_column = "d.id"
    source = "decisions d"
    if query.rule is not None:
        source = "decision_rules dr JOIN decisions d ON d.id = dr.decision_id"
        id_column = "dr.decision_id"
        where.append(f"dr.rule = {p(query.rule)}")
    if query.decision == "rejected":
        where.append("d.decision <> 'allow'")  # exactly the partial index's condition
    elif query.decision == "shadow":
        where.append("d.mode = 'shadow' AND d.decision IN ('deny', 'defer')")  # decisions_shadow's
    elif query.decision is not None:
        where.append(f"d.decision = {p(query.decision)}")
    for column, value in (
        ("d.account", query.account),
        ("d.recipient_key", query.recipient_key),
        ("d.template", query.template),
    ):
        if value is not None:
            where.append(f"{column} = {p(value)}")
    if query.since is not None:
        where.append(f"d.ts >= {p(query.since)} AND {id_column} >= {p(id_floor(query.since))}")
    if query.until is not None:
        where.append(f"d.ts < {p(query.until)}")
    if query.before_id is not None:
        where.append(f"{id_column} < {p(query.before_id)}")
    if query.after_id is not None:
        where.append(f"{id_column} > {p(query.after_id)}")
    if query.reviewed is True:
        where.append("EXISTS (SELECT 1 FROM reviews rv WHERE rv.decision_id = d.id)")
    elif query.reviewed is False:
        where.append("NOT EXISTS (SELECT 1 FROM reviews rv WHERE rv.decision_id = d.id)")
    sql = f"SELECT {_SELECT} FROM {source}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY {id_column} {'ASC' if query.after_id is not None else 'DESC'} LIMIT {p(query.limit)}"
    return sql, p.values


async def _count_rollup(
    conn: Connection,
    span: int,
    since: int,
    until: int,
    bucket: int | None,
    dimension: str | None,
    totals: Counter[tuple[Any, ...]],
) -> None:
    p = _Params()
    where = f"span = {p(span)} AND start >= {p(since)} AND start < {p(until)}"
    if dimension is not None:
        where += f" AND dim = {p(dimension)}"
    if bucket is None:
        sql = f"SELECT NULL, dim, key, decision, mode, sum(n) FROM decision_counts WHERE {where} GROUP BY 2, 3, 4, 5"
    elif bucket == span:  # the rows are the buckets: nothing to group
        sql = f"SELECT start, dim, key, decision, mode, n FROM decision_counts WHERE {where}"
    else:
        b = p(bucket)
        sql = (
            f"SELECT start / {b} * {b}, dim, key, decision, mode, sum(n) FROM decision_counts"
            f" WHERE {where} GROUP BY 1, 2, 3, 4, 5"
        )
    for b_start, dim, key, decision, mode, n in await conn.fetch(sql, *p.values):
        totals[(None if b_start is None else float(b_start), dim, key, decision, mode)] += int(n)


async def _count_records(
    conn: Connection,
    since: float,
    until: float,
    bucket: int | None,
    dimension: str | None,
    totals: Counter[tuple[Any, ...]],
) -> None:
    """Count partial hours from the records themselves, in the database."""
    args: list[Any] = [since, until]
    if bucket is None:
        b = "NULL::double precision"
    else:
        b = "floor(d.ts / $3) * $3"
        args.append(float(bucket))
    parts = [sql.format(b=b) for dim, sql in _RECORD_COUNTS.items() if dimension is None or dim == dimension]
    if not parts:
        return
    for b_start, dim, key, decision, mode, n in await conn.fetch(" UNION ALL ".join(parts), *args):
        totals[(b_start, dim, key, decision, mode)] += int(n)


async def _prune_batch(conn: Connection, before: float) -> tuple[int, int]:
    """Delete up to `PRUNE_BATCH` of the oldest records before `before`, their rule index and
    notes, and take them off the rollup; (records, notes) deleted."""
    gone = await conn.fetch(
        "DELETE FROM decisions WHERE id IN (SELECT id FROM decisions WHERE ts < $1 ORDER BY ts LIMIT $2)"
        " RETURNING id, ts, decision, mode, account, template, reasons",
        before,
        PRUNE_BATCH,
    )
    if not gone:
        return 0, 0
    ids = [row["id"] for row in gone]
    # After the records: a note added meanwhile (`add_review` holds its decision) is seen here.
    await conn.execute("DELETE FROM decision_rules WHERE decision_id = ANY($1::text[])", ids)
    await conn.execute("DELETE FROM message_ids WHERE decision_id = ANY($1::text[])", ids)
    await conn.execute("DELETE FROM in_flight WHERE decision_id = ANY($1::text[])", ids)
    status = await conn.execute("DELETE FROM reviews WHERE decision_id = ANY($1::text[])", ids)
    # Exactly what `log_decision` added for each of them (`rows.count_rows`), taken off again.
    counted: Counter[tuple[Any, ...]] = Counter()
    for row in gone:
        rules = decision_rules(orjson.loads(row["reasons"]))
        counted.update(rollup_rows(row["ts"], row["decision"], row["mode"], row["account"], row["template"], rules))
    keys = sorted(counted)  # the order the writer upserts in (`writer.py`): no deadlock on the rollup
    await conn.executemany(_DECREMENT_COUNT, [(*key, counted[key]) for key in keys])
    await conn.executemany(_DROP_EMPTY_COUNT, keys)
    return len(gone), int(status.rsplit(" ", 1)[1])

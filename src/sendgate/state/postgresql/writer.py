"""The send path's writes on PostgreSQL: one task commits everything queued together (group commit).

A send awaits the commit of its decision record before it is forwarded (the write-ahead
promise); with a commit per message, the round trips of BEGIN and COMMIT would be what the
gateway's throughput pays. So `Rows` (parameter rows for fixed statements: a decision
record, its rules, its send, Meta's answer, the health probe) are queued, and the writer
task takes every `Rows` queued by the time it is free: one transaction, one `executemany`
per statement, the `decision_counts` increments summed per key and upserted once each (in
key order, so that two processes' batches never deadlock on them). While a batch commits,
the next one gathers.

If a batch fails for something one of its writes did (a duplicate id, a value the column
refuses), each of its writes is retried in a transaction of its own: the bad one fails alone
and keeps nothing. If it failed for the database itself (away, restarting, out of space),
every write of the batch fails with that `StoreError`, without a retry per write. A write
nobody awaits (`queue`: Meta's answer) that fails is logged.

Records are committed only while the store's owner lock is held (`owner.py`): the writer
takes it again before a batch when its connection was lost.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from sendgate.state.base import StoreError
from sendgate.state.postgresql.database import Database
from sendgate.state.postgresql.owner import OwnerLock
from sendgate.state.postgresql.schema import Connection

__all__ = ["UPSERT_COUNT", "GroupCommitWriter", "Rows", "Statement"]

log = logging.getLogger("sendgate.state")

Statement = tuple[str, Sequence[tuple[Any, ...]]]

UPSERT_COUNT = (  # parameters: a `rows.count_rows()` row, then how many decisions it counts
    "INSERT INTO decision_counts (span, start, dim, key, decision, mode, n) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    " ON CONFLICT (span, start, dim, key, decision, mode) DO UPDATE SET n = decision_counts.n + excluded.n"
)

# SQLSTATE classes of a failing database rather than a failing write: connection exceptions,
# insufficient resources, operator intervention (shutdown, cancel), system and internal errors.
_DATABASE_FAULTS = frozenset({"08", "53", "57", "58", "XX"})


@dataclass
class Rows:
    """Rows for fixed statements, and rollup rows to add 1 to; `name` says what they record."""

    statements: list[Statement]
    counts: list[tuple[Any, ...]] = field(default_factory=list)
    name: str = ""
    future: asyncio.Future[None] | None = None  # None: nobody waits (a failure is logged)


def _fails_alone(exc: BaseException) -> bool:
    """Whether a batch's failure may be one write's: then each is retried alone."""
    cause = exc.__cause__ if isinstance(exc, StoreError) else exc
    if isinstance(cause, asyncpg.PostgresError):
        return str(getattr(cause, "sqlstate", "") or "")[:2] not in _DATABASE_FAULTS
    return not isinstance(exc, StoreError)  # asyncpg's client side, the network: the database's


class GroupCommitWriter:
    """Commits queued `Rows` in batches, on a task of the event loop it is first used on."""

    def __init__(self, db: Database, owner: OwnerLock) -> None:
        self._db = db
        self._owner = owner
        self._queue: list[Rows] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.transactions = 0  # batches and retries committed: what group commit saves is visible

    def write(self, rows: Rows) -> asyncio.Future[None]:
        """Queue `rows`; a future done once they are committed (or with their `StoreError`)."""
        if self._closed:
            raise StoreError("the store is closed")
        rows.future = asyncio.get_running_loop().create_future()
        self._enqueue(rows)
        return rows.future

    def queue(self, rows: Rows) -> None:
        """Queue `rows` that nobody waits for; a failure is logged."""
        if self._closed:
            log.error("state write dropped, the store is closed (%s)", rows.name or "unnamed")
            return
        self._enqueue(rows)

    async def flush(self) -> None:
        """Return once everything queued before is committed (or failed)."""
        if self._task is None or self._closed:
            return
        await self.write(Rows([], name="flush"))

    async def close(self) -> None:
        """Flush, then stop the task; idempotent."""
        if self._closed:
            return
        await self.flush()
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def _enqueue(self, rows: Rows) -> None:
        self._queue.append(rows)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="sendgate-postgresql-writer")
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._queue = self._queue, []
            if batch:
                await self._commit(batch)

    async def _commit(self, batch: list[Rows]) -> None:
        writes = [rows for rows in batch if rows.statements or rows.counts]
        failed: dict[int, BaseException] = {}
        if writes:
            try:
                await self._transaction(writes)
            except Exception as exc:
                if len(writes) > 1 and _fails_alone(exc):
                    for rows in writes:
                        try:
                            await self._transaction([rows])
                        except Exception as alone:
                            failed[id(rows)] = alone
                else:
                    failed = {id(rows): exc for rows in writes}
        for rows in batch:
            error = failed.get(id(rows))
            if rows.future is None:
                if error is not None:  # nobody waits for it (Meta's answer): say so, since it is lost
                    log.error("state write failed (%s): %s", rows.name or "unnamed", error)
            elif not rows.future.done():
                if error is None:
                    rows.future.set_result(None)
                else:
                    rows.future.set_exception(error)

    async def _transaction(self, writes: list[Rows]) -> None:
        await self._owner.hold()
        async with self._db.connection() as conn:
            async with conn.transaction():
                await _execute(conn, writes)
        self.transactions += 1


async def _execute(conn: Connection, writes: list[Rows]) -> None:
    """One executemany per statement (in the order first queued), then the summed counts."""
    merged: dict[str, list[tuple[Any, ...]]] = {}
    counts: collections.Counter[tuple[Any, ...]] = collections.Counter()
    for rows in writes:
        for sql, params in rows.statements:
            merged.setdefault(sql, []).extend(params)
        counts.update(rows.counts)
    for sql, params in merged.items():
        if params:
            await conn.executemany(sql, params)
    if counts:
        await conn.executemany(UPSERT_COUNT, [(*key, n) for key, n in sorted(counts.items())])

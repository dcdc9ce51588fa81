"""One writer thread for a SQLite file: everything queued commits together (group commit).

Two kinds of writes are queued:

- `Rows`: parameter rows for fixed statements (a decision record, its rules, its send,
  the upstream outcome). Consecutive ones are merged per statement into one
  `executemany`, and all of their waiters share one future per batch, settled with a
  single wake-up of the event loop. This is the send path's write: a call per
  message, so its cost per message is what the gateway's throughput pays.
- an operation `op(conn)` with a future of its own (consent, catalogs, reviews,
  pruning...), run in submission order, its result or exception returned to its caller.

Once per turn of the event loop, what that turn queued (a send's record, another
send's upstream outcome...) becomes one batch, one transaction. If it fails, each of
its writes is retried in a transaction of its own, so one bad write never fails its
neighbours.

A batch of `Rows` only, while the thread is idle, is committed right there on the
event loop's thread, on a connection of its own that never waits for a lock: the
few hundred microseconds of a small commit cost less than waking the thread and
passing the GIL back and forth for each of its statements (measured: README, "What
each change bought"). Anything else goes to the thread: operations (they may be
slow), rows queued while it commits (order), a batch whose lock another connection
holds (the thread waits for it, the loop never does), and a batch that fails (the
thread does the retries). The loop's connection does not checkpoint the WAL (a
checkpoint writes the database file and syncs it); the thread does, every
`CHECKPOINT_EVERY` commits of the loop's.

`decision_counts` increments are
summed over consecutive `Rows` and upserted once per key, before the next
operation runs, so operations (pruning, rebuilds) see them applied.

SQLite runs with the GIL released, so the thread's commit work overlaps the event loop's.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["GroupCommitWriter", "Op", "Rows", "Statement"]

log = logging.getLogger("sendgate.state")

CHECKPOINT_EVERY = 200  # commits on the loop's connection between two checkpoints by the thread

Op = Callable[[sqlite3.Connection], Any]
Statement = tuple[str, Sequence[tuple[Any, ...]]]


@dataclass
class Rows:
    """Rows for fixed statements, and rollup rows to add 1 to; `name` says what they record."""

    statements: list[Statement]
    counts: list[tuple[Any, ...]] = field(default_factory=list)
    name: str = ""
    awaited: bool = False
    error: BaseException | None = None  # set, before its batch settles, when these rows failed


@dataclass
class _OpItem:
    op: Op
    future: asyncio.Future[Any] | None


@dataclass
class _Batch:
    items: list[Rows | _OpItem]
    shared: asyncio.Future[None] | None  # what waiting `Rows` await
    settled: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = field(default_factory=list)


class GroupCommitWriter(threading.Thread):
    def __init__(self, connect: Callable[[], sqlite3.Connection], upsert_count: str) -> None:
        super().__init__(name="sendgate-sqlite-writer", daemon=True)
        self._conn = connect()
        self._loop_conn = connect()  # the event loop's: fails at once on a held lock, never checkpoints
        self._loop_conn.execute("PRAGMA busy_timeout=0")
        self._loop_conn.execute("PRAGMA wal_autocheckpoint=0")
        self._busy = False  # a batch is being committed (by the thread, or on the loop)
        self._loop_commits = 0  # since the last checkpoint
        self._checkpoint_due = False
        self._upsert_count = upsert_count  # parameters: a counts row, then the number to add
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._items: list[Rows | _OpItem] = []
        self._shared: asyncio.Future[None] | None = None
        self._stopping = False
        self._kick_loop: asyncio.AbstractEventLoop | None = None  # where a kick is scheduled
        self._counts: collections.Counter[tuple[Any, ...]] = collections.Counter()

    # -- the event loop's side ------------------------------------------------------

    def write_rows(self, rows: Rows) -> asyncio.Future[None]:
        """Queue `rows`; the future of the batch that will commit them, shared with the other
        rows of that batch: once it is done, `rows.error` says whether these failed."""
        rows.awaited = True
        with self._lock:
            self._items.append(rows)
            if self._shared is None:
                self._shared = asyncio.get_running_loop().create_future()
            shared = self._shared
        self._kick_soon()
        return shared

    def queue_rows(self, rows: Rows) -> None:
        """Queue `rows` that nobody waits for; a failure is logged."""
        with self._lock:
            self._items.append(rows)
        self._kick_soon()

    def submit(self, op: Op, future: asyncio.Future[Any] | None) -> None:
        with self._lock:
            self._items.append(_OpItem(op, future))
        self._kick_soon()

    def _kick_soon(self) -> None:
        """Wake the writer once per turn of the event loop, not once per write: what the loop's
        callbacks queue in one turn (a send's record, another's upstream outcome...) then goes in
        one transaction, instead of a commit and two thread wake-ups each."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on an event loop: wake the thread now
            self._notify()
            return
        if self._kick_loop is loop:
            return  # this turn's kick is already scheduled
        # (A kick scheduled on a loop that closed before running it is simply replaced.)
        self._kick_loop = loop
        loop.call_soon(self._kick)

    def _kick(self) -> None:
        self._kick_loop = None
        with self._lock:
            inline = (not self._busy and not self._stopping and bool(self._items)
                      and all(isinstance(item, Rows) for item in self._items))  # fmt: skip
            if not inline:
                self._wake.notify()
                return
            batch = _Batch(self._items, self._shared)
            self._items, self._shared = [], None
            self._busy = True
        committed = self._commit_on_loop(batch)
        with self._lock:
            self._busy = False
            if not committed:  # the thread commits it, ahead of anything queued meanwhile
                self._items = batch.items + self._items
                self._shared = _joined(batch.shared, self._shared)
            if committed and self._loop_commits >= CHECKPOINT_EVERY:
                self._loop_commits = 0
                self._checkpoint_due = True
            if self._items or self._checkpoint_due or self._stopping:
                self._wake.notify()
        if committed and batch.shared is not None:
            _set_all([(batch.shared, None, None)])

    def _notify(self) -> None:
        with self._lock:
            self._wake.notify()

    def _commit_on_loop(self, batch: _Batch) -> bool:
        """Commit a batch of `Rows` on the loop's connection; False leaves it to the thread."""
        conn = self._loop_conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except Exception:  # the lock is held (another process, a CLI command): not worth a wait here
            return False
        try:
            self._execute_rows(conn, [item for item in batch.items if isinstance(item, Rows)])
            conn.execute("COMMIT")
        except Exception:  # the thread retries each write alone, as for its own batches
            self._rollback(conn)
            return False
        self._loop_commits += 1
        return True

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._wake.notify()

    # -- the writer thread ----------------------------------------------------------

    def run(self) -> None:
        while True:
            with self._lock:
                # While the loop commits, wait: it wakes the thread when it is done.
                while self._busy or (not self._items and not self._checkpoint_due and not self._stopping):
                    self._wake.wait()
                batch = _Batch(self._items, self._shared)
                self._items, self._shared = [], None
                self._busy = bool(batch.items)
                checkpoint, self._checkpoint_due = self._checkpoint_due, False
                stopping = self._stopping and not batch.items
            if batch.items:
                self._commit(batch)
                with self._lock:
                    self._busy = False
                self._settle(batch)
            if checkpoint:
                self._checkpoint()
            if stopping:
                break
        self._conn.close()
        self._loop_conn.close()

    def _checkpoint(self) -> None:
        # PASSIVE: copies what it can without waiting for readers or writers.
        try:
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except Exception as exc:  # the next one retries; the WAL only grows meanwhile
            log.warning("WAL checkpoint failed: %s", exc)

    def _commit(self, batch: _Batch) -> None:
        results: list[tuple[_OpItem, Any]] = []
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            pending: list[Rows] = []
            for item in batch.items:
                if isinstance(item, Rows):
                    pending.append(item)
                    continue
                self._execute_rows(self._conn, pending)
                pending = []
                results.append((item, item.op(self._conn)))
            self._execute_rows(self._conn, pending)
            self._conn.execute("COMMIT")
        except Exception:  # one bad write must not fail its neighbours: retry each alone
            self._rollback(self._conn)
            for item in batch.items:
                self._commit_one(item, batch)
            return
        batch.settled.extend((item.future, result, None) for item, result in results if item.future is not None)

    def _commit_one(self, item: Rows | _OpItem, batch: _Batch) -> None:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            if isinstance(item, Rows):
                self._execute_rows(self._conn, [item])
                result = None
            else:
                result = item.op(self._conn)
            self._conn.execute("COMMIT")
        except Exception as exc:
            self._rollback(self._conn)
            if isinstance(item, _OpItem):
                if item.future is not None:
                    batch.settled.append((item.future, None, exc))
            elif item.awaited:
                item.error = exc
            else:  # nobody waits for it (the upstream outcome): say so, since it is lost
                log.error("state write failed (%s): %s", item.name or "unnamed", exc)
        else:
            if isinstance(item, _OpItem) and item.future is not None:
                batch.settled.append((item.future, result, None))

    def _rollback(self, conn: sqlite3.Connection) -> None:
        self._counts.clear()
        if conn.in_transaction:  # not when BEGIN itself failed (a lock held too long)
            try:
                conn.execute("ROLLBACK")
            except Exception as exc:  # a failing disk: the writer thread must live on to retry
                log.error("state rollback failed: %s", exc)

    def _execute_rows(self, conn: sqlite3.Connection, group: list[Rows]) -> None:
        """One executemany per statement for consecutive `Rows`, then their summed counts."""
        if not group:
            return
        merged: dict[str, list[tuple[Any, ...]]] = {}
        for rows in group:
            for sql, params in rows.statements:
                merged.setdefault(sql, []).extend(params)
            self._counts.update(rows.counts)
        for sql, params in merged.items():
            if params:
                conn.executemany(sql, params)
        if self._counts:
            conn.executemany(self._upsert_count, [(*key, n) for key, n in self._counts.items()])
            self._counts.clear()

    def _settle(self, batch: _Batch) -> None:
        """Hand every result of the batch to its event loop in one wake-up."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, BaseException | None]]] = {}
        if batch.shared is not None:
            by_loop[batch.shared.get_loop()] = [(batch.shared, None, None)]
        for settled in batch.settled:
            by_loop.setdefault(settled[0].get_loop(), []).append(settled)
        for loop, outcomes in by_loop.items():
            try:
                loop.call_soon_threadsafe(_set_all, outcomes)
            except RuntimeError:  # loop already closed: nobody is waiting any more
                pass


def _joined(first: asyncio.Future[None] | None, then: asyncio.Future[None] | None) -> asyncio.Future[None] | None:
    """One future for two batches' waiters, now committed together: `first` settles with `then`."""
    if first is None or then is None:
        return first or then
    outcome: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = [(first, None, None)]
    then.add_done_callback(lambda _: first.get_loop().call_soon_threadsafe(_set_all, outcome))
    return then


def _set_all(outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, exc in outcomes:
        if future.done():
            continue
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)

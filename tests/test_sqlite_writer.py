"""The group-committing writer: batching, failure isolation, ordering, rollups, wake-ups."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import os
import threading

import pytest

from sendgate.state.sqlite import writer as writer_module
from sendgate.state.sqlite.writer import GroupCommitWriter, Rows

UPSERT = "INSERT INTO counts VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET n = n + excluded.n"


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    # Which thread ran a statement: SQLite calls a function on the thread that steps it.
    conn.create_function("thread_name", 0, lambda: threading.current_thread().name)
    return conn


def _named(i: int) -> Rows:
    """A row that records the thread which committed it."""
    return Rows([("INSERT INTO items VALUES (?, thread_name())", [(i,)])], name=f"item {i}")


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[GroupCommitWriter]:
    path = tmp_path / "w.db"
    with _connect(path) as conn:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, v TEXT)")
        conn.execute("CREATE TABLE counts (key TEXT PRIMARY KEY, n INTEGER NOT NULL)")
    w = GroupCommitWriter(lambda: _connect(path), UPSERT)
    w.path = path  # type: ignore[attr-defined]
    w.start()
    yield w
    w.stop()
    await asyncio.get_running_loop().run_in_executor(None, w.join)


def _rows(i: int, *keys: str) -> Rows:
    return Rows([("INSERT INTO items VALUES (?, ?)", [(i, f"v{i}")])], [(k,) for k in keys], name=f"item {i}")


async def _op(writer: GroupCommitWriter, op: Any) -> Any:
    future = asyncio.get_running_loop().create_future()
    writer.submit(op, future)
    return await future


def _read(writer: GroupCommitWriter, sql: str) -> list[tuple[Any, ...]]:
    with _connect(writer.path) as conn:  # type: ignore[attr-defined]
        return conn.execute(sql).fetchall()


async def test_rows_queued_together_share_one_commit_and_sum_their_counts(writer: GroupCommitWriter) -> None:
    # Hold the writer in a slow operation so that the next 50 rows queue up behind it.
    started = asyncio.Event()
    loop = asyncio.get_running_loop()

    def slow(conn: sqlite3.Connection) -> None:
        loop.call_soon_threadsafe(started.set)
        time.sleep(0.2)

    blocker = asyncio.ensure_future(_op(writer, slow))
    await started.wait()
    futures = [writer.write_rows(_rows(i, "all", f"odd{i % 2}")) for i in range(50)]
    assert len({id(f) for f in futures}) == 1  # one batch, one future, one wake-up of the loop
    await asyncio.gather(blocker, *futures)
    assert _read(writer, "SELECT count(*) FROM items") == [(50,)]
    assert dict(_read(writer, "SELECT key, n FROM counts")) == {"all": 50, "odd0": 25, "odd1": 25}


async def test_a_bad_row_fails_alone_and_its_neighbours_commit(writer: GroupCommitWriter) -> None:
    good = [_rows(i, "all") for i in range(5)]
    clash = _rows(2, "all")  # primary key taken by good[2]
    futures = [writer.write_rows(r) for r in [*good[:3], clash, *good[3:]]]
    await asyncio.gather(*futures)
    assert all(r.error is None for r in good)
    assert isinstance(clash.error, sqlite3.IntegrityError)
    assert _read(writer, "SELECT id FROM items ORDER BY id") == [(i,) for i in range(5)]
    assert _read(writer, "SELECT n FROM counts") == [(5,)]  # the failed row's count was not kept


async def test_operations_see_the_rows_and_counts_queued_before_them(writer: GroupCommitWriter) -> None:
    for i in range(10):
        writer.queue_rows(_rows(i, "all"))
    seen = await _op(writer, lambda conn: (conn.execute("SELECT count(*) FROM items").fetchone()[0],
                                           conn.execute("SELECT n FROM counts").fetchone()[0]))
    assert seen == (10, 10)


async def test_a_failing_operation_raises_to_its_caller_only(writer: GroupCommitWriter) -> None:
    def bad(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO nowhere VALUES (1)")

    rows = _rows(1, "all")
    results = await asyncio.gather(
        writer.write_rows(rows),
        _op(writer, bad),
        _op(writer, lambda conn: conn.execute("SELECT count(*) FROM items").fetchone()[0]),
        return_exceptions=True,
    )
    assert isinstance(results[1], sqlite3.OperationalError) and "nowhere" in str(results[1])
    assert results[2] == 1 and rows.error is None


async def test_a_lost_write_that_nobody_awaits_is_logged(
    writer: GroupCommitWriter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="sendgate.state")
    writer.queue_rows(Rows([("UPDATE nowhere SET x = ?", [(1,)])], name="upstream outcome of X"))
    await _op(writer, lambda conn: None)  # after it
    assert "state write failed (upstream outcome of X)" in caplog.text and "nowhere" in caplog.text


async def test_stop_commits_what_is_queued(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    with _connect(path) as conn:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, v TEXT)")
        conn.execute("CREATE TABLE counts (key TEXT PRIMARY KEY, n INTEGER NOT NULL)")
    writer = GroupCommitWriter(lambda: _connect(path), UPSERT)
    for i in range(20):
        writer.queue_rows(_rows(i))
    writer.start()
    writer.stop()
    await asyncio.get_running_loop().run_in_executor(None, writer.join)
    with _connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (20,)


def test_a_loop_closed_before_its_kick_does_not_stall_the_next_one(tmp_path: Path) -> None:
    # The CLI runs each command on a fresh event loop. A loop that ends right after queueing a
    # write drops the kick it scheduled; the next loop's writes must still wake the writer.
    path = tmp_path / "w.db"
    with _connect(path) as conn:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, v TEXT)")
        conn.execute("CREATE TABLE counts (key TEXT PRIMARY KEY, n INTEGER NOT NULL)")
    writer = GroupCommitWriter(lambda: _connect(path), UPSERT)
    writer.start()

    first = asyncio.new_event_loop()

    async def queue_and_leave() -> None:
        writer.queue_rows(_rows(1))
        first.stop()  # this turn ends the loop: the kick it scheduled never runs

    async def write_and_wait() -> None:
        await asyncio.wait_for(writer.write_rows(_rows(2)), timeout=10)

    first.run_until_complete(queue_and_leave())
    first.close()
    asyncio.run(write_and_wait())
    writer.stop()
    writer.join()
    with _connect(path) as conn:
        assert conn.execute("SELECT id FROM items ORDER BY id").fetchall() == [(1,), (2,)]


async def test_rows_commit_on_the_loop_while_the_thread_is_idle(writer: GroupCommitWriter) -> None:
    await writer.write_rows(_named(1))
    await asyncio.gather(*[writer.write_rows(_named(i)) for i in range(2, 12)])  # one turn, one batch
    assert set(_read(writer, "SELECT v FROM items")) == {(threading.current_thread().name,)}


async def test_rows_behind_an_operation_wait_for_it_on_the_thread(writer: GroupCommitWriter) -> None:
    started = asyncio.Event()
    loop = asyncio.get_running_loop()

    def slow(conn: sqlite3.Connection) -> int:
        loop.call_soon_threadsafe(started.set)
        time.sleep(0.1)
        return int(conn.execute("SELECT count(*) FROM items").fetchone()[0])

    blocker = asyncio.ensure_future(_op(writer, slow))
    await started.wait()
    await asyncio.gather(blocker, writer.write_rows(_named(1)))
    assert blocker.result() == 0  # queued after the operation, committed after it
    assert _read(writer, "SELECT v FROM items") == [("sendgate-sqlite-writer",)]


async def test_a_lock_held_elsewhere_sends_the_batch_to_the_thread_and_the_loop_never_waits(
    writer: GroupCommitWriter,
) -> None:
    holder = _connect(writer.path)  # type: ignore[attr-defined]
    holder.execute("BEGIN IMMEDIATE")  # as a CLI command in another process would
    pending = writer.write_rows(_named(1))
    await asyncio.sleep(0.05)  # the kick ran: the loop's connection found the lock taken and went on
    assert not pending.done()
    holder.execute("COMMIT")
    holder.close()
    await pending
    assert _read(writer, "SELECT v FROM items") == [("sendgate-sqlite-writer",)]


async def test_the_thread_checkpoints_the_wal_the_loops_commits_leave(
    writer: GroupCommitWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = writer.path  # type: ignore[attr-defined]
    monkeypatch.setattr(writer_module, "CHECKPOINT_EVERY", 10)
    size = os.path.getsize(path)
    for i in range(9):  # nine commits on the loop: all in the WAL, the database file untouched
        await writer.write_rows(Rows([("INSERT INTO items VALUES (?, ?)", [(i, "x" * 20_000)])]))
    await _op(writer, lambda conn: None)
    await _op(writer, lambda conn: None)
    assert os.path.getsize(path) == size
    await writer.write_rows(Rows([("INSERT INTO items VALUES (?, ?)", [(9, "x" * 20_000)])]))  # the tenth
    await _op(writer, lambda conn: None)
    await _op(writer, lambda conn: None)  # after the checkpoint the tenth commit asked for
    assert os.path.getsize(path) > size + 9 * 20_000

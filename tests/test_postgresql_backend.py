"""PostgreSQL backend only: group commit, owners across processes, the database going away.

What every backend must do is tested through the interface (the `store` fixture, tests/conftest.py);
what is here looks at PostgreSQL itself (row versions, sessions, advisory locks) or at several
stores sharing one database, which only this backend allows.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from sendgate.fakegraph import FakeGraph
from sendgate.state import OUTCOME_UNKNOWN, ConsentRecord, DecisionRecord, SendRecord, StoreError, open_store
from sendgate.state.postgresql import PostgresStore
from sendgate.state.postgresql.schema import MIGRATIONS
from sendgate.state.postgresql.webhooks import lock_recipient
from sendgate.state.sqlite import SQLiteStore

from .conftest import PHONE_NUMBER_ID, ROOT, US_RECIPIENT, Clock, GatewayFactory, send, store_of, text_message
from .services import PostgresServer

NOW = 1_795_557_600.0


def _record(i: int, **fields: Any) -> DecisionRecord:
    base: dict[str, Any] = dict(
        id=f"01K{i:023d}", timestamp=NOW + i, endpoint="messages", api_version="v23.0", account="111",
        waba_id="222", recipient="16505551234", type="text", template=None, category=None,
        decision="allow", mode="enforce", forwarded=True, recipient_key="k1",
    )  # fmt: skip
    base.update(fields)
    return DecisionRecord(**base)


def _send(record: DecisionRecord) -> SendRecord:
    return SendRecord(record.id, record.account, record.waba_id, record.recipient or "", None, record.timestamp)


@pytest.fixture
async def stores(postgres_url: str) -> AsyncIterator[Callable[[], PostgresStore]]:
    """Stores of as many "processes" as a test opens, all on one database; closed after it."""
    opened: list[PostgresStore] = []

    def make() -> PostgresStore:
        opened.append(PostgresStore(postgres_url))
        return opened[-1]

    yield make
    for store in opened:
        await store.close()


async def _fetch(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def test_concurrent_records_commit_in_shared_transactions(postgres_url: str, stores: Any) -> None:
    store = stores()
    records = [_record(i, decision="deny" if i % 4 == 0 else "allow",
                       reasons=[{"rule": "window.closed"}] if i % 4 == 0 else []) for i in range(100)]  # fmt: skip
    await asyncio.gather(*(store.log_decision(r, _send(r) if r.decision == "allow" else None) for r in records))
    rows = await _fetch(postgres_url, "SELECT id, owner, xmin::text AS tx FROM decisions")
    assert sorted(r["id"] for r in rows) == [r.id for r in records]
    assert {r["owner"] for r in rows} == {store.owner}
    # xmin: the transaction that inserted the row. Group commit: far fewer than one per record.
    transactions = {r["tx"] for r in rows}
    assert len(transactions) < 10
    counts = await _fetch(postgres_url, "SELECT dim, key, sum(n) AS n FROM decision_counts WHERE span = 3600"
                                        " GROUP BY dim, key ORDER BY dim, key")  # fmt: skip
    assert [(c["dim"], c["key"], c["n"]) for c in counts] == [
        ("account", "111", 100), ("all", "", 100), ("rule", "window.closed", 25)]
    assert len(await _fetch(postgres_url, "SELECT 1 FROM sends")) == 75
    assert len(await _fetch(postgres_url, "SELECT 1 FROM decision_rules")) == 25


async def test_a_duplicate_id_in_a_batch_fails_alone_and_keeps_nothing(postgres_url: str, stores: Any) -> None:
    store = stores()
    first = _record(0, content={"first": True})
    await store.log_decision(first)
    duplicate = dataclasses.replace(first, content={"second": True}, decision="deny",
                                    reasons=[{"rule": "quiet.hours"}])  # fmt: skip
    batch = [_record(i) for i in range(1, 20)]
    results = await asyncio.gather(*(store.log_decision(r, _send(r)) for r in batch[:10]),
                                   store.log_decision(duplicate, _send(duplicate)),
                                   *(store.log_decision(r, _send(r)) for r in batch[10:]),
                                   return_exceptions=True)  # fmt: skip
    assert isinstance(results[10], StoreError) and "23505" in str(results[10])  # unique_violation
    assert all(r is None for r in results[:10] + results[11:])
    kept = await store.decision(first.id)
    assert kept is not None and kept.content == {"first": True} and kept.decision == "allow"
    assert all([await store.decision(r.id) for r in batch])
    # Nothing of the duplicate: neither its send nor its rule nor its counts.
    sends = {r["decision_id"] for r in await _fetch(postgres_url, "SELECT decision_id FROM sends")}
    assert sends == {r.id for r in batch}
    assert await _fetch(postgres_url, "SELECT 1 FROM decision_rules") == []
    counts = await _fetch(postgres_url, "SELECT decision, n FROM decision_counts WHERE span = 86400 AND dim = 'all'")
    assert [(c["decision"], c["n"]) for c in counts] == [("allow", 20)]


async def test_a_live_owners_unanswered_records_are_left_and_a_closed_ones_marked(
    postgres_url: str, stores: Any
) -> None:
    a, b = stores(), stores()
    waiting, answered = _record(1), _record(2)
    await a.log_decision(waiting, _send(waiting))  # forwarded; Meta's answer not in yet
    await a.log_decision(answered, _send(answered))
    a.log_upstream(answered.id, 200, "wamid.A", None, None, False)
    await a.flush()
    # Records with no owner (copied from SQLite): marked when older than the start only.
    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute("INSERT INTO decisions (id, ts, endpoint, api_version, account, decision, mode,"
                           " forwarded, reasons, warnings) VALUES ($1, $2, 'messages', 'v23.0', '111', 'allow',"
                           " 'enforce', true, '[]', '[]')", "copied-old", NOW - 10)  # fmt: skip
        await conn.execute("INSERT INTO decisions (id, ts, endpoint, api_version, account, decision, mode,"
                           " forwarded, reasons, warnings) VALUES ($1, $2, 'messages', 'v23.0', '111', 'allow',"
                           " 'enforce', true, '[]', '[]')", "copied-new", NOW + 1000)  # fmt: skip
        # As `sendgate db copy` leaves them: waiting for an answer, with no owner.
        await conn.execute("INSERT INTO in_flight SELECT id, NULL, ts FROM decisions WHERE id LIKE 'copied-%'")
    finally:
        await conn.close()

    # B starts while A serves: A's record waits for an answer that will come; only the old copied one goes.
    assert await b.mark_outcome_unknown(started_at=NOW + 500) == 1
    assert (await b.decision("copied-old")).outcome_unknown  # type: ignore[union-attr]
    assert (await b.decision("copied-new")).upstream_error is None  # type: ignore[union-attr]
    assert (await b.decision(waiting.id)).upstream_error is None  # type: ignore[union-attr]
    await a.close()
    # A is gone: its answer never comes. Marked whatever the start time (no clock is trusted).
    assert await b.mark_outcome_unknown(started_at=NOW - 3600) == 1
    marked = await b.decision(waiting.id)
    assert marked is not None and marked.outcome_unknown and marked.forwarded
    assert (await b.decision(answered.id)).upstream_status == 200  # type: ignore[union-attr]
    # Its send still counts: Meta may have taken it.
    facts = await b.recipient_facts("111", "222", "16505551234", NOW + 10)
    assert facts.last_sent_at == answered.timestamp and waiting.timestamp in facts.pair_sent_at
    assert await b.mark_outcome_unknown(started_at=NOW + 500) == 0


_HOLD_A_RECORD = """
import asyncio, sys
from sendgate.state import DecisionRecord, open_store

async def main():
    store = open_store(sys.argv[1])
    await store.log_decision(DecisionRecord(
        id="killed-1", timestamp=1795557600.0, endpoint="messages", api_version="v23.0", account="111",
        waba_id="222", recipient="16505551234", type="text", template=None, category=None,
        decision="allow", mode="enforce", forwarded=True))
    print("logged", flush=True)
    await asyncio.sleep(3600)  # forwarding: Meta's answer is awaited when the process is killed

asyncio.run(main())
"""


async def test_a_killed_processs_unanswered_record_is_marked_by_another(postgres_url: str, stores: Any) -> None:
    survivor = stores()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, "-c", _HOLD_A_RECORD, postgres_url], stdout=subprocess.PIPE, env=env)
    try:
        assert proc.stdout is not None
        line = await asyncio.get_running_loop().run_in_executor(None, proc.stdout.readline)
        assert line == b"logged\n"
        assert await survivor.mark_outcome_unknown(started_at=NOW + 60) == 0  # alive: left alone
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # PostgreSQL ends the killed process's sessions as it sees their sockets close, releasing its lock.
    for _ in range(400):
        marked = await survivor.mark_outcome_unknown(started_at=NOW + 60)
        if marked:
            break
        await asyncio.sleep(0.05)
    assert marked == 1
    record = await survivor.decision("killed-1")
    assert record is not None and record.upstream_error == OUTCOME_UNKNOWN


async def test_a_lost_lock_session_is_taken_again_on_the_next_write(postgres_url: str, stores: Any) -> None:
    a, b = stores(), stores()
    before = _record(1)
    await a.log_decision(before, _send(before))
    # A's lock session ends under it (what a PostgreSQL restart does to every session).
    ended = await _fetch(
        postgres_url,
        "SELECT pg_terminate_backend(l.pid, 10000) FROM pg_locks l JOIN instances i ON l.objid = i.lock_key"
        " WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND i.owner = $1",
        a.owner,
    )
    assert [r[0] for r in ended] == [True]
    # Meanwhile A looks gone: what it left unanswered is marked.
    assert await b.mark_outcome_unknown(started_at=NOW) == 1
    after = _record(2)
    await a.log_decision(after, _send(after))  # takes its lock again first
    assert await b.mark_outcome_unknown(started_at=NOW + 3600) == 0
    assert (await b.decision(after.id)).upstream_error is None  # type: ignore[union-attr]


async def test_database_killed_then_back_without_reopening_and_closed_while_away(make_postgres: Callable[[], PostgresServer]) -> None:
    server = make_postgres()
    store = open_store(server.url)
    other = open_store(server.url)
    try:
        await store.log_decision(_record(1), _send(_record(1)))
        await store.ping()
        server.kill()
        with pytest.raises(StoreError):
            await store.log_decision(_record(2), _send(_record(2)))
        with pytest.raises(StoreError):
            await store.ping()
        with pytest.raises(StoreError):
            await store.recipient_facts("111", "222", "16505551234", NOW)
        store.log_upstream(_record(1).id, 200, "wamid.1", None, None, False)  # lost, and logged
        await store.flush()

        server.start()
        await store.ping()
        await store.log_decision(_record(3), _send(_record(3)))
        assert await store.decision(_record(2).id) is None  # refused, so not kept
        facts = await store.recipient_facts("111", "222", "16505551234", NOW + 10)
        assert facts.pair_sent_at == [NOW + 3, NOW + 1]
        # The store took its owner lock again: another process leaves its unanswered records alone.
        assert await other.mark_outcome_unknown(started_at=NOW + 3600) == 0
        await store.close()
        assert await other.mark_outcome_unknown(started_at=NOW + 3600) == 2

        # Closing while the database is away returns (what it could not write is logged), once.
        other.log_upstream(_record(1).id, 200, "wamid.1", None, None, False)
        server.kill()
        await other.close()
        await other.close()
        with pytest.raises(StoreError, match="closed"):
            await other.log_decision(_record(4))
    finally:
        await store.close()
        await other.close()


async def test_recipient_facts_are_the_same_on_sqlite_and_postgresql(postgres_url: str, tmp_path: Path) -> None:
    sqlite, postgres = SQLiteStore(tmp_path / "s.db"), PostgresStore(postgres_url)
    try:
        for store in (sqlite, postgres):
            for i in range(80):  # more than the pair history keeps, some older than its hour
                record = _record(i, account="111" if i % 3 else "333", waba_id="222" if i % 5 else "999",
                                 category="marketing" if i % 2 else "utility")  # fmt: skip
                sent_at = NOW - 61.25 * i - 1 / 3
                await store.log_decision(record, SendRecord(record.id, record.account, record.waba_id,
                                                            "16505551234", record.category, sent_at))  # fmt: skip
            store.log_upstream(_record(7).id, 400, None, 131049, "per-user marketing limit", True)
            await store.record_consent(ConsentRecord("16505551234", "opted_in", ("marketing", "utility"),
                                                     "web", "form", NOW - 1e-6))  # fmt: skip
            await store.record_inbound("111", "16505551234", NOW - 7.000_001)
            await store.record_inbound("333", "16505551234", NOW - 100.5)
            await store.close_window("333", "16505551234", NOW - 50)
            await store.record_entry_point("111", "16505551234", NOW - 0.1, "ctwa")
            for j in range(120):
                await store.record_delivery_failure(f"wamid.{j}", 131049 + j % 2, "16505551234", "111", NOW - j / 7)
            await store.flush()
        for args in (("111", "222"), ("111", None), ("333", "999"), ("444", "222")):
            for now in (NOW, NOW + 1800.5, NOW + 86400 * 30):
                expected = await sqlite.recipient_facts(*args, "16505551234", now)
                assert await postgres.recipient_facts(*args, "16505551234", now) == expected
        assert await postgres.recipient_facts("111", None, "5511987654321", NOW) == \
            await sqlite.recipient_facts("111", None, "5511987654321", NOW)  # fmt: skip
    finally:
        await sqlite.close()
        await postgres.close()


async def test_a_gateway_fails_sends_closed_while_the_database_is_away_and_recovers(
    make_postgres: Callable[[], PostgresServer],
    gateway_factory: GatewayFactory,
    fake_graph: tuple[FakeGraph, str],
    clock: Clock,
) -> None:
    fake, _ = fake_graph
    server = make_postgres()
    client = await gateway_factory(state=server.url)
    await store_of(client).record_inbound(PHONE_NUMBER_ID, US_RECIPIENT, clock.now - 60)  # the window is open
    assert (await send(client, text_message()))[0] == 200
    assert (await client.get("/readyz")).status == 200

    server.kill()
    clock.advance(5)  # past the pair rate's interval and /readyz's probe interval
    status, headers, body = await send(client, text_message(body="while away"))
    assert status == 503 and body["error"]["code"] == 2 and body["error"]["type"] == "SendgateStoreError"
    assert len(fake.received) == 1, "nothing may reach Meta without a committed record"
    ready = await client.get("/readyz")
    assert ready.status == 503 and (await ready.json())["checks"]["store"]["ok"] is False

    server.start()  # no restart of sendgate: the pool connects again
    clock.advance(5)
    status, headers, _ = await send(client, text_message(body="back"))
    assert status == 200 and len(fake.received) == 2
    await store_of(client).flush()
    record = await store_of(client).decision(headers["X-Sendgate-Decision-Id"])
    assert record is not None and record.forwarded and record.upstream_status == 200
    assert (await client.get("/readyz")).status == 200


async def _until_waiting_for_a_lock(conn: asyncpg.Connection[Any], task: asyncio.Task[Any]) -> None:
    """Return once `task` is done or some session of this database waits for an advisory lock."""
    while not task.done() and not await conn.fetchval(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    ):
        await asyncio.sleep(0.01)


async def test_an_apps_consent_record_waits_for_a_webhook_merge_of_its_recipient(
    postgres_url: str, stores: Any
) -> None:
    store = stores()
    await store.record_consent(ConsentRecord("16505551234", "opted_in", ("marketing",), "web", None, NOW - 60))
    merging = await asyncpg.connect(postgres_url)  # another process, mid-merge for this recipient
    try:
        transaction = merging.transaction()
        await transaction.start()
        await lock_recipient(merging, "16505551234")
        record = asyncio.create_task(
            store.record_consent(ConsentRecord("16505551234", "opted_out", (), "app", "STOP", NOW)))
        # It appends only once the merge is done: wait until its session waits for the lock.
        await _until_waiting_for_a_lock(merging, record)
        assert not record.done()
        assert [c.status for c in await store.consent_history("16505551234")] == ["opted_in"]
        await transaction.commit()
        await record
    finally:
        await merging.close()
    assert [c.status for c in await store.consent_history("16505551234")] == ["opted_in", "opted_out"]


async def test_a_consent_import_waits_for_a_webhook_merge_of_any_recipient(postgres_url: str, stores: Any) -> None:
    """An import holds the whole ledger (it may name more recipients than PostgreSQL has locks for):
    a merge that read a recipient's ledger before the import cannot append after it."""
    store = stores()
    await store.record_consent(ConsentRecord("16505551234", "opted_in", ("marketing",), "web", None, NOW - 60))
    merging = await asyncpg.connect(postgres_url)  # another process, mid-merge for one recipient
    try:
        transaction = merging.transaction()
        await transaction.start()
        await lock_recipient(merging, "16505551234")
        imported = asyncio.create_task(store.import_consent(
            [ConsentRecord(f"1650555{n:04d}", "opted_out", (), "import", None, NOW) for n in range(1230, 1240)]))
        await _until_waiting_for_a_lock(merging, imported)
        assert not imported.done()
        assert [c.status for c in await store.consent_history("16505551234")] == ["opted_in"]
        await transaction.commit()
        assert await imported == 10
    finally:
        await merging.close()
    assert [c.status for c in await store.consent_history("16505551234")] == ["opted_in", "opted_out"]


async def test_stores_opening_a_new_database_together_migrate_it_once(postgres_server: PostgresServer) -> None:
    url = postgres_server.create_database()  # empty: no schema yet
    opened = [PostgresStore(url) for _ in range(4)]  # four processes starting at once
    try:
        await asyncio.gather(*(store.ping() for store in opened))
        record = _record(1)
        await opened[1].log_decision(record)
        assert await opened[3].decision(record.id) == record
    finally:
        for store in opened:
            await store.close()
    conn = await asyncpg.connect(url)
    try:
        versions = await conn.fetch("SELECT version, name FROM schema_version ORDER BY version")
        assert [tuple(r) for r in versions] == [(m.version, m.name) for m in MIGRATIONS]
    finally:
        await conn.close()
    postgres_server.drop_database(url.rsplit("/", 1)[1])


async def test_a_database_from_a_newer_sendgate_is_refused(postgres_url: str) -> None:
    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute("INSERT INTO schema_version VALUES (99, 'from the future', 0)")
    finally:
        await conn.close()
    store = PostgresStore(postgres_url)
    try:
        with pytest.raises(StoreError, match=f"schema version 99, newer than this sendgate's {MIGRATIONS[-1].version}: upgrade sendgate"):
            await store.ping()
        with pytest.raises(StoreError, match="newer than this sendgate's"):  # and again: nothing half-open
            await store.log_decision(_record(2))
    finally:
        await store.close()

"""SQLite backend only: its file, schema and migrations, and how SQLite itself keeps promises.

What every backend must do is tested through the interface (the `store` fixture, tests/conftest.py);
what is here reads or writes the SQLite file directly, and has no meaning for another backend.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from sendgate.admin.records import decision_query
from sendgate.ids import DecisionIds
from sendgate.state import ConsentRecord, DecisionQuery, DecisionRecord, ReviewRecord, StoreError
from sendgate.state.sqlite import SQLiteStore
from sendgate.state.sqlite.review import id_floor
from sendgate.state.sqlite.schema import MIGRATIONS

from .conftest import US_RECIPIENT
from .review_seed import ACCOUNTS, seed
from .test_review_store import _ids, seeded  # noqa: F401 - `seeded` is a fixture
from .test_webhooks_ordering import YEAR_2100, record

async def _open_and_close(path: Path) -> None:
    store = SQLiteStore(path)
    await store.close()


UNVERSIONED = Path(__file__).parent / "fixtures" / "sqlite_schema_unversioned.sql"
NOW = 1795557600.0  # 2026-11-24 22:00 UTC


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    """Here `store` is a `SQLiteStore` (elsewhere it is each backend in turn)."""
    opened = SQLiteStore(tmp_path / "s.db")
    yield opened
    await opened.close()


def _shape(path: Path) -> dict[str, object]:
    """Tables with their columns, and indexes and triggers by name: what a file's schema is."""
    with sqlite3.connect(path) as conn:
        objects = conn.execute("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'").fetchall()
        tables = {name: sorted(row[1:3] for row in conn.execute(f"PRAGMA table_info({name})"))
                  for kind, name in objects if kind == "table"}  # fmt: skip
        return {"tables": tables, "others": sorted((kind, name) for kind, name in objects if kind != "table")}


def _versions(path: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT version, name FROM schema_version ORDER BY version").fetchall()


async def test_a_file_from_before_versioning_upgrades_in_place(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    with sqlite3.connect(old) as conn:
        conn.executescript(UNVERSIONED.read_text())
        conn.execute(
            "INSERT INTO consent (recipient, status, categories, source, evidence, recorded_at)"
            " VALUES ('15550001111', 'opted_in', '[\"marketing\"]', 'pos', NULL, 1700000000.5)"
        )
        conn.execute(
            "INSERT INTO decisions (id, ts, endpoint, api_version, account, decision, mode, forwarded, reasons,"
            " warnings) VALUES ('01HOLD', 1700000000.0, 'messages', 'v23.0', '123', 'allow', 'enforce', 1, '[]', '[]')"
        )
    store = SQLiteStore(old)
    try:
        history = await store.consent_history("15550001111")
        assert [(r.status, r.categories, r.recorded_at) for r in history] == [("opted_in", ("marketing",), 1700000000.5)]
        kept = await store.decision("01HOLD")
        assert kept is not None and kept.forwarded and kept.delivery_status is None
        await store.log_decision(
            DecisionRecord("01HNEW", 1700000100.0, "messages", "v23.0", "123", None, None, None, None, None,
                           "deny", "enforce", False, reasons=[{"rule": "consent.required"}])
        )  # fmt: skip
        assert (await store.decision("01HNEW")) is not None
    finally:
        await store.close()
    fresh = tmp_path / "fresh.db"
    await _open_and_close(fresh)
    assert _versions(old) == _versions(fresh) == [(m.version, m.name) for m in MIGRATIONS]
    assert _shape(old) == _shape(fresh)  # the upgraded file is what a new one is


async def test_opening_an_up_to_date_file_applies_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    await _open_and_close(path)
    store = SQLiteStore(path)
    await store.record_consent(ConsentRecord("15550001111", "opted_out", (), "sms", None, 1.0))
    await store.close()
    await _open_and_close(path)
    assert _versions(path) == [(m.version, m.name) for m in MIGRATIONS]
    store = SQLiteStore(path)
    assert len(await store.consent_history("15550001111")) == 1
    await store.close()


async def test_a_file_from_a_newer_sendgate_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    await _open_and_close(path)
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_version VALUES (99, 'from the future', 0)")
    with pytest.raises(StoreError, match=f"schema version 99, newer than this sendgate's {MIGRATIONS[-1].version}"):
        SQLiteStore(path)




# -- schema: files from before, in detail -------------------------------------------------------


_OLD_SCHEMA = """
CREATE TABLE decisions (
    id TEXT PRIMARY KEY, ts REAL NOT NULL, endpoint TEXT NOT NULL, api_version TEXT NOT NULL, account TEXT NOT NULL,
    waba_id TEXT, recipient TEXT, recipient_key TEXT, type TEXT, template TEXT, category TEXT, decision TEXT NOT NULL,
    mode TEXT NOT NULL, forwarded INTEGER NOT NULL, reasons TEXT NOT NULL, warnings TEXT NOT NULL, retry_after INTEGER,
    policy_revision TEXT, eval_us REAL, upstream_status INTEGER, upstream_message_id TEXT,
    upstream_error_code INTEGER, upstream_error TEXT, content TEXT
);
CREATE TABLE decision_rules (decision_id TEXT NOT NULL, rule TEXT NOT NULL, PRIMARY KEY (rule, decision_id)) WITHOUT ROWID;
INSERT INTO decisions VALUES ('01OLD0000000000000000000001', 1795550000.5, 'messages', 'v23.0', '1', '2', '16505551234',
    'k', 'text', NULL, NULL, 'deny', 'enforce', 0, '[{"rule":"window.closed","message":"closed"}]', '[]', NULL, 'r1',
    12.0, NULL, NULL, NULL, NULL, '{"to":"16505551234"}');
INSERT INTO decision_rules VALUES ('01OLD0000000000000000000001', 'window.closed');
"""


async def test_a_file_from_before_the_review_pages_is_migrated(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "old.db")
    conn.executescript(_OLD_SCHEMA)
    conn.close()
    store = SQLiteStore(tmp_path / "old.db")
    try:
        [record] = await store.decisions(DecisionQuery(decision="rejected"))
        assert (record.facts, record.delivery_status) == (None, None)
        counts = await store.decision_counts(0, 2e9)
        assert {(c.dimension, c.key, c.count) for c in counts} == {
            ("all", "", 1),
            ("account", "1", 1),
            ("rule", "window.closed", 1),
        }
        await store.log_decision(replace(record, id="01NEW", facts={"recipient": None, "template": None}))
        assert (await store.decision("01NEW")).facts == {"recipient": None, "template": None}  # type: ignore[union-attr]
    finally:
        await store.close()
    SQLiteStore(tmp_path / "old.db")._read.close()  # opening again is a no-op


async def test_a_schema_from_before_keeps_its_optout_times_without_the_future(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE consent_events (recipient TEXT PRIMARY KEY, at REAL NOT NULL) WITHOUT ROWID")
    conn.executemany("INSERT INTO consent_events VALUES (?, ?)", [(US_RECIPIENT, NOW - 10), ("5511987654321", YEAR_2100)])
    conn.commit()
    conn.close()
    store = SQLiteStore(path)
    try:
        # The old table's times (of any consent event) still stop older opt-ins...
        await store.record_consent(record("opted_out", NOW - 100, source="web"))
        assert await store.apply_consent_event("a", record("opted_in", NOW - 20), "resume") is None
        assert await store.apply_consent_event("b", record("opted_in", NOW - 5), "resume") is not None
        # ...and one dated 2100 no longer stops anything newer than the upgrade.
        other = ConsentRecord("5511987654321", "opted_out", ("marketing",), "web", None, NOW - 100)
        await store.record_consent(other)
        resume = ConsentRecord("5511987654321", "opted_in", ("marketing",), "whatsapp:user_preferences", "{}",
                               time.time() + 1)  # fmt: skip
        assert await store.apply_consent_event("c", resume, "resume") is not None
    finally:
        await store.close()


# -- how SQLite keeps the contract: the trigger, the plans, the batches ------------------------------


async def test_the_review_trail_refuses_updates_in_the_file_itself(store: SQLiteStore) -> None:
    await store.log_decision(
        DecisionRecord("01HX", NOW, "messages", "v23.0", "1", None, None, None, None, None, "deny", "enforce", False)
    )
    assert await store.add_review(ReviewRecord("01HX", "ana", "checked", NOW)) is not None
    conn = sqlite3.connect(store.path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE reviews SET note = 'rewritten'")
    conn.close()


async def test_list_queries_read_an_index_in_order(store: SQLiteStore, seeded: list[DecisionRecord]) -> None:
    """No list filter sorts: each walks an index newest first and stops after one page."""
    for params in (
        {},
        {"decision": "shadow"},
        {"decision": "deny"},
        {"rule": "window.closed"},
        {"template": "spring_sale"},
        {"account": ACCOUNTS[0]},
        {"recipient": "16505550001"},
        {"since": str(NOW - 86400)},
        {"reviewed": "no"},
        {"reviewed": "no", "rule": "window.closed", "since": str(NOW - 86400)},
    ):
        query = decision_query({"decision": "rejected", **params, "limit": "51"})
        sql, args = store._list_sql(query)
        plan = " | ".join(row[3] for row in store._read.execute("EXPLAIN QUERY PLAN " + sql, args))
        assert "TEMP B-TREE" not in plan, (params, plan)


async def test_prune_works_in_batches(store: SQLiteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    import sendgate.state.sqlite.review as review_sql

    monkeypatch.setattr(review_sql, "PRUNE_BATCH", 7)
    records = await seed(store, NOW, 60, span=86400)
    result = await store.prune_decisions(NOW - 3600 * 6, NOW)
    assert result.decisions == sum(1 for r in records if r.timestamp < NOW - 3600 * 6)
    assert len(await _ids(store)) == 60 - result.decisions


def test_id_floor_orders_like_decision_ids() -> None:
    ids = DecisionIds()
    for ts in (0.0, 1.5, NOW, NOW + 0.0005):
        issued = ids.new(ts)
        assert id_floor(ts) <= issued < id_floor(ts + 0.001)


async def test_places_from_older_metadata_are_not_used(store: SQLiteStore, tmp_path: Path) -> None:
    await store.record_consent(ConsentRecord("16505551234", "opted_in", ("utility",), "web", None, 1.0))
    await store.flush()
    with sqlite3.connect(store.path) as conn:
        conn.execute("UPDATE places SET country = 'ZZ', data = 'phonenumbers 0.0.1'")
    assert (await store.recipient_facts("111", None, "16505551234", 2.0)).place is None
    await store.record_consent(ConsentRecord("16505551234", "opted_in", ("utility",), "web", None, 3.0))
    assert (await store.recipient_facts("111", None, "16505551234", 4.0)).place == ("US", "America/Los_Angeles")

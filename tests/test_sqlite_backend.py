"""SQLite backend only: its file, schema and migrations, and how SQLite itself keeps promises.

What every backend must do is tested through the interface (the `store` fixture, tests/conftest.py);
what is here reads or writes the SQLite file directly, and has no meaning for another backend.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sendgate.state import ConsentRecord, DecisionRecord, StoreError
from sendgate.state.sqlite import SQLiteStore
from sendgate.state.sqlite.schema import MIGRATIONS

UNVERSIONED = Path(__file__).parent / "fixtures" / "sqlite_schema_unversioned.sql"


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
    assert _versions(path) == [(1, "initial")]
    store = SQLiteStore(path)
    assert len(await store.consent_history("15550001111")) == 1
    await store.close()


async def test_a_file_from_a_newer_sendgate_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    await _open_and_close(path)
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_version VALUES (99, 'from the future', 0)")
    with pytest.raises(StoreError, match="schema version 99, newer than this sendgate's 1"):
        SQLiteStore(path)


async def _open_and_close(path: Path) -> None:
    store = SQLiteStore(path)
    await store.close()

"""The template facts of the policy input (docs/input.md `template`): how Meta's status events change
a catalog entry (pure), what the store answers on both backends, and migration 2, which fills
`templates.details` in a database from before it (and repairs statuses stored as event names)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from sendgate.state import Store
from sendgate.state.catalog import template_details
from sendgate.state.postgresql import PostgresStore
from sendgate.state.postgresql.schema import MIGRATIONS as POSTGRES_MIGRATIONS
from sendgate.state.rules import apply_status_event, carry_webhook_facts, repair_event_statuses
from sendgate.state.sqlite import SQLiteStore
from sendgate.state.sqlite.schema import MIGRATIONS as SQLITE_MIGRATIONS
from sendgate.webhooks.events import parse_webhook

from .conftest import CATALOG, WABA_ID
from .webhook_support import template_status

NOW = 1795557600.0


def entry(status: str = "APPROVED") -> dict[str, Any]:
    return {"name": "t", "language": "en_US", "status": status, "category": "UTILITY",
            "components": [{"type": "BODY", "text": "Hi {{1}}"}]}  # fmt: skip


@pytest.mark.parametrize(
    ("events", "status", "flagged", "until", "locked"),
    [
        ([("FLAGGED", 5000.0)], "APPROVED", True, 5000.0, False),
        ([("FLAGGED", None)], "APPROVED", True, None, False),
        ([("FLAGGED", 5000.0), ("REINSTATED", None)], "APPROVED", False, None, False),
        ([("FLAGGED", 5000.0), ("APPROVED", None)], "APPROVED", False, None, False),
        ([("FLAGGED", 5000.0), ("DISABLED", 5000.0)], "DISABLED", False, None, False),
        ([("LOCKED", None)], "APPROVED", False, None, True),
        ([("LOCKED", None), ("UNLOCKED", None)], "APPROVED", False, None, False),
        ([("PAUSED", None), ("ARCHIVED", None), ("UNARCHIVED", None)], "PAUSED", False, None, False),
        ([("ARCHIVED", None), ("ARCHIVED", None), ("UNARCHIVED", None), ("UNARCHIVED", None)], "APPROVED", False, None,
         False),
        ([("REJECTED", None), ("PENDING_DELETION", None)], "PENDING_DELETION", False, None, False),
    ],
)
def test_status_events(events: list[tuple[str, float | None]], status: str, flagged: bool, until: float | None,
                       locked: bool) -> None:
    template = entry()
    for event, disable_at in events:
        apply_status_event(template, event, NOW, disable_at)
    details = template_details(template)
    assert (template["status"], details["flagged"], details["flagged_until"], details["locked"]) == (
        status, flagged, until, locked)


def test_unarchived_without_a_known_status_is_approved() -> None:
    template = entry("ARCHIVED")
    apply_status_event(template, "UNARCHIVED", NOW)
    assert template["status"] == "APPROVED" and "sendgate" not in template  # nothing to keep


def test_statuses_stored_as_event_names_are_repaired() -> None:
    templates = [entry("FLAGGED"), entry("LOCKED"), entry("UNLOCKED"), entry("UNARCHIVED"), entry("PAUSED")]
    assert repair_event_statuses(templates)
    assert [t["status"] for t in templates] == ["APPROVED", "APPROVED", "APPROVED", "APPROVED", "PAUSED"]
    assert [template_details(t)["flagged"] for t in templates] == [True, False, False, False, False]
    assert not repair_event_statuses([entry()])


def test_a_sync_keeps_what_webhooks_told() -> None:
    old = [entry()]
    apply_status_event(old[0], "FLAGGED", NOW, NOW + 60)
    new = [entry(), dict(entry(), language="pt_BR")]
    carry_webhook_facts(old, new)
    assert template_details(new[0])["flagged_until"] == NOW + 60
    assert "sendgate" not in new[1]


def test_details_of_a_graph_entry() -> None:
    graph = {"name": "x", "language": "en", "status": "LOCKED", "category": "MARKETING", "parameter_format": "named",
             "quality_score": {"score": "yellow", "date": 1}, "components": [
                 {"type": "HEADER", "format": "VIDEO"}, {"type": "BODY", "text": "Hi {{name}}, {{name}} and {{code}}"},
                 {"type": "FOOTER", "text": "Bye"}, "junk",
                 {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Stop"}, {"type": "url"}, 3]}]}  # fmt: skip
    assert template_details(graph) == {
        "quality": "YELLOW", "flagged": False, "flagged_until": None, "locked": True, "parameter_format": "NAMED",
        "components": {
            "header": {"format": "VIDEO", "text": None, "parameter_names": []},
            "body": {"text": "Hi {{name}}, {{name}} and {{code}}", "parameter_names": ["name", "code"],
                     "fixed_length": 10, "placeholder_counts": {"name": 2, "code": 1}},
            "footer": {"text": "Bye"},
            "buttons": [{"index": "0", "type": "QUICK_REPLY"}, {"index": "1", "type": "URL"}],
        },
    }  # fmt: skip


@pytest.mark.parametrize(
    ("disable_info", "expected"),
    [({"disable_date": 1795600000}, 1795600000.0), ({"disable_date": "1795600000"}, 1795600000.0),
     ({"disable_date": "2026-11-25T09:46:40Z"}, 1795600000.0), ({"disable_date": "2026-11-25T09:46:40"}, 1795600000.0),
     ({"disable_date": "soon"}, None), ({"disable_date": True}, None), ({"disable_date": 5}, None), ("x", None),
     ({}, None)],
)  # fmt: skip
def test_flagged_events_carry_their_disable_date(disable_info: Any, expected: float | None) -> None:
    payload = template_status("FLAGGED", NOW)
    payload["entry"][0]["changes"][0]["value"]["disable_info"] = disable_info
    (event,) = parse_webhook(payload, NOW).templates
    assert (event.status, event.disable_at) == ("FLAGGED", expected)


# -- the store, on both backends -------------------------------------------------------------


async def test_status_events_reach_the_facts(store: Store) -> None:
    await store.put_templates(WABA_ID, CATALOG)
    common: dict[str, Any] = {"template_id": None, "name": "order_update", "language": "en_US"}
    assert await store.update_template(WABA_ID, at=NOW, status="FLAGGED", disable_at=NOW + 3600, **common)
    facts = await store.template_facts(WABA_ID, "order_update", "en_US")
    assert (facts.status, facts.flagged, facts.flagged_until) == ("APPROVED", True, NOW + 3600)
    assert facts.components is not None and facts.components["header"]["format"] == "IMAGE"
    assert facts.as_input()["flagged_until"] == NOW + 3600
    # A sync keeps the flag Graph's listing does not carry.
    await store.put_templates(WABA_ID, CATALOG)
    assert (await store.template_facts(WABA_ID, "order_update", "en_US")).flagged_until == NOW + 3600
    assert all("sendgate" not in t for t in CATALOG["data"])  # the caller's body is left as it was
    assert await store.update_template(WABA_ID, at=NOW + 1, status="ARCHIVED", **common)
    assert await store.update_template(WABA_ID, at=NOW + 2, status="UNARCHIVED", **common)
    facts = await store.template_facts(WABA_ID, "order_update", "en_US")
    assert (facts.status, facts.flagged) == ("APPROVED", True)
    assert await store.update_template(WABA_ID, at=NOW + 3, quality="RED", **common)
    assert (await store.template_facts(WABA_ID, "order_update", "en_US")).quality == "RED"
    # An older FLAGGED delivered late does not flag it again after a reinstatement.
    assert await store.update_template(WABA_ID, at=NOW + 4, status="REINSTATED", **common)
    assert not await store.update_template(WABA_ID, at=NOW, status="FLAGGED", disable_at=NOW + 60, **common)
    assert not (await store.template_facts(WABA_ID, "order_update", "en_US")).flagged
    missing = await store.template_facts(WABA_ID, "no_such", "en_US")
    assert missing.as_input()["components"] is None and missing.as_input()["flagged"] is False


# -- migration 2 ------------------------------------------------------------------------------

OLD_BODY = {"data": [dict(entry("FLAGGED"), name="a"), dict(entry(), name="b", quality_score={"score": "RED"})]}


def _version_1_sqlite(path: Path) -> None:
    """A file as sendgate left it at schema 1: no templates.details, a status stored as an event name."""
    SQLiteStore(path)  # creates it at the latest version, then back to 1
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE templates DROP COLUMN details")
        conn.execute("DELETE FROM schema_version WHERE version > 1")
        conn.execute("INSERT INTO catalogs VALUES (?, ?, 0)", (WABA_ID, orjson.dumps(OLD_BODY).decode()))
        conn.executemany("INSERT INTO templates VALUES (?, ?, 'en_US', ?, 'UTILITY', '{}')",
                         [(WABA_ID, "a", "FLAGGED"), (WABA_ID, "b", "APPROVED")])  # fmt: skip


async def _check_migrated(store: Store) -> None:
    a = await store.template_facts(WABA_ID, "a", "en_US")
    b = await store.template_facts(WABA_ID, "b", "en_US")
    assert (a.status, a.flagged, b.status, b.quality) == ("APPROVED", True, "APPROVED", "RED")
    assert b.components is not None and b.components["body"]["text"] == "Hi {{1}}"
    catalog = await store.templates(WABA_ID)
    assert catalog is not None and catalog["data"][0]["status"] == "APPROVED"


async def test_migration_2_fills_template_details_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    await _close(SQLiteStore(path))
    _version_1_sqlite(path)
    store = SQLiteStore(path)
    try:
        await _check_migrated(store)
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] == SQLITE_MIGRATIONS[-1].version


async def test_migration_2_fills_template_details_postgresql(postgres_url: str) -> None:
    await _close(PostgresStore(postgres_url))
    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute("ALTER TABLE templates DROP COLUMN details")
        await conn.execute("DELETE FROM schema_version WHERE version > 1")
        await conn.execute("INSERT INTO catalogs VALUES ($1, $2, 0)", WABA_ID, orjson.dumps(OLD_BODY).decode())
        await conn.executemany("INSERT INTO templates VALUES ($1, $2, 'en_US', $3, 'UTILITY', '{}')",
                               [(WABA_ID, "a", "FLAGGED"), (WABA_ID, "b", "APPROVED")])  # fmt: skip
    finally:
        await conn.close()
    store = PostgresStore(postgres_url)
    try:
        await _check_migrated(store)
    finally:
        await store.close()
    conn = await asyncpg.connect(postgres_url)
    try:
        assert await conn.fetchval("SELECT max(version) FROM schema_version") == POSTGRES_MIGRATIONS[-1].version
    finally:
        await conn.close()


async def _close(store: Store) -> None:
    await store.ping()
    await store.close()

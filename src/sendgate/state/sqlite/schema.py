"""The SQLite backend's one schema, and the numbered migrations that bring any file to it.

`SCHEMA` is every table, index and trigger of the current version. `MIGRATIONS` are applied in
order, each in the same transaction as its row in `schema_version`, when a store opens; a file
already at the latest version is left alone, one from a newer sendgate is refused.

Migration 1 is the schema as it was before versioning: applied to a new file, it creates
everything; applied to a file written by an earlier sendgate (no `schema_version` table), it
adds what that file lacks (later `decisions` columns, the counts rollup counted from the
records, the webhook tables) and leaves its data as it is. A change to the schema from now on
is a new migration appended to `MIGRATIONS`, and `SCHEMA` is edited to match.

Migration 2 adds `templates.details` (the template facts of docs/input.md beyond status,
category and placeholders), filled from the stored catalogs.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import NamedTuple

from sendgate.state.base import StoreError
from sendgate.state.rows import template_details_migration
from sendgate.state.sqlite.review import rebuild_counts

__all__ = ["MIGRATIONS", "SCHEMA", "Migration", "migrate", "schema_version"]

# Media ids Meta answered an upload through sendgate with: the file's type and size (migration 3).
_MEDIA_TABLE = """CREATE TABLE IF NOT EXISTS media (
    phone_number_id TEXT NOT NULL, media_id TEXT NOT NULL, mime_type TEXT, declared_type TEXT, size INTEGER,
    animated INTEGER, uploaded_at REAL NOT NULL,
    PRIMARY KEY (phone_number_id, media_id)) WITHOUT ROWID"""

SCHEMA: tuple[str, ...] = (
    # -- consent ledger, catalogs, places, inbound window, sends, decision log, health --
    """CREATE TABLE IF NOT EXISTS consent (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    recipient TEXT NOT NULL,
    status TEXT NOT NULL,
    categories TEXT NOT NULL,
    source TEXT,
    evidence TEXT,
    recorded_at REAL NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS consent_recipient ON consent (recipient, seq)",
    """CREATE TABLE IF NOT EXISTS catalogs (
    waba_id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    updated_at REAL NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS templates (
    waba_id TEXT NOT NULL,
    name TEXT NOT NULL,
    language TEXT NOT NULL,
    status TEXT NOT NULL,
    category TEXT,
    placeholders TEXT NOT NULL,
    details TEXT,  -- JSON: catalog.template_details (quality, flag, lock, component texts)
    PRIMARY KEY (waba_id, name, language)
)""",
    """-- Where each known recipient's number is (sendgate.places), kept when the number is learnt of
-- (consent, inbound) so the send path reads it instead of running phonenumbers per message.
CREATE TABLE IF NOT EXISTS places (
    recipient TEXT PRIMARY KEY,
    country TEXT,
    timezone TEXT,
    data TEXT NOT NULL  -- the metadata that placed it (sendgate.places.PLACE_DATA)
) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS inbound (
    phone_number_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    last_at REAL NOT NULL,
    PRIMARY KEY (phone_number_id, recipient)
)""",
    """CREATE TABLE IF NOT EXISTS sends (
    decision_id TEXT PRIMARY KEY,
    phone_number_id TEXT NOT NULL,
    waba_id TEXT,
    recipient TEXT NOT NULL,
    category TEXT,
    sent_at REAL NOT NULL,
    failed INTEGER NOT NULL DEFAULT 0,
    in_window INTEGER
)""",
    "CREATE INDEX IF NOT EXISTS sends_recipient ON sends (recipient, sent_at)",
    """CREATE TABLE IF NOT EXISTS decisions (
    id TEXT PRIMARY KEY,
    ts REAL NOT NULL,
    endpoint TEXT NOT NULL,
    api_version TEXT NOT NULL,
    account TEXT NOT NULL,
    waba_id TEXT,
    recipient TEXT,
    recipient_key TEXT,
    type TEXT,
    template TEXT,
    category TEXT,
    decision TEXT NOT NULL,
    mode TEXT NOT NULL,
    forwarded INTEGER NOT NULL,
    reasons TEXT NOT NULL,
    warnings TEXT NOT NULL,
    retry_after INTEGER,
    policy_revision TEXT,
    eval_us REAL,
    upstream_status INTEGER,
    upstream_message_id TEXT,
    upstream_error_code INTEGER,
    upstream_error TEXT,
    content TEXT,
    facts TEXT,
    delivery_status TEXT,
    delivery_at REAL,
    delivery_error TEXT,
    engine_decision_id TEXT
)""",
    "CREATE INDEX IF NOT EXISTS decisions_ts ON decisions (ts)",
    "CREATE INDEX IF NOT EXISTS decisions_decision ON decisions (decision, id)",
    "CREATE INDEX IF NOT EXISTS decisions_account ON decisions (account, id)",
    "CREATE INDEX IF NOT EXISTS decisions_recipient ON decisions (recipient_key, id)",
    "CREATE INDEX IF NOT EXISTS decisions_message ON decisions (upstream_message_id)",
    """-- Forwarded records still waiting for Meta's answer: a handful at any time, found on start
-- without scanning the log (`mark_outcome_unknown`).
CREATE INDEX IF NOT EXISTS decisions_unanswered ON decisions (ts)
    WHERE forwarded = 1 AND upstream_status IS NULL AND upstream_error IS NULL""",
    """CREATE TABLE IF NOT EXISTS decision_rules (
    decision_id TEXT NOT NULL,
    rule TEXT NOT NULL,
    PRIMARY KEY (rule, decision_id)
) WITHOUT ROWID""",
    """-- One row that `ping` (/readyz) rewrites: proof that a write commits, not just that the file opens.
CREATE TABLE IF NOT EXISTS health (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    probed_at REAL NOT NULL
)""",
    # -- decision log listing and the review trail --
    """CREATE TABLE IF NOT EXISTS reviews (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        decision_id TEXT NOT NULL,
        reviewer TEXT NOT NULL,
        note TEXT NOT NULL,
        reviewed_at REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS reviews_decision ON reviews (decision_id, seq)",
    """CREATE TRIGGER IF NOT EXISTS reviews_append_only BEFORE UPDATE ON reviews
    BEGIN
        SELECT RAISE(ABORT, 'the review trail is append-only');
    END""",
    "CREATE INDEX IF NOT EXISTS decisions_template ON decisions (template, id)",
    "CREATE INDEX IF NOT EXISTS decisions_rejected ON decisions (id) WHERE decision != 'allow'",
    "CREATE INDEX IF NOT EXISTS decisions_shadow ON decisions (id) WHERE mode = 'shadow' AND decision IN ('deny', 'defer')",
    # The hourly and daily rollup the overview reads (`review.py`).
    """CREATE TABLE IF NOT EXISTS decision_counts (
    span INTEGER NOT NULL,  -- 3600: an hour row, 86400: a day row
    start INTEGER NOT NULL,  -- Unix seconds, a multiple of span
    dim TEXT NOT NULL,
    key TEXT NOT NULL,
    decision TEXT NOT NULL,
    mode TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (span, start, dim, key, decision, mode)
) WITHOUT ROWID;""",
    # -- what webhooks record (`webhooks.py`) --
    # Webhook events applied, or that found the state already holding them: a redelivery changes nothing.
    "CREATE TABLE IF NOT EXISTS webhook_events (key TEXT PRIMARY KEY, seen_at REAL NOT NULL) WITHOUT ROWID",
    # The newest opt-out event seen per recipient (whole seconds), appended or not: no opt-in older
    # than it, or of the same second, goes in.
    "CREATE TABLE IF NOT EXISTS optout_events (recipient TEXT PRIMARY KEY, at INTEGER NOT NULL) WITHOUT ROWID",
    """CREATE TABLE IF NOT EXISTS entry_points (
        phone_number_id TEXT NOT NULL, recipient TEXT NOT NULL, at REAL NOT NULL, source TEXT,
        PRIMARY KEY (phone_number_id, recipient)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS window_closures (
        phone_number_id TEXT NOT NULL, recipient TEXT NOT NULL, closed_at REAL NOT NULL,
        PRIMARY KEY (phone_number_id, recipient)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS delivery_failures (
        message_id TEXT NOT NULL, code INTEGER NOT NULL, recipient TEXT NOT NULL, phone_number_id TEXT,
        at REAL NOT NULL, PRIMARY KEY (message_id, code)) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS delivery_failures_recipient ON delivery_failures (recipient, at)",
    """CREATE TABLE IF NOT EXISTS account_state (
        scope TEXT NOT NULL, id TEXT NOT NULL, field TEXT NOT NULL, value TEXT, at REAL NOT NULL, detail TEXT,
        PRIMARY KEY (scope, id, field)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS phone_numbers (
        phone_number_id TEXT PRIMARY KEY, display_phone_number TEXT, waba_id TEXT, seen_at REAL NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS phone_numbers_display ON phone_numbers (display_phone_number)",
    """CREATE TABLE IF NOT EXISTS template_events (
        waba_id TEXT NOT NULL, template TEXT NOT NULL, field TEXT NOT NULL, at REAL NOT NULL,
        PRIMARY KEY (waba_id, template, field)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS marketing_pauses (
        phone_number_id TEXT PRIMARY KEY, alert TEXT NOT NULL, message TEXT NOT NULL, since REAL NOT NULL)""",
    # -- media uploaded through sendgate (`media.py`), from migration 3 --
    _MEDIA_TABLE,
)

# Columns `decisions` gained after its first release: ALTERed into files from before them.
_LATER_DECISION_COLUMNS = (
    ("facts", "TEXT"),
    ("delivery_status", "TEXT"),
    ("delivery_at", "REAL"),
    ("delivery_error", "TEXT"),
    ("engine_decision_id", "TEXT"),
)


class Migration(NamedTuple):
    version: int
    name: str
    apply: Callable[[sqlite3.Connection], None]


def _table_exists(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def _initial(conn: sqlite3.Connection) -> None:
    had_counts = _table_exists(conn, "decision_counts")
    if _table_exists(conn, "decisions"):
        present = {row[1] for row in conn.execute("PRAGMA table_info(decisions)")}
        for name, kind in _LATER_DECISION_COLUMNS:
            if name not in present:
                conn.execute(f"ALTER TABLE decisions ADD COLUMN {name} {kind}")
    for statement in SCHEMA:
        conn.execute(statement)
    if not had_counts:
        rebuild_counts(conn)  # a file from before the rollup: count what it already holds
    if _table_exists(conn, "consent_events"):
        # Before: the newest consent event of either kind. As opt-out times they only keep older
        # opt-ins out (the safe side); one dated in the future is brought back to now.
        conn.execute(
            "INSERT INTO optout_events SELECT recipient, min(CAST(at AS INTEGER), ?) FROM consent_events WHERE true"
            " ON CONFLICT (recipient) DO UPDATE SET at = max(at, excluded.at)",
            (int(time.time()),),
        )
        conn.execute("DROP TABLE consent_events")


def _template_details(conn: sqlite3.Connection) -> None:
    """templates.details, filled from each stored catalog; statuses that were event names
    (FLAGGED, LOCKED, UNLOCKED, UNARCHIVED) become what the event means (`repair_event_statuses`)."""
    if "details" not in {row[1] for row in conn.execute("PRAGMA table_info(templates)")}:
        conn.execute("ALTER TABLE templates ADD COLUMN details TEXT")
    for waba_id, text in conn.execute("SELECT waba_id, body FROM catalogs").fetchall():
        repaired, rows = template_details_migration(waba_id, text)
        if repaired is not None:
            conn.execute("UPDATE catalogs SET body = ? WHERE waba_id = ?", (repaired, waba_id))
        conn.executemany(
            "UPDATE templates SET status = ?, category = ?, details = ? WHERE waba_id = ? AND name = ? AND language = ?",
            rows,
        )


def _media(conn: sqlite3.Connection) -> None:
    conn.execute(_MEDIA_TABLE)


def _sends_in_window(conn: sqlite3.Connection) -> None:
    """Migration 4: whether each send went inside a window the user opened (frequency's
    count_marketing_in_open_window). A file migration 1 just created has the column already;
    the sends of an older file keep NULL, which counts as outside (the safe side)."""
    if "in_window" not in {row[1] for row in conn.execute("PRAGMA table_info(sends)")}:
        conn.execute("ALTER TABLE sends ADD COLUMN in_window INTEGER")


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial", _initial),
    Migration(2, "template_details", _template_details),
    Migration(3, "media", _media),
    Migration(4, "sends_in_window", _sends_in_window),
)

_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
)


def schema_version(conn: sqlite3.Connection) -> int:
    """The latest migration applied to the file (0: none, a file from before versioning or a new one)."""
    if not _table_exists(conn, "schema_version"):
        return 0
    return int(conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0])


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the migrations the file lacks, in one transaction (safe with a second process opening
    the same file); returns the file's version after."""
    latest = MIGRATIONS[-1].version
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = schema_version(conn)
        if current > latest:
            raise StoreError(
                f"the state file is at schema version {current}, newer than this sendgate's {latest}: upgrade sendgate"
            )
        conn.execute(_VERSION_TABLE)
        for migration in MIGRATIONS:
            if migration.version > current:
                migration.apply(conn)
                conn.execute(
                    "INSERT INTO schema_version VALUES (?, ?, ?)", (migration.version, migration.name, time.time())
                )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return latest

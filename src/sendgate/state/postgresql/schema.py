"""The PostgreSQL backend's one schema, and the numbered migrations that bring a database to it.

The same tables as SQLite's (`state/sqlite/schema.py`), in PostgreSQL's types: times are
`double precision` Unix seconds, JSON is kept as text (the row codecs are shared with SQLite),
flags are booleans. `MIGRATIONS` are applied in order when a store opens (and by
`sendgate db migrate`), each in the same transaction as its `schema_version` row, under a
transaction-scoped advisory lock: replicas starting together migrate once. A database at a
newer version than this sendgate's is refused.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from sendgate.state.base import StoreError
from sendgate.state.rows import template_details_migration

__all__ = ["CONSENT_LOCKS", "Connection", "LEDGER_LOCK", "LOCK_NAMESPACE", "MIGRATE_LOCK", "MIGRATIONS", "SCHEMA", "Migration", "migrate", "schema_version"]

# A connection of its own or one from the pool: what every query here takes.
Connection: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"

# pg_advisory_xact_lock(namespace, key) keys: sendgate's namespace, then what the lock is for.
LOCK_NAMESPACE = 0x53474154  # "SGAT"
MIGRATE_LOCK = 1
LEDGER_LOCK = 2  # shared by every consent merge, exclusive for an import (`webhooks.lock_recipient`)
CONSENT_LOCKS = LOCK_NAMESPACE + 3  # "SGAW": the first key of the per-recipient consent locks

# Media ids Meta answered an upload through sendgate with: the file's type and size (migration 3).
_MEDIA_TABLE = """CREATE TABLE IF NOT EXISTS media (
    phone_number_id text NOT NULL, media_id text NOT NULL, mime_type text, declared_type text, size bigint,
    animated boolean, uploaded_at double precision NOT NULL,
    PRIMARY KEY (phone_number_id, media_id))"""

SCHEMA: tuple[str, ...] = (
    # -- consent ledger, catalogs, places, inbound window, sends, decision log, health --
    """CREATE TABLE IF NOT EXISTS consent (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    recipient text NOT NULL,
    status text NOT NULL,
    categories text NOT NULL,
    source text,
    evidence text,
    recorded_at double precision NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS consent_recipient ON consent (recipient, seq)",
    """CREATE TABLE IF NOT EXISTS catalogs (
    waba_id text PRIMARY KEY,
    body text NOT NULL,
    updated_at double precision NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS templates (
    waba_id text NOT NULL,
    name text NOT NULL,
    language text NOT NULL,
    status text NOT NULL,
    category text,
    placeholders text NOT NULL,
    details text,  -- JSON: catalog.template_details (quality, flag, lock, component texts)
    PRIMARY KEY (waba_id, name, language)
)""",
    # Where each known recipient's number is (sendgate.places), kept when the number is learnt of.
    """CREATE TABLE IF NOT EXISTS places (
    recipient text PRIMARY KEY,
    country text,
    timezone text,
    data text NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS inbound (
    phone_number_id text NOT NULL,
    recipient text NOT NULL,
    last_at double precision NOT NULL,
    PRIMARY KEY (phone_number_id, recipient)
)""",
    """CREATE TABLE IF NOT EXISTS sends (
    decision_id text COLLATE "C" PRIMARY KEY,
    phone_number_id text NOT NULL,
    waba_id text,
    recipient text NOT NULL,
    category text,
    sent_at double precision NOT NULL,
    failed boolean NOT NULL DEFAULT false,
    in_window boolean
)""",
    "CREATE INDEX IF NOT EXISTS sends_recipient ON sends (recipient, sent_at)",
    """CREATE TABLE IF NOT EXISTS decisions (
    id text COLLATE "C" PRIMARY KEY,  -- time-ordered: byte order, whatever the locale
    ts double precision NOT NULL,
    endpoint text NOT NULL,
    api_version text NOT NULL,
    account text NOT NULL,
    waba_id text,
    recipient text,
    recipient_key text,
    type text,
    template text,
    category text,
    decision text NOT NULL,
    mode text NOT NULL,
    forwarded boolean NOT NULL,
    reasons text NOT NULL,
    warnings text NOT NULL,
    retry_after integer,
    policy_revision text,
    eval_us double precision,
    upstream_status integer,
    upstream_message_id text,
    upstream_error_code integer,
    upstream_error text,
    content text,
    facts text,
    delivery_status text,
    delivery_at double precision,
    delivery_error text,
    engine_decision_id text,
    -- The store instance (one per process) that wrote the record: `mark_outcome_unknown` leaves
    -- alone the unanswered records of instances still alive.
    owner text
)""",
    "CREATE INDEX IF NOT EXISTS decisions_ts ON decisions (ts)",
    "CREATE INDEX IF NOT EXISTS decisions_decision ON decisions (decision, id)",
    "CREATE INDEX IF NOT EXISTS decisions_account ON decisions (account, id)",
    "CREATE INDEX IF NOT EXISTS decisions_recipient ON decisions (recipient_key, id)",
    "CREATE INDEX IF NOT EXISTS decisions_template ON decisions (template, id)",
    "CREATE INDEX IF NOT EXISTS decisions_rejected ON decisions (id) WHERE decision <> 'allow'",
    "CREATE INDEX IF NOT EXISTS decisions_shadow ON decisions (id) WHERE mode = 'shadow' AND decision IN ('deny', 'defer')",
    # Meta's answer completes a record with an UPDATE of columns no index reads, so PostgreSQL
    # updates it in place (HOT: no index entry, no new page) in the room fillfactor leaves. What
    # the answer's columns would otherwise index has a small table of its own: the message ids
    # Meta gave (for delivery statuses), and the forwarded records still waiting for an answer
    # (for `mark_outcome_unknown`, a handful at any time).
    "ALTER TABLE decisions SET (fillfactor = 70)",
    """CREATE TABLE IF NOT EXISTS message_ids (
    message_id text PRIMARY KEY,
    decision_id text COLLATE "C" NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS message_ids_decision ON message_ids (decision_id)",
    """CREATE TABLE IF NOT EXISTS in_flight (
    decision_id text COLLATE "C" PRIMARY KEY,
    owner text,
    ts double precision NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS decision_rules (
    decision_id text COLLATE "C" NOT NULL,
    rule text NOT NULL,
    PRIMARY KEY (rule, decision_id)
)""",
    "CREATE INDEX IF NOT EXISTS decision_rules_decision ON decision_rules (decision_id)",
    # One row per store instance that `ping` (/readyz) rewrites: proof that a write commits.
    """CREATE TABLE IF NOT EXISTS health (
    owner text PRIMARY KEY,
    probed_at double precision NOT NULL
)""",
    # -- the review trail: append-only --
    """CREATE TABLE IF NOT EXISTS reviews (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    decision_id text COLLATE "C" NOT NULL,
    reviewer text NOT NULL,
    note text NOT NULL,
    reviewed_at double precision NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS reviews_decision ON reviews (decision_id, seq)",
    """CREATE OR REPLACE FUNCTION sendgate_reviews_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the review trail is append-only';
END $$""",
    "DROP TRIGGER IF EXISTS reviews_append_only ON reviews",
    """CREATE TRIGGER reviews_append_only BEFORE UPDATE ON reviews
    FOR EACH ROW EXECUTE FUNCTION sendgate_reviews_append_only()""",
    # The hourly and daily rollup the overview reads.
    """CREATE TABLE IF NOT EXISTS decision_counts (
    span integer NOT NULL,  -- 3600: an hour row, 86400: a day row
    start bigint NOT NULL,  -- Unix seconds, a multiple of span
    dim text NOT NULL,
    key text NOT NULL,
    decision text NOT NULL,
    mode text NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (span, start, dim, key, decision, mode)
)""",
    # -- what webhooks record --
    "CREATE TABLE IF NOT EXISTS webhook_events (key text PRIMARY KEY, seen_at double precision NOT NULL)",
    # The newest opt-out event seen per recipient (whole seconds), appended or not.
    "CREATE TABLE IF NOT EXISTS optout_events (recipient text PRIMARY KEY, at bigint NOT NULL)",
    """CREATE TABLE IF NOT EXISTS entry_points (
    phone_number_id text NOT NULL, recipient text NOT NULL, at double precision NOT NULL, source text,
    PRIMARY KEY (phone_number_id, recipient))""",
    """CREATE TABLE IF NOT EXISTS window_closures (
    phone_number_id text NOT NULL, recipient text NOT NULL, closed_at double precision NOT NULL,
    PRIMARY KEY (phone_number_id, recipient))""",
    """CREATE TABLE IF NOT EXISTS delivery_failures (
    message_id text NOT NULL, code integer NOT NULL, recipient text NOT NULL, phone_number_id text,
    at double precision NOT NULL, PRIMARY KEY (message_id, code))""",
    "CREATE INDEX IF NOT EXISTS delivery_failures_recipient ON delivery_failures (recipient, at)",
    """CREATE TABLE IF NOT EXISTS account_state (
    scope text NOT NULL, id text NOT NULL, field text NOT NULL, value text, at double precision NOT NULL,
    detail text, PRIMARY KEY (scope, id, field))""",
    """CREATE TABLE IF NOT EXISTS phone_numbers (
    phone_number_id text PRIMARY KEY, display_phone_number text, waba_id text, seen_at double precision NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS phone_numbers_display ON phone_numbers (display_phone_number)",
    """CREATE TABLE IF NOT EXISTS template_events (
    waba_id text NOT NULL, template text NOT NULL, field text NOT NULL, at double precision NOT NULL,
    PRIMARY KEY (waba_id, template, field))""",
    """CREATE TABLE IF NOT EXISTS marketing_pauses (
    phone_number_id text PRIMARY KEY, alert text NOT NULL, message text NOT NULL, since double precision NOT NULL)""",
    # -- store instances (one per process): `decisions.owner` names one --
    # Alive while a session holds the advisory lock (OWNER_LOCKS, lock_key) (`postgresql/owner.py`).
    """CREATE TABLE IF NOT EXISTS instances (
    owner text PRIMARY KEY,
    lock_key integer GENERATED ALWAYS AS IDENTITY UNIQUE,
    started_at double precision NOT NULL
)""",
    # -- media uploaded through sendgate (`media.py`), from migration 3 --
    _MEDIA_TABLE,
)


class Migration(NamedTuple):
    version: int
    name: str
    apply: Callable[[Connection], Awaitable[None]]


async def _initial(conn: Connection) -> None:
    for statement in SCHEMA:
        await conn.execute(statement)


async def _template_details(conn: Connection) -> None:
    """templates.details, filled from each stored catalog; statuses that were event names
    (FLAGGED, LOCKED, UNLOCKED, UNARCHIVED) become what the event means (`repair_event_statuses`)."""
    await conn.execute("ALTER TABLE templates ADD COLUMN IF NOT EXISTS details text")
    for waba_id, text in await conn.fetch("SELECT waba_id, body FROM catalogs"):
        repaired, rows = template_details_migration(waba_id, text)
        if repaired is not None:
            await conn.execute("UPDATE catalogs SET body = $1 WHERE waba_id = $2", repaired, waba_id)
        await conn.executemany(
            "UPDATE templates SET status = $1, category = $2, details = $3 WHERE waba_id = $4 AND name = $5 AND language = $6",
            rows,
        )


async def _media(conn: Connection) -> None:
    await conn.execute(_MEDIA_TABLE)


async def _sends_in_window(conn: Connection) -> None:
    """Migration 4: whether each send went inside a window the user opened (see SQLite's); the
    sends of an older database keep NULL, which counts as outside (the safe side)."""
    await conn.execute("ALTER TABLE sends ADD COLUMN IF NOT EXISTS in_window boolean")


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial", _initial),
    Migration(2, "template_details", _template_details),
    Migration(3, "media", _media),
    Migration(4, "sends_in_window", _sends_in_window),
)

_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    "version integer PRIMARY KEY, name text NOT NULL, applied_at double precision NOT NULL)"
)


async def schema_version(conn: Connection) -> int:
    """The latest migration applied to the database (0: none)."""
    if await conn.fetchval("SELECT to_regclass('schema_version')") is None:
        return 0
    return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version"))


async def migrate(conn: Connection) -> int:
    """Apply the migrations the database lacks, in one transaction; returns its version after."""
    latest = MIGRATIONS[-1].version
    async with conn.transaction():
        # Replicas starting together: the second waits here, then finds nothing to do.
        await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", LOCK_NAMESPACE, MIGRATE_LOCK)
        current = await schema_version(conn)
        if current > latest:
            raise StoreError(
                f"the database is at schema version {current}, newer than this sendgate's {latest}: upgrade sendgate"
            )
        await conn.execute(_VERSION_TABLE)
        for migration in MIGRATIONS:
            if migration.version > current:
                await migration.apply(conn)
                await conn.execute(
                    "INSERT INTO schema_version VALUES ($1, $2, $3)", migration.version, migration.name, time.time()
                )
    return latest

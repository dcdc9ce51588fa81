"""What Meta's webhooks tell the gateway, on PostgreSQL: `PostgresStore` mixes `WebhookQueries` in.

What each write promises is the interface's (`state/roles.py`); the rules deciding are
`state/rules.py`'s, as on SQLite. Several processes receive webhooks at once (Meta delivers
to any replica), so every read-decide-write runs in one transaction serialized where two
events could meet: consent events per recipient (a transaction-scoped advisory lock),
template events per catalog (its row, locked), delivery statuses per record (its row,
locked); single-row writes are conditional upserts, which PostgreSQL applies atomically.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import orjson
from cachetools import TTLCache

from sendgate.state.base import ConsentRecord
from sendgate.state.postgresql.database import Database
from sendgate.state.postgresql.schema import CONSENT_LOCKS, LEDGER_LOCK, LOCK_NAMESPACE, Connection
from sendgate.state.rows import consent_from_row, consent_row, template_row_values
from sendgate.state.rules import (
    ACCOUNT_SCOPES,
    CONSENT_ACTIONS,
    account_view,
    apply_template_change,
    delivery_status_advances,
    match_templates,
    merge_consent_event,
    optout_second,
    template_changes,
    template_event_applies,
    template_event_key,
)

__all__ = ["WebhookQueries", "lock_ledger", "lock_recipient"]

_LATEST_CONSENT = (
    "SELECT recipient, status, categories, source, evidence, recorded_at FROM consent"
    " WHERE recipient = $1 ORDER BY seq DESC LIMIT 1"
)
_LATEST_OPT_IN = (
    "SELECT recipient, status, categories, source, evidence, recorded_at FROM consent"
    " WHERE recipient = $1 AND status = 'opted_in' ORDER BY seq DESC LIMIT 1"
)


def _lock_key(what: str) -> int:
    """A stable 32-bit key for `what` (a collision only serializes two unrelated writes)."""
    return int.from_bytes(hashlib.blake2b(what.encode(), digest_size=4).digest(), "big", signed=True)


async def lock_recipient(conn: Connection, recipient: str) -> None:
    """Hold the recipient's consent lock until the transaction ends: whatever appends to a
    recipient's ledger after reading it takes this first, in every process. It comes with the
    ledger's lock, shared, so an import (which takes that one alone, exclusive: an import may
    name more recipients than PostgreSQL's lock table holds) never interleaves with a merge."""
    await conn.execute("SELECT pg_advisory_xact_lock_shared($1, $2)", LOCK_NAMESPACE, LEDGER_LOCK)
    await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", CONSENT_LOCKS, _lock_key(f"consent:{recipient}"))


async def lock_ledger(conn: Connection) -> None:
    """Hold the whole ledger until the transaction ends: no merge runs meanwhile (an import)."""
    await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", LOCK_NAMESPACE, LEDGER_LOCK)


def _rows_changed(status: str) -> int:
    """The row count of a command status such as `INSERT 0 1`, `UPDATE 2`, `DELETE 0`."""
    return int(status.rsplit(" ", 1)[1])


class WebhookQueries:
    """Mixed into `PostgresStore`: `_db`, `_template_cache` and `_account_cache` come from there."""

    _db: Database
    _template_cache: TTLCache[Any, Any]
    _account_cache: TTLCache[tuple[str, str | None, str | None], dict[str, Any]]

    if TYPE_CHECKING:  # PostgresStore's (`Lifecycle.flush`)

        async def flush(self) -> None: ...

    # -- recipients: free entry point, window closures, delivery failures -------------

    async def record_entry_point(self, phone_number_id: str, recipient: str, at: float, source: str | None) -> None:
        await self._db.fetch(
            "INSERT INTO entry_points VALUES ($1, $2, $3, $4) ON CONFLICT (phone_number_id, recipient) DO UPDATE"
            " SET at = excluded.at, source = excluded.source WHERE excluded.at > entry_points.at",
            phone_number_id,
            recipient,
            at,
            source,
        )

    async def close_window(self, phone_number_id: str, recipient: str, at: float) -> None:
        await self._db.fetch(
            "INSERT INTO window_closures VALUES ($1, $2, $3) ON CONFLICT (phone_number_id, recipient)"
            " DO UPDATE SET closed_at = greatest(window_closures.closed_at, excluded.closed_at)",
            phone_number_id,
            recipient,
            at,
        )

    async def record_delivery_failure(
        self, message_id: str, code: int, recipient: str, phone_number_id: str | None, at: float
    ) -> bool:
        inserted = await self._db.fetchval(
            "INSERT INTO delivery_failures VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING true",
            message_id,
            code,
            recipient,
            phone_number_id,
            at,
        )
        return inserted is not None

    # -- decision records: what finally happened to each forwarded message -----------

    async def record_delivery_status(
        self, message_id: str, status: str, at: float, error: str | None
    ) -> tuple[str, str] | None:
        if not delivery_status_advances(None, status):
            return None  # not a status at all

        async def op(conn: Connection) -> tuple[bool, tuple[str, str] | None]:
            # The record's row, locked: two replicas' statuses for one message apply one after the other.
            row = await conn.fetchrow(
                "SELECT d.id, d.account, d.delivery_status FROM message_ids m JOIN decisions d ON d.id = m.decision_id"
                " WHERE m.message_id = $1 LIMIT 1 FOR UPDATE OF d",
                message_id,
            )
            if row is None:
                return False, None
            if not delivery_status_advances(row["delivery_status"], status):
                return True, None
            await conn.execute(
                "UPDATE decisions SET delivery_status = $1, delivery_at = $2, delivery_error = $3 WHERE id = $4",
                status,
                at,
                error,
                row["id"],
            )
            if status == "failed":  # never delivered: the send history's counters leave it out
                await conn.execute("UPDATE sends SET failed = true WHERE decision_id = $1", row["id"])
            return True, (row["id"], row["account"])

        found, changed = await self._db.transaction(op)
        if not found:
            # Meta's answer naming the message may still be queued in this process (`log_upstream`).
            await self.flush()
            found, changed = await self._db.transaction(op)
        return changed

    # -- consent ledger entries from webhooks -----------------------------------------

    async def apply_consent_event(self, key: str, record: ConsentRecord, action: str) -> ConsentRecord | None:
        """Under the recipient's lock (`lock_recipient`): an opt-out and an opt-in for one
        recipient reaching two processes at once are merged one after the other, never both
        against the same old state (which could drop the opt-out)."""
        if action not in CONSENT_ACTIONS:
            raise ValueError(f"unknown consent action {action!r}")

        async def op(conn: Connection) -> ConsentRecord | None:
            await lock_recipient(conn, record.recipient)
            if await conn.fetchval("SELECT 1 FROM webhook_events WHERE key = $1", key) is not None:
                return None
            row = await conn.fetchrow(_LATEST_CONSENT, record.recipient)
            latest = None if row is None else consent_from_row(tuple(row))
            last_opt_in = latest if latest is not None and latest.status == "opted_in" else None
            if last_opt_in is None:
                row = await conn.fetchrow(_LATEST_OPT_IN, record.recipient)
                last_opt_in = None if row is None else consent_from_row(tuple(row))
            optout_at = await conn.fetchval("SELECT at FROM optout_events WHERE recipient = $1", record.recipient)
            merge = merge_consent_event(
                record, action, latest=latest, last_opt_in=last_opt_in, newest_optout_at=optout_at
            )
            if action == "opt_out":
                await conn.execute(
                    "INSERT INTO optout_events VALUES ($1, $2) ON CONFLICT (recipient)"
                    " DO UPDATE SET at = greatest(optout_events.at, excluded.at)",
                    record.recipient,
                    optout_second(record),
                )
            if merge.seen:
                await conn.execute(
                    "INSERT INTO webhook_events VALUES ($1, $2) ON CONFLICT DO NOTHING", key, record.recorded_at
                )
            if merge.append is not None:
                await conn.execute(
                    "INSERT INTO consent (recipient, status, categories, source, evidence, recorded_at)"
                    " VALUES ($1, $2, $3, $4, $5, $6)",
                    *consent_row(merge.append),
                )
            return merge.append

        return await self._db.transaction(op)

    # -- template catalog changes -------------------------------------------------------

    async def update_template(
        self,
        waba_id: str,
        *,
        template_id: str | None,
        name: str | None,
        language: str | None,
        at: float,
        status: str | None = None,
        quality: str | None = None,
        category: str | None = None,
        disable_at: float | None = None,
    ) -> bool | None:
        """Under the catalog's row lock: the catalog is one body per WABA, so two replicas'
        events (for one template, or two of the same WABA) apply one after the other, each
        against the other's result and its `template_events`."""
        changes = template_changes(status, quality, category)
        if not changes:
            return False

        async def op(conn: Connection) -> bool | None:
            body_text = await conn.fetchval("SELECT body FROM catalogs WHERE waba_id = $1 FOR UPDATE", waba_id)
            if body_text is None:
                return None
            body = orjson.loads(body_text)
            matches = match_templates(body.get("data", []), template_id, name, language)
            if not matches:
                return None
            applied = False
            for template in matches:
                key = template_event_key(template)
                for field_name, value in changes.items():
                    seen = await conn.fetchval(
                        "SELECT at FROM template_events WHERE waba_id = $1 AND template = $2 AND field = $3",
                        waba_id,
                        key,
                        field_name,
                    )
                    if not template_event_applies(seen, at):
                        continue
                    await conn.execute(
                        "INSERT INTO template_events VALUES ($1, $2, $3, $4) ON CONFLICT (waba_id, template, field)"
                        " DO UPDATE SET at = excluded.at",
                        waba_id,
                        key,
                        field_name,
                        at,
                    )
                    applied = True
                    apply_template_change(template, field_name, value, at, disable_at)
                await conn.execute(
                    "UPDATE templates SET status = $1, category = $2, details = $3"
                    " WHERE waba_id = $4 AND name = $5 AND language = $6",
                    *template_row_values(template),
                    waba_id,
                    template.get("name"),
                    template.get("language"),
                )
            if applied:
                await conn.execute(
                    "UPDATE catalogs SET body = $1 WHERE waba_id = $2", orjson.dumps(body).decode(), waba_id
                )
            return applied

        result = await self._db.transaction(op)
        self._template_cache.clear()
        return result

    # -- phone numbers and account state -------------------------------------------------

    async def learn_phone_numbers(self, numbers: dict[str, tuple[str | None, str | None]], at: float) -> None:
        # In one order: two processes learning overlapping numbers never deadlock.
        rows = [(pid, display, waba, at) for pid, (display, waba) in sorted(numbers.items())]
        if not rows:
            return

        async def op(conn: Connection) -> None:
            await conn.executemany(
                "INSERT INTO phone_numbers VALUES ($1, $2, $3, $4) ON CONFLICT (phone_number_id) DO UPDATE SET"
                " display_phone_number = coalesce(excluded.display_phone_number, phone_numbers.display_phone_number),"
                " waba_id = coalesce(excluded.waba_id, phone_numbers.waba_id), seen_at = excluded.seen_at",
                rows,
            )

        await self._db.transaction(op)

    async def phone_number_ids(self, display_phone_number: str) -> list[str]:
        rows = await self._db.fetch(
            "SELECT phone_number_id FROM phone_numbers WHERE display_phone_number = $1 ORDER BY phone_number_id",
            display_phone_number,
        )
        return [row[0] for row in rows]

    async def set_account_state(
        self, scope: str, key: str, values: dict[str, str | None], at: float, detail: dict[str, Any] | None = None
    ) -> bool:
        if scope not in ACCOUNT_SCOPES:
            raise ValueError("scope must be 'phone', 'waba' or 'portfolio'")
        if not values:
            return False
        encoded = None if detail is None else orjson.dumps(detail).decode()
        names = sorted(values)
        # One conditional upsert: each field's row changes only if `at` is not older, decided on
        # the row as locked, whichever process wrote it last.
        changed = await self._db.fetch(
            "INSERT INTO account_state SELECT $1::text, $2::text, f.field, f.value, $5::double precision, $6::text"
            " FROM unnest($3::text[], $4::text[]) AS f (field, value)"
            " ON CONFLICT (scope, id, field) DO UPDATE"
            " SET value = excluded.value, at = excluded.at, detail = excluded.detail"
            " WHERE account_state.at <= excluded.at RETURNING true",
            scope,
            key,
            names,
            [values[name] for name in names],
            at,
            encoded,
        )
        self._account_cache.clear()
        return bool(changed)

    async def set_marketing_pause(self, phone_number_id: str, alert: str, message: str, since: float) -> bool:
        created = await self._db.fetchval(
            "INSERT INTO marketing_pauses VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true",
            phone_number_id,
            alert,
            message,
            since,
        )
        self._account_cache.clear()
        return created is not None

    async def clear_marketing_pause(self, phone_number_id: str) -> bool:
        cleared = await self._db.fetchval(
            "DELETE FROM marketing_pauses WHERE phone_number_id = $1 RETURNING true", phone_number_id
        )
        self._account_cache.clear()
        return cleared is not None

    async def marketing_pauses(self) -> dict[str, dict[str, Any]]:
        rows = await self._db.fetch("SELECT phone_number_id, alert, message, since FROM marketing_pauses")
        return {pid: {"alert": alert, "message": message, "since": since} for pid, alert, message, since in rows}

    async def account_state(
        self, phone_number_id: str, waba_id: str | None, portfolio: str | None = None
    ) -> dict[str, Any]:
        key = (phone_number_id, waba_id, portfolio)
        cached = self._account_cache.get(key)
        if cached is not None:
            return cached
        # One statement: the account fields and the pause as of one snapshot.
        rows = await self._db.fetch(
            "SELECT scope, field, value, NULL::double precision FROM account_state"
            " WHERE (scope = 'phone' AND id = $1) OR (scope = 'waba' AND id = $2) OR (scope = 'portfolio' AND id = $3)"
            " UNION ALL SELECT 'pause', alert, message, since FROM marketing_pauses WHERE phone_number_id = $1",
            phone_number_id,
            waba_id or "",
            portfolio or "",
        )
        fields = {(scope, name): value for scope, name, value, _ in rows if scope != "pause"}
        pause = next(({"alert": r[1], "message": r[2], "since": r[3]} for r in rows if r[0] == "pause"), None)
        state = account_view(fields, pause)
        self._account_cache[key] = state
        return state

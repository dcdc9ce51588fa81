"""What Meta's webhooks tell the gateway, on SQLite: `SQLiteStore` mixes `WebhookQueries` in.

What each write promises (idempotence under redelivery, ordering) is the interface's:
`state/roles.py` (`WebhookState`, `AccountState`, `ConsentLedger.apply_consent_event`,
`TemplateCatalog.update_template`). Each runs as one transaction on the writer.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from cachetools import TTLCache

from sendgate.state.base import ConsentRecord
from sendgate.state.rows import template_row_values
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

__all__ = ["WebhookQueries"]

T = TypeVar("T")


def _latest_consent(conn: sqlite3.Connection, recipient: str, status: str | None = None) -> ConsentRecord | None:
    where = "recipient = ?" + (" AND status = ?" if status else "")
    args = (recipient, status) if status else (recipient,)
    row = conn.execute(
        "SELECT recipient, status, categories, source, evidence, recorded_at FROM consent"
        f" WHERE {where} ORDER BY seq DESC LIMIT 1",
        args,
    ).fetchone()
    return None if row is None else ConsentRecord(row[0], row[1], tuple(orjson.loads(row[2])), *row[3:])


class WebhookQueries:
    """Mixed into `SQLiteStore`: `_read`, `_write` and `_template_cache` come from there."""

    _read: sqlite3.Connection

    if TYPE_CHECKING:  # SQLiteStore's, typed per operation

        async def _write(self, op: Callable[[sqlite3.Connection], T]) -> T: ...

    _template_cache: TTLCache[Any, Any]
    _account_cache: TTLCache[tuple[str, str | None, str | None], dict[str, Any]]

    def _account_cache_get(self) -> TTLCache[tuple[str, str | None, str | None], dict[str, Any]]:
        cache = self.__dict__.get("_account_cache")
        if cache is None:
            cache = TTLCache(maxsize=1024, ttl=5.0)
            self._account_cache = cache
        return cache

    # -- recipients: free entry point, window closures, delivery failures -------------

    async def record_entry_point(self, phone_number_id: str, recipient: str, at: float, source: str | None) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO entry_points VALUES (?, ?, ?, ?) ON CONFLICT (phone_number_id, recipient) DO UPDATE"
                " SET at = excluded.at, source = excluded.source WHERE excluded.at > entry_points.at",
                (phone_number_id, recipient, at, source),
            )

        await self._write(op)

    async def close_window(self, phone_number_id: str, recipient: str, at: float) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO window_closures VALUES (?, ?, ?) ON CONFLICT (phone_number_id, recipient)"
                " DO UPDATE SET closed_at = max(closed_at, excluded.closed_at)",
                (phone_number_id, recipient, at),
            )

        await self._write(op)

    async def record_delivery_failure(
        self, message_id: str, code: int, recipient: str, phone_number_id: str | None, at: float
    ) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO delivery_failures VALUES (?, ?, ?, ?, ?)",
                (message_id, code, recipient, phone_number_id, at),
            )
            return cursor.rowcount > 0

        return bool(await self._write(op))

    # -- decision records: what finally happened to each forwarded message -----------

    async def record_delivery_status(
        self, message_id: str, status: str, at: float, error: str | None
    ) -> tuple[str, str] | None:
        if not delivery_status_advances(None, status):
            return None  # not a status at all

        def op(conn: sqlite3.Connection) -> tuple[str, str] | None:
            row = conn.execute(
                "SELECT id, account, delivery_status FROM decisions WHERE upstream_message_id = ? LIMIT 1",
                (message_id,),
            ).fetchone()
            if row is None or not delivery_status_advances(row[2], status):
                return None
            conn.execute(
                "UPDATE decisions SET delivery_status = ?, delivery_at = ?, delivery_error = ? WHERE id = ?",
                (status, at, error, row[0]),
            )
            if status == "failed":  # never delivered: the send history's counters leave it out
                conn.execute("UPDATE sends SET failed = 1 WHERE decision_id = ?", (row[0],))
            return row[0], row[1]

        return await self._write(op)

    # -- consent ledger entries from webhooks -----------------------------------------

    async def apply_consent_event(self, key: str, record: ConsentRecord, action: str) -> ConsentRecord | None:
        """`optout_events` holds the newest opt-out event per recipient (whole seconds), appended
        or not; `webhook_events` the keys seen. Both change in the transaction of the append."""
        if action not in CONSENT_ACTIONS:
            raise ValueError(f"unknown consent action {action!r}")

        def op(conn: sqlite3.Connection) -> ConsentRecord | None:
            if conn.execute("SELECT 1 FROM webhook_events WHERE key = ?", (key,)).fetchone() is not None:
                return None
            latest = _latest_consent(conn, record.recipient)
            last_opt_in = latest if latest is not None and latest.status == "opted_in" else None
            last_opt_in = last_opt_in or _latest_consent(conn, record.recipient, "opted_in")
            optout = conn.execute("SELECT at FROM optout_events WHERE recipient = ?", (record.recipient,)).fetchone()
            merge = merge_consent_event(
                record, action, latest=latest, last_opt_in=last_opt_in, newest_optout_at=optout[0] if optout else None
            )
            if action == "opt_out":
                conn.execute(
                    "INSERT INTO optout_events VALUES (?, ?) ON CONFLICT (recipient)"
                    " DO UPDATE SET at = max(at, excluded.at)",
                    (record.recipient, optout_second(record)),
                )
            if merge.seen:
                conn.execute("INSERT INTO webhook_events VALUES (?, ?)", (key, record.recorded_at))
            new = merge.append
            if new is not None:
                conn.execute(
                    "INSERT INTO consent (recipient, status, categories, source, evidence, recorded_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        new.recipient,
                        new.status,
                        orjson.dumps(list(new.categories)).decode(),
                        new.source,
                        new.evidence,
                        new.recorded_at,
                    ),
                )
            return new

        return await self._write(op)

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
        changes = template_changes(status, quality, category)
        if not changes:
            return False

        def op(conn: sqlite3.Connection) -> bool | None:
            row = conn.execute("SELECT body FROM catalogs WHERE waba_id = ?", (waba_id,)).fetchone()
            if row is None:
                return None
            body = orjson.loads(row[0])
            templates = body.get("data", [])
            matches = match_templates(templates, template_id, name, language)
            if not matches:
                return None
            applied = False
            for template in matches:
                key = template_event_key(template)
                for field_name, value in changes.items():
                    seen = conn.execute(
                        "SELECT at FROM template_events WHERE waba_id = ? AND template = ? AND field = ?",
                        (waba_id, key, field_name),
                    ).fetchone()
                    if not template_event_applies(seen[0] if seen else None, at):
                        continue
                    conn.execute(
                        "INSERT OR REPLACE INTO template_events VALUES (?, ?, ?, ?)", (waba_id, key, field_name, at)
                    )
                    applied = True
                    apply_template_change(template, field_name, value, at, disable_at)
                conn.execute(
                    "UPDATE templates SET status = ?, category = ?, details = ?"
                    " WHERE waba_id = ? AND name = ? AND language = ?",
                    (*template_row_values(template), waba_id, template.get("name"), template.get("language")),
                )
            if applied:
                conn.execute(
                    "UPDATE catalogs SET body = ? WHERE waba_id = ?", (orjson.dumps(body).decode(), waba_id)
                )
            return applied

        result = await self._write(op)
        self._template_cache.clear()
        return result

    # -- phone numbers and account state -------------------------------------------------

    async def learn_phone_numbers(self, numbers: dict[str, tuple[str | None, str | None]], at: float) -> None:
        rows = [(pid, display, waba, at) for pid, (display, waba) in numbers.items()]
        if not rows:
            return

        def op(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO phone_numbers VALUES (?, ?, ?, ?) ON CONFLICT (phone_number_id) DO UPDATE SET"
                " display_phone_number = coalesce(excluded.display_phone_number, display_phone_number),"
                " waba_id = coalesce(excluded.waba_id, waba_id), seen_at = excluded.seen_at",
                rows,
            )

        await self._write(op)

    async def phone_number_ids(self, display_phone_number: str) -> list[str]:
        rows = self._read.execute(
            "SELECT phone_number_id FROM phone_numbers WHERE display_phone_number = ?", (display_phone_number,)
        ).fetchall()
        return [row[0] for row in rows]

    async def set_account_state(
        self, scope: str, key: str, values: dict[str, str | None], at: float, detail: dict[str, Any] | None = None
    ) -> bool:
        if scope not in ACCOUNT_SCOPES:
            raise ValueError("scope must be 'phone', 'waba' or 'portfolio'")
        encoded = None if detail is None else orjson.dumps(detail).decode()

        def op(conn: sqlite3.Connection) -> bool:
            changed = False
            for field_name, value in values.items():
                cursor = conn.execute(
                    "INSERT INTO account_state VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (scope, id, field) DO UPDATE"
                    " SET value = excluded.value, at = excluded.at, detail = excluded.detail"
                    " WHERE excluded.at >= account_state.at",
                    (scope, key, field_name, value, at, encoded),
                )
                changed = changed or cursor.rowcount > 0
            return changed

        changed = bool(await self._write(op))
        self._account_cache_get().clear()
        return changed

    async def set_marketing_pause(self, phone_number_id: str, alert: str, message: str, since: float) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO marketing_pauses VALUES (?, ?, ?, ?)", (phone_number_id, alert, message, since)
            )
            return cursor.rowcount > 0

        created = bool(await self._write(op))
        self._account_cache_get().clear()
        return created

    async def clear_marketing_pause(self, phone_number_id: str) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            return conn.execute("DELETE FROM marketing_pauses WHERE phone_number_id = ?", (phone_number_id,)).rowcount > 0

        cleared = bool(await self._write(op))
        self._account_cache_get().clear()
        return cleared

    async def marketing_pauses(self) -> dict[str, dict[str, Any]]:
        rows = self._read.execute("SELECT phone_number_id, alert, message, since FROM marketing_pauses").fetchall()
        return {pid: {"alert": alert, "message": message, "since": since} for pid, alert, message, since in rows}

    async def account_state(
        self, phone_number_id: str, waba_id: str | None, portfolio: str | None = None
    ) -> dict[str, Any]:
        cache = self._account_cache_get()
        key = (phone_number_id, waba_id, portfolio)
        cached = cache.get(key)
        if cached is not None:
            return cached
        rows = self._read.execute(
            "SELECT scope, field, value FROM account_state WHERE (scope = 'phone' AND id = ?) OR (scope = 'waba' AND id = ?)"
            " OR (scope = 'portfolio' AND id = ?)",
            (phone_number_id, waba_id or "", portfolio or ""),
        ).fetchall()
        fields: dict[tuple[str, str], str | None] = {(scope, name): value for scope, name, value in rows}
        pause = self._read.execute(
            "SELECT alert, message, since FROM marketing_pauses WHERE phone_number_id = ?", (phone_number_id,)
        ).fetchone()
        state = account_view(fields, None if pause is None else {"alert": pause[0], "message": pause[1], "since": pause[2]})
        cache[key] = state
        return state

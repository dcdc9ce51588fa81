"""How records become table rows and back, the same for every backend (the tables are alike).

JSON values (reasons, warnings, content, facts, consent categories) are stored as JSON text;
`forwarded` as a boolean (SQLite keeps it as 0/1). The decision id is time-ordered (`id_floor`),
and the hourly and daily rollup rows a record adds are `count_rows`. A catalog's `templates`
rows are `template_rows` (read back by `template_facts_from_rows`); `places` rows are `place_rows`.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import orjson

from sendgate.ids import crockford
from sendgate.places import PLACE_DATA, recipient_place
from sendgate.state.base import ConsentRecord, DecisionCount, DecisionRecord, InvalidRecord, TemplateFacts
from sendgate.state.catalog import count_placeholders, effective_status, template_details
from sendgate.state.rules import count_keys, repair_event_statuses

__all__ = [
    "COPIED_TABLES",
    "DAY",
    "DECISION_COLUMNS",
    "HOUR",
    "CountPlan",
    "consent_from_row",
    "consent_row",
    "count_plan",
    "count_rows",
    "counts_from",
    "decision_from_row",
    "decision_row",
    "id_floor",
    "place_rows",
    "rollup_rows",
    "template_details_migration",
    "template_facts_from_rows",
    "template_row_values",
    "template_rows",
]

HOUR = 3600
DAY = 86400

DECISION_COLUMNS = (
    "id", "ts", "endpoint", "api_version", "account", "waba_id", "recipient", "recipient_key", "type",
    "template", "category", "decision", "mode", "forwarded", "reasons", "warnings", "retry_after",
    "policy_revision", "eval_us", "upstream_status", "upstream_message_id", "upstream_error_code",
    "upstream_error", "content", "facts", "delivery_status", "delivery_at", "delivery_error", "engine_decision_id",
)  # fmt: skip

# What `sendgate db copy` moves, table by table, in this order and with these columns: the whole
# state but each backend's own bookkeeping (schema version, health probes, live instances).
COPIED_TABLES: dict[str, tuple[str, ...]] = {
    "consent": ("seq", "recipient", "status", "categories", "source", "evidence", "recorded_at"),
    "catalogs": ("waba_id", "body", "updated_at"),
    "templates": ("waba_id", "name", "language", "status", "category", "placeholders", "details"),
    "places": ("recipient", "country", "timezone", "data"),
    "inbound": ("phone_number_id", "recipient", "last_at"),
    "sends": ("decision_id", "phone_number_id", "waba_id", "recipient", "category", "sent_at", "failed", "in_window"),
    "decisions": DECISION_COLUMNS,
    "decision_rules": ("decision_id", "rule"),
    "decision_counts": ("span", "start", "dim", "key", "decision", "mode", "n"),
    "reviews": ("seq", "decision_id", "reviewer", "note", "reviewed_at"),
    "webhook_events": ("key", "seen_at"),
    "optout_events": ("recipient", "at"),
    "entry_points": ("phone_number_id", "recipient", "at", "source"),
    "window_closures": ("phone_number_id", "recipient", "closed_at"),
    "delivery_failures": ("message_id", "code", "recipient", "phone_number_id", "at"),
    "account_state": ("scope", "id", "field", "value", "at", "detail"),
    "phone_numbers": ("phone_number_id", "display_phone_number", "waba_id", "seen_at"),
    "template_events": ("waba_id", "template", "field", "at"),
    "marketing_pauses": ("phone_number_id", "alert", "message", "since"),
    "media": ("phone_number_id", "media_id", "mime_type", "declared_type", "size", "animated", "uploaded_at"),
}


def id_floor(ts: float) -> str:
    """The smallest decision id issued at or after `ts` (ids are never earlier than their record)."""
    millis = min(max(int(math.floor(ts * 1000)), 0), (1 << 48) - 1)
    return crockford(millis, 10) + "0" * 16


def count_rows(record: DecisionRecord, rules: Iterable[str]) -> list[tuple[Any, ...]]:
    """The rollup keys one new decision record adds 1 to: (span, start, dim, key, decision, mode),
    its hour row and its day row per key."""
    return rollup_rows(record.timestamp, record.decision, record.mode, record.account, record.template, rules)


def rollup_rows(
    ts: float, decision: str, mode: str, account: str, template: str | None, rules: Iterable[str]
) -> list[tuple[Any, ...]]:
    """`count_rows` from a record's columns: what pruning it takes off again."""
    hour = int(ts // HOUR) * HOUR
    day = int(ts // DAY) * DAY
    keys = count_keys(decision, account, template, rules)
    return [(span, start, dim, key, decision, mode) for span, start in ((HOUR, hour), (DAY, day))
            for dim, key in keys]  # fmt: skip


class CountPlan(NamedTuple):
    """Where exact counts of [since, until) come from: rollup rows (span, first start, end) for the
    whole days and whole hours inside it, the records themselves for the partial hours at its ends."""

    rollups: list[tuple[int, int, int]]
    records: list[tuple[float, float]]


def count_plan(since: float, until: float, bucket: int | None) -> CountPlan:
    """How `DecisionLog.decision_counts` reads a range: day rows only where `bucket` is whole days."""
    if bucket is not None and (bucket <= 0 or bucket % HOUR):
        raise InvalidRecord("bucket must be a whole number of hours, in seconds")
    if until <= since:
        return CountPlan([], [])
    first_hour = math.ceil(since / HOUR) * HOUR
    last_hour = int(until // HOUR) * HOUR
    if first_hour >= last_hour:
        return CountPlan([], [(since, until)])
    first_day = math.ceil(first_hour / DAY) * DAY
    last_day = last_hour // DAY * DAY
    if (bucket is None or bucket % DAY == 0) and first_day < last_day:
        spans = [(HOUR, first_hour, first_day), (DAY, first_day, last_day), (HOUR, last_day, last_hour)]
    else:
        spans = [(HOUR, first_hour, last_hour)]
    edges = [(since, first_hour), (last_hour, until)]
    return CountPlan([s for s in spans if s[1] < s[2]], [e for e in edges if e[0] < e[1]])


def counts_from(totals: Mapping[tuple[Any, ...], int]) -> list[DecisionCount]:
    """The `DecisionCount`s of totals keyed (bucket, dimension, key, decision, mode), by bucket,
    dimension and key."""
    return [
        DecisionCount(bucket=b, dimension=dim, key=key, decision=decision, mode=mode, count=n)
        for (b, dim, key, decision, mode), n in sorted(totals.items(), key=lambda item: item[0][:3])
        if n
    ]


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def consent_row(r: ConsentRecord) -> tuple[Any, ...]:
    """(recipient, status, categories, source, evidence, recorded_at)."""
    return (r.recipient, r.status, orjson.dumps(list(r.categories)).decode(), r.source, r.evidence, r.recorded_at)


def consent_from_row(row: Sequence[Any]) -> ConsentRecord:
    return ConsentRecord(row[0], row[1], tuple(orjson.loads(row[2])), row[3], row[4], row[5])


def decision_row(r: DecisionRecord) -> tuple[Any, ...]:
    """The values of `DECISION_COLUMNS`, in order."""
    return (
        r.id, r.timestamp, r.endpoint, r.api_version, r.account, r.waba_id, r.recipient, r.recipient_key, r.type,
        r.template, r.category, r.decision, r.mode, r.forwarded, orjson.dumps(r.reasons).decode(),
        orjson.dumps(r.warnings).decode(), r.retry_after, r.policy_revision, r.eval_us, r.upstream_status,
        r.upstream_message_id, r.upstream_error_code, r.upstream_error, _json(r.content), _json(r.facts),
        r.delivery_status, r.delivery_at, r.delivery_error, r.engine_decision_id,
    )  # fmt: skip


def decision_from_row(row: Sequence[Any] | Mapping[str, Any]) -> DecisionRecord:
    """A record from the values of `DECISION_COLUMNS` (a sequence in order, or a mapping by name)."""
    values = row if isinstance(row, Mapping) else dict(zip(DECISION_COLUMNS, row, strict=True))
    return DecisionRecord(
        id=values["id"],
        timestamp=values["ts"],
        endpoint=values["endpoint"],
        api_version=values["api_version"],
        account=values["account"],
        waba_id=values["waba_id"],
        recipient=values["recipient"],
        type=values["type"],
        template=values["template"],
        category=values["category"],
        decision=values["decision"],
        mode=values["mode"],
        forwarded=bool(values["forwarded"]),
        reasons=orjson.loads(values["reasons"]),
        warnings=orjson.loads(values["warnings"]),
        retry_after=values["retry_after"],
        policy_revision=values["policy_revision"],
        eval_us=values["eval_us"],
        upstream_status=values["upstream_status"],
        upstream_message_id=values["upstream_message_id"],
        upstream_error_code=values["upstream_error_code"],
        upstream_error=values["upstream_error"],
        content=None if values["content"] is None else orjson.loads(values["content"]),
        recipient_key=values["recipient_key"],
        facts=None if values["facts"] is None else orjson.loads(values["facts"]),
        delivery_status=values["delivery_status"],
        delivery_at=values["delivery_at"],
        delivery_error=values["delivery_error"],
        engine_decision_id=values["engine_decision_id"],
    )


def template_row_values(template: dict[str, Any]) -> tuple[str, str | None, str]:
    """(status, category, details) of one catalog entry's `templates` row: the status as the
    policies read it (`catalog.effective_status`), the category upper case, the details as JSON."""
    category = str(template["category"]).upper() if template.get("category") else None
    return effective_status(template), category, orjson.dumps(template_details(template)).decode()


def template_details_migration(waba_id: str, catalog: str) -> tuple[str | None, list[tuple[Any, ...]]]:
    """Migration 2 for one stored catalog (JSON): the catalog again if statuses that were event
    names (FLAGGED, LOCKED, UNLOCKED, UNARCHIVED) had to become what the event means
    (`rules.repair_event_statuses`), else None; and each template's (status, category, details,
    waba_id, name, language), to update its `templates` row by."""
    body = orjson.loads(catalog)
    templates = [t for t in body.get("data", []) if isinstance(t, dict)]
    repaired = orjson.dumps(body).decode() if repair_event_statuses(templates) else None
    return repaired, [(*template_row_values(t), waba_id, t.get("name"), t.get("language")) for t in templates]


def template_rows(waba_id: str, templates: Iterable[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """`templates` rows of a checked catalog (`catalog.validate_catalog`): (waba_id, name, language,
    status, category, placeholders, details), placeholder counts and details as JSON."""
    rows = []
    for t in templates:
        status, category, details = template_row_values(t)
        rows.append((waba_id, t["name"], t["language"], status, category,
                     orjson.dumps(count_placeholders(t)).decode(), details))  # fmt: skip
    return rows


def template_facts_from_rows(rows: Sequence[Sequence[Any]], language: str) -> TemplateFacts:
    """What the policy input says of one template, from its name's (language, status, category,
    placeholders, details) rows in the WABA's catalog."""
    match = next((r for r in rows if r[0] == language), None)
    details = orjson.loads(match[4]) if match and match[4] else {}
    return TemplateFacts(
        found=bool(rows),
        language_found=match is not None,
        languages=sorted(r[0] for r in rows),
        status=match[1] if match else None,
        category=match[2] if match else None,
        placeholders=orjson.loads(match[3]) if match else {},
        quality=details.get("quality"),
        flagged=bool(details.get("flagged")),
        flagged_until=details.get("flagged_until"),
        locked=bool(details.get("locked")),
        parameter_format=details.get("parameter_format"),
        components=details.get("components"),
    )


PlaceRow = tuple[str, str | None, str | None, str]


def _place(recipients: list[str]) -> list[PlaceRow]:
    return [(r, *recipient_place(r), PLACE_DATA) for r in recipients]


async def place_rows(recipients: Iterable[str]) -> list[PlaceRow]:
    """`places` rows (recipient, country, time zone, `PLACE_DATA`) for numbers not yet stored.

    Placing a number takes tens of microseconds of Python: many (a large consent import) are
    placed on a worker thread, so the event loop keeps serving sends meanwhile.
    """
    missing = sorted(recipients)
    if len(missing) <= 16:
        return _place(missing)
    return await asyncio.get_running_loop().run_in_executor(None, _place, missing)

"""Parsing admin input shared by the HTTP API and the CLI: consent records and log filters."""

from __future__ import annotations

import csv
import datetime as dt
import io
import time
from collections.abc import Mapping
from typing import Any

import orjson

from sendgate.gateway.recorder import recipient_key
from sendgate.messages import normalize_recipient
from sendgate.state import DECISION_FILTERS, ConsentRecord, DecisionQuery, InvalidRecord

__all__ = ["FILTERS", "consent_from_json", "decision_query", "parse_consent_import", "parse_reviewed", "parse_time"]

DECISIONS = DECISION_FILTERS  # a recorded decision, or `rejected` / `shadow`
MAX_LIMIT = 1000
# The log filters every view shares (admin API, review pages, CLI), besides the paging ones.
FILTERS = ("decision", "rule", "template", "recipient", "account", "since", "until", "reviewed")


def consent_from_json(recipient: str, value: Any, now: float | None = None) -> ConsentRecord:
    if not isinstance(value, dict):
        raise InvalidRecord("consent must be a JSON object")
    categories = value.get("categories", [])
    if isinstance(categories, str):  # CSV cells: "marketing;utility" or "marketing utility"
        categories = [c for c in categories.replace(";", " ").replace(",", " ").split() if c]
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        raise InvalidRecord("categories must be a list of strings")
    for key in ("status", "source", "evidence"):
        if value.get(key) is not None and not isinstance(value[key], str):
            raise InvalidRecord(f"{key} must be a string")
    recorded_at = value.get("recorded_at")
    return ConsentRecord(
        recipient=normalize_recipient(recipient),
        status=str(value.get("status", "")),
        categories=tuple(dict.fromkeys(categories)),
        source=value.get("source") or None,
        evidence=value.get("evidence") or None,
        recorded_at=parse_time(recorded_at) if recorded_at not in (None, "") else (now or time.time()),
    )


def parse_consent_import(text: str) -> list[ConsentRecord]:
    """CSV with a header row, or JSON lines; every record needs `recipient`. All or nothing."""
    stripped = text.lstrip()
    if not stripped:
        raise InvalidRecord("nothing to import")
    rows: list[tuple[int, Any]]
    if stripped.startswith("{"):
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append((number, orjson.loads(line)))
                except orjson.JSONDecodeError as exc:
                    raise InvalidRecord(f"line {number}: not valid JSON: {exc}") from exc
    else:
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames or "recipient" not in reader.fieldnames:
            raise InvalidRecord("CSV needs a header row with a recipient column")
        rows = [(number, row) for number, row in enumerate(reader, 2)]
    now = time.time()
    records = []
    for number, row in rows:
        if not isinstance(row, dict) or not isinstance(row.get("recipient"), str) or not row["recipient"].strip():
            raise InvalidRecord(f"line {number}: recipient is required")
        try:
            records.append(consent_from_json(row["recipient"], row, now))
        except InvalidRecord as exc:
            raise InvalidRecord(f"line {number}: {exc}") from exc
    return records


def parse_time(value: Any) -> float:
    """Unix seconds, or an ISO 8601 time (UTC unless it says otherwise)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise InvalidRecord(f"not a time: {value!r} (use Unix seconds or ISO 8601)") from exc
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.timezone.utc)
        return parsed.timestamp()
    raise InvalidRecord(f"not a time: {value!r}")


def decision_query(params: Mapping[str, str]) -> DecisionQuery:
    known = {*FILTERS, "limit", "before", "after"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise InvalidRecord(f"unknown filters: {', '.join(unknown)}")
    decision = params.get("decision")
    if decision is not None and decision not in DECISIONS:
        raise InvalidRecord(f"decision must be one of {sorted(DECISIONS)}")
    try:
        limit = int(params.get("limit", 50))
    except ValueError as exc:
        raise InvalidRecord("limit must be an integer") from exc
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRecord(f"limit must be between 1 and {MAX_LIMIT}")
    recipient = params.get("recipient")
    return DecisionQuery(
        decision=decision,
        rule=params.get("rule"),
        recipient_key=recipient_key(normalize_recipient(recipient)) if recipient else None,
        account=params.get("account"),
        since=parse_time(params["since"]) if "since" in params else None,
        until=parse_time(params["until"]) if "until" in params else None,
        before_id=params.get("before"),
        limit=limit,
        template=params.get("template"),
        reviewed=parse_reviewed(params.get("reviewed")),
        after_id=params.get("after"),
    )


def parse_reviewed(value: str | None) -> bool | None:
    """`reviewed` filter: yes/true/1/reviewed, no/false/0/unreviewed, or empty/any for both."""
    if value is None or value.strip().lower() in ("", "any", "all"):
        return None
    lowered = value.strip().lower()
    if lowered in ("yes", "true", "1", "reviewed"):
        return True
    if lowered in ("no", "false", "0", "unreviewed"):
        return False
    raise InvalidRecord(f"reviewed must be yes or no, got {value!r}")

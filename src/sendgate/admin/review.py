"""What reviewers see of the decision log, shared by the review pages, the CLI and the exports.

One place decides how a record is shown: masked when `log.mask_recipients` is on (also records
logged before it was turned on, by the rule the recorder masks with: sendgate/masking.py), account
names from the config, times in UTC, and the flat row of the list, CSV export and terminal table.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from sendgate.config import Config
from sendgate.masking import shown_record
from sendgate.state import DecisionCount, DecisionLog, DecisionQuery, DecisionRecord, ReviewRecord, ReviewTrail

__all__ = [
    "CSV_COLUMNS",
    "REJECTED_DECISIONS",
    "ReviewedLog",
    "Summary",
    "ReviewView",
    "csv_text",
    "fmt_time",
    "iter_decisions",
    "rule_series",
    "rules_of",
    "summarize",
]

REJECTED_DECISIONS = ("deny", "defer", "invalid", "error")
CSV_COLUMNS = (
    "id", "time", "decision", "mode", "forwarded", "account", "account_name", "waba_id", "recipient", "type",
    "template", "category", "rules", "reasons", "retry_after", "policy_revision", "upstream_status",
    "upstream_message_id", "upstream_error_code", "upstream_error", "delivery_status", "reviewed",
    "reviewed_by", "reviewed_at", "review_note",
)  # fmt: skip
_EXPORT_PAGE = 500


class ReviewedLog(DecisionLog, ReviewTrail, Protocol):
    """What reviewing reads and writes: the decision log and its review trail."""


def fmt_time(ts: float | None, seconds: bool = True) -> str:
    """UTC, ISO-like and sortable: `2026-11-24 22:00:00`."""
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def fmt_duration(seconds: float) -> str:
    seconds = abs(seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


class ReviewView:
    """Presentation of decision records under one configuration."""

    def __init__(self, config: Config) -> None:
        self.mask = config.log.mask_recipients
        self._accounts = {a.phone_number_id: a for a in config.accounts}

    # -- single values --------------------------------------------------------------

    def account_name(self, account: str) -> str | None:
        known = self._accounts.get(account)
        return known.name if known else None

    def account_label(self, account: str) -> str:
        name = self.account_name(account)
        return f"{name} ({account})" if name else account

    @property
    def account_names(self) -> dict[str, str | None]:
        return {a: acc.name for a, acc in self._accounts.items()}

    # -- records --------------------------------------------------------------------

    def shown(self, record: DecisionRecord) -> DecisionRecord:
        """The record as the log should show it: masked when masking is on, also if logged before it was."""
        return shown_record(record, self.mask)

    def record_json(self, record: DecisionRecord, reviews: list[ReviewRecord] | None = None) -> dict[str, Any]:
        """One record for JSON lines and `log show --json`: the admin API's shape plus its review trail."""
        out = self.shown(record).as_json()
        out["account_name"] = self.account_name(record.account)
        out["reviews"] = [r.as_json() for r in reviews or []]
        return out

    def row(self, record: DecisionRecord, reviews: list[ReviewRecord] | None = None) -> dict[str, Any]:
        """The flat row of the list page, the terminal table and the CSV export."""
        last = reviews[-1] if reviews else None
        record = self.shown(record)
        return {
            "id": record.id,
            "time": fmt_time(record.timestamp),
            "decision": record.decision,
            "mode": record.mode,
            "forwarded": record.forwarded,
            "outcome_unknown": record.outcome_unknown,  # forwarded; Meta's answer never recorded
            "account": record.account,
            "account_name": self.account_name(record.account) or "",
            "waba_id": record.waba_id or "",
            "recipient": record.recipient or "",
            "type": record.type or "",
            "template": record.template or "",
            "category": record.category or "",
            "rules": ";".join(rules_of(record)),
            "reasons": " | ".join(str(r.get("message", "")) for r in record.reasons if isinstance(r, dict)),
            "retry_after": "" if record.retry_after is None else record.retry_after,
            "policy_revision": record.policy_revision or "",
            "upstream_status": "" if record.upstream_status is None else record.upstream_status,
            "upstream_message_id": record.upstream_message_id or "",
            "upstream_error_code": "" if record.upstream_error_code is None else record.upstream_error_code,
            "upstream_error": record.upstream_error or "",
            "delivery_status": record.delivery_status or "",
            "reviewed": bool(reviews),
            "reviewed_by": last.reviewer if last else "",
            "reviewed_at": fmt_time(last.reviewed_at) if last else "",
            "review_note": last.note if last else "",
        }


def rules_of(record: DecisionRecord) -> list[str]:
    return [str(r.get("rule", "?")) for r in record.reasons if isinstance(r, dict)]


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    """A CSV cell a spreadsheet will not run: text starting like a formula gets a leading quote."""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = "" if value is None else str(value)
    if text.startswith(_FORMULA_START) and not _is_number(text):
        return "'" + text
    return text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def csv_text(rows: Iterable[Mapping[str, Any]], header: bool = True) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    if header:
        writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow([_cell(row.get(column)) for column in CSV_COLUMNS])
    return buffer.getvalue()


async def iter_decisions(
    store: ReviewedLog, query: DecisionQuery, page: int = _EXPORT_PAGE
) -> AsyncIterator[list[tuple[DecisionRecord, list[ReviewRecord]]]]:
    """Every record the query matches (its `limit` ignored), newest first, a page at a time, with reviews."""
    cursor = query.before_id
    while True:
        records = await store.decisions(replace(query, before_id=cursor, after_id=None, limit=page))
        if not records:
            return
        trail = await store.reviews([r.id for r in records])
        yield [(r, trail.get(r.id, [])) for r in records]
        if len(records) < page:
            return
        cursor = records[-1].id


# -- counts ------------------------------------------------------------------------


@dataclass
class Summary:
    """Counts over a range: every decision by outcome, and rejections by rule, template and account."""

    decisions: Counter[str] = field(default_factory=Counter)  # all decisions by outcome (enforce and shadow)
    shadow: int = 0  # deny/defer recorded in shadow mode (forwarded)
    rules: Counter[str] = field(default_factory=Counter)
    templates: Counter[str] = field(default_factory=Counter)
    accounts: Counter[str] = field(default_factory=Counter)  # rejections per account
    account_totals: Counter[str] = field(default_factory=Counter)  # decisions per account

    @property
    def total(self) -> int:
        return sum(self.decisions.values())

    @property
    def rejected(self) -> int:
        return sum(n for d, n in self.decisions.items() if d != "allow")

    def as_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "rejected": self.rejected,
            "shadow": self.shadow,
            "decisions": dict(self.decisions.most_common()),
            "rules": dict(self.rules.most_common()),
            "templates": dict(self.templates.most_common()),
            "accounts": {
                account: {"rejected": n, "total": self.account_totals[account]}
                for account, n in self.accounts.most_common()
            },
        }


def summarize(counts: Iterable[DecisionCount]) -> Summary:
    summary = Summary()
    for c in counts:
        rejected = c.decision != "allow"
        if c.dimension == "all":
            summary.decisions[c.decision] += c.count
            if rejected and c.mode == "shadow" and c.decision in ("deny", "defer"):
                summary.shadow += c.count
        elif c.dimension == "account":
            summary.account_totals[c.key] += c.count
            if rejected:
                summary.accounts[c.key] += c.count
        elif c.dimension == "rule" and rejected:
            summary.rules[c.key] += c.count
        elif c.dimension == "template" and rejected:
            summary.templates[c.key] += c.count
    return summary


def rule_series(counts: Iterable[DecisionCount]) -> dict[float, Counter[str]]:
    """Rejections per bucket and rule."""
    series: dict[float, Counter[str]] = defaultdict(Counter)
    for c in counts:
        if c.dimension == "rule" and c.decision != "allow" and c.bucket is not None:
            series[c.bucket][c.key] += c.count
    return series

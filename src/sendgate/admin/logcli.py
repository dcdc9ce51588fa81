"""`sendgate log ...`: the decision log from a terminal, on the same store and filters as the review pages.

Tables (rich) when stdout is a terminal; JSON lines (or CSV with `--format csv`) when piped.
"""

from __future__ import annotations

import argparse
import getpass
import re
import sys
import time
from collections.abc import Callable
from typing import IO, Any

import orjson

from sendgate.admin.records import decision_query, parse_time
from sendgate.admin.review import (
    ReviewedLog,
    ReviewView,
    csv_text,
    fmt_time,
    iter_decisions,
    rules_of,
    summarize,
)
from sendgate.config import Config, ConfigError
from sendgate.retention import parse_age, prune_older_than
from sendgate.state import DECISION_FILTERS, DecisionLog, DecisionRecord, InvalidRecord, ReviewRecord, run_with_store

__all__ = ["add_log_commands"]

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_RELATIVE = re.compile(r"\s*\d+(?:\.\d+)?\s*[smhdw]\s*")


def _time(value: str, now: float) -> str:
    """Unix seconds, ISO 8601, or an age back from now (`24h`, `7d`)."""
    if _RELATIVE.fullmatch(value):
        return str(now - parse_age(value))
    return value


def _params(args: argparse.Namespace, now: float) -> dict[str, str]:
    params: dict[str, str] = {}
    for name in ("decision", "rule", "template", "recipient", "account"):
        value = getattr(args, name, None)
        if value:
            params[name] = value
    for name in ("since", "until"):
        value = getattr(args, name, None)
        if value:
            params[name] = _time(value, now)
    if getattr(args, "reviewed", None) is not None:
        params["reviewed"] = "yes" if args.reviewed else "no"
    return params


def _format(args: argparse.Namespace, default_piped: str = "json") -> str:
    if getattr(args, "json", False):
        return "json"
    if args.format:
        return str(args.format)
    return "table" if sys.stdout.isatty() else default_piped


def _safe(text: Any) -> str:
    """Terminal-safe text: control characters from message content cannot drive the terminal."""
    return _CONTROL.sub("\ufffd", "" if text is None else str(text))


def _console() -> Any:
    from rich.console import Console

    if sys.stdout.isatty():
        return Console(highlight=False)
    return Console(highlight=False, width=200, force_terminal=False, no_color=True)


def _json_line(value: Any, out: IO[str] | None = None) -> None:
    (out or sys.stdout).write(orjson.dumps(value).decode() + "\n")


# -- list -------------------------------------------------------------------------------


def log_list(config: Config, args: argparse.Namespace) -> int:
    params = _params(args, time.time())
    params["limit"] = str(args.limit)
    if args.before:
        params["before"] = args.before
    query = decision_query(params)
    view = ReviewView(config)
    output = _format(args)

    async def work(store: ReviewedLog) -> int:
        records = await store.decisions(query)
        trail = await store.reviews([r.id for r in records])
        if output == "json":
            for r in records:
                _json_line(view.record_json(r, trail.get(r.id)))
        elif output == "csv":
            sys.stdout.write(csv_text(view.row(r, trail.get(r.id)) for r in records))
        else:
            _table(view, records, trail)
            if len(records) == query.limit:
                print(f"more: --before {records[-1].id}", file=sys.stderr)
        return 0

    return run_with_store(config.state, work)


def _table(view: ReviewView, records: list[DecisionRecord], trail: dict[str, list[ReviewRecord]]) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(show_lines=False, header_style="bold", pad_edge=False, expand=False)
    for name, options in (
        ("ID", {"no_wrap": True}),
        ("TIME (UTC)", {"no_wrap": True}),
        ("DECISION", {"no_wrap": True}),
        ("ACCOUNT", {"overflow": "ellipsis", "max_width": 24}),
        ("RECIPIENT", {"no_wrap": True}),
        ("TYPE", {"no_wrap": True}),
        ("TEMPLATE", {"overflow": "ellipsis", "max_width": 20}),
        ("RULES", {"overflow": "fold"}),
        ("REASON", {"overflow": "ellipsis", "max_width": 60, "no_wrap": True}),
        ("REVIEWED", {"no_wrap": True}),
    ):
        table.add_column(name, **options)
    styles = {"deny": "red", "defer": "yellow", "invalid": "magenta", "error": "bright_black", "allow": "green"}
    for r in records:
        row = view.row(r, trail.get(r.id))
        decision = Text(r.decision, style=styles.get(r.decision, ""))
        if r.mode == "shadow":
            decision.append(" (shadow)", style="dim")
        if r.outcome_unknown:
            decision.append(" (outcome unknown)", style="yellow")
        table.add_row(
            Text(r.id),
            Text(row["time"]),
            decision,
            Text(_safe(view.account_label(r.account))),
            Text(_safe(row["recipient"] or "-")),
            Text(_safe(row["type"] or "-")),
            Text(_safe(row["template"] or "-")),
            Text(_safe(", ".join(rules_of(r)) or "-")),
            Text(_safe(row["reasons"] or "-")),
            Text(f"yes ({_safe(row['reviewed_by'])})" if row["reviewed"] else "no"),
        )
    console = _console()
    console.print(table)
    if not records:
        console.print("no decisions match", style="dim")


# -- show -------------------------------------------------------------------------------


def log_show(config: Config, args: argparse.Namespace) -> int:
    view = ReviewView(config)
    output = "json" if args.json or not sys.stdout.isatty() else "table"

    async def work(store: ReviewedLog) -> int:
        record = await store.decision(args.id)
        if record is None:
            print(f"no decision {args.id}", file=sys.stderr)
            return 1
        reviews = (await store.reviews([record.id])).get(record.id, [])
        if output == "json":
            sys.stdout.write(
                orjson.dumps(view.record_json(record, reviews), option=orjson.OPT_INDENT_2).decode() + "\n"
            )
        else:
            _show(view, record, reviews)
        return 0

    return run_with_store(config.state, work)


def _show(view: ReviewView, record: DecisionRecord, reviews: list[ReviewRecord]) -> None:
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    r = view.shown(record)
    console = _console()
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    for label, value in (
        ("decision", f"{r.decision}" + (" (shadow mode: forwarded)" if r.mode == "shadow" else "")),
        ("time", f"{fmt_time(r.timestamp)} UTC"),
        ("account", view.account_label(r.account)),
        ("recipient", r.recipient or "-"),
        ("type", r.type or "-"),
        ("template", f"{r.template} ({r.category})" if r.template and r.category else r.template or "-"),
        ("endpoint", f"{r.endpoint} {r.api_version}"),
        ("policy revision", r.policy_revision or "-"),
        ("forwarded", ("yes; Meta's answer unknown (it still counts as sent)" if r.outcome_unknown else "yes")
                      if r.forwarded else "no"),
        ("upstream", " ".join(x for x in (
            f"HTTP {r.upstream_status}" if r.upstream_status is not None else "",
            f"message id {r.upstream_message_id}" if r.upstream_message_id else "",
            f"error code {r.upstream_error_code}" if r.upstream_error_code is not None else "",
            r.upstream_error or "",
        ) if x) or "-"),
        ("delivery", " ".join(x for x in (r.delivery_status or "", fmt_time(r.delivery_at), r.delivery_error or "") if x) or "-"),
    ):  # fmt: skip
        summary.add_row(label, Text(_safe(value)))
    console.print(Panel(summary, title=Text(r.id), expand=False))
    console.print(Text("Reasons", style="bold"))
    for reason in r.reasons:
        if isinstance(reason, dict):
            console.print(Text(f"  {_safe(reason.get('rule', '?'))}: {_safe(reason.get('message', ''))}"))
    if not r.reasons:
        console.print("  none", style="dim")
    if r.facts is not None:
        console.print(Text("Facts the policy saw", style="bold"))
        console.print(Text(_safe(orjson.dumps(r.facts, option=orjson.OPT_INDENT_2).decode())))
    console.print(Text("Message", style="bold"))
    if r.content is None:
        console.print("  not kept", style="dim")
    else:
        text = r.content if isinstance(r.content, str) else orjson.dumps(r.content, option=orjson.OPT_INDENT_2).decode()
        console.print(Text(_safe(text)))
    console.print(Text("Review trail", style="bold"))
    for review in reviews:
        console.print(
            Text(f"  {fmt_time(review.reviewed_at)}  {_safe(review.reviewer)}: {_safe(review.note) or '(no note)'}")
        )
    if not reviews:
        console.print("  not reviewed", style="dim")


# -- stats ------------------------------------------------------------------------------


def log_stats(config: Config, args: argparse.Namespace) -> int:
    now = time.time()
    since = parse_time(_time(args.since, now))
    until = parse_time(_time(args.until, now)) if args.until else now + 1
    view = ReviewView(config)
    output = _format(args)

    async def work(store: ReviewedLog) -> int:
        summary = summarize(await store.decision_counts(since, until))
        if output == "json":
            _json_line({"since": since, "until": until, **summary.as_json()})
            return 0
        if output == "csv":
            import csv

            writer = csv.writer(sys.stdout, lineterminator="\n")
            writer.writerow(["dimension", "key", "count"])
            for decision, n in summary.decisions.most_common():
                writer.writerow(["decision", decision, n])
            for dimension, counter in (
                ("rule", summary.rules),
                ("account", summary.accounts),
                ("template", summary.templates),
            ):
                for key, n in counter.most_common():
                    writer.writerow([dimension, key, n])
            return 0
        from rich.table import Table
        from rich.text import Text

        console = _console()
        console.print(
            f"{fmt_time(since)} to {fmt_time(until)} UTC: {summary.total:,} decisions, {summary.rejected:,} rejected"
            + (f" ({summary.rejected / summary.total:.1%})" if summary.total else "")
            + (f", {summary.shadow:,} shadow would-be rejections" if summary.shadow else "")
        )
        by_decision = Table(title="decisions", title_justify="left")
        by_decision.add_column("decision")
        by_decision.add_column("count", justify="right")
        for decision, n in summary.decisions.most_common():
            by_decision.add_row(decision, f"{n:,}")
        console.print(by_decision)
        for title, counter, label in (
            ("rejections per rule", summary.rules, lambda k: k),
            ("rejections per account", summary.accounts, view.account_label),
            ("rejections per template", summary.templates, lambda k: k),
        ):
            table = Table(title=title, title_justify="left")
            table.add_column(title.rsplit(" ", 1)[-1])
            table.add_column("count", justify="right")
            if counter is summary.accounts:
                table.add_column("of decisions", justify="right")
            for key, n in counter.most_common(args.top):
                cells: list[Text | str] = [Text(_safe(label(key))), f"{n:,}"]
                if counter is summary.accounts:
                    total = summary.account_totals[key]
                    cells.append(f"{n / total:.1%} of {total:,}" if total else "-")
                table.add_row(*cells)
            console.print(table)
        return 0

    return run_with_store(config.state, work)


# -- export -----------------------------------------------------------------------------


def log_export(config: Config, args: argparse.Namespace) -> int:
    params = _params(args, time.time())
    params["limit"] = "1"
    query = decision_query(params)
    view = ReviewView(config)

    async def work(store: ReviewedLog) -> int:
        out: IO[str] = open(args.output, "w", encoding="utf-8", newline="") if args.output else sys.stdout  # noqa: SIM115
        count = 0
        try:
            first = True
            async for page in iter_decisions(store, query):
                if args.format == "csv":
                    out.write(csv_text((view.row(r, rv) for r, rv in page), header=first))
                else:
                    for r, rv in page:
                        _json_line(view.record_json(r, rv), out)
                first = False
                count += len(page)
            if first and args.format == "csv":
                out.write(csv_text([]))
        finally:
            if args.output:
                out.close()
        if args.output:
            print(f"exported {count} decision records to {args.output}", file=sys.stderr)
        return 0

    return run_with_store(config.state, work)


# -- review, prune ----------------------------------------------------------------------


def log_review(config: Config, args: argparse.Namespace) -> int:
    reviewer = args.reviewer or _whoami()

    async def work(store: ReviewedLog) -> int:
        saved = await store.add_review(ReviewRecord(args.id, reviewer, (args.note or "").strip(), time.time()))
        if saved is None:
            print(f"no decision {args.id}", file=sys.stderr)
            return 1
        print(f"decision {args.id} reviewed by {reviewer} at {fmt_time(saved.reviewed_at)} UTC")
        return 0

    return run_with_store(config.state, work)


def _whoami() -> str:
    try:
        return f"{getpass.getuser()} (cli)"
    except (KeyError, OSError):
        return "cli"


def log_prune(config: Config, args: argparse.Namespace) -> int:
    if args.older_than:
        try:
            age = parse_age(args.older_than)
        except ValueError as exc:
            raise InvalidRecord(str(exc)) from exc
    elif config.log.retention_days is not None:
        age = config.log.retention_days * 86400.0
    else:
        raise ConfigError("give --older-than (e.g. 90d), or set log.retention_days")
    now = time.time()
    cutoff = now - age

    async def work(store: DecisionLog) -> int:
        if args.dry_run:
            counts = await store.decision_counts(0.0, cutoff)
            n = sum(c.count for c in counts if c.dimension == "all")
            print(f"would prune {n} decision records older than {fmt_time(cutoff)} UTC")
            return 0
        result = await prune_older_than(store, age, now)
        print(
            f"pruned {result.decisions} decision records older than {fmt_time(cutoff)} UTC"
            f" ({result.reviews} review notes with them, {result.sends} send history rows)"
        )
        return 0

    return run_with_store(config.state, work)


# -- parser -----------------------------------------------------------------------------


def add_log_commands(log: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    """`sendgate log` subcommands; `command` is cli.py's helper that registers a handler."""

    def filters(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--decision", choices=sorted(DECISION_FILTERS), help="rejected = anything but allow")
        sub.add_argument("--rule")
        sub.add_argument("--template")
        sub.add_argument("--recipient")
        sub.add_argument("--account", help="phone number id")
        sub.add_argument("--since", help="Unix seconds, ISO 8601, or an age (24h, 7d)")
        sub.add_argument("--until", help="Unix seconds, ISO 8601, or an age (24h, 7d)")
        reviewed = sub.add_mutually_exclusive_group()
        reviewed.add_argument("--reviewed", dest="reviewed", action="store_const", const=True, default=None)
        reviewed.add_argument("--unreviewed", dest="reviewed", action="store_const", const=False)

    sub = command(log, "list", log_list, "list decisions, newest first")
    filters(sub)
    sub.add_argument("--limit", type=int, default=50)
    sub.add_argument("--before", help="paging cursor: decisions older than this id")
    sub.add_argument(
        "--format", choices=["table", "csv", "json"], help="default: table on a terminal, JSON lines when piped"
    )
    sub.add_argument("--json", action="store_true", help="JSON lines (same as --format json)")

    sub = command(log, "show", log_show, "one decision record, with its facts and review trail")
    sub.add_argument("id")
    sub.add_argument("--json", action="store_true", help="JSON (the default when piped)")

    sub = command(log, "stats", log_stats, "counts per decision, rule, account and template over a range")
    sub.add_argument("--since", default="30d", help="default: 30d (the last 30 days)")
    sub.add_argument("--until", help="default: now")
    sub.add_argument("--top", type=int, default=20, help="rows per table")
    sub.add_argument("--format", choices=["table", "csv", "json"], help="default: table on a terminal, JSON when piped")
    sub.add_argument("--json", action="store_true")

    sub = command(log, "export", log_export, "every decision matching the filters, as CSV or JSON lines")
    filters(sub)
    sub.add_argument("--format", choices=["csv", "jsonl"], default="csv")
    sub.add_argument("--output", "-o", help="file (default: stdout)")

    sub = command(log, "review", log_review, "mark a decision reviewed, with a note (appended to its review trail)")
    sub.add_argument("id")
    sub.add_argument("--note", default="")
    sub.add_argument("--reviewer", help="who reviewed (default: your user name)")

    sub = command(log, "prune", log_prune, "delete decision records older than an age, with their review notes")
    sub.add_argument("--older-than", help="e.g. 90d, 12h (default: log.retention_days)")
    sub.add_argument("--dry-run", action="store_true", help="only count")

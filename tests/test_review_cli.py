"""`sendgate log ...`: list, show, stats, export, review, prune on the same store as the server."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from pathlib import Path

import pytest

from sendgate.cli import main
from sendgate.state import DecisionRecord, open_store

from .review_seed import seed


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "sendgate.yaml"
    path.write_text(
        f"state: sqlite:///{tmp_path / 'state.db'}\n"
        "accounts: [{phone_number_id: '106540352242922', waba_id: '102290129340398', name: Acme}]\n"
    )
    return path


@pytest.fixture
def records(tmp_path: Path, config: Path) -> list[DecisionRecord]:
    """300 records over the last 3 days, and 20 older than 90 days (all logged now, before the CLI runs)."""

    async def fill() -> list[DecisionRecord]:
        store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
        try:
            recent = await seed(store, time.time(), 300, span=3 * 86400)
            old = await seed(store, time.time() - 100 * 86400, 20, span=86400, seed=9)
            return recent + old
        finally:
            await store.close()

    return asyncio.run(fill())


def run(capsys: pytest.CaptureFixture[str], config: Path, *argv: str) -> tuple[int, str, str]:
    code = main(["-c", str(config), *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _newest(records: list[DecisionRecord], keep) -> list[str]:
    return [r.id for r in sorted(records, key=lambda r: r.id, reverse=True) if keep(r)]


def test_list_is_json_lines_when_piped_and_filters(config: Path, records: list[DecisionRecord], capsys) -> None:
    code, out, _ = run(
        capsys, config, "log", "list", "--decision", "rejected", "--rule", "window.closed", "--limit", "1000"
    )
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["id"] for line in lines] == _newest(
        records, lambda r: r.decision != "allow" and any(x["rule"] == "window.closed" for x in r.reasons)
    )
    assert all("reviews" in line and "facts" in line for line in lines)
    code, out, _ = run(capsys, config, "log", "list", "--template", "spring_sale", "--since", "24h", "--limit", "1000")
    since = time.time() - 86400
    assert [json.loads(x)["id"] for x in out.splitlines()] == _newest(
        records, lambda r: r.template == "spring_sale" and r.timestamp >= since - 5
    )


def test_list_as_csv_and_as_a_table(config: Path, records: list[DecisionRecord], capsys) -> None:
    code, out, _ = run(capsys, config, "log", "list", "--decision", "defer", "--format", "csv", "--limit", "5")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and len(rows) == 5 and all(row["decision"] == "defer" for row in rows)
    code, out, err = run(capsys, config, "log", "list", "--decision", "deny", "--format", "table", "--limit", "3")
    assert code == 0
    assert "TIME (UTC)" in out and "RULES" in out and "REASON" in out
    first = _newest(records, lambda r: r.decision == "deny")[0]
    assert first in out and "more: --before" in err


def test_show_review_and_the_reviewed_filter(config: Path, records: list[DecisionRecord], capsys) -> None:
    target = _newest(records, lambda r: r.decision == "deny")[2]
    code, out, _ = run(capsys, config, "log", "review", target, "--note", "checked with Acme", "--reviewer", "ana")
    assert code == 0 and f"decision {target} reviewed by ana" in out
    code, out, _ = run(capsys, config, "log", "show", target)
    shown = json.loads(out)
    assert code == 0 and shown["id"] == target and shown["account_name"] in ("Acme", None)
    assert [(r["reviewer"], r["note"]) for r in shown["reviews"]] == [("ana", "checked with Acme")]
    assert shown["facts"]["recipient"]["country"] == "US"
    code, out, _ = run(capsys, config, "log", "list", "--reviewed")
    assert [json.loads(x)["id"] for x in out.splitlines()] == [target]
    code, out, _ = run(capsys, config, "log", "list", "--unreviewed", "--decision", "rejected", "--limit", "1000")
    assert target not in out and len(out.splitlines()) == sum(1 for r in records if r.decision != "allow") - 1
    code, _, err = run(capsys, config, "log", "review", "NOPE", "--note", "x")
    assert code == 1 and "no decision NOPE" in err
    code, _, err = run(capsys, config, "log", "show", "NOPE")
    assert code == 1


def test_stats_counts_per_rule_account_and_template(config: Path, records: list[DecisionRecord], capsys) -> None:
    code, out, _ = run(capsys, config, "log", "stats", "--since", "7d", "--json")
    stats = json.loads(out)
    recent = [r for r in records if r.timestamp >= time.time() - 7 * 86400 - 5]
    rejected = [r for r in recent if r.decision != "allow"]
    assert code == 0 and stats["total"] == len(recent) and stats["rejected"] == len(rejected)
    assert stats["rules"]["window.closed"] == sum(
        1 for r in rejected if any(x["rule"] == "window.closed" for x in r.reasons)
    )
    assert stats["templates"]["spring_sale"] == sum(1 for r in rejected if r.template == "spring_sale")
    account = rejected[0].account
    assert stats["accounts"][account] == {
        "rejected": sum(1 for r in rejected if r.account == account),
        "total": sum(1 for r in recent if r.account == account),
    }
    code, out, _ = run(capsys, config, "log", "stats", "--format", "table")
    assert code == 0 and "rejections per rule" in out and "window.closed" in out and "Acme" in out


def test_export_to_a_file(config: Path, records: list[DecisionRecord], tmp_path: Path, capsys) -> None:
    target = tmp_path / "out.jsonl"
    code, _, err = run(
        capsys, config, "log", "export", "--decision", "rejected", "--format", "jsonl", "-o", str(target)
    )
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert code == 0 and f"exported {len(lines)} decision records" in err
    assert [line["id"] for line in lines] == _newest(records, lambda r: r.decision != "allow")
    code, out, _ = run(capsys, config, "log", "export", "--account", "106540352242922")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and rows and {row["account_name"] for row in rows} == {"Acme"}
    assert len(rows) == sum(1 for r in records if r.account == "106540352242922")


def test_prune_keeps_recent_records_and_their_notes(config: Path, records: list[DecisionRecord], capsys) -> None:
    old = [r for r in records if r.timestamp < time.time() - 90 * 86400]
    kept = next(r for r in records if r.timestamp >= time.time() - 86400 and r.decision == "deny")
    old_rejected = next(r for r in old if r.decision != "allow")
    run(capsys, config, "log", "review", kept.id, "--note", "keep me")
    run(capsys, config, "log", "review", old_rejected.id, "--note", "goes with its record")
    code, out, _ = run(capsys, config, "log", "prune", "--older-than", "90d", "--dry-run")
    assert code == 0 and f"would prune {len(old)} decision records" in out
    code, out, _ = run(capsys, config, "log", "prune", "--older-than", "90d")
    assert code == 0 and f"pruned {len(old)} decision records" in out and "1 review notes" in out
    assert run(capsys, config, "log", "show", old_rejected.id)[0] == 1
    code, out, _ = run(capsys, config, "log", "show", kept.id)
    assert [r["note"] for r in json.loads(out)["reviews"]] == ["keep me"]
    code, out, _ = run(capsys, config, "log", "list", "--limit", "1000")
    assert len(out.splitlines()) == len(records) - len(old)


def test_prune_needs_an_age(config: Path, capsys) -> None:
    code, _, err = run(capsys, config, "log", "prune")
    assert code == 2 and "--older-than" in err
    code, _, err = run(capsys, config, "log", "prune", "--older-than", "soon")
    assert code == 2 and "not an age" in err
    config.write_text(config.read_text() + "log: {retention_days: 30}\n")
    code, out, _ = run(capsys, config, "log", "prune", "--dry-run")
    assert code == 0 and "would prune 0 decision records" in out


def test_terminal_output_cannot_be_driven_by_message_content(config: Path, tmp_path: Path, capsys) -> None:
    from sendgate.admin.logcli import _safe

    assert _safe("ok\x1b[2J\x07 [bold]x[/bold]") == "ok\ufffd[2J\ufffd [bold]x[/bold]"

    async def fill() -> None:
        store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
        [record] = await seed(store, time.time(), 1)
        from dataclasses import replace

        await store.log_decision(replace(record, id="01X", decision="deny", reasons=[
            {"rule": "content.banned_term", "message": "found \x1b[31m[red]term[/red]"}]))  # fmt: skip
        await store.close()

    asyncio.run(fill())
    code, out, _ = run(capsys, config, "log", "list", "--decision", "deny", "--format", "table")
    assert code == 0 and "\x1b[31m" not in out and "[red]term[/red]" in out

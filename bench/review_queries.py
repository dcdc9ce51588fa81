"""The review pages on a big decision log: 1,000,000 records in SQLite, list page and overview over HTTP.

Generates the records straight into a temporary SQLite file (executemany in big transactions,
indexes built afterwards, the hourly rollup rebuilt from the records), then:

1. times the store queries behind each page in-process (list filters, overview counts);
2. starts `sendgate serve` on that file, signs in like a browser and times whole pages over HTTP
   (the list with several filters, a second page, one decision, the overview, a CSV export page).

Prints median and p95 milliseconds per case. Target: list page and overview under 300 ms.

    python bench/review_queries.py [--records 1000000] [--runs 15] [--keep DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from sendgate.gateway.recorder import recipient_key  # noqa: E402
from sendgate.ids import DecisionIds  # noqa: E402
from sendgate.state.rows import DECISION_COLUMNS  # noqa: E402
from sendgate.state.sqlite.store import SQLiteStore  # noqa: E402
from sendgate.state.sqlite.review import rebuild_counts  # noqa: E402
from sendgate.state.sqlite.schema import SCHEMA  # noqa: E402

ADMIN_TOKEN = "bench-admin-token"
SPAN = 30 * 86400
RULES = {
    "deny": ["window.closed", "consent.missing", "consent.opted_out", "consent.category", "template.unknown",
             "template.not_approved", "template.language", "template.paused", "template.params",
             "frequency.marketing", "content.banned_term", "content.url_domain", "content.length",
             "account.market", "account.unknown"],
    "defer": ["frequency.pair_rate", "quiet_hours"],
    "invalid": ["request.invalid"],
    "error": ["engine.error"],
}  # fmt: skip
RULE_WEIGHTS = {"window.closed": 30, "consent.missing": 15, "template.paused": 8, "frequency.marketing": 10}
ACCOUNTS = [f"1065403522{i:05d}" for i in range(20)]
TEMPLATES = [f"template_{i:02d}" for i in range(40)]
INDEXES = (
    "decisions_ts", "decisions_decision", "decisions_account", "decisions_recipient", "decisions_message",
    "decisions_template", "decisions_rejected", "decisions_shadow",
)  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pick_decision(rng: random.Random) -> tuple[str, str]:
    roll = rng.random()
    if roll < 0.75:
        return "allow", "enforce"
    if roll < 0.92:
        return "deny", "enforce"
    if roll < 0.96:
        return "defer", "enforce"
    if roll < 0.98:
        return "invalid", "enforce"
    if roll < 0.99:
        return "error", "enforce"
    return rng.choice(("deny", "defer")), "shadow"


def generate(path: Path, count: int, now: float, seed: int = 1) -> dict[str, Any]:
    """`count` decision records over the 30 days before `now`; returns a few ids and keys to query with."""
    SQLiteStore(path)._read.close()  # schema
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    for index in INDEXES:
        conn.execute(f"DROP INDEX IF EXISTS {index}")
    rng = random.Random(seed)
    ids = DecisionIds()
    columns = ", ".join(DECISION_COLUMNS)
    insert = f"INSERT INTO decisions ({columns}) VALUES ({', '.join('?' * len(DECISION_COLUMNS))})"
    step = SPAN / count
    start = now - SPAN
    account_weights = [1 / (i + 1) for i in range(len(ACCOUNTS))]
    recipients = [f"1650{5550000 + i:07d}" for i in range(200_000)]
    sample: dict[str, Any] = {"recipient": recipients[4242], "rejected": []}
    rows: list[tuple[Any, ...]] = []
    rules_rows: list[tuple[str, str]] = []
    reviews: list[tuple[str, str, str, float]] = []
    batch = 100_000
    for i in range(count):
        ts = start + i * step + rng.random() * step
        decision_id = ids.new(ts)
        decision, mode = _pick_decision(rng)
        template = rng.choice(TEMPLATES) if rng.random() < 0.6 else None
        recipient = recipients[rng.randrange(len(recipients))] if i % 50 else sample["recipient"]
        reasons: list[dict[str, Any]] = []
        content = facts = None
        if decision != "allow":
            pool = RULES[decision]
            weights = [RULE_WEIGHTS.get(r, 3) for r in pool]
            picked = {rng.choices(pool, weights)[0] for _ in range(2 if rng.random() < 0.1 else 1)}
            reasons = [{"rule": r, "message": f"{r}: explanation for the reviewer"} for r in sorted(picked)]
            rules_rows += [(decision_id, r) for r in picked]
            content = orjson.dumps({"messaging_product": "whatsapp", "to": recipient, "type": "text",
                                    "text": {"body": f"Message {i} <b>with markup</b>"}}).decode()  # fmt: skip
            facts = orjson.dumps({
                "recipient": {"id": recipient, "country": "US", "timezone": "America/Los_Angeles",
                              "local_time": {"hour": 14, "minute": 0, "weekday": 1},
                              "consent": {"status": "opted_in", "categories": ["utility"], "source": "web",
                                          "updated_at": ts - 86400 * 40},
                              "last_inbound_at": ts - 90000, "history": {"last_sent_at": ts - 3600,
                                                                         "marketing_sent_at": [ts - 7200]}},
                "template": {"found": True, "language_found": True, "languages": ["en_US"], "status": "APPROVED",
                             "category": "MARKETING", "placeholders": {"body": 1}} if template else None,
            }).decode()  # fmt: skip
            if rng.random() < 0.05:
                reviews.append((decision_id, "ana", "checked with the account owner", ts + 3600))
            if len(sample["rejected"]) < 50 or rng.random() < 0.0005:
                sample["rejected"].append(decision_id)
        forwarded = decision == "allow" or mode == "shadow"
        rows.append((
            decision_id, ts, "messages", "v23.0", rng.choices(ACCOUNTS, account_weights)[0], "102290129340398",
            recipient, recipient_key(recipient), "template" if template else "text", template,
            "marketing" if template else None, decision, mode, int(forwarded), orjson.dumps(reasons).decode(), "[]",
            None, "rev-3f9a1c", 40.0 + rng.random() * 20, 200 if forwarded else None,
            f"wamid.{i}" if forwarded else None, None, None, content, facts, None, None, None,
        ))  # fmt: skip
        if len(rows) >= batch:
            _flush(conn, insert, rows, rules_rows)
    _flush(conn, insert, rows, rules_rows)
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO reviews (decision_id, reviewer, note, reviewed_at) VALUES (?, ?, ?, ?)", reviews)
    rebuild_counts(conn)
    for statement in SCHEMA:  # recreates the indexes dropped above (the file's version is current)
        conn.execute(statement)
    conn.execute("COMMIT")
    conn.close()
    sample["template"] = TEMPLATES[7]
    sample["account"] = ACCOUNTS[3]
    sample["reviews"] = len(reviews)
    return sample


def _flush(
    conn: sqlite3.Connection, insert: str, rows: list[tuple[Any, ...]], rules_rows: list[tuple[str, str]]
) -> None:
    conn.execute("BEGIN")
    conn.executemany(insert, rows)
    conn.executemany("INSERT INTO decision_rules (decision_id, rule) VALUES (?, ?)", rules_rows)
    conn.execute("COMMIT")
    rows.clear()
    rules_rows.clear()


def _stats(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return f"median {statistics.median(ordered):7.1f} ms   p95 {p95:7.1f} ms"


async def time_queries(path: Path, now: float, sample: dict[str, Any], runs: int) -> None:
    from sendgate.admin.records import decision_query

    store = SQLiteStore(path)
    cases: dict[str, Any] = {}
    for name, params in (
        ("list: all rejections", {}),
        ("list: rule=window.closed", {"rule": "window.closed"}),
        ("list: rule=account.unknown (rare)", {"rule": "account.unknown"}),
        ("list: template", {"template": sample["template"]}),
        ("list: account", {"account": sample["account"]}),
        ("list: recipient", {"recipient": sample["recipient"]}),
        ("list: decision=deny", {"decision": "deny"}),
        ("list: decision=shadow", {"decision": "shadow"}),
        ("list: unreviewed", {"reviewed": "no"}),
        ("list: reviewed", {"reviewed": "yes"}),
        ("list: last 24 h", {"since": str(now - 86400)}),
        ("list: a day two weeks ago", {"since": str(now - 15 * 86400), "until": str(now - 14 * 86400)}),
    ):
        query = decision_query({"decision": "rejected", **params, "limit": "51"})
        cases[name] = lambda q=query: store.decisions(q)
    hour_end = int(now // 3600) * 3600 + 3600
    day_end = int(now // 86400) * 86400 + 86400
    cases["overview: rules, 24 hourly buckets"] = lambda: store.decision_counts(
        hour_end - 24 * 3600, hour_end, 3600, "rule"
    )
    cases["overview: rules, 30 daily buckets"] = lambda: store.decision_counts(
        day_end - 30 * 86400, day_end, 86400, "rule"
    )
    cases["overview: totals, last 24 h"] = lambda: store.decision_counts(hour_end - 24 * 3600, hour_end)
    cases["overview: totals, last 30 days"] = lambda: store.decision_counts(day_end - 30 * 86400, day_end)
    cases["stats: 30 days, ragged ends"] = lambda: store.decision_counts(now - 30 * 86400 + 1234, now)
    cases["detail: one record + trail"] = lambda: _detail(store, sample["rejected"][3])
    print("\nstore queries (in-process)")
    for name, run in cases.items():
        samples = []
        for i in range(runs + 2):
            started = time.perf_counter()
            await run()
            if i >= 2:
                samples.append((time.perf_counter() - started) * 1000)
        print(f"  {name:38} {_stats(samples)}")
    await store.close()


async def _detail(store: SQLiteStore, decision_id: str) -> None:
    await store.decision(decision_id)
    await store.reviews([decision_id])


async def time_pages(path: Path, now: float, sample: dict[str, Any], runs: int) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "SENDGATE_STATE": f"sqlite:///{path}",
        "SENDGATE_LISTEN": f"127.0.0.1:{port}",
        "SENDGATE_ADMIN_TOKEN": ADMIN_TOKEN,
        "SENDGATE_POLICY_DIR": str(ROOT / "policies"),
        "SENDGATE_ACCOUNTS": orjson.dumps(
            [
                {"phone_number_id": a, "waba_id": "102290129340398", "name": f"Account {i}"}
                for i, a in enumerate(ACCOUNTS)
            ]
        ).decode(),  # fmt: skip
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "sendgate.cli", "serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        deadline = time.time() + 60
        while time.time() < deadline:
            line = proc.stdout.readline().decode()
            if "listening" in line:
                break
            if not line and proc.poll() is not None:
                raise RuntimeError("sendgate did not start")
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            form = await (await http.get(f"{base}/admin/login")).text()
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)
            assert csrf is not None
            signed_in = await http.post(f"{base}/admin/login", data={"csrf_token": csrf[1], "token": ADMIN_TOKEN})
            assert signed_in.status == 200 and "Rejected sends" in await signed_in.text(), signed_in.status
            first_page = await (await http.get(f"{base}/admin/decisions")).text()
            older = re.search(r'href="(/admin/decisions\?before=[^"]+)"', first_page)
            assert older is not None
            pages = {
                "list page: all rejections": "/admin/decisions",
                "list page: second page": older[1].replace("&amp;", "&"),
                "list page: rule=window.closed": "/admin/decisions?rule=window.closed",
                "list page: template": f"/admin/decisions?template={sample['template']}",
                "list page: account": f"/admin/decisions?account={sample['account']}",
                "list page: recipient": f"/admin/decisions?recipient={sample['recipient']}",
                "list page: shadow": "/admin/decisions?decision=shadow",
                "list page: unreviewed, last 24 h": f"/admin/decisions?reviewed=no&since={now - 86400:.0f}",
                "list page: a day two weeks ago": f"/admin/decisions?since={now - 15 * 86400:.0f}&until={now - 14 * 86400:.0f}",
                "detail page": f"/admin/decisions/{sample['rejected'][3]}",
                "overview page (30 d)": "/admin/overview",
                "overview page (24 h)": "/admin/overview?range=24h",
            }
            print("\npages over HTTP (sendgate serve, one client, sequential)")
            for name, url in pages.items():
                samples = []
                for i in range(runs + 2):
                    started = time.perf_counter()
                    async with http.get(base + url) as response:
                        body = await response.read()
                        assert response.status == 200, (url, response.status, body[:300])
                    if i >= 2:
                        samples.append((time.perf_counter() - started) * 1000)
                print(f"  {name:38} {_stats(samples)}   {len(body) / 1024:6.1f} KiB")
            started = time.perf_counter()
            async with http.get(f"{base}/admin/export.csv?rule=window.closed&since={now - 86400:.0f}") as response:
                exported = (await response.read()).count(b"\n") - 1
            print(
                f"  {'CSV export, window.closed, last 24 h':38} {(time.perf_counter() - started) * 1000:7.1f} ms for {exported:,} rows"
            )
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--keep", help="generate into (or reuse) this directory instead of a temporary one")
    args = parser.parse_args()
    now = time.time()
    with tempfile.TemporaryDirectory(prefix="sendgate-bench-") as tmp:
        directory = Path(args.keep or tmp)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "review.db"
        meta = directory / "review.json"
        if args.keep and path.exists() and meta.exists():
            saved = orjson.loads(meta.read_bytes())
            sample, now = saved["sample"], saved["now"]
            print(f"reusing {path} ({saved['records']:,} records)")
        else:
            for stale in directory.glob("review.db*"):
                stale.unlink()
            started = time.perf_counter()
            sample = generate(path, args.records, now)
            meta.write_bytes(orjson.dumps({"sample": sample, "now": now, "records": args.records}))
            print(
                f"generated {args.records:,} decision records ({sample['reviews']:,} reviewed) in"
                f" {time.perf_counter() - started:.0f} s: {path.stat().st_size / 2**20:.0f} MiB"
            )
        asyncio.run(time_queries(path, now, sample, args.runs))
        asyncio.run(time_pages(path, now, sample, args.runs))


if __name__ == "__main__":
    main()

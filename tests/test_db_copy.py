"""`sendgate db copy` and `sendgate db migrate`: an embedded installation's whole state moves to
PostgreSQL, and reads the same there through the store's interface."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest

from sendgate.cli import main
from sendgate.ids import DecisionIds
from sendgate.state import ConsentRecord, DecisionQuery, ReviewRecord, SendRecord, Store, open_store
from sendgate.state.postgresql.schema import MIGRATIONS as POSTGRES_MIGRATIONS
from sendgate.state.rows import COPIED_TABLES
from sendgate.state.sqlite.schema import MIGRATIONS as SQLITE_MIGRATIONS

from .conftest import CATALOG, PHONE_NUMBER_ID, WABA_ID
from .review_seed import seed, synthetic

RECIPIENT = "+16505551234"


async def _populate(store: Store, now: float) -> list[str]:
    """Some of everything sendgate keeps; returns the decision ids it logged."""
    await store.import_consent([
        ConsentRecord(f"+1650555{n:04d}", "opted_in", ("marketing", "utility"), "import", None, now - 500 + n)
        for n in range(50)
    ])  # fmt: skip
    await store.record_consent(ConsentRecord(RECIPIENT, "opted_in", ("utility",), "app", "form 7", now - 400))
    await store.apply_consent_event("optout-1", ConsentRecord(RECIPIENT, "opted_out", (), "webhook", None, now - 300),
                                    "opt_out")  # fmt: skip
    await store.put_templates(WABA_ID, CATALOG)
    await store.update_template(WABA_ID, template_id=None, name="order_update", language="en_US", at=now - 200,
                                status="PAUSED")  # fmt: skip
    await store.record_inbound(PHONE_NUMBER_ID, RECIPIENT, now - 100)
    await store.record_entry_point(PHONE_NUMBER_ID, RECIPIENT, now - 90, "ad")
    await store.close_window(PHONE_NUMBER_ID, "+16505550001", now - 80)
    await store.record_delivery_failure("wamid.F1", 131049, RECIPIENT, PHONE_NUMBER_ID, now - 70)
    await store.set_account_state("phone", PHONE_NUMBER_ID, {"quality": "YELLOW"}, now - 60, {"event": "FLAGGED"})
    await store.set_marketing_pause(PHONE_NUMBER_ID, "block_rate", "blocks over 2%", now - 50)
    await store.learn_phone_numbers({PHONE_NUMBER_ID: ("15550001111", WABA_ID)}, now - 40)
    await store.record_media(PHONE_NUMBER_ID, "1480000000000001", "image/webp", 300_000, now - 30,
                             declared_type="image/webp", animated=True)  # fmt: skip
    records = await seed(store, now, 300, span=3 * 86400)
    for record in records[:40:4]:
        await store.add_review(ReviewRecord(record.id, "ana", f"looked at {record.id}", now - 10))
    sent = DecisionIds().new(now - 5)
    forwarded = synthetic(DecisionIds(), now - 5, random.Random(1), id=sent, decision="allow", forwarded=True,
                          recipient=RECIPIENT, upstream_message_id="wamid.S1", upstream_status=200)  # fmt: skip
    await store.log_decision(forwarded, SendRecord(sent, PHONE_NUMBER_ID, WABA_ID, RECIPIENT, "utility", now - 5))
    await store.record_delivery_status("wamid.S1", "delivered", now - 4, None)
    await store.flush()
    return [r.id for r in records] + [sent]


async def _view(store: Store, now: float, ids: list[str]) -> dict[str, object]:
    """What the interface shows of the state `_populate` wrote."""
    return {
        "history": await store.consent_history(RECIPIENT),
        "ledger": [await store.consent_history(f"+1650555{n:04d}") for n in range(0, 50, 7)],
        "catalog": await store.templates(WABA_ID),
        "template": await store.template_facts(WABA_ID, "order_update", "en_US"),
        "facts": await store.recipient_facts(PHONE_NUMBER_ID, WABA_ID, RECIPIENT, now),
        "closed": await store.recipient_facts(PHONE_NUMBER_ID, WABA_ID, "+16505550001", now),
        "account": await store.account_state(PHONE_NUMBER_ID, WABA_ID),
        "pauses": await store.marketing_pauses(),
        "numbers": await store.phone_number_ids("15550001111"),
        "media": await store.media_facts(PHONE_NUMBER_ID, "1480000000000001", now),
        "decisions": await store.decisions(DecisionQuery(limit=1000)),
        "rejected": await store.decisions(DecisionQuery(decision="rejected", limit=1000)),
        "by_rule": await store.decisions(DecisionQuery(rule="window.closed", limit=1000)),
        "counts": await store.decision_counts(now - 4 * 86400, now + 1, bucket=3600, dimension="rule"),
        "reviews": await store.reviews(ids),
        "last": await store.decision(ids[-1]),
    }


def test_copy_moves_everything_and_reads_the_same(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sqlite_url = f"sqlite:///{tmp_path / 'state.db'}"
    now = time.time()

    async def before() -> tuple[dict[str, object], list[str]]:
        store = open_store(sqlite_url)
        try:
            ids = await _populate(store, now)
            return await _view(store, now, ids), ids
        finally:
            await store.close()

    seen, ids = asyncio.run(before())
    assert main(["db", "copy", "--from", sqlite_url, "--to", postgres_url]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:] if line.split()[0] in COPIED_TABLES}
    assert set(lines) == set(COPIED_TABLES)
    assert all(source == target for source, target in lines.values()), out
    assert int(lines["decisions"][0]) == len(ids) and int(lines["reviews"][0]) == 10
    assert all(int(lines[table][0]) > 0 for table in COPIED_TABLES), out  # every table had something to move

    async def after() -> dict[str, object]:
        store = open_store(postgres_url)
        try:
            view = await _view(store, now, ids)
            # The records the SQLite process left waiting for Meta's answer are settled at the first start.
            waiting = [r for r in view["decisions"] if r.forwarded and r.upstream_status is None
                       and r.upstream_error is None]  # fmt: skip
            assert waiting and await store.mark_outcome_unknown(now + 1) == len(waiting)
            # New records keep increasing after the copied ones.
            added = await store.add_review(ReviewRecord(ids[0], "bo", "after the move", now))
            assert added is not None and added.seq is not None and added.seq > 10
            return view
        finally:
            await store.close()

    assert asyncio.run(after()) == seen

    # A second copy into the same database is refused, and changes nothing.
    assert main(["db", "copy", "--from", sqlite_url, "--to", postgres_url]) == 2
    assert "not empty" in capsys.readouterr().err


def test_copy_back_to_sqlite(tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Both ways: a PostgreSQL state copied into a new SQLite file reads the same."""
    now = time.time()
    back = f"sqlite:///{tmp_path / 'back.db'}"

    async def fill() -> tuple[dict[str, object], list[str]]:
        store = open_store(postgres_url)
        try:
            ids = await _populate(store, now)
            return await _view(store, now, ids), ids
        finally:
            await store.close()

    seen, ids = asyncio.run(fill())
    assert main(["db", "copy", "--from", postgres_url, "--to", back]) == 0
    capsys.readouterr()

    async def read() -> dict[str, object]:
        store = open_store(back)
        try:
            return await _view(store, now, ids)
        finally:
            await store.close()

    assert asyncio.run(read()) == seen


def test_migrate_reports_the_version_and_hides_passwords(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "migrate", "--state", f"sqlite:///{tmp_path / 'new.db'}"]) == 0
    assert capsys.readouterr().out.strip().endswith(f"schema version {SQLITE_MIGRATIONS[-1].version}")
    assert main(["db", "migrate", "--state", postgres_url]) == 0
    assert capsys.readouterr().out.strip().endswith(f"schema version {POSTGRES_MIGRATIONS[-1].version}")
    secret = postgres_url.replace("://sendgate@", "://sendgate:hunter2@") if "://sendgate@" in postgres_url else None
    if secret is not None:
        assert main(["db", "migrate", "--state", secret]) == 0  # trust auth: the password is not checked
        out = capsys.readouterr().out
        assert "hunter2" not in out and ":***@" in out


def test_copy_refuses_one_store_into_itself(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    assert main(["db", "copy", "--from", url, "--to", url]) == 2
    assert "same store" in capsys.readouterr().err


def test_copy_from_a_dead_database_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from .opa_support import free_port

    dead = f"postgresql://sendgate@127.0.0.1:{free_port()}/none"
    assert main(["db", "copy", "--from", dead, "--to", f"sqlite:///{tmp_path / 'x.db'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sendgate: PostgreSQL:") and "Traceback" not in err

"""Store faults, and what they leave behind.

- A store that cannot write: sends fail closed with a Graph 503, /readyz says so, both recover.
  The disks are real (tests/disk_support.py): a tmpfs filled to ENOSPC under the SQLite file, and a
  loop-mounted ext4 that the kernel remounts read-only after a filesystem error.
- A gateway killed between forwarding a send and recording Meta's answer: the next start marks
  the record outcome unknown, and every view shows it so (tests/test_durability.py kills for real).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from sendgate.cli import main
from sendgate.fakegraph import FakeGraph
from sendgate.gateway.send import _ErrorLines
from sendgate.ids import DecisionIds
from sendgate.state import OUTCOME_UNKNOWN, DecisionRecord, SendRecord
from sendgate.state.sqlite import SQLiteStore

from .conftest import PHONE_NUMBER_ID, US_RECIPIENT, WABA_ID, Clock, GatewayFactory, admin, send, store_of, text_message
from .disk_support import Ext4Disk, SmallDisk
from .test_review_pages import csrf_of, login
from .webhook_support import envelope, inbound_text, messages_value, post_webhook, webhook_config


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    disk = SmallDisk(tmp_path / "disk")
    yield disk
    disk.unmount()


@pytest.fixture
def ext4_disk(tmp_path: Path) -> Iterator[Ext4Disk]:
    disk = Ext4Disk(tmp_path)
    yield disk
    disk.unmount()


async def _gateway_on(gateway_factory: GatewayFactory, directory: Path, clock: Clock) -> TestClient:
    client = await gateway_factory(state=f"sqlite:///{directory / 'sendgate.db'}", webhooks=webhook_config())
    await store_of(client).record_inbound(PHONE_NUMBER_ID, US_RECIPIENT, clock.now - 60)  # the window is open
    return client


async def _ready(client: TestClient) -> tuple[int, dict[str, Any]]:
    response = await client.get("/readyz")
    return response.status, await response.json()


def _assert_store_error(status: int, headers: dict[str, Any], body: Any) -> str:
    """The send's 503 and its decision id."""
    assert status == 503, body
    error = body["error"]
    assert error["code"] == 2 and error["type"] == "SendgateStoreError"
    assert "decision log could not be written" in error["message"] and "not sent" in error["message"]
    assert error["fbtrace_id"] == headers["X-Sendgate-Decision-Id"] == error["sendgate"]["decision_id"]
    return str(error["fbtrace_id"])


async def test_a_full_disk_fails_every_send_closed_and_everything_recovers_when_it_frees(
    small_disk: SmallDisk,
    gateway_factory: GatewayFactory,
    fake_graph: tuple[FakeGraph, str],
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake, _ = fake_graph
    client = await _gateway_on(gateway_factory, small_disk.path, clock)
    status, headers, _ = await send(client, text_message())
    assert status == 200
    assert (await _ready(client))[0] == 200
    assert (await login(client))[0] == 200
    page = await (await client.get(f"/admin/decisions/{headers['X-Sendgate-Decision-Id']}")).text()
    caplog.set_level(logging.ERROR, logger="sendgate.gateway")

    small_disk.fill()
    clock.advance(5)  # past /readyz's probe interval
    status, body = await _ready(client)
    assert status == 503 and body["checks"]["store"]["ok"] is False
    assert "full" in body["checks"]["store"]["detail"]

    refused = []
    for i in range(3):
        refused.append(_assert_store_error(*await send(client, text_message(body=f"try {i}"))))
    assert len(fake.received) == 1, "nothing may reach Meta without a committed record"
    assert [await store_of(client).decision(decision_id) for decision_id in refused] == [None] * 3
    # Their records cannot be written: an ERROR line each is their only trace.
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR and r.name == "sendgate.gateway"]
    assert len(errors) == 3
    assert all(f"decision {i} not recorded and not sent" in line for i, line in zip(refused, errors, strict=True))

    # The other writers answer their own errors, never a plain-text 500.
    status, payload = await admin(client, "PUT", f"/consent/{US_RECIPIENT}", {"status": "opted_out"})
    assert status == 503 and payload["error"]["type"] == "SendgateStoreError"
    status, payload = await admin(client, "PUT", f"/accounts/{PHONE_NUMBER_ID}/pause", {"message": "x"})
    assert status == 503 and payload["error"]["type"] == "SendgateStoreError"
    hook = envelope("messages", messages_value(messages=[inbound_text("hi", clock.now)]))
    status, text = await post_webhook(client, hook)
    assert status == 503 and "retry" in orjson.loads(text)["error"]
    review = {"csrf_token": csrf_of(page), "note": "checked"}
    response = await client.post(f"/admin/decisions/{headers['X-Sendgate-Decision-Id']}/review", data=review)
    assert response.status == 503 and "could not be read or written" in await response.text()

    small_disk.free()
    clock.advance(5)  # the pair rate's 6 s since the last message that left, and /readyz's interval
    status, headers, _ = await send(client, text_message(body="after"))
    assert status == 200 and len(fake.received) == 2
    await store_of(client).flush()
    record = await store_of(client).decision(headers["X-Sendgate-Decision-Id"])
    assert record is not None and record.forwarded and record.upstream_status == 200
    assert (await _ready(client))[0] == 200
    status, _ = await admin(client, "PUT", f"/consent/{US_RECIPIENT}", {"status": "opted_out"})
    assert status == 200


def test_a_storm_of_store_errors_logs_a_burst_then_one_line_a_second(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock(0.0)
    lines = _ErrorLines(burst=3, per_second=1.0, clock=clock)
    caplog.set_level(logging.ERROR, logger="sendgate.gateway")
    for i in range(10):
        lines.error("decision %s not recorded", i)
    clock.advance(1.0)
    lines.error("decision %s not recorded", 10)
    assert [r.getMessage() for r in caplog.records] == [
        "decision 0 not recorded", "decision 1 not recorded", "decision 2 not recorded",
        "decision 10 not recorded (7 more like it not logged)",
    ]  # fmt: skip


async def test_readyz_writes_at_most_once_per_interval_however_often_it_is_asked(
    small_disk: SmallDisk, gateway_factory: GatewayFactory, clock: Clock
) -> None:
    client = await _gateway_on(gateway_factory, small_disk.path, clock)
    assert (await _ready(client))[0] == 200
    small_disk.fill()
    # Within the interval the last probe's answer stands: a hammered /readyz costs one write a second.
    assert [(await _ready(client))[0] for _ in range(20)] == [200] * 20
    clock.advance(1.5)
    status, body = await _ready(client)
    assert status == 503 and body["status"] == "not ready"


async def test_a_disk_remounted_read_only_fails_sends_closed(
    ext4_disk: Ext4Disk, gateway_factory: GatewayFactory, fake_graph: tuple[FakeGraph, str], clock: Clock
) -> None:
    fake, _ = fake_graph
    client = await _gateway_on(gateway_factory, ext4_disk.path, clock)
    assert (await send(client, text_message()))[0] == 200

    ext4_disk.fail()
    clock.advance(5)
    _assert_store_error(*await send(client, text_message(body="again")))
    assert len(fake.received) == 1
    status, body = await _ready(client)
    assert status == 503 and body["checks"]["store"]["ok"] is False
    inbound = {"phone_number_id": PHONE_NUMBER_ID, "from": US_RECIPIENT}
    status, payload = await admin(client, "POST", "/inbound", inbound)
    assert status == 503 and payload["error"]["type"] == "SendgateStoreError"


# -- after a kill: forwarded, never answered ----------------------------------------------------


def _forwarded(ids: DecisionIds, at: float, recipient: str = US_RECIPIENT) -> tuple[DecisionRecord, SendRecord]:
    """A committed forwarded record and its send row: what the send path writes before forwarding."""
    record = DecisionRecord(
        id=ids.new(at), timestamp=at, endpoint="messages", api_version="v23.0", account=PHONE_NUMBER_ID,
        waba_id=WABA_ID, recipient=recipient, type="text", template=None, category=None, decision="allow",
        mode="enforce", forwarded=True, recipient_key=recipient,
    )  # fmt: skip
    return record, SendRecord(record.id, PHONE_NUMBER_ID, WABA_ID, recipient, None, at)


async def test_only_unanswered_forwarded_records_from_before_the_start_are_marked(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    ids = DecisionIds()
    try:
        killed, killed_send = _forwarded(ids, 1000.0)
        answered, answered_send = _forwarded(ids, 1010.0, recipient="16505550002")
        unreachable, unreachable_send = _forwarded(ids, 1020.0, recipient="16505550003")
        denied = dataclasses.replace(_forwarded(ids, 1030.0)[0], decision="deny", forwarded=False)
        in_flight, in_flight_send = _forwarded(ids, 3000.0, recipient="16505550004")  # after the start
        for record, sent in ((killed, killed_send), (answered, answered_send), (unreachable, unreachable_send),
                             (denied, None), (in_flight, in_flight_send)):  # fmt: skip
            await store.log_decision(record, sent)
        store.log_upstream(answered.id, 200, "wamid.X", None, None, False)
        store.log_upstream(unreachable.id, None, None, None, "timed out after 2 s", True)
        await store.flush()

        assert await store.mark_outcome_unknown(started_at=2000.0) == 1
        marked = await store.decision(killed.id)
        assert marked is not None and marked.upstream_error == OUTCOME_UNKNOWN and marked.outcome_unknown
        assert marked.upstream_status is None and marked.forwarded
        after = {r.id: r for r in [await store.decision(x.id) for x in (answered, unreachable, denied, in_flight)] if r}
        assert after[answered.id].upstream_status == 200
        assert after[unreachable.id].upstream_error == "timed out after 2 s"
        assert after[denied.id].upstream_error is None and after[in_flight.id].upstream_error is None
        assert not any(r.outcome_unknown for r in after.values())
        # Meta may have delivered it: the send still counts for the caps.
        facts = await store.recipient_facts(PHONE_NUMBER_ID, WABA_ID, US_RECIPIENT, 1100.0)
        assert facts.last_sent_at == 1000.0
        assert await store.mark_outcome_unknown(started_at=2000.0) == 0
        # The start reads the few unanswered records from their index, never the whole log.
        with sqlite3.connect(store.path) as conn:
            plan = conn.execute(
                "EXPLAIN QUERY PLAN UPDATE decisions SET upstream_error = ? WHERE forwarded = 1"
                " AND upstream_status IS NULL AND upstream_error IS NULL AND ts < ?", ("x", 1.0)
            ).fetchall()
        assert "decisions_unanswered" in str(plan)
    finally:
        await store.close()


async def test_a_restart_marks_what_a_killed_gateway_left_and_every_view_shows_it(
    gateway_factory: GatewayFactory, clock: Clock
) -> None:
    first = await gateway_factory()
    killed, sent = _forwarded(DecisionIds(), clock.now, recipient="16505550009")
    await store_of(first).record_inbound(PHONE_NUMBER_ID, US_RECIPIENT, clock.now - 60)
    await store_of(first).log_decision(killed, sent)  # then the process died before Meta answered
    status, headers, _ = await send(first, text_message())
    assert status == 200
    answered_id = headers["X-Sendgate-Decision-Id"]
    await store_of(first).flush()

    clock.advance(60)
    second = await gateway_factory()  # the restart, on the same database
    status, body = await admin(second, "GET", f"/decisions/{killed.id}")
    assert status == 200 and body["forwarded"] is True and body["upstream_error"] == OUTCOME_UNKNOWN
    status, body = await admin(second, "GET", f"/decisions/{answered_id}")
    assert body["upstream_status"] == 200 and body["upstream_error"] is None

    assert (await login(second))[0] == 200
    page = await (await second.get(f"/admin/decisions/{killed.id}")).text()
    assert 'badge big unknown">outcome unknown' in page and "Meta's answer was recorded" in page
    listing = await (await second.get("/admin/decisions?decision=allow")).text()
    assert listing.count(">outcome unknown</span>") == 1
    answered_page = await (await second.get(f"/admin/decisions/{answered_id}")).text()
    assert "outcome unknown" not in answered_page


def test_the_cli_shows_outcome_unknown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "state.db"
    config = tmp_path / "sendgate.yaml"
    config.write_text(f"state: sqlite:///{db}\n")
    killed, sent = _forwarded(DecisionIds(), 1_790_000_000.0)

    async def kill_and_restart() -> None:
        store = SQLiteStore(db)
        try:
            await store.log_decision(killed, sent)
            await store.mark_outcome_unknown(started_at=killed.timestamp + 60)
        finally:
            await store.close()

    asyncio.run(kill_and_restart())
    assert main(["-c", str(config), "log", "list", "--decision", "allow", "--format", "table"]) == 0
    assert "allow (outcome unknown)" in capsys.readouterr().out
    assert main(["-c", str(config), "log", "show", killed.id]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["forwarded"] is True and shown["upstream_error"] == OUTCOME_UNKNOWN

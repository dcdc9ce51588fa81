"""Admission across processes on a real PostgreSQL (tests/services.py's throwaway servers).

Two `PostgresAdmission`s on one database stand for two processes: each has its own pool, so
their locks contend exactly as two processes' do. The last test runs two real processes.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from sendgate.app import SEND_PATH
from sendgate.fakegraph import FakeGraph
from sendgate.state import StoreError
from sendgate.state.admission import AdmissionTimeout, AdmissionUnavailable
from sendgate.state.fleet import open_admission
from sendgate.state.postgresql.admission import PostgresAdmission, advisory_key

from .conftest import AFTERNOON, PHONE_NUMBER_ID, US_RECIPIENT, GatewayFactory, send, store_of, text_message
from .services import PostgresServer

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def two(postgres_url: str) -> AsyncIterator[tuple[PostgresAdmission, PostgresAdmission]]:
    first, second = PostgresAdmission(postgres_url), PostgresAdmission(postgres_url)
    yield first, second
    await first.close()
    await second.close()


async def _advisory_locks(url: str) -> list[tuple[int, bool]]:
    """(key, granted) of every one-bigint advisory lock held or waited for on the database."""
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT ((classid::bigint << 32) | objid::bigint) AS key, granted FROM pg_locks "
            "WHERE locktype = 'advisory' AND objsubid = 1 "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) ORDER BY key"
        )
        return [((r["key"] + 2**63) % 2**64 - 2**63, r["granted"]) for r in rows]
    finally:
        await connection.close()


async def _eventually(check: Callable[[], Awaitable[bool]], what: str, tries: int = 500) -> None:
    for _ in range(tries):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never happened: {what}")


def test_a_postgresql_state_gets_the_shared_admission() -> None:
    assert isinstance(open_admission("postgresql://sendgate@127.0.0.1:5432/db"), PostgresAdmission)


def test_advisory_keys_are_stable_signed_64_bit_numbers() -> None:
    key = advisory_key("recipient:16505551234")
    assert key == advisory_key("recipient:16505551234")
    assert -(2**63) <= key < 2**63
    assert key != advisory_key("recipient:16505551235")


async def test_holders_of_one_key_in_two_processes_never_overlap(
    two: tuple[PostgresAdmission, PostgresAdmission],
) -> None:
    log: list[tuple[str, int]] = []

    async def holder(admission: PostgresAdmission, i: int) -> None:
        async with admission.hold(["recipient:1"], timeout=60):
            log.append(("in", i))
            await asyncio.sleep(0.002)  # the other process would get in here, were it not held
            log.append(("out", i))

    await asyncio.gather(*(holder(two[i % 2], i) for i in range(40)))
    assert len(log) == 80
    for at in range(0, 80, 2):  # strictly in, out, in, out: never two inside at once
        assert log[at][0] == "in" and log[at + 1] == ("out", log[at][1]), log[at : at + 2]
    assert two[0].held() == two[1].held() == 0


async def test_distinct_keys_go_ahead_together_across_processes(
    two: tuple[PostgresAdmission, PostgresAdmission], postgres_url: str
) -> None:
    first, second = two
    inside = asyncio.Event()
    async with first.hold(["recipient:1"], timeout=10):
        # The second process gets another key while the first holds its own, and a send with
        # both keys waits for the first: only keys are held, never the whole database.
        async with second.hold(["recipient:2"], timeout=10):
            inside.set()
            held = sorted(key for key, granted in await _advisory_locks(postgres_url) if granted)
            assert held == sorted([advisory_key("recipient:1"), advisory_key("recipient:2")])
        with pytest.raises(AdmissionTimeout):
            async with second.hold(["recipient:2", "recipient:1"], timeout=0.3):
                pass
    assert inside.is_set()
    assert await _advisory_locks(postgres_url) == []


async def test_a_wait_past_the_timeout_names_the_key_and_leaves_no_lock(
    two: tuple[PostgresAdmission, PostgresAdmission], postgres_url: str
) -> None:
    first, second = two
    async with first.hold(["recipient:1"], timeout=10):
        with pytest.raises(AdmissionTimeout) as raised:
            async with second.hold(["recipient:1"], timeout=0.3):
                pytest.fail("admitted while another process held the key")
        assert raised.value.key == "recipient:1"
        # The timed-out lock request is gone: only the holder's lock is left, granted.
        await _eventually(lambda: _only_granted(postgres_url, ["recipient:1"]), "the waiter's request withdrawn")
    assert await _advisory_locks(postgres_url) == []
    async with second.hold(["recipient:1"], timeout=10):  # and the key is free for the one that timed out
        pass


async def _only_granted(url: str, keys: list[str]) -> bool:
    return await _advisory_locks(url) == sorted((advisory_key(k), True) for k in keys)


async def test_a_send_cancelled_while_waiting_keeps_no_lock(
    two: tuple[PostgresAdmission, PostgresAdmission], postgres_url: str
) -> None:
    first, second = two

    async def wait_for_key() -> None:
        async with second.hold(["recipient:1"], timeout=60):
            await asyncio.sleep(60)

    for _ in range(20):
        async with first.hold(["recipient:1"], timeout=10):
            waiter = asyncio.create_task(wait_for_key())
            await _eventually(lambda: _waiting(postgres_url), "the second process waiting on the key")
        # The lock is handed to the waiter as it is cancelled: granted to a query the client gave
        # up on, it must not stay with the connection (nor the connection stay out of its pool).
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        await _eventually(lambda: _no_locks(postgres_url), "no advisory lock left")
        assert second.held() == 0
    async with first.hold(["recipient:1"], timeout=10):  # nothing left behind blocks the key
        pass


async def _waiting(url: str) -> bool:
    return any(not granted for _, granted in await _advisory_locks(url))


async def _no_locks(url: str) -> bool:
    return await _advisory_locks(url) == []


async def test_postgresql_down_is_a_store_error_and_admission_comes_back_with_it(
    make_postgres: Callable[[], PostgresServer],
) -> None:
    server = make_postgres()
    admission = PostgresAdmission(server.url, connect_timeout=5)
    try:
        async with admission.hold(["recipient:1"], timeout=5):
            server.kill()  # down while held: the release cannot unlock, and need not (the session is gone)
        with pytest.raises(AdmissionUnavailable) as raised:
            async with admission.hold(["recipient:1"], timeout=5):
                pytest.fail("admitted with the database down")
        assert isinstance(raised.value, StoreError)  # fails closed wherever store faults do
        assert "PostgreSQL could not be reached" in str(raised.value)
        assert admission.held() == 0
        server.start()
        async with admission.hold(["recipient:1"], timeout=5):  # no restart of the gateway needed
            pass
    finally:
        await admission.close()


async def test_keyless_holds_touch_no_database() -> None:
    admission = PostgresAdmission("postgresql://sendgate@127.0.0.1:1/nothing-listens-here")
    async with admission.hold([], timeout=1):  # a status call reads no recipient state
        pass
    await admission.close()


@pytest.fixture
def engine_kind() -> str:
    return "embedded"


async def test_a_send_the_shared_admission_cannot_take_fails_closed_with_its_own_reason(
    gateway_factory: GatewayFactory, fake_graph: tuple[FakeGraph, str], make_postgres: Callable[[], PostgresServer]
) -> None:
    fake, _ = fake_graph
    client = await gateway_factory()  # the store stays up (SQLite): only admission's database goes
    server = make_postgres()
    admission = PostgresAdmission(server.url, connect_timeout=5)
    client.app[SEND_PATH].admission = admission
    await store_of(client).record_inbound(PHONE_NUMBER_ID, US_RECIPIENT, AFTERNOON - 60)
    try:
        assert (await send(client, text_message()))[0] == 200
        server.kill()
        status, headers, body = await send(client, text_message(body="second"))
    finally:
        await admission.close()
    assert status == 503
    assert body["error"]["code"] == 2
    assert body["error"]["type"] == "SendgateAdmissionError"
    assert "could not be admitted" in body["error"]["message"]
    assert body["error"]["error_data"]["details"].startswith("not admitted: admission: PostgreSQL could not be reached")
    await store_of(client).flush()
    record = await store_of(client).decision(headers["X-Sendgate-Decision-Id"])
    assert record is not None
    assert (record.decision, record.forwarded) == ("error", False)
    assert record.reasons[0]["rule"] == "admission.unavailable"
    assert [r.body["text"]["body"] for r in fake.sent] == ["Your table is ready."]


# -- two real processes --------------------------------------------------------------------------

_COUNTER_PROCESS = textwrap.dedent("""
    import asyncio, sys, time
    import asyncpg
    from sendgate.state.postgresql.admission import PostgresAdmission

    async def main(url, holders):
        admission = PostgresAdmission(url)
        pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
        started = time.time()

        async def one():
            async with admission.hold(["counter:1"], timeout=120):
                value = await pool.fetchval("SELECT n FROM counter WHERE id = 1")
                await asyncio.sleep(0.005)  # read-modify-write: a lost update without admission
                await pool.execute("UPDATE counter SET n = $1 WHERE id = 1", value + 1)

        await asyncio.gather(*(one() for _ in range(holders)))
        print(started, time.time(), flush=True)
        await pool.close()
        await admission.close()

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
""")


async def test_two_processes_read_modify_write_one_row_exactly(postgres_url: str) -> None:
    connection = await asyncpg.connect(postgres_url)
    await connection.execute("CREATE TABLE counter (id int PRIMARY KEY, n int NOT NULL); INSERT INTO counter VALUES (1, 0)")
    holders = 60
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    processes = [
        subprocess.Popen([sys.executable, "-c", _COUNTER_PROCESS, postgres_url, str(holders)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]  # fmt: skip
    spans = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        spans.append(tuple(float(t) for t in out.split()))
    try:
        assert await connection.fetchval("SELECT n FROM counter WHERE id = 1") == 2 * holders
    finally:
        await connection.close()
    # They ran at the same time (else this proves nothing about two processes).
    (start_a, end_a), (start_b, end_b) = spans
    assert start_a < end_b and start_b < end_a

"""Many processes, one truth: separate `sendgate serve` processes on one PostgreSQL and Redis.

Bursts split across two replicas (and across `--workers 2`) forward exactly what the caps allow;
what one replica writes, the other reads; the faults of a replica, of PostgreSQL and of Redis
are each what the README says ("Running more than one").
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sendgate.state import ConsentRecord, DecisionQuery, DecisionRecord, open_store

from .conftest import ADMIN_TOKEN, CATALOG, PHONE_NUMBER_ID, WABA_ID, template_message, text_message
from .opa_support import free_port
from .processes import FakeMetaProcess, GatewayProcess, daytime_recipient, post_message
from .services import PostgresServer, RedisServer

BURST = 40  # sends per burst, half through each replica
PAIR_BURST = 5  # policies/data.json frequency.pair_rate.burst
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def _prepare(state: str, recipients: list[str], now: float) -> None:
    """The catalog, and every recipient opted in to everything and inside its window."""
    store = open_store(state)
    try:
        await store.put_templates(WABA_ID, CATALOG)
        await store.import_consent([
            ConsentRecord(r, "opted_in", ("marketing", "utility", "authentication"), "test", None, now - 3600)
            for r in recipients
        ])  # fmt: skip
        for r in recipients:
            await store.record_inbound(PHONE_NUMBER_ID, r, now - 60)
    finally:
        await store.close()


async def _records(state: str) -> list[DecisionRecord]:
    store = open_store(state)
    try:
        return await store.decisions(DecisionQuery(limit=100_000))
    finally:
        await store.close()


@pytest.fixture
def fake_meta() -> Iterator[FakeMetaProcess]:
    fake = FakeMetaProcess()
    yield fake
    fake.stop()


@pytest.fixture
def replicas(
    postgres_url: str, redis_url: str, fake_meta: FakeMetaProcess
) -> Iterator[Callable[..., GatewayProcess]]:
    """`replicas(**settings)`: a `sendgate serve` on the test's database and Redis, stopped after."""
    started: list[GatewayProcess] = []

    def start(**settings: Any) -> GatewayProcess:
        started.append(GatewayProcess(postgres_url, fake_meta.url, redis_url=redis_url,
                                      admin_token=ADMIN_TOKEN, **settings))  # fmt: skip
        return started[-1]

    yield start
    for gateway in started:
        gateway.kill()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # One pool per test; limit high enough that a burst is concurrent.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200, force_close=True)) as session:
        yield session


async def _split_burst(
    http: aiohttp.ClientSession, urls: list[str], bodies: list[dict[str, Any]]
) -> Counter[int]:
    """Every body at once, alternating between the urls."""
    results = await asyncio.gather(*(post_message(http, urls[i % len(urls)], b) for i, b in enumerate(bodies)))
    return Counter(status for status, _ in results)


async def _exact_caps(
    http: aiohttp.ClientSession, urls: list[str], state: str, fake: FakeMetaProcess, base: int
) -> None:
    marketing, texts = daytime_recipient(base), daytime_recipient(base + 1)
    await _prepare(state, [marketing, texts], time.time())
    statuses = await _split_burst(http, urls, [template_message("spring_sale", to=marketing)] * BURST)
    assert statuses[200] == 1, statuses  # the marketing cap: 1 per 24 h, whichever replica got it
    statuses = await _split_burst(http, urls, [text_message(to=texts)] * BURST)
    assert statuses[200] == PAIR_BURST and statuses[429] == BURST - PAIR_BURST, statuses
    received = Counter(await fake.recipients())
    assert received[marketing] == 1 and received[texts] == PAIR_BURST
    records = await _records(state)
    assert sum(r.forwarded for r in records if r.recipient == marketing) == 1
    assert sum(r.forwarded for r in records if r.recipient == texts) == PAIR_BURST
    assert len(records) == 2 * BURST  # one record per call, whichever process took it


async def test_two_replicas_forward_exactly_what_the_caps_allow(
    replicas: Callable[..., GatewayProcess], postgres_url: str, fake_meta: FakeMetaProcess,
    http: aiohttp.ClientSession,
) -> None:
    a, b = replicas(), replicas()
    await _exact_caps(http, [a.messages_url, b.messages_url], postgres_url, fake_meta, 10)


async def test_two_workers_forward_exactly_what_the_caps_allow(
    replicas: Callable[..., GatewayProcess], postgres_url: str, fake_meta: FakeMetaProcess,
    http: aiohttp.ClientSession,
) -> None:
    gateway = replicas(workers=2)
    await _exact_caps(http, [gateway.messages_url], postgres_url, fake_meta, 20)


async def test_what_one_replica_writes_the_other_reads(
    replicas: Callable[..., GatewayProcess], postgres_url: str, http: aiohttp.ClientSession,
) -> None:
    reviewer = {"name": "ana", "token": "ana-reviewer-token"}
    a, b = replicas(reviewer_tokens=[reviewer]), replicas(reviewer_tokens=[reviewer])
    recipient = daytime_recipient(30)
    await _prepare(postgres_url, [recipient], time.time())
    status, _ = await post_message(http, a.messages_url, template_message("paused_promo", to=recipient))
    assert status >= 400
    listed = await (await http.get(f"{b.base}/admin/v1/decisions", headers=ADMIN)).json()
    decision_id = listed["data"][0]["id"]
    # A review note written through one replica is listed by the other.
    async with http.post(f"{a.base}/admin/v1/decisions/{decision_id}/reviews", headers=ADMIN,
                         json={"reviewer": "ana", "note": "paused template, told the team"}) as response:
        assert response.status == 201
    async with http.get(f"{b.base}/admin/v1/decisions/{decision_id}/reviews", headers=ADMIN) as response:
        notes = await response.json()
    assert [n["note"] for n in notes["reviews"]] == ["paused template, told the team"]

    # A reviewer signed in on one replica is served by the other (the session is in Redis).
    jar = aiohttp.CookieJar(unsafe=True)  # one browser: cookies for 127.0.0.1 go to both ports
    async with aiohttp.ClientSession(cookie_jar=jar) as browser:
        form = await (await browser.get(f"{a.base}/admin/login")).text()
        csrf = form.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        signed_in = await browser.post(f"{a.base}/admin/login",
                                       data={"csrf_token": csrf, "token": reviewer["token"], "next": ""})  # fmt: skip
        assert signed_in.status == 200
        page = await browser.get(f"{b.base}/admin/decisions/{decision_id}", allow_redirects=False)
        assert page.status == 200 and "paused template, told the team" in await page.text()


# -- faults ------------------------------------------------------------------------------

LOAD = 2000  # distinct recipients: each message's record is found by its recipient


async def _load(
    http: aiohttp.ClientSession, urls: list[str], recipients: list[str], answered: Counter[int],
    workers: int = 24,
) -> None:
    """Send one text to each recipient, `workers` at a time, spread over the urls; count the answers."""
    queue = iter(enumerate(recipients))

    async def worker() -> None:
        for i, recipient in queue:
            try:
                status, _ = await post_message(http, urls[i % len(urls)], text_message(to=recipient))
            except aiohttp.ClientError:
                status = 0  # the replica it went to is gone
            answered[status] += 1

    await asyncio.gather(*(worker() for _ in range(workers)))


def _load_recipients(base: int, count: int = LOAD) -> list[str]:
    prefix = daytime_recipient(0)[:-4]
    return [f"{prefix[:-2]}{base:02d}{i:04d}" for i in range(count)]


async def _every_received_message_has_a_record(fake: FakeMetaProcess, state: str) -> set[str]:
    reached = set(await fake.recipients())
    logged = {r.recipient for r in await _records(state) if r.forwarded}
    missing = reached - logged
    assert not missing, f"{len(missing)} messages reached Meta without a committed record"
    return reached


async def test_sigkill_one_replica_under_load(
    replicas: Callable[..., GatewayProcess], postgres_url: str, fake_meta: FakeMetaProcess,
    http: aiohttp.ClientSession,
) -> None:
    a, b = replicas(), replicas()
    recipients = _load_recipients(40)
    await _prepare(postgres_url, recipients, time.time())
    answered: Counter[int] = Counter()
    load = asyncio.create_task(_load(http, [a.messages_url, b.messages_url], recipients, answered))
    while answered[200] < 300:
        assert not load.done(), answered
        await asyncio.sleep(0.01)
    a.kill()
    await load
    assert answered[0] > 0 and answered[200] > 300, answered  # the kill landed mid-load
    reached = await _every_received_message_has_a_record(fake_meta, postgres_url)
    assert len(reached) >= answered[200]
    # The survivor kept serving; its own unanswered records are not touched by a restart of a.
    records = await _records(postgres_url)
    open_after_kill = {r.id for r in records if r.forwarded and r.upstream_status is None and r.upstream_error is None}
    a.restart()  # a's start marks what a's dead process left open; nothing of b's (alive)
    records = await _records(postgres_url)
    marked = {r.id for r in records if r.outcome_unknown}
    assert marked == open_after_kill
    status, _ = await post_message(http, b.messages_url, text_message(to=daytime_recipient(900)))
    assert status == 400  # b serves (no open window for that number, 131047: a decision, not a fault)


async def test_postgres_stopped_mid_load_fails_closed_and_recovers(
    make_postgres: Callable[[], PostgresServer], make_redis: Callable[[], RedisServer],
    fake_meta: FakeMetaProcess, http: aiohttp.ClientSession,
) -> None:
    postgres = make_postgres()
    redis = make_redis()
    state = postgres.url
    recipients = _load_recipients(50, 1200)
    await _prepare(state, recipients, time.time())
    a = GatewayProcess(state, fake_meta.url, redis_url=redis.url, admin_token=ADMIN_TOKEN)
    b = GatewayProcess(state, fake_meta.url, redis_url=redis.url, admin_token=ADMIN_TOKEN)
    try:
        answered: Counter[int] = Counter()
        load = asyncio.create_task(_load(http, [a.messages_url, b.messages_url], recipients[:600], answered))
        while answered[200] < 150:
            assert not load.done(), answered
            await asyncio.sleep(0.01)
        postgres.shutdown()
        await load
        assert answered[503] > 0, answered
        # What a send gets while the database is away: Graph's shape, code 2, its own reason.
        status, body = await post_message(http, a.messages_url, text_message(to=recipients[700]))
        assert status == 503 and body["error"]["code"] == 2, body
        assert body["error"]["type"] == "SendgateStoreError", body
        for gateway in (a, b):
            async with http.get(f"{gateway.base}/readyz") as response:
                assert response.status == 503
        postgres.start()
        # Back without a restart: both replicas serve again.
        for gateway in (a, b):
            for attempt in range(100):
                async with http.get(f"{gateway.base}/readyz") as response:
                    if response.status == 200:
                        break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("readyz never came back")
        again: Counter[int] = Counter()
        await _load(http, [a.messages_url, b.messages_url], recipients[800:900], again)
        assert again[200] == 100, again
        reached = await _every_received_message_has_a_record(fake_meta, state)
        # A send refused for the fault has no record (it could not be written) and never reached Meta.
        refused_during = set(recipients[:600]) - {r.recipient for r in await _records(state)}
        assert answered[503] <= len(refused_during) and not reached & refused_during
    finally:
        a.kill()
        b.kill()


async def test_redis_stopped_the_sends_and_the_shared_parts_fail_closed(
    postgres_url: str, make_redis: Callable[[], RedisServer], fake_meta: FakeMetaProcess,
    http: aiohttp.ClientSession,
) -> None:
    redis = make_redis()
    a = GatewayProcess(postgres_url, fake_meta.url, redis_url=redis.url, admin_token=ADMIN_TOKEN)
    try:
        recipients = _load_recipients(60, 20)
        await _prepare(postgres_url, recipients, time.time())
        assert (await post_message(http, a.messages_url, text_message(to=recipients[0])))[0] == 200
        redis.kill()
        # The send counters (throughput, messaging limit, pacing) are in Redis: no send without them.
        status, body = await post_message(http, a.messages_url, text_message(to=recipients[1]))
        assert status == 503 and body["error"]["type"] == "SendgateSharedStateError", body
        assert body["error"]["code"] == 2
        async with http.get(f"{a.base}/admin/v1/decisions", headers=ADMIN) as response:
            body = await response.json()
            # The guessing throttle is in Redis: no token is checked without it.
            assert response.status == 503 and body["error"]["type"] == "SendgateSharedStateError", body
        redis.start()
        for attempt in range(100):
            async with http.get(f"{a.base}/admin/v1/decisions", headers=ADMIN) as response:
                if response.status == 200:
                    break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the admin API never came back")
        assert (await post_message(http, a.messages_url, text_message(to=recipients[1])))[0] == 200
    finally:
        a.kill()


def test_a_second_serve_on_one_sqlite_file_is_refused(tmp_path: Path, fake_meta: FakeMetaProcess) -> None:
    """One serving process per SQLite file: a second one would admit sends on its own (caps no
    longer exact) and mark the first one's sends in flight outcome unknown."""
    state = f"sqlite:///{tmp_path / 'state.db'}"
    first = GatewayProcess(state, fake_meta.url)
    try:
        second = subprocess.run([sys.executable, "-m", "sendgate.cli", "serve"], env={**first.env, "SENDGATE_LISTEN":
                                f"127.0.0.1:{free_port()}"}, capture_output=True, text=True, timeout=60)  # fmt: skip
        assert second.returncode == 2
        assert second.stderr.startswith("sendgate: another sendgate serve uses the SQLite file state.db")
        assert "Traceback" not in second.stderr
    finally:
        assert first.stop() == 0
    again = GatewayProcess(state, fake_meta.url)  # the lock went with the first process
    assert again.stop() == 0


async def test_two_replicas_reach_exactly_the_portfolio_messaging_limit(
    replicas: Callable[..., GatewayProcess], postgres_url: str, fake_meta: FakeMetaProcess,
    http: aiohttp.ClientSession,
) -> None:
    """The messaging limit's distinct recipients are counted in Redis: a burst split across two
    processes reaches exactly the limit's users (utility templates, no window open)."""
    limit = 15
    accounts = [{"phone_number_id": PHONE_NUMBER_ID, "waba_id": WABA_ID, "messaging_limit": limit, "throughput_mps": 1000}]
    a, b = replicas(accounts=accounts), replicas(accounts=accounts)
    numbers = [f"1650556{i:04d}" for i in range(BURST)]
    store = open_store(postgres_url)
    try:
        await store.put_templates(WABA_ID, CATALOG)
        await store.import_consent([ConsentRecord(n, "opted_in", ("utility",), "test", None, time.time() - 3600)
                                    for n in numbers])  # fmt: skip
    finally:
        await store.close()
    results = await asyncio.gather(*(post_message(http, (a, b)[i % 2].messages_url, template_message(to=n))
                                     for i, n in enumerate(numbers)))  # fmt: skip
    assert Counter(status for status, _ in results) == {200: limit, 403: BURST - limit}
    assert {answer["error"]["code"] for status, answer in results if status == 403} == {770700}
    assert len(set(await fake_meta.recipients())) == limit

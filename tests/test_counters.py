"""The rate and pacing counters (`state/counters.py`): one contract, in process and in Redis.

Every contract test runs on both implementations. "Two replicas" are two counter objects: in Redis
each has its own client (its own connections), in process they are the same object, as two sends
of one process share it. Times are the injected `now`, never the wall clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from sendgate.app import COUNTERS
from sendgate.state.counters import Counted, LocalCounters, SendCounters, SharedStateError
from sendgate.state.redis import open_redis
from sendgate.state.redis.counters import RedisCounters

from .conftest import GatewayFactory
from .services import RedisServer

T0 = 1_767_225_600.123456  # a real epoch time with a fraction: times must survive Redis exactly


@pytest.fixture(params=["local", "redis"])
async def replicas(request: pytest.FixtureRequest) -> AsyncIterator[tuple[SendCounters, SendCounters]]:
    if request.param == "local":
        local = LocalCounters()
        yield local, local
        return
    url = request.getfixturevalue("redis_url")
    clients = [open_redis(url), open_redis(url)]
    yield RedisCounters(lambda: clients[0]), RedisCounters(lambda: clients[1])
    for client in clients:
        await client.aclose()


@pytest.fixture
def counters(replicas: tuple[SendCounters, SendCounters]) -> SendCounters:
    return replicas[0]


async def test_a_concurrent_burst_of_distinct_members_admits_exactly_the_limit(
    replicas: tuple[SendCounters, SendCounters],
) -> None:
    a, b = replicas
    adds = [(a if n % 2 else b).add_distinct("portfolio:1", f"1650555{n:04d}", limit=50, window=86400.0, now=T0)
            for n in range(200)]  # fmt: skip
    results = await asyncio.gather(*adds)
    admitted = [r for r in results if r.admitted]
    assert len(admitted) == 50
    assert sorted(r.count for r in admitted) == list(range(1, 51))
    refused = [r for r in results if not r.admitted]
    assert all(r.count == 50 and r.retry_after == 86400.0 for r in refused)
    # A member already counted is always admitted, on either replica; a new one is not.
    again = await b.add_distinct("portfolio:1", admitted[0].member, limit=50, window=86400.0, now=T0 + 1)
    assert again.admitted and again.count == 50 and again.previous == T0 + 86400.0
    assert not (await a.add_distinct("portfolio:1", "16505559999", limit=50, window=86400.0, now=T0 + 1)).admitted


async def test_a_concurrent_burst_of_takes_admits_exactly_the_rate(replicas: tuple[SendCounters, SendCounters]) -> None:
    a, b = replicas
    results = await asyncio.gather(*((a if n % 2 else b).take("number:1", limit=80, window=1.0, now=T0)
                                     for n in range(200)))  # fmt: skip
    assert sum(r.admitted for r in results) == 80
    assert {r.retry_after for r in results if not r.admitted} == {1.0}
    assert len({r.member for r in results}) == 200  # every take is a member of its own
    # Other keys are counted apart.
    assert (await a.take("number:2", limit=80, window=1.0, now=T0)).admitted


async def test_retry_after_is_exactly_when_the_oldest_leaves_the_window(counters: SendCounters) -> None:
    assert (await counters.take("n", limit=2, window=1.0, now=T0)).admitted
    assert (await counters.take("n", limit=2, window=1.0, now=T0 + 0.25)).admitted
    refused = await counters.take("n", limit=2, window=1.0, now=T0 + 0.5)
    assert not refused.admitted and refused.count == 2
    assert refused.retry_after == T0 + 1.0 - (T0 + 0.5)
    # Waiting exactly that long is enough: the first leaves the window at T0 + 1.0 ...
    assert (await counters.take("n", limit=2, window=1.0, now=T0 + 0.5 + refused.retry_after)).admitted
    # ... and the next refusal waits for the second one (T0 + 0.25) to leave.
    refused = await counters.take("n", limit=2, window=1.0, now=T0 + 1.0)
    assert not refused.admitted and refused.retry_after == T0 + 1.25 - (T0 + 1.0)


async def test_the_window_moves_with_the_injected_clock(counters: SendCounters) -> None:
    add = counters.add_distinct
    assert (await add("content:x", "a", limit=2, window=10.0, now=100.0)).admitted
    assert (await add("content:x", "b", limit=2, window=10.0, now=101.0)).admitted
    assert (await add("content:x", "a", limit=2, window=10.0, now=105.0)).admitted  # counted from 105 on
    refused = await add("content:x", "c", limit=2, window=10.0, now=110.5)  # a (105) and b (101) still in
    assert not refused.admitted and refused.count == 2 and refused.retry_after == 0.5
    admitted = await add("content:x", "c", limit=2, window=10.0, now=111.0)  # b left at 111
    assert admitted.admitted and admitted.count == 2
    assert (await add("content:x", "d", limit=2, window=10.0, now=114.9)).retry_after == pytest.approx(0.1)
    assert (await add("content:x", "d", limit=2, window=10.0, now=115.0)).admitted  # a left at 115


async def test_times_never_move_back(counters: SendCounters) -> None:
    """A replica whose clock is behind counts a member again: it keeps its later time."""
    assert (await counters.add_distinct("k", "a", limit=1, window=10.0, now=100.0)).admitted
    behind = await counters.add_distinct("k", "a", limit=1, window=10.0, now=95.0)
    assert behind.admitted and behind.until == 110.0 and behind.previous == 110.0
    assert (await counters.add_distinct("k", "b", limit=1, window=10.0, now=109.0)).retry_after == 1.0


async def test_undo_takes_an_add_back_as_if_it_had_not_happened(counters: SendCounters) -> None:
    first = await counters.take("n", limit=1, window=1.0, now=T0)
    assert not (await counters.take("n", limit=1, window=1.0, now=T0 + 0.5)).admitted
    await counters.undo(first)  # the send was not forwarded: its slot is free again
    assert (await counters.take("n", limit=1, window=1.0, now=T0 + 0.5)).admitted

    new = await counters.add_distinct("p", "a", limit=1, window=60.0, now=T0)
    await counters.undo(new)
    assert (await counters.add_distinct("p", "b", limit=1, window=60.0, now=T0)).count == 1  # a is gone
    # A member counted again and undone is back at its previous time: it leaves the window then.
    again = await counters.add_distinct("p", "b", limit=1, window=60.0, now=T0 + 30)
    assert again.previous == T0 + 60 and again.until == T0 + 30 + 60
    await counters.undo(again)
    assert (await counters.add_distinct("p", "c", limit=1, window=60.0, now=T0 + 59)).retry_after == T0 + 60 - (T0 + 59)
    assert (await counters.add_distinct("p", "c", limit=1, window=60.0, now=T0 + 60)).admitted


async def test_undo_of_a_refusal_or_of_an_add_counted_again_since_changes_nothing(counters: SendCounters) -> None:
    kept = await counters.add_distinct("q", "a", limit=1, window=60.0, now=100.0)
    refused = await counters.add_distinct("q", "b", limit=1, window=60.0, now=101.0)
    await counters.undo(refused)
    assert (await counters.add_distinct("q", "b", limit=1, window=60.0, now=102.0)).count == 1  # a still counts
    await counters.add_distinct("q", "a", limit=1, window=60.0, now=110.0)  # another send counted a since
    await counters.undo(kept)  # stale: a keeps its time from 110
    assert (await counters.add_distinct("q", "b", limit=1, window=60.0, now=169.0)).retry_after == 1.0
    await counters.undo(Counted(True, 1, 0.0, "never-used", "a", 1.0, None))  # an unknown key: nothing


async def test_a_limit_and_a_window_must_be_positive(counters: SendCounters) -> None:
    with pytest.raises(ValueError):
        await counters.take("n", limit=0, window=1.0, now=T0)
    with pytest.raises(ValueError):
        await counters.add_distinct("n", "a", limit=1, window=0.0, now=T0)


# -- memory --------------------------------------------------------------------------------------


async def test_in_process_keys_whose_members_all_left_are_dropped() -> None:
    counters = LocalCounters()
    for n in range(100):
        await counters.add_distinct(f"content:{n}", "a", limit=10, window=60.0, now=1000.0 + n / 2)
    await counters.take("number:1", limit=80, window=1.0, now=1000.0)
    assert len(counters) == 101
    await counters.take("number:1", limit=80, window=1.0, now=1080.0)  # 60 s after the 41st content key
    assert len(counters) == 100 - 41 + 1
    await counters.take("number:2", limit=80, window=1.0, now=1200.0)
    assert len(counters) == 1


async def test_redis_keeps_at_most_limit_members_per_key_for_about_a_window(redis_url: str) -> None:
    client = open_redis(redis_url)
    try:
        counters = RedisCounters(lambda: client)
        for n in range(30):
            await counters.add_distinct("portfolio:9", f"m{n}", limit=20, window=3600.0, now=T0 + n)
            await counters.take("number:9", limit=5, window=1.0, now=T0 + n / 100)
        assert sorted(k.decode() for k in await client.keys("*")) == ["sendgate:count:number:9", "sendgate:count:portfolio:9"]
        assert await client.zcard("sendgate:count:portfolio:9") == 20
        assert await client.zcard("sendgate:count:number:9") == 5
        assert 3600_000 < await client.pttl("sendgate:count:portfolio:9") <= 3601_000
        assert 0 < await client.pttl("sendgate:count:number:9") <= 2000
    finally:
        await client.aclose()


# -- Redis faults --------------------------------------------------------------------------------


async def test_with_redis_down_every_call_fails_closed_and_recovers_after_a_restart(
    make_redis: Callable[[], RedisServer],
) -> None:
    server = make_redis()
    client = open_redis(server.url)
    try:
        counters = RedisCounters(lambda: client)
        kept = await counters.take("number:1", limit=2, window=10.0, now=T0)
        server.kill()
        with pytest.raises(SharedStateError, match="Redis"):
            await counters.take("number:1", limit=2, window=10.0, now=T0 + 1)
        with pytest.raises(SharedStateError):
            await counters.add_distinct("portfolio:1", "a", limit=2, window=10.0, now=T0 + 1)
        with pytest.raises(SharedStateError):
            await counters.undo(kept)
        server.start()  # back, empty (no persistence): the windows start afresh; scripts load again
        assert (await counters.take("number:1", limit=2, window=10.0, now=T0 + 2)).count == 1
        assert (await counters.add_distinct("portfolio:1", "a", limit=2, window=10.0, now=T0 + 2)).admitted
        # A clean restart closes the pooled connections: the next call gets a new one, not an error.
        server.restart()
        assert (await counters.take("number:1", limit=2, window=10.0, now=T0 + 3)).count == 1
    finally:
        await client.aclose()


# -- the app's counters ------------------------------------------------------------------------------


async def test_the_app_counts_in_process_or_with_redis_url_for_every_replica(
    gateway_factory: GatewayFactory, redis_url: str
) -> None:
    assert isinstance((await gateway_factory()).app[COUNTERS], LocalCounters)
    a, b = await gateway_factory(redis_url=redis_url), await gateway_factory(redis_url=redis_url)
    takes = [(a if n % 2 else b).app[COUNTERS].take("number:1", limit=80, window=1.0, now=T0) for n in range(100)]
    assert sum(r.admitted for r in await asyncio.gather(*takes)) == 80

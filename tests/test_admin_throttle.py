"""Guessing tokens: one throttle per client address for the JSON admin API and the sign-in page.

The gateway trusts no forwarding header, so the client address is the connection's own: the
tests connect from other loopback addresses (all of 127.0.0.0/8 is this host) to be other clients.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
from aiohttp.test_utils import TestClient

from sendgate.admin.shared import RedisGuessThrottle, open_redis
from sendgate.admin.throttle import FAILURES, MAX_ADDRESSES, WINDOW, GuessThrottle, MemoryGuessThrottle

from .conftest import ADMIN_TOKEN, Clock, GatewayFactory

Response = tuple[int, dict[str, str], bytes]


async def from_address(
    client: TestClient, address: str, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> Response:
    """One HTTP/1.1 request on a connection of its own from `address`: (status, headers, body)."""
    assert client.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port, local_addr=(address, 0))
    lines = [f"{method} {path} HTTP/1.1", "Host: sendgate.test", "Connection: close", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    raw = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, payload = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    found = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        found[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), found, payload


async def api(client: TestClient, address: str, token: str, path: str = "/admin/v1/decisions") -> Response:
    return await from_address(client, address, "GET", path, {"Authorization": f"Bearer {token}"})


async def sign_in(client: TestClient, address: str, token: str) -> Response:
    """POST the sign-in form as a browser would after fetching it (its cookie and CSRF token match)."""
    body = urlencode({"csrf_token": "form-token", "token": token, "next": ""}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": "sendgate_login=form-token"}
    return await from_address(client, address, "POST", "/admin/login", headers, body)


def other_address(i: int) -> str:
    """The i-th of many client addresses, none of them 127.0.0.1 or 127.0.0.2."""
    return f"127.{1 + i // 65536}.{i // 256 % 256}.{i % 256}"


async def many(calls: list[Coroutine[Any, Any, Response]]) -> list[Response]:
    gate = asyncio.Semaphore(32)

    async def one(call: Coroutine[Any, Any, Response]) -> Response:
        async with gate:
            return await call

    return list(await asyncio.gather(*(one(c) for c in calls)))


async def test_ten_wrong_admin_tokens_block_that_address_for_the_rest_of_the_window(
    gateway: TestClient, clock: Clock
) -> None:
    for _ in range(20):  # no token offered: not a guess
        assert (await from_address(gateway, "127.0.0.1", "GET", "/admin/v1/decisions"))[0] == 401
    for _ in range(FAILURES):
        assert (await api(gateway, "127.0.0.1", "wrong"))[0] == 401
    clock.advance(60)
    status, headers, body = await api(gateway, "127.0.0.1", ADMIN_TOKEN)  # blocked means blocked
    assert status == 429 and headers["retry-after"] == "240"
    error = orjson.loads(body)["error"]
    assert error["code"] == 429 and error["type"] == "SendgateAdminError" and "240" in error["message"]
    # Every admin JSON route goes through the same check, the monitoring ones too.
    for path in ("/admin/v1/monitoring", "/admin/v1/policy", "/admin/v1/accounts/1"):
        status, headers, _ = await api(gateway, "127.0.0.1", ADMIN_TOKEN, path)
        assert status == 429 and headers["retry-after"] == "240", path
    assert (await api(gateway, "127.0.0.2", ADMIN_TOKEN))[0] == 200  # another address is served
    clock.advance(239)
    assert (await api(gateway, "127.0.0.1", ADMIN_TOKEN))[0] == 429
    clock.advance(1)
    assert (await api(gateway, "127.0.0.1", ADMIN_TOKEN))[0] == 200  # the window has passed
    assert (await api(gateway, "127.0.0.1", "wrong"))[0] == 401  # and the count starts afresh


async def test_concurrent_wrong_tokens_get_ten_guesses_in_all(gateway: TestClient) -> None:
    api_results = await asyncio.gather(*(api(gateway, "127.0.0.3", "wrong") for _ in range(3 * FAILURES)))
    assert sorted(r[0] for r in api_results) == [401] * FAILURES + [429] * (2 * FAILURES)
    pages_results = await asyncio.gather(*(sign_in(gateway, "127.0.0.4", "wrong") for _ in range(3 * FAILURES)))
    assert sorted(r[0] for r in pages_results) == [401] * FAILURES + [429] * (2 * FAILURES)


async def test_wrong_sign_ins_and_wrong_api_tokens_share_one_count(gateway: TestClient) -> None:
    for _ in range(FAILURES // 2):
        assert (await sign_in(gateway, "127.0.0.5", "wrong"))[0] == 401
        assert (await api(gateway, "127.0.0.5", "wrong"))[0] == 401
    assert (await api(gateway, "127.0.0.5", ADMIN_TOKEN))[0] == 429
    status, headers, page = await sign_in(gateway, "127.0.0.5", ADMIN_TOKEN)
    assert status == 429 and headers["retry-after"] == str(int(WINDOW)) and b"Too many failed sign-ins" in page


async def test_a_blocked_sign_in_waits_for_the_window_on_the_gateway_clock(gateway: TestClient, clock: Clock) -> None:
    for _ in range(FAILURES):
        assert (await sign_in(gateway, "127.0.0.1", "wrong"))[0] == 401
    assert (await sign_in(gateway, "127.0.0.1", ADMIN_TOKEN))[0] == 429
    assert (await sign_in(gateway, "127.0.0.2", ADMIN_TOKEN))[0] == 303  # signed in from elsewhere
    clock.advance(WINDOW)
    status, headers, _ = await sign_in(gateway, "127.0.0.1", ADMIN_TOKEN)
    assert status == 303 and headers["location"] == "/admin/decisions"


async def test_many_other_failing_addresses_never_unblock_an_api_client(gateway: TestClient) -> None:
    for _ in range(FAILURES):
        await api(gateway, "127.0.0.1", "wrong")
    results = await many([api(gateway, other_address(i), "wrong") for i in range(MAX_ADDRESSES + 1)])
    assert {r[0] for r in results} == {401}
    assert (await api(gateway, "127.0.0.1", ADMIN_TOKEN))[0] == 429


async def test_many_other_failing_addresses_never_unblock_a_sign_in(gateway_factory: GatewayFactory) -> None:
    client = await gateway_factory(reviewer_tokens=[{"name": "ana", "token": "ana-reviewer-token"}])
    for _ in range(FAILURES):
        await sign_in(client, "127.0.0.1", "wrong")
    results = await many([sign_in(client, other_address(i), "wrong") for i in range(MAX_ADDRESSES + 1)])
    assert {r[0] for r in results} == {401}
    assert (await sign_in(client, "127.0.0.1", "ana-reviewer-token"))[0] == 429


# -- every throttle: in this process and in Redis ---------------------------------------------


@pytest.fixture(params=["memory", "redis"])
async def throttle(request: pytest.FixtureRequest) -> AsyncIterator[GuessThrottle]:
    """Each implementation in turn: the same calls must mean the same."""
    if request.param == "memory":
        yield MemoryGuessThrottle()
        return
    client = open_redis(request.getfixturevalue("redis_url"))
    yield RedisGuessThrottle(lambda: client)
    await client.aclose()


async def test_ten_failures_block_the_address_for_the_rest_of_the_window(throttle: GuessThrottle) -> None:
    for i in range(FAILURES - 1):
        assert await throttle.attempt("a", 1000.0 + i, failed=True) is None
    assert await throttle.attempt("a", 1009.0, failed=False) is None  # a right token counts nothing
    assert await throttle.attempt("a", 1009.5, failed=True) is None  # the tenth is answered as wrong ...
    assert await throttle.attempt("a", 1010.0, failed=False) == pytest.approx(WINDOW - 10)  # ... then blocked
    assert await throttle.attempt("a", 1010.0, failed=True) == pytest.approx(WINDOW - 10)
    assert await throttle.attempt("b", 1010.0, failed=False) is None  # another address is not
    assert await throttle.attempt("a", 999.0 + WINDOW, failed=False) == pytest.approx(1.0)
    assert await throttle.attempt("a", 1000.0 + WINDOW, failed=False) is None  # the window has passed
    for _ in range(FAILURES - 1):  # and the count starts afresh
        assert await throttle.attempt("a", 1000.0 + WINDOW, failed=True) is None
    assert await throttle.attempt("a", 1000.0 + WINDOW, failed=False) is None


async def test_concurrent_failures_are_counted_exactly(throttle: GuessThrottle) -> None:
    results = await asyncio.gather(*(throttle.attempt("c", 50.0, failed=True) for _ in range(5 * FAILURES)))
    assert sum(r is None for r in results) == FAILURES
    assert [r for r in results if r is not None] == [pytest.approx(WINDOW)] * (4 * FAILURES)


async def test_failures_older_than_the_window_do_not_count(throttle: GuessThrottle) -> None:
    for i in range(FAILURES - 1):  # at 1000, 1001, ... 1008
        assert await throttle.attempt("a", 1000.0 + i, failed=True) is None
    assert await throttle.attempt("a", 1000.0 + WINDOW, failed=True) is None  # the one at 1000 has aged out
    # The tenth within 300 s (answered as wrong) blocks until the oldest of them (1001) is 300 s old.
    assert await throttle.attempt("a", 1000.5 + WINDOW, failed=True) is None
    assert await throttle.attempt("a", 1000.9 + WINDOW, failed=False) == pytest.approx(0.1)
    assert await throttle.attempt("a", 1001.0 + WINDOW, failed=False) is None


async def test_redis_keys_expire_with_the_window(redis_url: str) -> None:
    """Memory in Redis is bounded: every key the throttle writes lives at most about a window."""
    client = open_redis(redis_url)
    try:
        throttle = RedisGuessThrottle(lambda: client)
        for _ in range(FAILURES - 1):
            await throttle.attempt("counting", 0.0, failed=True)
        for _ in range(FAILURES):
            await throttle.attempt("blocked", 0.0, failed=True)
        keys = sorted(k.decode() for k in await client.keys("*"))
        assert keys == ["sendgate:guess:{blocked}:blocked", "sendgate:guess:{counting}:failures"]
        for key in keys:
            assert 0 < await client.pttl(key) <= (WINDOW + 1) * 1000
    finally:
        await client.aclose()


# -- the in-process throttle's table ----------------------------------------------------------


async def test_a_full_table_drops_unblocked_addresses_oldest_first_and_never_a_blocked_one() -> None:
    throttle = MemoryGuessThrottle(max_addresses=100)
    for _ in range(FAILURES):
        await throttle.attempt("blocked", 0.0, failed=True)
    for _ in range(FAILURES - 1):
        await throttle.attempt("patient", 1.0, failed=True)  # nine wrong: one more would block it
    for i in range(50_000):
        await throttle.attempt(f"10.0.{i}", 2.0 + i * 1e-3, failed=True)
        assert len(throttle) <= 100
    assert await throttle.attempt("blocked", 60.0, failed=False) == pytest.approx(WINDOW - 60)
    # "patient" was the oldest unblocked entry: it went first, so its count started afresh.
    assert await throttle.attempt("patient", 60.0, failed=True) is None
    assert await throttle.attempt("patient", 60.0, failed=False) is None


async def test_a_table_full_of_blocked_addresses_counts_the_rest_together() -> None:
    throttle = MemoryGuessThrottle(max_addresses=3)
    for address in ("a", "b", "c"):
        for _ in range(FAILURES):
            await throttle.attempt(address, 0.0, failed=True)
    # No room: the addresses not in the table share one count; ten wrong among them block them all.
    for i in range(FAILURES):
        assert await throttle.attempt(f"new{i}", 10.0, failed=True) is None
    assert await throttle.attempt("someone-else", 20.0, failed=False) == pytest.approx(WINDOW - 10)
    assert len(throttle) == 3
    for address in ("a", "b", "c"):
        assert await throttle.attempt(address, 20.0, failed=False) == pytest.approx(WINDOW - 20)
    # Their own blocks end at 300; after that they are untracked like the rest, who wait until 310.
    assert await throttle.attempt("a", WINDOW - 1, failed=False) == pytest.approx(1.0)
    assert await throttle.attempt("a", WINDOW, failed=False) == pytest.approx(10.0)
    assert len(throttle) == 0
    assert await throttle.attempt("someone-else", WINDOW + 10, failed=False) is None
    assert await throttle.attempt("a", WINDOW + 10, failed=False) is None


async def test_memory_stays_bounded_whatever_the_addresses() -> None:
    throttle = MemoryGuessThrottle()
    for i in range(3 * MAX_ADDRESSES):
        for _ in range(1 + i % FAILURES):
            await throttle.attempt(f"addr-{i}", i * 0.01, failed=True)
    assert len(throttle) <= MAX_ADDRESSES
    assert await throttle.attempt("addr-29999", 300.0, failed=False) is not None  # the last one blocked stays
    assert await throttle.attempt("fresh", 1e9, failed=False) is None
    assert len(throttle) == 0  # everything expired: nothing kept

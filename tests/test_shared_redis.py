"""Replicas sharing Redis (`redis_url`): one guessing throttle and one set of review sessions for all,
and when Redis is down, sign-in and the admin API fail closed (503) until it is back.

Two gateways here are two replicas: separate apps, each with its own Redis client, on one Redis
(and one SQLite file, which is enough for what these tests look at).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson
from aiohttp.test_utils import TestClient

from sendgate.admin.pages import SESSION_COOKIE
from sendgate.admin.throttle import FAILURES
from sendgate.app import REDIS

from .conftest import ADMIN_TOKEN, Clock, GatewayFactory
from .services import RedisServer
from .test_admin_throttle import api, sign_in
from .test_review_pages import REVIEWER, csrf_of, login


def session_cookie(client: TestClient) -> str:
    cookies = client.session.cookie_jar.filter_cookies(client.make_url("/admin/decisions"))
    return cookies[SESSION_COOKIE].value


async def replicas(gateway_factory: GatewayFactory, redis_url: str) -> tuple[TestClient, TestClient]:
    settings = {"redis_url": redis_url, "reviewer_tokens": [REVIEWER], "session_ttl": 3600}
    return await gateway_factory(**settings), await gateway_factory(**settings)


async def test_a_burst_of_wrong_tokens_across_two_replicas_gets_ten_guesses_in_all(
    gateway_factory: GatewayFactory, redis_url: str
) -> None:
    a, b = await replicas(gateway_factory, redis_url)
    calls = [api(a, "127.0.0.3", "wrong") for _ in range(2 * FAILURES)]
    calls += [sign_in(b, "127.0.0.3", "wrong") for _ in range(2 * FAILURES)]
    results = await asyncio.gather(*calls)
    assert sorted(r[0] for r in results) == [401] * FAILURES + [429] * (3 * FAILURES)
    # Blocked on both, the right token too; another address is served by both.
    assert (await api(a, "127.0.0.3", ADMIN_TOKEN))[0] == 429
    assert (await sign_in(b, "127.0.0.3", ADMIN_TOKEN))[0] == 429
    assert (await api(b, "127.0.0.4", ADMIN_TOKEN))[0] == 200


async def test_a_reviewer_signed_in_on_one_replica_is_served_and_signed_out_by_another(
    gateway_factory: GatewayFactory, redis_url: str, clock: Clock
) -> None:
    a, b = await replicas(gateway_factory, redis_url)
    status, page = await login(a, REVIEWER["token"])
    assert status == 200
    cookie = {"Cookie": f"{SESSION_COOKIE}={session_cookie(a)}"}
    served = await b.get("/admin/decisions", headers=cookie, allow_redirects=False)
    assert served.status == 200 and "ana" in await served.text()
    # Redis holds a hash of the cookie, never the cookie itself.
    keys = [k.decode() for k in await a.app[REDIS].keys("*")]
    assert len(keys) == 1 and session_cookie(a) not in keys[0]
    # The CSRF token is the session's, whichever replica checks it: sign out on B ...
    assert (await b.post("/admin/logout", data={"csrf_token": "wrong"}, headers=cookie)).status == 403
    signed_out = await b.post("/admin/logout", data={"csrf_token": csrf_of(page)}, headers=cookie,
                              allow_redirects=False)  # fmt: skip
    assert signed_out.status == 303
    # ... and A no longer knows the session either.
    assert (await a.get("/admin/decisions", allow_redirects=False)).status == 303
    # A session expires on the gateway clock, on every replica.
    assert (await login(b, REVIEWER["token"]))[0] == 200
    a.session.cookie_jar.clear()
    assert (await a.get("/admin/decisions", headers={"Cookie": f"{SESSION_COOKIE}={session_cookie(b)}"},
                        allow_redirects=False)).status == 200  # fmt: skip
    clock.advance(3601)
    assert (await b.get("/admin/decisions", allow_redirects=False)).status == 303


async def test_with_redis_down_sign_in_and_the_admin_api_fail_closed_and_recover(
    gateway_factory: GatewayFactory, make_redis: Callable[[], RedisServer]
) -> None:
    server = make_redis()
    gateway = await gateway_factory(redis_url=server.url, reviewer_tokens=[REVIEWER])
    assert (await login(gateway, REVIEWER["token"]))[0] == 200
    assert (await gateway.get("/admin/decisions", allow_redirects=False)).status == 200
    server.kill()
    # The admin API: a JSON 503 for every token, the right one too; never a 500, never let through.
    for token in (ADMIN_TOKEN, "wrong"):
        status, headers, body = await api(gateway, "127.0.0.1", token)
        assert status == 503 and headers["content-type"].startswith("application/json")
        error = orjson.loads(body)["error"]
        assert error["code"] == 503 and error["type"] == "SendgateSharedStateError" and "Redis" in error["message"]
        assert str(server.port) not in error["message"]  # where Redis is stays in the server log
    # Sign-in and the pages: an HTML 503 saying why.
    status, _, page = await sign_in(gateway, "127.0.0.1", ADMIN_TOKEN)
    assert status == 503 and b"Redis" in page
    response = await gateway.get("/admin/decisions", allow_redirects=False)
    assert response.status == 503 and "text/html" in response.headers["Content-Type"]
    assert "Redis" in await response.text()
    response = await gateway.get("/admin/login", allow_redirects=False)
    assert response.status == 503
    server.start()  # back, and empty: no persistence, so the sessions are gone
    assert (await api(gateway, "127.0.0.1", ADMIN_TOKEN))[0] == 200
    assert (await gateway.get("/admin/decisions", allow_redirects=False)).status == 303
    assert (await login(gateway, REVIEWER["token"]))[0] == 200
    assert (await gateway.get("/admin/decisions", allow_redirects=False)).status == 200

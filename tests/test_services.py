"""The test harness for PostgreSQL and Redis (tests/services.py) does what the store tests rely on.

Every server is Debian's real program on its own port and in its own temporary directory: servers
are isolated from each other and from any system service, a kill is a crash whose committed data a
restart brings back (PostgreSQL) or loses (Redis: no persistence), and `stop()` leaves nothing behind.
The advisory-lock tests pin down the mechanism the PostgreSQL admission uses: one transaction-scoped
lock per key serializes the transactions on that key and no others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from .services import PostgresServer, RedisServer, require_postgres, require_redis

# What asyncpg raises on a connection whose server is gone, and on connecting to no server.
CONNECTION_LOST = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError)

seen_databases: list[str] = []


async def _tables(url: str) -> list[str]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
        return [row["tablename"] for row in rows]
    finally:
        await connection.close()


# --- finding the programs ---------------------------------------------------------------------

@pytest.mark.parametrize("ci, outcome", [("", pytest.skip.Exception), ("true", pytest.fail.Exception)])
def test_missing_programs_skip_outside_ci_and_fail_under_it(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ci: str, outcome: type[BaseException]) -> None:
    monkeypatch.setenv("CI", ci)
    monkeypatch.setenv("SENDGATE_PG_BIN", str(tmp_path))  # a directory without initdb & co.
    monkeypatch.setenv("SENDGATE_REDIS_SERVER", str(tmp_path / "redis-server"))
    with pytest.raises(outcome, match="initdb"):
        require_postgres()
    with pytest.raises(outcome, match="redis-server"):
        require_redis()


# --- PostgreSQL ---------------------------------------------------------------------------------

async def test_two_postgres_servers_are_isolated(make_postgres: Callable[[], PostgresServer]) -> None:
    first, second = make_postgres(), make_postgres()
    assert first.port != second.port and first.directory != second.directory
    connection = await asyncpg.connect(first.url)
    try:
        await connection.execute("CREATE TABLE only_in_first (id int PRIMARY KEY)")
        assert await connection.fetchval("SHOW data_directory") == str(first.data_dir)
    finally:
        await connection.close()
    assert await _tables(first.url) == ["only_in_first"]
    assert await _tables(second.url) == []


async def test_postgres_kill_drops_connections_and_a_restart_brings_the_committed_data_back(
        make_postgres: Callable[[], PostgresServer]) -> None:
    server = make_postgres()
    connection = await asyncpg.connect(server.url)
    await connection.execute("CREATE TABLE kept (id int PRIMARY KEY, note text)")
    await connection.execute("INSERT INTO kept VALUES (1, 'committed before the kill')")

    server.kill()
    assert not server.running
    with pytest.raises(CONNECTION_LOST):
        await connection.fetchval("SELECT 1")
    connection.terminate()
    with pytest.raises(CONNECTION_LOST):
        await asyncpg.connect(server.url)

    server.restart()
    connection = await asyncpg.connect(server.url)  # the same URL: same port, same data directory
    try:
        assert await connection.fetch("SELECT id, note FROM kept") == [(1, "committed before the kill")]
    finally:
        await connection.close()


async def test_postgres_stop_ends_the_server_and_removes_its_directory(
        make_postgres: Callable[[], PostgresServer]) -> None:
    server = make_postgres()
    assert (server.data_dir / "PG_VERSION").is_file()
    server.stop()
    assert not server.directory.exists()
    with pytest.raises(CONNECTION_LOST):
        await asyncpg.connect(server.url)


@pytest.mark.parametrize("run", ["first", "second"])
async def test_postgres_url_is_a_fresh_database_on_the_tests_own_server(
        postgres_server: PostgresServer, postgres_url: str, run: str) -> None:
    # sendgate's schema and nothing else (a copy of the migrated template): a second run on a
    # reused database would see `marker`, or the rows the first one wrote.
    tables = await _tables(postgres_url)
    assert "marker" not in tables and "decisions" in tables and "schema_version" in tables
    connection = await asyncpg.connect(postgres_url)
    try:
        assert await connection.fetchval("SELECT count(*) FROM decisions") == 0
        assert await connection.fetchval("SELECT count(*) FROM instances") == 0
        await connection.execute("INSERT INTO instances (owner, started_at) VALUES ($1, 0)", run)
        await connection.execute("CREATE TABLE marker (run text)")
        # The throwaway server, never a system one: its own data directory, port and settings.
        assert await connection.fetchval("SHOW data_directory") == str(postgres_server.data_dir)
        assert await connection.fetchval("SHOW port") == str(postgres_server.port)
        assert await connection.fetchval("SHOW fsync") == "off"
        databases = {row["datname"] for row in await connection.fetch("SELECT datname FROM pg_database")}
    finally:
        await connection.close()
    name = postgres_url.rsplit("/", 1)[1]
    assert name in databases
    assert not databases & set(seen_databases), "an earlier test's database was not dropped"
    seen_databases.append(name)


# --- Redis --------------------------------------------------------------------------------------

async def test_two_redis_servers_are_isolated(make_redis: Callable[[], RedisServer]) -> None:
    first, second = make_redis(), make_redis()
    assert first.port != second.port and first.directory != second.directory
    one, two = aioredis.from_url(first.url), aioredis.from_url(second.url)
    try:
        await one.set("key", "first")
        assert await one.get("key") == b"first"
        assert await two.get("key") is None
    finally:
        await one.aclose()
        await two.aclose()


async def test_redis_kill_drops_connections_and_a_restart_comes_back_empty(
        make_redis: Callable[[], RedisServer]) -> None:
    server = make_redis()
    client = aioredis.from_url(server.url)
    try:
        await client.set("counter", 7)
        server.kill()
        with pytest.raises(RedisConnectionError):
            await client.get("counter")
        server.restart()
        assert await client.ping()
        assert await client.get("counter") is None  # no RDB, no AOF: nothing survives a restart
        assert await client.config_get("save") == {"save": ""}
        assert await client.config_get("appendonly") == {"appendonly": "no"}
    finally:
        await client.aclose()
    server.shutdown()
    assert [path.name for path in server.directory.iterdir()] == ["redis.log"]  # no dump.rdb, no AOF


async def test_redis_stop_ends_the_server_and_removes_its_directory(make_redis: Callable[[], RedisServer]) -> None:
    server = make_redis()
    server.stop()
    assert not server.directory.exists()
    client = aioredis.from_url(server.url)
    try:
        with pytest.raises(RedisConnectionError):
            await client.ping()
    finally:
        await client.aclose()


@pytest.mark.parametrize("run", ["first", "second"])
async def test_redis_url_is_flushed_for_each_test(redis_server: RedisServer, redis_url: str, run: str) -> None:
    client = aioredis.from_url(redis_url)
    try:
        assert await client.dbsize() == 0  # a second run without FLUSHALL would see `left_behind`
        await client.set("left_behind", run)
        assert await client.config_get("port") == {"port": str(redis_server.port)}
    finally:
        await client.aclose()


# --- advisory locks: the PostgreSQL admission's mechanism ---------------------------------------

LOCK = "SELECT pg_advisory_xact_lock(hashtext($1))"


async def _wait_until_waiting(observer: asyncpg.Connection, pid: int) -> None:
    """Until the backend `pid` waits for an advisory lock (it is blocked, not merely slow)."""
    while not await observer.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND pid = $1", pid):
        await asyncio.sleep(0.01)


async def test_an_advisory_lock_serializes_two_transactions_on_one_key(postgres_url: str) -> None:
    holder, waiter, observer = [await asyncpg.connect(postgres_url) for _ in range(3)]
    events: list[str] = []
    try:
        holding = holder.transaction()
        await holding.start()
        await holder.execute(LOCK, "recipient:16505551234")
        events.append("first holds")

        async def second() -> None:
            async with waiter.transaction():
                await waiter.execute(LOCK, "recipient:16505551234")
                events.append("second holds")

        task = asyncio.create_task(second())
        await _wait_until_waiting(observer, waiter.get_server_pid())
        assert not task.done()
        events.append("first commits")
        await holding.commit()  # the lock ends with the transaction: no unlock call
        await task
        assert events == ["first holds", "first commits", "second holds"]
    finally:
        for connection in (holder, waiter, observer):
            await connection.close()


async def test_advisory_locks_on_different_keys_do_not_wait_for_each_other(postgres_url: str) -> None:
    holder, other = await asyncpg.connect(postgres_url), await asyncpg.connect(postgres_url)
    try:
        async with holder.transaction():
            await holder.execute(LOCK, "recipient:16505551234")
            async with other.transaction():
                # Waiting would be the bug: fail (lock_timeout) rather than hang the suite.
                await other.execute("SET LOCAL lock_timeout = '30s'")
                await other.execute(LOCK, "recipient:5511987654321")
                assert await other.fetchval("SELECT pg_try_advisory_xact_lock(hashtext($1))",
                                            "recipient:16505551234") is False
    finally:
        await holder.close()
        await other.close()


async def test_an_advisory_lock_is_released_when_its_transaction_rolls_back(postgres_url: str) -> None:
    holder, other = await asyncpg.connect(postgres_url), await asyncpg.connect(postgres_url)
    try:
        with pytest.raises(ZeroDivisionError):
            async with holder.transaction():
                await holder.execute(LOCK, "recipient:16505551234")
                async with other.transaction():
                    assert await other.fetchval("SELECT pg_try_advisory_xact_lock(hashtext($1))",
                                                "recipient:16505551234") is False
                raise ZeroDivisionError  # an admission that fails part-way
        async with other.transaction():
            assert await other.fetchval("SELECT pg_try_advisory_xact_lock(hashtext($1))",
                                        "recipient:16505551234") is True
    finally:
        await holder.close()
        await other.close()


async def _read_then_write(connection: asyncpg.Connection, lock: bool, barrier: asyncio.Barrier | None) -> int:
    """Read the counter, let the other tasks run, write it plus one: a check-then-act like an admission."""
    async with connection.transaction():
        if lock:
            await connection.execute(LOCK, "counter")
        seen: int = await connection.fetchval("SELECT n FROM counter")
        if barrier is not None:
            await barrier.wait()
        for _ in range(5):
            await asyncio.sleep(0)
        await connection.execute("UPDATE counter SET n = $1", seen + 1)
        return seen


@pytest.mark.parametrize("lock", [True, False], ids=["locked", "unlocked"])
async def test_concurrent_check_then_act_is_exact_only_under_the_advisory_lock(postgres_url: str, lock: bool) -> None:
    tasks = 8
    setup = await asyncpg.connect(postgres_url)
    connections = [await asyncpg.connect(postgres_url) for _ in range(tasks)]
    try:
        await setup.execute("CREATE TABLE counter (n int NOT NULL); INSERT INTO counter VALUES (0)")
        # Unlocked, a barrier makes every task read before any writes (the race, made certain);
        # locked, a barrier would deadlock: the lock is what keeps the second read after the first write.
        barrier = None if lock else asyncio.Barrier(tasks)
        seen = await asyncio.gather(*(_read_then_write(c, lock, barrier) for c in connections))
        final = await setup.fetchval("SELECT n FROM counter")
    finally:
        for connection in (setup, *connections):
            await connection.close()
    if lock:
        assert sorted(seen) == list(range(tasks)) and final == tasks
    else:
        assert seen == [0] * tasks and final == 1  # lost updates: the lock above is what prevents them

"""The fleet leader: one process of all those on a PostgreSQL database runs the timed work.

Leaders here retry every `RETRY` seconds; every wait is "eventually, within a bounded number of
tries", never a timing assertion.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from sendgate.config import load_config
from sendgate.retention import retention_context
from sendgate.state import PruneResult
from sendgate.state.fleet import open_leader, open_membership
from sendgate.state.leader import FleetError, SoleProcess
from sendgate.state.postgresql.leader import FLEET_LOCKS, PostgresLeader, PostgresMembership
from sendgate.webhooks.templates import TemplateSync

ROOT = Path(__file__).resolve().parent.parent
RETRY = 0.1


async def _eventually(check: Callable[[], bool], what: str, tries: int = 600) -> None:
    for _ in range(tries):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


@contextlib.asynccontextmanager
async def _leaders(url: str, n: int) -> AsyncIterator[list[PostgresLeader]]:
    leaders = [PostgresLeader(url, retry=RETRY) for _ in range(n)]
    try:
        for leader in leaders:
            await leader.start()
        yield leaders
    finally:
        for leader in leaders:
            await leader.close()


async def _exactly_one_leads(leaders: list[PostgresLeader]) -> PostgresLeader:
    await _eventually(lambda: any(leader.leads() for leader in leaders), "a leader")
    for _ in range(10):  # and it stays alone through several of their tries
        assert sum(leader.leads() for leader in leaders) == 1
        await asyncio.sleep(RETRY)
    return next(leader for leader in leaders if leader.leads())


def test_one_process_on_its_own_state_always_leads() -> None:
    assert isinstance(open_leader("sqlite:///x.db"), SoleProcess)
    assert isinstance(open_membership("sqlite:///x.db", shares_counters=False), SoleProcess)
    assert SoleProcess().leads()
    assert isinstance(open_leader("postgresql://u@h:1/db"), PostgresLeader)
    assert isinstance(open_membership("postgresql://u@h:1/db", shares_counters=True), PostgresMembership)


async def test_of_two_processes_exactly_one_leads_and_the_other_takes_over(postgres_url: str) -> None:
    async with _leaders(postgres_url, 2) as leaders:
        first = await _exactly_one_leads(leaders)
        other = next(leader for leader in leaders if leader is not first)
        await first.close()  # the leading process stops
        await _eventually(other.leads, "the other process leading")
        assert not first.leads()


async def test_a_leader_whose_connection_ends_stops_leading_and_one_leads_again(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="sendgate.fleet")
    async with _leaders(postgres_url, 2) as leaders:
        await _exactly_one_leads(leaders)
        connection = await asyncpg.connect(postgres_url)
        try:
            terminated = await connection.fetchval(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 "
                "AND classid = $1 AND objid = 1 AND granted "  # (FLEET_LOCKS, 1): the lead
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())", FLEET_LOCKS,
            )  # fmt: skip
        finally:
            await connection.close()
        assert terminated
        # The lock went with the session; its holder drops the lead at once (and may win it back).
        await _eventually(lambda: "no longer leads" in caplog.text, "the leader noticing it lost the lead")
        await _exactly_one_leads(leaders)
        assert caplog.text.count("this process leads") == 2
    assert "stops, and with it its lead" in caplog.text


_LEADER_PROCESS = textwrap.dedent("""
    import asyncio, sys
    from sendgate.state.postgresql.leader import FLEET_LOCKS, PostgresLeader, PostgresMembership

    async def main(url):
        leader = PostgresLeader(url, retry=0.1)
        await leader.start()
        await leader.wait_leading()
        print("leading", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main(sys.argv[1]))
""")


async def test_when_the_leading_process_is_killed_another_leads(postgres_url: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    process = subprocess.Popen([sys.executable, "-c", _LEADER_PROCESS, postgres_url], env=env,
                               stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert process.stdout is not None
        line = await asyncio.get_running_loop().run_in_executor(None, process.stdout.readline)
        assert line.strip() == "leading"
        async with _leaders(postgres_url, 1) as (survivor,):
            for _ in range(10):
                assert not survivor.leads()  # the other process leads
                await asyncio.sleep(RETRY)
            process.send_signal(signal.SIGKILL)
            process.wait()
            await _eventually(survivor.leads, "the surviving process leading")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@contextlib.asynccontextmanager
async def _members(url: str, n: int, shares_counters: bool) -> AsyncIterator[None]:
    members = [PostgresMembership(url, shares_counters=shares_counters, retry=RETRY) for _ in range(n)]
    try:
        for member in members:
            await member.join()
        yield
    finally:
        for member in members:
            await member.leave()


async def _refused(url: str, shares_counters: bool) -> str:
    with pytest.raises(FleetError) as raised:
        await PostgresMembership(url, shares_counters=shares_counters, retry=RETRY).join()
    return str(raised.value)


async def test_a_process_without_redis_url_must_be_alone_on_its_database(postgres_url: str) -> None:
    async with _members(postgres_url, 1, shares_counters=False):  # one process, no redis_url
        assert "another sendgate process serves this PostgreSQL database" in await _refused(postgres_url, False)
        assert "set redis_url on it too" in await _refused(postgres_url, True)
    async with _members(postgres_url, 3, shares_counters=True):  # with redis_url, any number share it
        assert "set redis_url (redis://host:port/db) on every one" in await _refused(postgres_url, False)
    async with _members(postgres_url, 1, shares_counters=False):  # once they are gone, it may be alone
        pass


class _CountingLog:
    """A decision log that only counts the prunes asked of it."""

    def __init__(self) -> None:
        self.prunes = 0

    async def prune_decisions(self, before: float, now: float) -> PruneResult:
        self.prunes += 1
        return PruneResult(0, 0, 0)


async def test_retention_runs_in_the_leading_process_only(postgres_url: str) -> None:
    async with _leaders(postgres_url, 2) as leaders, contextlib.AsyncExitStack() as stack:
        logs = [_CountingLog(), _CountingLog()]
        for leader, log in zip(leaders, logs, strict=True):
            context = retention_context(1, lambda log=log: log, lambda: 1e9, interval=RETRY, leader=leader)  # type: ignore[misc]
            await stack.enter_async_context(contextlib.asynccontextmanager(context)(None))
        first = await _exactly_one_leads(leaders)
        leading, other = (logs[0], logs[1]) if first is leaders[0] else (logs[1], logs[0])
        await _eventually(lambda: leading.prunes >= 3, "the leader pruning, round after round")
        assert other.prunes == 0
        await first.close()
        await _eventually(lambda: other.prunes >= 1, "the new leader pruning")


class _CountingCatalog:
    """A template catalog that only counts the syncs that reached it (each fails: no upstream)."""

    def __init__(self) -> None:
        self.syncs = 0

    async def put_templates(self, waba_id: str, body: dict[str, Any]) -> int:
        raise AssertionError("no upstream, no catalog to put")

    async def templates(self, waba_id: str) -> None:
        self.syncs += 1  # a failed sync reads the old catalog to report what it kept


async def test_the_periodic_template_sync_runs_in_the_leading_process_only(postgres_url: str) -> None:
    config = load_config(None, env={"SENDGATE_TEMPLATE_SYNC": f"{{token: t, interval: {RETRY}, wabas: ['1']}}"})
    async with _leaders(postgres_url, 2) as leaders, contextlib.AsyncExitStack() as stack:
        catalogs = [_CountingCatalog(), _CountingCatalog()]
        for leader, catalog in zip(leaders, catalogs, strict=True):
            sync = TemplateSync(config, None, lambda catalog=catalog: catalog, leader=leader)  # type: ignore[misc]
            await stack.enter_async_context(contextlib.asynccontextmanager(sync.context())(None))  # type: ignore[arg-type]
        first = await _exactly_one_leads(leaders)
        leading, other = (catalogs[0], catalogs[1]) if first is leaders[0] else (catalogs[1], catalogs[0])
        await _eventually(lambda: leading.syncs >= 3, "the leader syncing, round after round")
        assert other.syncs == 0

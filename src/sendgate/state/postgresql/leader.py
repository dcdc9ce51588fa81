"""The fleet leader on PostgreSQL: a session-level advisory lock on a connection of its own.

Every process holds one connection for this (none of the store's pools). On it:

- joining: the members lock, shared by processes with `redis_url`, exclusive for one without
  (its counters are its own, so it must be the database's only process); refused, it is a
  start-up error (`FleetError`) naming what to set, checked again on every reconnection;
- leading: `pg_try_advisory_lock` on the lead lock, tried every `retry` seconds until it is
  granted, then the connection is checked every `retry` seconds. The lock lives as long as the
  session: when the leading process stops, dies or loses its connection, the lock is gone and
  the next process to try leads. Losing the connection drops the lead here at once.

Both are two-integer advisory locks under a first key of their own (`FLEET_LOCKS`, beside the
store's `LOCK_NAMESPACE` and owner locks): a lock space apart from the store's locks and from
the one-bigint locks of admission (state/postgresql/admission.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from sendgate.state.leader import FleetError
from sendgate.state.postgresql.schema import LOCK_NAMESPACE

__all__ = ["FLEET_LOCKS", "RETRY", "PostgresLeader"]

log = logging.getLogger("sendgate.fleet")

RETRY = 5.0  # seconds between tries to lead (and checks of the leader's connection)
_TIMEOUT = 10.0  # seconds a connection or query may take: a slow answer is not yet a lost lead
FLEET_LOCKS = LOCK_NAMESPACE + 2  # "SGAV": the first key of the fleet's locks (owner.py has + 1)
_LEAD = 1
_MEMBERS = 2
_JOIN_SHARED = "SELECT pg_try_advisory_lock_shared($1, $2)"
_JOIN_ALONE = "SELECT pg_try_advisory_lock($1, $2)"
_TRY_LEAD = "SELECT pg_try_advisory_lock($1, $2)"
_FAULTS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


def _text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class PostgresLeader:
    """`FleetLeader` among the sendgate processes on one PostgreSQL database (see the module docstring)."""

    def __init__(self, url: str, *, shares_counters: bool, retry: float = RETRY) -> None:
        self._url = url
        self._shares_counters = shares_counters
        self._retry = retry
        self._leading = asyncio.Event()
        self._wake = asyncio.Event()  # the connection ended: try again now, not at the next period
        self._connection: asyncpg.Connection[asyncpg.Record] | None = None
        self._task: asyncio.Task[None] | None = None

    def leads(self) -> bool:
        return self._leading.is_set()

    async def wait_leading(self) -> None:
        await self._leading.wait()

    async def start(self) -> None:
        try:
            self._connection = await self._join()
        except _FAULTS as exc:  # the database is away: serve all the same, join once it answers
            log.warning("fleet: PostgreSQL did not answer (%s); joining the fleet is retried every %g s",
                        _text(exc), self._retry)  # fmt: skip
        self._task = asyncio.get_running_loop().create_task(self._campaign(), name="sendgate-fleet-leader")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._leading.clear()
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            try:
                await connection.close(timeout=_TIMEOUT)  # the session ends: its locks with it
            except _FAULTS:
                connection.terminate()

    async def _join(self) -> asyncpg.Connection[asyncpg.Record]:
        connection: asyncpg.Connection[asyncpg.Record] = await asyncpg.connect(self._url, timeout=_TIMEOUT)
        try:
            joined = await connection.fetchval(
                _JOIN_SHARED if self._shares_counters else _JOIN_ALONE, FLEET_LOCKS, _MEMBERS, timeout=_TIMEOUT
            )
        except BaseException:
            connection.terminate()
            raise
        if not joined:
            await connection.close()
            if self._shares_counters:
                raise FleetError(
                    "a sendgate process without redis_url serves this PostgreSQL database (its counters are "
                    "its own): set redis_url on it too, or stop it, before starting more processes"
                )
            raise FleetError(
                "another sendgate process serves this PostgreSQL database: processes sharing one database "
                "share their counters and sessions through Redis: set redis_url (redis://host:port/db) on every one"
            )
        connection.add_termination_listener(self._connection_ended)
        return connection

    def _connection_ended(self, connection: object) -> None:
        if self._leading.is_set():
            log.warning("fleet: this process no longer leads: its connection to PostgreSQL ended")
        self._leading.clear()
        self._wake.set()

    async def _campaign(self) -> None:
        while True:
            try:
                await self._try_to_lead()
            except FleetError as exc:
                log.error("fleet: %s; this process does not lead until it can join", exc)
            except Exception as exc:  # the database, or anything else: never a leader that stopped checking
                self._leading.clear()
                connection, self._connection = self._connection, None
                if connection is not None:
                    connection.terminate()
                log.warning("fleet: PostgreSQL did not answer (%s); trying again in %g s", _text(exc), self._retry,
                            exc_info=not isinstance(exc, _FAULTS))  # fmt: skip
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._retry)

    async def _try_to_lead(self) -> None:
        connection = self._connection
        if connection is None or connection.is_closed():
            self._leading.clear()
            self._connection = None
            self._connection = connection = await self._join()
        if self._leading.is_set():
            await connection.fetchval("SELECT 1", timeout=_TIMEOUT)  # still connected, so still the lock's holder
        elif await connection.fetchval(_TRY_LEAD, FLEET_LOCKS, _LEAD, timeout=_TIMEOUT):
            self._leading.set()
            log.info("fleet: this process leads: the periodic template sync and retention run here")

"""The fleet on PostgreSQL: who leads, and who may join, as session-level advisory locks.

Each is one lock held on a connection of its own (none of the store's pools), tried every
`retry` seconds until granted, then kept: the connection is checked every `retry` seconds, and
a lost one is replaced and the lock tried again. A session lock lives as long as its session, so
when a process stops, dies or loses its connection, its locks are gone at once.

- `PostgresLeader`: the lead lock, exclusive. The next process to try after the leader is gone
  leads; losing the connection drops the lead here at once.
- `PostgresMembership`: the members lock, taken by `sendgate serve` for the life of the process,
  shared by processes with `redis_url`, exclusive for one without (its counters are its own, so
  it must be the database's only process). Refused at start, it is a start-up error
  (`FleetError`) naming what to set; refused on a reconnection, it is logged.

Both are two-integer advisory locks under a first key of their own (`FLEET_LOCKS`, beside the
store's `LOCK_NAMESPACE` and owner locks): a lock space apart from the store's locks and from
the one-bigint locks of admission (state/postgresql/admission.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg

from sendgate.state.leader import FleetError
from sendgate.state.postgresql.schema import LOCK_NAMESPACE

__all__ = ["FLEET_LOCKS", "RETRY", "PostgresLeader", "PostgresMembership"]

log = logging.getLogger("sendgate.fleet")

RETRY = 5.0  # seconds between tries to take a lock (and checks of the connection holding it)
_TIMEOUT = 10.0  # seconds a connection or query may take: a slow answer is not yet a lost lock
FLEET_LOCKS = LOCK_NAMESPACE + 2  # "SGAV": the first key of the fleet's locks (owner.py has + 1)
_LEAD = 1
_MEMBERS = 2
_EXCLUSIVE = "SELECT pg_try_advisory_lock($1, $2)"
_SHARED = "SELECT pg_try_advisory_lock_shared($1, $2)"
_FAULTS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError, TimeoutError)


def _text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class _HeldLock:
    """One advisory lock kept on a connection of its own (see the module docstring).

    `on_change(held)` is called whenever the lock is taken or lost; `on_refused()` each time it
    is tried and not granted.
    """

    def __init__(
        self, url: str, query: str, key: int, retry: float, on_change: Callable[[bool], None],
        on_refused: Callable[[], None] = lambda: None,
    ) -> None:  # fmt: skip
        self._url = url
        self._query = query
        self._key = key
        self._retry = retry
        self._on_change = on_change
        self._on_refused = on_refused
        self.held = False
        self._wake = asyncio.Event()  # the connection ended: try again now, not at the next period
        self._connection: asyncpg.Connection[asyncpg.Record] | None = None
        self._task: asyncio.Task[None] | None = None

    def run(self) -> None:
        """Keep trying and holding in the background, until `close()`."""
        self._task = asyncio.get_running_loop().create_task(self._keep(), name="sendgate-fleet-lock")

    async def try_once(self) -> bool:
        """Take the lock if it is not held (connecting first if need be), else check its connection.
        Whether it is held now; raises what the database raised."""
        connection = self._connection
        if connection is None or connection.is_closed():
            self._set(False)
            self._connection = None
            connection = await asyncpg.connect(self._url, timeout=_TIMEOUT)
            connection.add_termination_listener(self._connection_ended)
            self._connection = connection
        if self.held:
            await connection.fetchval("SELECT 1", timeout=_TIMEOUT)  # still connected, so still the holder
        elif await connection.fetchval(self._query, FLEET_LOCKS, self._key, timeout=_TIMEOUT):
            self._set(True)
        else:
            self._on_refused()
        return self.held

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        connection, self._connection = self._connection, None
        self._set(False)
        if connection is not None and not connection.is_closed():
            try:
                await connection.close(timeout=_TIMEOUT)  # the session ends: its locks with it
            except _FAULTS:
                connection.terminate()

    def _set(self, held: bool) -> None:
        if held != self.held:
            self.held = held
            self._on_change(held)

    def _connection_ended(self, connection: object) -> None:
        if self._connection is connection:
            self._set(False)
            self._wake.set()

    async def _keep(self) -> None:
        while True:
            try:
                await self.try_once()
            except Exception as exc:  # the database, or anything else: never a holder that stopped checking
                connection, self._connection = self._connection, None
                self._set(False)
                if connection is not None:
                    connection.terminate()
                log.warning("fleet: PostgreSQL did not answer (%s); trying again in %g s", _text(exc), self._retry,
                            exc_info=not isinstance(exc, _FAULTS))  # fmt: skip
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._retry)


class PostgresLeader:
    """`FleetLeader` among the sendgate processes on one PostgreSQL database (see the module docstring)."""

    def __init__(self, url: str, *, retry: float = RETRY) -> None:
        self._leading = asyncio.Event()
        self._closing = False
        self._lock = _HeldLock(url, _EXCLUSIVE, _LEAD, retry, self._changed)

    def leads(self) -> bool:
        return self._leading.is_set()

    async def wait_leading(self) -> None:
        await self._leading.wait()

    async def start(self) -> None:
        self._lock.run()

    async def close(self) -> None:
        self._closing = True
        await self._lock.close()

    def _changed(self, held: bool) -> None:
        if held:
            self._leading.set()
            log.info("fleet: this process leads: the periodic template sync and retention run here")
        else:
            self._leading.clear()
            if self._closing:
                log.info("fleet: this process stops, and with it its lead: another takes over at its next try")
            else:
                log.warning("fleet: this process no longer leads: its connection to PostgreSQL ended")


class PostgresMembership:
    """`FleetMembership` of the sendgate processes on one PostgreSQL database (see the module docstring)."""

    def __init__(self, url: str, *, shares_counters: bool, retry: float = RETRY) -> None:
        self._shares_counters = shares_counters
        self._refused_before = False
        self._lock = _HeldLock(url, _SHARED if shares_counters else _EXCLUSIVE, _MEMBERS, retry,
                               self._changed, self._refused)  # fmt: skip

    async def join(self) -> None:
        self._refused_before = True  # refused now, it is the start-up error below, not a log line
        try:
            joined = await self._lock.try_once()
        except _FAULTS as exc:  # the database is away: serve all the same, check once it answers
            log.warning("fleet: PostgreSQL did not answer (%s); the check that this process may share its "
                        "database is retried until it does", _text(exc))  # fmt: skip
        else:
            if not joined:
                await self._lock.close()
                raise FleetError(self._why())
        self._refused_before = False
        self._lock.run()

    async def leave(self) -> None:
        await self._lock.close()

    def _why(self) -> str:
        if self._shares_counters:
            return ("a sendgate process without redis_url serves this PostgreSQL database (its counters are "
                    "its own): set redis_url on it too, or stop it, before starting more processes")  # fmt: skip
        return ("another sendgate process serves this PostgreSQL database: processes sharing one database "
                "share their counters and sessions through Redis: set redis_url (redis://host:port/db) on every one")  # fmt: skip

    def _changed(self, held: bool) -> None:
        if held:
            self._refused_before = False

    def _refused(self) -> None:
        if not self._refused_before:  # once per episode, not every few seconds
            log.error("fleet: %s", self._why())
            self._refused_before = True

"""Admission across processes: session-level advisory locks on one PostgreSQL database.

A hold takes its keys in two steps, in the seam's one global order (sorted):

1. in this process, through a `LocalAdmission`: this process's sends to one key take turns
   without touching the database, so a process asks PostgreSQL for a key at most once at a time
   and holds at most one connection per key in flight;
2. across processes, `pg_advisory_lock(bigint)` per key, each key hashed to a stable signed
   64-bit number, on a connection of the admission's own pool (apart from the store's, so a
   store busy with writes never starves admission, and the reverse).

The connection goes back to its pool when the hold's body exits; the pool's reset runs
`pg_advisory_unlock_all()` there, so every lock the hold took is released, including one a lock
query was granted as it was being cancelled or timed out. Should that reset fail, asyncpg
terminates the connection, and its session's locks end with it. No key is ever global: sends
that share no key never wait for each other, in any process.

The wait is bounded by the hold's timeout (`AdmissionTimeout`). A database that cannot be
reached raises `AdmissionUnavailable` (a `StoreError`): nothing is admitted, the send fails closed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Iterable

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from sendgate.state.admission import AdmissionTimeout, AdmissionUnavailable, LocalAdmission

__all__ = ["PostgresAdmission", "advisory_key"]

log = logging.getLogger("sendgate.admission")

# What the database, its network or the pool can raise while a key is being taken (a connection
# the server dropped mid-protocol can also surface as asyncpg's InternalClientError).
_FAULTS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError)
# A personalised hash: these keys are sendgate's admission keys and nothing else's. Every other
# sendgate lock (the store's, the fleet leader's) uses the two-integer form, a lock space apart.
_PERSON = b"sendgate.admit"
_LOCK = "SELECT pg_advisory_lock($1)"
_RELEASE_TIMEOUT = 10.0  # seconds the unlock on release may take before the connection is dropped


def advisory_key(key: str) -> int:
    """The `pg_advisory_lock(bigint)` number of an admission key: the same in every process and release."""
    digest = hashlib.blake2b(key.encode(), digest_size=8, person=_PERSON).digest()
    return int.from_bytes(digest, "big", signed=True)


async def _unlock_all(connection: asyncpg.Connection[asyncpg.Record]) -> None:
    """The pool's reset of a connection coming back: it holds no admission lock once returned."""
    await connection.execute("SELECT pg_advisory_unlock_all()")


def _unavailable(exc: BaseException) -> AdmissionUnavailable:
    state = getattr(exc, "sqlstate", None)
    text = str(exc) or type(exc).__name__
    detail = f"{text} ({state})" if state else text
    return AdmissionUnavailable(f"admission: PostgreSQL could not be reached to hold the send's keys: {detail}")


class _PostgresHold:
    """One send's hold: its keys in this process, then in PostgreSQL."""

    __slots__ = ("_admission", "_connection", "_keys", "_local", "_timeout")

    def __init__(self, admission: PostgresAdmission, keys: list[str], timeout: float) -> None:
        self._admission = admission
        self._keys = keys
        self._timeout = timeout
        self._local = admission._local.hold(keys, timeout)
        self._connection: PoolConnectionProxy[asyncpg.Record] | None = None

    async def __aenter__(self) -> None:
        deadline = asyncio.get_running_loop().time() + self._timeout
        await self._local.__aenter__()
        try:
            if self._keys:
                self._connection = await self._admission._lock(self._keys, deadline, self._timeout)
        except BaseException:
            await self._local.__aexit__(None, None, None)
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            if self._connection is not None:
                connection, self._connection = self._connection, None
                await self._admission._release(connection)
        finally:
            await self._local.__aexit__(*exc_info)


class PostgresAdmission:
    """`Admission` shared by every sendgate process on one PostgreSQL database (see the module docstring).

    `pool_size` bounds the sends deciding at once in this process (each holds one connection from
    taking its first key until its record is committed); the pool opens on first use.
    """

    def __init__(self, url: str, *, pool_size: int = 16, connect_timeout: float = 10.0) -> None:
        self._url = url
        self._pool_size = pool_size
        self._connect_timeout = connect_timeout
        self._local = LocalAdmission()
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._opening = asyncio.Lock()
        self._closed = False

    def held(self) -> int:
        return self._local.held()

    def hold(self, keys: Iterable[str], timeout: float) -> _PostgresHold:
        return _PostgresHold(self, sorted(set(keys)), timeout)

    async def close(self) -> None:
        self._closed = True
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def _pool_ready(self) -> asyncpg.Pool[asyncpg.Record]:
        if self._pool is not None:
            return self._pool
        if self._closed:
            raise AdmissionUnavailable("admission: closed (the gateway is stopping)")
        async with self._opening:
            if self._pool is None:
                try:  # min_size 0: nothing is connected until a send needs it
                    self._pool = await asyncpg.create_pool(
                        self._url, min_size=0, max_size=self._pool_size, reset=_unlock_all,
                        timeout=self._connect_timeout,
                    )  # fmt: skip
                except _FAULTS as exc:
                    raise _unavailable(exc) from exc
        return self._pool

    async def _lock(self, keys: list[str], deadline: float, timeout: float) -> PoolConnectionProxy[asyncpg.Record]:
        """A connection holding every key's advisory lock, taken by `deadline`."""
        loop = asyncio.get_running_loop()
        pool = await self._pool_ready()
        try:
            connection = await pool.acquire(timeout=max(deadline - loop.time(), 0.0))
        except TimeoutError:
            raise AdmissionTimeout(keys[0], timeout, f"no PostgreSQL connection for admission within {timeout:g} s "
                                   f"(all {self._pool_size} busy with other sends, or the database slow to answer)") from None  # fmt: skip
        except _FAULTS as exc:
            raise _unavailable(exc) from exc
        try:
            for key in keys:
                try:
                    await connection.fetchval(_LOCK, advisory_key(key), timeout=max(deadline - loop.time(), 0.0))
                except TimeoutError:  # asyncpg has asked the server to cancel the lock query
                    raise AdmissionTimeout(key, timeout) from None
        except BaseException as exc:  # timed out, cancelled, or the database went away
            await self._release(connection)  # whatever was granted is unlocked (or its session ends)
            if isinstance(exc, _FAULTS):
                raise _unavailable(exc) from exc
            raise
        return connection

    async def _release(self, connection: PoolConnectionProxy[asyncpg.Record]) -> None:
        """Back to the pool: its reset unlocks every key (see `_unlock_all`). Raises nothing but a
        cancellation (the release goes on, shielded): a connection whose reset failed is
        terminated by the pool, which ends its session's locks too."""
        pool = self._pool
        if pool is None:  # closed meanwhile: the pool's close ended the session
            return
        try:
            await pool.release(connection, timeout=_RELEASE_TIMEOUT)
        except Exception as exc:
            log.warning("admission: unlocking on PostgreSQL failed (%s); the connection was dropped, "
                        "which releases its locks", str(exc) or type(exc).__name__)  # fmt: skip

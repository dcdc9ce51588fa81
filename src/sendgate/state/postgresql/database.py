"""One PostgreSQL database for a store: the connection pool, transactions, and errors as `StoreError`.

The pool opens on first use (a store is opened by the synchronous `open_store`), applies the
migrations then, and reopens after a failure: a store whose database was away serves again
once it is back, without a restart. Everything above the state layer knows no asyncpg: every
failure of the database, the network or the pool comes out as `StoreError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg

from sendgate.state.base import StoreError
from sendgate.state.postgresql.schema import Connection, migrate

__all__ = ["FAULTS", "Database", "store_error"]

T = TypeVar("T")

# What a database, its network or the pool can raise; `StoreError` to everything above.
FAULTS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError, asyncio.TimeoutError)
# What may leave a connection unusable: a server's FATAL message before its socket closes (a
# query started in between finds the protocol mid-operation: InternalClientError), a lost
# socket, a timed-out operation. The pool replaces a connection closed on these.
_BROKEN = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    asyncio.TimeoutError,
)


def store_error(exc: BaseException) -> StoreError:
    """The `StoreError` for a failure of the database, naming its SQLSTATE when it has one."""
    state = getattr(exc, "sqlstate", None)
    text = str(exc) or type(exc).__name__
    return StoreError(f"PostgreSQL: {text} ({state})" if state else f"PostgreSQL: {text}")


async def _keep_session(connection: asyncpg.Connection[asyncpg.Record]) -> None:
    """The pool's reset of a connection coming back, which is nothing: the store's queries leave no
    session state (its locks are transaction-scoped, no LISTEN, no SET, no cursor outside a
    transaction). asyncpg's default reset runs four statements (`pg_advisory_unlock_all(); CLOSE
    ALL; UNLISTEN *; RESET ALL`) on every release: about a tenth of the database's work per send."""


class Database:
    """An asyncpg pool on `url`, opened (and migrated) on first use."""

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10, command_timeout: float = 10.0) -> None:
        self.url = url
        self._min_size = min_size
        self._max_size = max_size
        self._command_timeout = command_timeout
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._opening = asyncio.Lock()
        self._closed = False

    async def pool(self) -> asyncpg.Pool[asyncpg.Record]:
        if self._pool is not None:
            return self._pool
        if self._closed:
            raise StoreError("the store is closed")
        async with self._opening:
            if self._pool is None:
                try:
                    pool = await asyncpg.create_pool(
                        self.url,
                        min_size=self._min_size,
                        max_size=self._max_size,
                        command_timeout=self._command_timeout,
                        timeout=self._command_timeout,
                        reset=_keep_session,
                    )
                except FAULTS as exc:
                    raise store_error(exc) from exc
                try:
                    async with pool.acquire() as conn:
                        await migrate(conn)
                except BaseException as exc:
                    await pool.close()
                    if isinstance(exc, FAULTS):
                        raise store_error(exc) from exc
                    raise
                self._pool = pool
        return self._pool

    async def connect(self) -> asyncpg.Connection[Any]:
        """A connection of its own, outside the pool (for a session that must last: a lock)."""
        if self._closed:
            raise StoreError("the store is closed")
        try:
            conn: asyncpg.Connection[Any] = await asyncpg.connect(
                self.url, timeout=self._command_timeout, command_timeout=self._command_timeout
            )
        except FAULTS as exc:
            raise store_error(exc) from exc
        return conn

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """A pooled connection; any database fault inside comes out as `StoreError`."""
        pool = await self.pool()
        try:
            async with pool.acquire() as conn:
                try:
                    yield conn
                except _BROKEN:
                    conn.terminate()
                    raise
        except FAULTS as exc:
            raise store_error(exc) from exc

    async def transaction(self, op: Callable[[Connection], Awaitable[T]]) -> T:
        """Run `op` in one transaction; its result once committed. Nothing of a failed one is kept."""
        async with self.connection() as conn:
            async with conn.transaction():
                return await op(conn)

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async with self.connection() as conn:
            rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
            return rows

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        async with self.connection() as conn:
            row: asyncpg.Record | None = await conn.fetchrow(sql, *args)
            return row

    async def fetchval(self, sql: str, *args: Any) -> Any:
        async with self.connection() as conn:
            return await conn.fetchval(sql, *args)

    async def close(self) -> None:
        self._closed = True
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

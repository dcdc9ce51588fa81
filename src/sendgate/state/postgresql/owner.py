"""Which store instances are alive: each holds a session-level advisory lock for its whole life.

Every process's store has an owner id, written into the decision records it logs
(`decisions.owner`), and a row in `instances` giving it a lock key. While the store lives, a
connection of its own holds `pg_advisory_lock(OWNER_LOCKS, lock_key)`; PostgreSQL releases it
when that session ends, however the process ended (closed, killed, its host lost). So another
process's `mark_outcome_unknown` tells a record waiting for Meta's answer from a live process
(leave it) from one whose process is gone (its answer will never come), with no clock involved.

The lock is taken before the store's first record is committed and taken again, on the next
write, after its connection was lost (PostgreSQL restarted): records are only committed while
their owner is seen alive.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import asyncpg

from sendgate.state.base import StoreError
from sendgate.state.postgresql.database import FAULTS, Database, store_error
from sendgate.state.postgresql.schema import LOCK_NAMESPACE, Connection

__all__ = ["LIVE_OWNERS", "OWNER_LOCKS", "OwnerLock", "forget_dead_owners"]

log = logging.getLogger("sendgate.state")

# The first key of the instances' locks: a namespace of their own, since their second keys
# (1, 2, 3...) would otherwise be LOCK_NAMESPACE's "what the lock is for" keys (MIGRATE_LOCK...).
OWNER_LOCKS = LOCK_NAMESPACE + 1  # "SGAU"

# The owners whose lock some session of this database holds: a query to embed, $1 = OWNER_LOCKS.
# (Advisory locks are per database: pg_locks lists those of every database of the server.)
LIVE_OWNERS = """SELECT i.owner FROM instances i JOIN pg_locks l
    ON l.locktype = 'advisory' AND l.granted AND l.classid = $1 AND l.objid = i.lock_key AND l.objsubid = 2
    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"""

# A new lock key on every take: a session that held the old one may not have ended yet.
_REGISTER = (
    "INSERT INTO instances (owner, started_at) VALUES ($1, $2)"
    " ON CONFLICT (owner) DO UPDATE SET lock_key = DEFAULT RETURNING lock_key"
)


class OwnerLock:
    """`owner`'s advisory lock, on a connection of its own (outside the pool)."""

    def __init__(self, db: Database, owner: str) -> None:
        self._db = db
        self.owner = owner
        self._conn: asyncpg.Connection[Any] | None = None
        self._taking = asyncio.Lock()
        self._released = False

    def held(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def hold(self) -> None:
        """Take the lock unless this store holds it; raises `StoreError` when it cannot."""
        if self.held():
            return
        async with self._taking:
            if self.held():
                return
            if self._released:
                raise StoreError("the store is closed")
            if self._conn is not None:
                log.warning("PostgreSQL: the connection holding this store's owner lock was lost; taking it again")
                self._conn.terminate()
                self._conn = None
            await self._db.pool()  # the database is migrated: `instances` exists
            conn = await self._db.connect()
            try:
                # In one transaction, so that no other process sees the row without its lock held.
                async with conn.transaction():
                    key = await conn.fetchval(_REGISTER, self.owner, time.time())
                    await conn.execute("SELECT pg_advisory_lock($1, $2)", OWNER_LOCKS, key)
            except BaseException as exc:
                conn.terminate()
                if isinstance(exc, FAULTS):
                    raise store_error(exc) from exc
                raise
            self._conn = conn

    async def release(self) -> None:
        """Forget the instance and end its session (which releases the lock); idempotent."""
        if self._released:
            return
        self._released = True
        conn, self._conn = self._conn, None
        if conn is None or conn.is_closed():
            return
        try:
            await conn.execute("DELETE FROM instances WHERE owner = $1", self.owner)
            await conn.close(timeout=5)
        except Exception as exc:  # the database away: the lock went with its session anyway
            log.warning("PostgreSQL: could not release this store's owner lock cleanly: %s", exc)
            conn.terminate()


async def forget_dead_owners(conn: Connection) -> None:
    """Drop the `instances` rows of owners no session holds the lock of (their records stay)."""
    await conn.execute(f"DELETE FROM instances WHERE owner NOT IN ({LIVE_OWNERS})", OWNER_LOCKS)

"""`sendgate db` on a PostgreSQL database: migrate, and whole tables in and out (`roles.Maintenance`).

Rows come in with the Python types of whichever backend they were read from (SQLite's 0/1 for
booleans, integers where PostgreSQL has double precision): each value is converted to its
column's type, read from the catalog, before it is COPYed in. Identity sequences (`consent.seq`,
`reviews.seq`) are moved past the copied values, so new records keep increasing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from sendgate.state.base import StoreError
from sendgate.state.postgresql.database import Database
from sendgate.state.postgresql.schema import Connection, migrate
from sendgate.state.rows import COPIED_TABLES

__all__ = ["PostgresMaintenance"]

_CONVERT: dict[str, Callable[[Any], Any]] = {
    "boolean": bool,
    "double precision": float,
    "integer": int,
    "bigint": int,
    "text": str,
}
_IDENTITY_COLUMNS = (("consent", "seq"), ("reviews", "seq"))


def _known(table: str) -> str:
    """A table name put into SQL: only the copied tables' own names, never one from outside."""
    if table not in COPIED_TABLES:
        raise KeyError(f"not a copied table: {table!r}")
    return table


class PostgresMaintenance:
    def __init__(self, url: str) -> None:
        self._db = Database(url, max_size=2)

    async def migrate(self) -> int:
        async with self._db.connection() as conn:  # opening the pool applies the migrations
            return await migrate(conn)

    async def count(self, table: str) -> int:
        return int(await self._db.fetchval(f"SELECT count(*) FROM {_known(table)}"))

    async def read(self, table: str, batch: int) -> AsyncIterator[list[tuple[Any, ...]]]:
        async with self._db.connection() as conn:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                cursor = await conn.cursor(f"SELECT {', '.join(COPIED_TABLES[table])} FROM {_known(table)}")
                while rows := await cursor.fetch(batch):
                    yield [tuple(row) for row in rows]

    async def write(self, tables: AsyncIterator[tuple[str, list[tuple[Any, ...]]]]) -> None:
        async with self._db.connection() as conn:
            async with conn.transaction():
                for table in COPIED_TABLES:
                    if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table})"):
                        raise StoreError(f"the target is not empty ({table} has rows): copy into a new database")
                converters = {table: await _converters(conn, table) for table in COPIED_TABLES}
                async for table, rows in tables:
                    convert = converters[_known(table)]
                    records = [
                        tuple(None if value is None else to(value) for to, value in zip(convert, row, strict=True))
                        for row in rows
                    ]
                    await conn.copy_records_to_table(table, records=records, columns=list(COPIED_TABLES[table]))
                # What PostgreSQL alone keeps beside the records (schema.py): Meta's message ids,
                # and the records left waiting for Meta's answer (marked at the next start).
                await conn.execute(
                    "INSERT INTO message_ids SELECT upstream_message_id, id FROM decisions"
                    " WHERE upstream_message_id IS NOT NULL ON CONFLICT DO NOTHING"
                )
                await conn.execute(
                    "INSERT INTO in_flight SELECT id, NULL, ts FROM decisions"
                    " WHERE forwarded AND upstream_status IS NULL AND upstream_error IS NULL"
                )
                for table, column in _IDENTITY_COLUMNS:
                    await conn.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'),"
                        f" coalesce((SELECT max({column}) FROM {table}), 0) + 1, false)"
                    )

    async def close(self) -> None:
        await self._db.close()


async def _converters(conn: Connection, table: str) -> list[Callable[[Any], Any]]:
    types = dict(
        await conn.fetch(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = $1",
            table,
        )
    )
    return [_CONVERT[types[column]] for column in COPIED_TABLES[table]]

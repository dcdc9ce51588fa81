"""`sendgate db` on a SQLite file: migrate, and whole tables in and out (`roles.Maintenance`).

Works on the file directly, with no gateway serving from it (a copy out of a live file is
still consistent: it reads inside one transaction).
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sendgate.state.base import StoreError
from sendgate.state.rows import COPIED_TABLES
from sendgate.state.sqlite.schema import migrate
from sendgate.state.sqlite.store import connect

__all__ = ["SQLiteMaintenance"]


class SQLiteMaintenance:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            if not self.path.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = connect(self.path)
            migrate(self._conn)
        return self._conn

    async def migrate(self) -> int:
        return migrate(self._connection())

    async def count(self, table: str) -> int:
        return int(self._connection().execute(f"SELECT count(*) FROM {_known(table)}").fetchone()[0])

    async def read(self, table: str, batch: int) -> AsyncIterator[list[tuple[Any, ...]]]:
        conn = self._connection()
        cursor = conn.execute(f"SELECT {', '.join(COPIED_TABLES[table])} FROM {_known(table)}")
        while rows := cursor.fetchmany(batch):
            yield [tuple(row) for row in rows]

    async def write(self, tables: AsyncIterator[tuple[str, list[tuple[Any, ...]]]]) -> None:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for table in COPIED_TABLES:
                if conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None:
                    raise StoreError(f"the target is not empty ({table} has rows): copy into a new store")
            async for table, rows in tables:
                columns = COPIED_TABLES[table]
                conn.executemany(
                    f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", rows
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _known(table: str) -> str:
    """A table name put into SQL: only the copied tables' own names, never one from outside."""
    if table not in COPIED_TABLES:
        raise KeyError(f"not a copied table: {table!r}")
    return table

"""asyncpg against psycopg 3 (async), on the operations the PostgreSQL store will do most.

The evidence behind choosing asyncpg (README, "Dependencies"). Against a throwaway PostgreSQL
(tests/services.py: Debian's server programs, fsync off, on 127.0.0.1), each client on one
connection, per round:

- `insert batch`: 1,000 rows of 25 columns (text, bigint, double: the decision log's width)
  with executemany in one transaction, the median of `--batches` batches;
- `select by key`: single-row SELECT * by primary key, the mean over `--selects`;
- `lock transaction`: BEGIN, `pg_advisory_xact_lock(hashtext(key))`, COMMIT (the admission's
  round trips), the mean over `--locks`.

psycopg is not a dependency of sendgate: install it beside to run this
(`pip install 'psycopg[binary]==3.3.9'`).

    python bench/postgres_clients.py [--rounds 3] [--batches 10] [--selects 3000] [--locks 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.services import PostgresServer  # noqa: E402

COLUMNS = 25
ROWS = 1000
TYPES = ("text", "bigint", "double precision")


def create_table() -> str:
    columns = ["id text PRIMARY KEY", "ts double precision NOT NULL"]
    columns += [f"c{i} {TYPES[i % 3]}" for i in range(COLUMNS - 2)]
    return f"DROP TABLE IF EXISTS log; CREATE TABLE log ({', '.join(columns)})"


def make_row(batch: int, n: int) -> list[Any]:
    values: list[Any] = [f"b{batch}-{n}", 1795557600.0 + n]
    for i in range(COLUMNS - 2):
        values.append((f"value-{i}-{n}", n * i, n / (i + 1))[i % 3])
    return values


async def run_asyncpg(url: str, args: argparse.Namespace) -> tuple[float, float, float]:
    connection = await asyncpg.connect(url)
    await connection.execute(create_table())
    insert = f"INSERT INTO log VALUES ({', '.join(f'${i + 1}' for i in range(COLUMNS))})"
    batches = []
    for batch in range(args.batches):
        rows = [make_row(batch, n) for n in range(ROWS)]
        start = time.perf_counter()
        async with connection.transaction():
            await connection.executemany(insert, rows)
        batches.append(time.perf_counter() - start)
    start = time.perf_counter()
    for n in range(args.selects):
        assert await connection.fetchrow("SELECT * FROM log WHERE id = $1", f"b0-{n % ROWS}") is not None
    select = (time.perf_counter() - start) / args.selects
    start = time.perf_counter()
    for n in range(args.locks):
        async with connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"key-{n % 50}")
    lock = (time.perf_counter() - start) / args.locks
    await connection.close()
    return statistics.median(batches), select, lock


async def run_psycopg(url: str, args: argparse.Namespace) -> tuple[float, float, float]:
    # autocommit: as asyncpg, a statement outside `transaction()` is its own transaction.
    connection = await psycopg.AsyncConnection.connect(url, autocommit=True)
    await connection.execute(create_table())
    insert = f"INSERT INTO log VALUES ({', '.join(['%s'] * COLUMNS)})"
    batches = []
    for batch in range(args.batches):
        rows = [make_row(batch, n) for n in range(ROWS)]
        start = time.perf_counter()
        async with connection.transaction(), connection.cursor() as cursor:
            await cursor.executemany(insert, rows)  # pipelined by psycopg
        batches.append(time.perf_counter() - start)
    start = time.perf_counter()
    for n in range(args.selects):
        cursor = await connection.execute("SELECT * FROM log WHERE id = %s", (f"b0-{n % ROWS}",))
        assert await cursor.fetchone() is not None
    select = (time.perf_counter() - start) / args.selects
    start = time.perf_counter()
    for n in range(args.locks):
        async with connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"key-{n % 50}",))
    lock = (time.perf_counter() - start) / args.locks
    await connection.close()
    return statistics.median(batches), select, lock


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--selects", type=int, default=3000)
    parser.add_argument("--locks", type=int, default=3000)
    args = parser.parse_args()
    print(f"asyncpg {asyncpg.__version__}, psycopg {psycopg.__version__} ({psycopg.pq.__impl__} libpq "
          f"{psycopg.pq.version()})")
    clients: dict[str, Callable[[str, argparse.Namespace], Awaitable[tuple[float, float, float]]]] = {
        "asyncpg": run_asyncpg, "psycopg": run_psycopg}
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in clients}
    server = PostgresServer()
    try:
        for _ in range(args.rounds):
            for name, run in clients.items():  # alternating, so that a busy moment hits both
                results[name].append(await run(server.url, args))
    finally:
        server.stop()
    print(f"{'client':8}  {'insert batch (1,000 x 25)':>26}  {'select by key':>14}  {'lock transaction':>17}"
          "   (medians of the rounds)")
    for name, rounds in results.items():
        batch, select, lock = (statistics.median(column) for column in zip(*rounds))
        print(f"{name:8}  {batch * 1e3:11.1f} ms ({batch * 1e6 / ROWS:5.1f} µs/row)  {select * 1e6:11.0f} µs"
              f"  {lock * 1e6:14.0f} µs")


if __name__ == "__main__":
    asyncio.run(main())

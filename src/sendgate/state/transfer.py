"""`sendgate db copy`: a whole state from one backend to another, checked by counting both sides."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, NamedTuple

from sendgate.state.roles import Maintenance
from sendgate.state.rows import COPIED_TABLES

__all__ = ["TableCount", "copy_state"]

BATCH = 5000  # rows per COPY / executemany: bounded memory for any size of log


class TableCount(NamedTuple):
    table: str
    source: int
    target: int


async def copy_state(source: Maintenance, target: Maintenance) -> list[TableCount]:
    """Copy every table of `source` into `target` (which must be empty) in one transaction of the
    target's, then count both: a row the target lacks shows as a count that differs."""
    await source.migrate()  # a file from an older sendgate is read in today's shape
    await target.migrate()

    async def batches() -> AsyncIterator[tuple[str, list[tuple[Any, ...]]]]:
        for table in COPIED_TABLES:
            async for rows in source.read(table, BATCH):
                yield table, rows

    await target.write(batches())
    return [TableCount(table, await source.count(table), await target.count(table)) for table in COPIED_TABLES]

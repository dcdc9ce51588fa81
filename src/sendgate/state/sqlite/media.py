"""The media catalog on SQLite (`roles.MediaCatalog`): `SQLiteStore` mixes `MediaQueries` in."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from sendgate.state.media import MEDIA_COLUMNS, MediaFacts, check_media, media_facts_from_row, media_row

__all__ = ["MediaQueries"]

T = TypeVar("T")

_PUT = (
    f"INSERT INTO media ({', '.join(MEDIA_COLUMNS)}) VALUES ({', '.join('?' * len(MEDIA_COLUMNS))})"
    " ON CONFLICT (phone_number_id, media_id) DO UPDATE SET mime_type = excluded.mime_type,"
    " declared_type = excluded.declared_type, size = excluded.size, animated = excluded.animated,"
    " uploaded_at = excluded.uploaded_at"
)
_GET = "SELECT mime_type, declared_type, size, animated, uploaded_at FROM media WHERE phone_number_id = ? AND media_id = ?"


class MediaQueries:
    """Mixed into `SQLiteStore`: `_read` and `_write` come from there."""

    _read: sqlite3.Connection

    if TYPE_CHECKING:  # SQLiteStore's

        async def _write(self, op: Callable[[sqlite3.Connection], T]) -> T: ...

    async def record_media(
        self,
        phone_number_id: str,
        media_id: str,
        mime_type: str | None,
        size: int | None,
        at: float,
        *,
        declared_type: str | None = None,
        animated: bool | None = None,
    ) -> None:
        facts = MediaFacts(mime_type, declared_type, size, animated, at)
        check_media(phone_number_id, media_id, facts)
        row = media_row(phone_number_id, media_id, facts)

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(_PUT, row)

        await self._write(op)

    async def media_facts(self, phone_number_id: str, media_id: str, now: float) -> MediaFacts | None:
        row = self._read.execute(_GET, (phone_number_id, media_id)).fetchone()
        return media_facts_from_row(None if row is None else tuple(row), now)

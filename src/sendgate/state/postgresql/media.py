"""The media catalog on PostgreSQL (`roles.MediaCatalog`): `PostgresStore` mixes `MediaQueries` in."""

from __future__ import annotations

from sendgate.state.media import MEDIA_COLUMNS, MediaFacts, check_media, media_facts_from_row, media_row
from sendgate.state.postgresql.database import Database

__all__ = ["MediaQueries"]

_PUT = (
    f"INSERT INTO media ({', '.join(MEDIA_COLUMNS)})"
    f" VALUES ({', '.join(f'${i}' for i in range(1, len(MEDIA_COLUMNS) + 1))})"
    " ON CONFLICT (phone_number_id, media_id) DO UPDATE SET mime_type = excluded.mime_type,"
    " declared_type = excluded.declared_type, size = excluded.size, animated = excluded.animated,"
    " uploaded_at = excluded.uploaded_at"
)
_GET = (
    "SELECT mime_type, declared_type, size, animated, uploaded_at FROM media"
    " WHERE phone_number_id = $1 AND media_id = $2"
)


class MediaQueries:
    """Mixed into `PostgresStore`: `_db` comes from there."""

    _db: Database

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
        await self._db.fetch(_PUT, *media_row(phone_number_id, media_id, facts))

    async def media_facts(self, phone_number_id: str, media_id: str, now: float) -> MediaFacts | None:
        rows = await self._db.fetch(_GET, phone_number_id, media_id)
        return media_facts_from_row(tuple(rows[0]) if rows else None, now)

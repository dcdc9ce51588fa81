"""PostgreSQL store: many sendgate processes on one database.

SKELETON (being written): consent ledger, catalog, recipient reads, decision log and lifecycle
here; the review side in `review.py`; what webhooks record in `webhooks.py`; the schema in
`schema.py`; the pool and errors in `database.py`.
"""

from __future__ import annotations

import uuid
from typing import Any

from cachetools import TTLCache

from sendgate.state.postgresql.database import Database
from sendgate.state.postgresql.review import ReviewQueries
from sendgate.state.postgresql.webhooks import WebhookQueries

__all__ = ["PostgresStore"]


class PostgresStore(ReviewQueries, WebhookQueries):
    """The `Store` on one PostgreSQL database, shared by any number of sendgate processes."""

    def __init__(self, url: str) -> None:
        self._db = Database(url)
        # This store's name in the records it writes (`decisions.owner`), one per process.
        self.owner = uuid.uuid4().hex
        # Catalog facts change rarely and are read on every template send ("may lag a few seconds").
        self._template_cache: TTLCache[tuple[str, str], list[tuple[Any, ...]]] = TTLCache(maxsize=4096, ttl=5.0)
        self._account_cache: TTLCache[tuple[str, str | None], dict[str, Any]] = TTLCache(maxsize=1024, ttl=5.0)

    async def close(self) -> None:
        await self._db.close()

"""The decision log's review side on PostgreSQL: filtered listing, hourly counts, the review trail, pruning.

SKELETON (being written). `PostgresStore` mixes `ReviewQueries` in; the tables are in `schema.py`.
"""

from __future__ import annotations

from sendgate.state.postgresql.database import Database

__all__ = ["ReviewQueries"]


class ReviewQueries:
    """Mixed into `PostgresStore`: `_db` comes from there."""

    _db: Database

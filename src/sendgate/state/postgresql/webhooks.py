"""What Meta's webhooks tell the gateway, on PostgreSQL: `PostgresStore` mixes `WebhookQueries` in.

SKELETON (being written). What each write promises is the interface's (`state/roles.py`).
"""

from __future__ import annotations

from typing import Any

from cachetools import TTLCache

from sendgate.state.postgresql.database import Database

__all__ = ["WebhookQueries"]


class WebhookQueries:
    """Mixed into `PostgresStore`: `_db`, `_template_cache` and `_account_cache` come from there."""

    _db: Database
    _template_cache: TTLCache[Any, Any]
    _account_cache: TTLCache[tuple[str, str | None], dict[str, Any]]

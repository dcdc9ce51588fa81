"""The embedded backend: one SQLite file, one process (`state: sqlite:///path`).

- `store.py`: `SQLiteStore`, reads inline, writes through the group-committing writer;
- `writer.py`: that writer thread;
- `review.py`, `webhooks.py`: the log's listing, counts, reviews and pruning; what webhooks record;
- `schema.py`: the one schema and its numbered migrations;
- `maintenance.py`: `sendgate db` (migrate, whole tables in and out);
- `membership.py`: one serving process per file.
"""

from __future__ import annotations

from sendgate.state.sqlite.store import SQLiteStore

__all__ = ["SQLiteStore"]

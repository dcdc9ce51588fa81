"""The facts policies see, and the decision log: a store interface by role.

Each consumer depends on the roles it uses (`state/roles.py`: `ConsentLedger`,
`TemplateCatalog`, `RecipientReads`, `DecisionLog`, `ReviewTrail`, `WebhookState`,
`AccountState`, `MediaCatalog`, `Lifecycle`); `Store` is all of them, what `open_store` returns. Backends:
`sqlite/` (one process, the default) and `postgresql/` (many processes on one database), each
also opened for `sendgate db` (`Maintenance`, `open_maintenance`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from sendgate.state.base import (
    CONSENT_CATEGORIES,
    CONSENT_STATUSES,
    DECISION_FILTERS,
    OUTCOME_UNKNOWN,
    ConsentRecord,
    DecisionCount,
    DecisionQuery,
    DecisionRecord,
    InvalidRecord,
    PruneResult,
    RecipientFacts,
    ReviewRecord,
    SendRecord,
    StoreError,
    TemplateFacts,
)
from sendgate.state.media import MediaFacts
from sendgate.state.roles import (
    AccountState,
    ConsentLedger,
    DecisionLog,
    Lifecycle,
    Maintenance,
    MediaCatalog,
    RecipientReads,
    ReviewTrail,
    Store,
    TemplateCatalog,
    WebhookState,
)

__all__ = [
    "AccountState",
    "ConsentLedger",
    "DecisionLog",
    "Lifecycle",
    "Maintenance",
    "MediaCatalog",
    "MediaFacts",
    "RecipientReads",
    "ReviewTrail",
    "TemplateCatalog",
    "WebhookState",
    "CONSENT_CATEGORIES",
    "CONSENT_STATUSES",
    "DECISION_FILTERS",
    "OUTCOME_UNKNOWN",
    "ConsentRecord",
    "DecisionCount",
    "DecisionQuery",
    "DecisionRecord",
    "InvalidRecord",
    "PruneResult",
    "RecipientFacts",
    "ReviewRecord",
    "SendRecord",
    "Store",
    "StoreError",
    "TemplateFacts",
    "BACKENDS",
    "Backend",
    "StateURLError",
    "backend",
    "open_maintenance",
    "open_store",
    "run_with_store",
]


class StateURLError(ValueError):
    """The `state` URL names no backend this sendgate has, or is malformed for its backend."""


def _sqlite_path(url: str) -> str:
    path = url.removeprefix("sqlite:///")
    if path == url or not path:
        raise StateURLError(f"state: a SQLite URL is sqlite:///path (three slashes, then the file), got {url!r}")
    return path


def _open_sqlite(url: str) -> Store:
    from sendgate.state.sqlite import SQLiteStore

    return SQLiteStore(_sqlite_path(url))


def _sqlite_maintenance(url: str) -> Maintenance:
    from sendgate.state.sqlite.maintenance import SQLiteMaintenance

    return SQLiteMaintenance(_sqlite_path(url))


def _open_postgresql(url: str) -> Store:
    from sendgate.state.postgresql import PostgresStore

    return PostgresStore(url)


def _postgresql_maintenance(url: str) -> Maintenance:
    from sendgate.state.postgresql.maintenance import PostgresMaintenance

    return PostgresMaintenance(url)


class Backend(NamedTuple):
    """How a URL scheme's backend opens: as a store, and for `sendgate db`."""

    store: Callable[[str], Store]
    maintenance: Callable[[str], Maintenance]
    shared: bool  # several processes may serve from one database


# Backends by URL scheme: a new backend is one entry here and its own package.
BACKENDS: dict[str, Backend] = {
    "sqlite": Backend(_open_sqlite, _sqlite_maintenance, shared=False),
    "postgresql": Backend(_open_postgresql, _postgresql_maintenance, shared=True),
}


def backend(url: str) -> Backend:
    """The backend a `state` URL names; the only place state URLs are parsed."""
    scheme, sep, _ = url.partition("://")
    found = BACKENDS.get(scheme) if sep else None
    if found is None:
        known = ", ".join(f"{name}://" for name in sorted(BACKENDS))
        raise StateURLError(f"state: unsupported URL {url!r}; this sendgate knows {known}")
    return found


def open_store(url: str) -> Store:
    """Open the store a `state` URL names (`sqlite:///path`, `postgresql://user@host:port/db`)."""
    return backend(url).store(url)


def open_maintenance(url: str) -> Maintenance:
    """The `sendgate db` side of the backend a `state` URL names."""
    return backend(url).maintenance(url)


def run_with_store(url: str, work: Callable[[Store], Awaitable[int]]) -> int:
    """Open the store, run `work` on it in a fresh event loop, close it: the CLI's commands."""

    async def run() -> int:
        store = open_store(url)
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())

"""The facts policies see, and the decision log: a store interface by role.

Each consumer depends on the roles it uses (`state/roles.py`: `ConsentLedger`,
`TemplateCatalog`, `RecipientReads`, `DecisionLog`, `ReviewTrail`, `WebhookState`,
`AccountState`, `Lifecycle`); `Store` is all of them, what `open_store` returns.
`SQLiteStore` is the first implementation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

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
from sendgate.state.roles import (
    AccountState,
    ConsentLedger,
    DecisionLog,
    Lifecycle,
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
    "StateURLError",
    "open_store",
    "run_with_store",
]


class StateURLError(ValueError):
    """The `state` URL names no backend this sendgate has, or is malformed for its backend."""


def _open_sqlite(url: str) -> Store:
    from sendgate.state.sqlite import SQLiteStore

    path = url.removeprefix("sqlite:///")
    if path == url or not path:
        raise StateURLError(f"state: a SQLite URL is sqlite:///path (three slashes, then the file), got {url!r}")
    return SQLiteStore(path)


def _open_postgresql(url: str) -> Store:
    from sendgate.state.postgresql import PostgresStore

    return PostgresStore(url)


# Backends by URL scheme: a new backend is one entry here and its own package.
BACKENDS: dict[str, Callable[[str], Store]] = {"sqlite": _open_sqlite, "postgresql": _open_postgresql}


def open_store(url: str) -> Store:
    """Open the store a `state` URL names (`sqlite:///path`, `postgresql://user@host:port/db`); the only
    place state URLs are parsed."""
    scheme, sep, _ = url.partition("://")
    opener = BACKENDS.get(scheme) if sep else None
    if opener is None:
        known = ", ".join(f"{name}://" for name in sorted(BACKENDS))
        raise StateURLError(f"state: unsupported URL {url!r}; this sendgate knows {known}")
    return opener(url)


def run_with_store(url: str, work: Callable[[Store], Awaitable[int]]) -> int:
    """Open the store, run `work` on it in a fresh event loop, close it: the CLI's commands."""

    async def run() -> int:
        store = open_store(url)
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())

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
    "open_store",
    "run_with_store",
]


def open_store(url: str) -> Store:
    """Open the store a `state` URL names (`sqlite:///path`)."""
    from sendgate.state.sqlite import SQLiteStore

    if not url.startswith("sqlite:///"):
        raise ValueError(f"unsupported state URL {url!r}: use sqlite:///path")
    return SQLiteStore(url.removeprefix("sqlite:///"))


def run_with_store(url: str, work: Callable[[Store], Awaitable[int]]) -> int:
    """Open the store, run `work` on it in a fresh event loop, close it: the CLI's commands."""

    async def run() -> int:
        store = open_store(url)
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())

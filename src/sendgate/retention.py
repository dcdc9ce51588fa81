"""Decision-log retention: prune records older than `log.retention_days`, in the background.

The server prunes once at start and then every hour; `sendgate log prune` does the same on
demand. Pruning runs in short batches through the store's writer, so sends keep flowing.
With several processes on one database, only the fleet's leader prunes (state/leader.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

from sendgate.state import DecisionLog, PruneResult
from sendgate.state.leader import FleetLeader, SoleProcess

__all__ = ["parse_age", "prune_older_than", "retention_context"]

log = logging.getLogger("sendgate.retention")

INTERVAL = 3600.0
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(value: str) -> float:
    """`90d`, `12h`, `30m`, `3600s`, `2w`; a bare number is days. Returns seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", value.lower())
    if not match:
        raise ValueError(f"not an age: {value!r} (use e.g. 90d, 12h, 30m)")
    seconds = float(match[1]) * _UNITS[match[2] or "d"]
    if seconds <= 0:
        raise ValueError("the age must be positive")
    return seconds


async def prune_older_than(store: DecisionLog, seconds: float, now: float) -> PruneResult:
    return await store.prune_decisions(now - seconds, now)


def retention_context(
    days: int | None,
    store_of: Callable[[], DecisionLog],
    clock: Callable[[], float],
    interval: float = INTERVAL,
    leader: FleetLeader | None = None,
) -> Callable[[Any], AsyncIterator[None]]:
    """An aiohttp cleanup context running the retention loop while the app runs (nothing when `days` is None);
    each round waits until this process leads the fleet (`leader`, by default the sole process)."""
    fleet = leader or SoleProcess()

    async def loop() -> None:
        assert days is not None
        while True:
            await fleet.wait_leading()
            try:
                result = await prune_older_than(store_of(), days * 86400.0, clock())
                if result.decisions or result.sends:
                    log.info(
                        "retention (%d days): pruned %d decision records, %d review notes, %d send history rows",
                        days, result.decisions, result.reviews, result.sends,
                    )  # fmt: skip
            except Exception:  # keep the loop alive: the next round retries
                log.exception("retention: pruning the decision log failed")
            await asyncio.sleep(interval)

    async def context(app: Any) -> AsyncIterator[None]:
        if days is None:
            yield
            return
        task = asyncio.create_task(loop(), name="sendgate-retention")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return context

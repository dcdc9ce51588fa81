"""Fleet leadership: the timed work that runs once per fleet, not once per process.

The periodic template sync (webhooks/templates.py) and the retention loop (retention.py) change
shared state on a timer; N processes on one database would each do it N times. Each round of
that work first waits for `FleetLeader.wait_leading()`: only the process that leads runs it.

`SoleLeader` always leads: one process on its own state (SQLite). On PostgreSQL
(`state/postgresql/leader.py`; `state/fleet.py` picks by `state` URL) one process of all those on the database leads at a time; when
it stops or dies, another takes over on its next try. A round already running when its process
loses the lead finishes (both kinds of work are idempotent: a prune or a catalog replaced twice
leaves the same state).

Joining a fleet also checks that its processes can share it: several processes on one database
need `redis_url` (their rate counters, alert counts and sessions live there); a process that
cannot join raises `FleetError`, a start-up error naming what to set.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["FleetError", "FleetLeader", "SoleLeader"]


class FleetError(Exception):
    """This process cannot join the fleet on its database; the message says what to set."""


class FleetLeader(Protocol):
    async def start(self) -> None:
        """Join the fleet (raises `FleetError` when this process may not), then try to lead, in
        the background, until `close()`."""
        ...

    async def close(self) -> None:
        """Leave the fleet: the lead, if held, goes to another process at its next try."""
        ...

    def leads(self) -> bool:
        """Whether this process leads the fleet right now."""
        ...

    async def wait_leading(self) -> None:
        """Return once this process leads (at once when it does)."""
        ...


class SoleLeader:
    """The only process on its state: it always leads."""

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def leads(self) -> bool:
        return True

    async def wait_leading(self) -> None:
        pass


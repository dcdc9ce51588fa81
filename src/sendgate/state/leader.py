"""The fleet: the processes on one database, the timed work only one of them runs, and who may join.

The periodic template sync (webhooks/templates.py) and the retention loop (retention.py) change
shared state on a timer; N processes on one database would each do it N times. Each round of
that work first waits for `FleetLeader.wait_leading()`: only the process that leads runs it.
A round already running when its process loses the lead finishes (both kinds of work are
idempotent: a prune or a catalog replaced twice leaves the same state).

Several processes on one database need `redis_url` (their rate counters, alert counts and
sessions live there): `sendgate serve` joins the fleet first (`FleetMembership.join()`), and a
process that may not join gets `FleetError`, a start-up error naming what to set.

`SoleProcess` is both for one process on its own state (SQLite): it always leads and joins
nothing. On PostgreSQL (`state/postgresql/leader.py`; `state/fleet.py` picks by `state` URL)
one process of all those on the database leads at a time; when it stops or dies, another takes
over on its next try.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["FleetError", "FleetLeader", "FleetMembership", "SoleProcess"]


class FleetError(Exception):
    """This process cannot join the fleet on its database; the message says what to set."""


class FleetLeader(Protocol):
    async def start(self) -> None:
        """Try to lead, in the background, until `close()`."""
        ...

    async def close(self) -> None:
        """Stop: the lead, if held, goes to another process at its next try."""
        ...

    def leads(self) -> bool:
        """Whether this process leads the fleet right now."""
        ...

    async def wait_leading(self) -> None:
        """Return once this process leads (at once when it does)."""
        ...


class FleetMembership(Protocol):
    async def join(self) -> None:
        """Join for the life of the process; raises `FleetError` when this process may not share its
        database with the processes already on it (or they with it)."""
        ...

    async def leave(self) -> None:
        ...


class SoleProcess:
    """The only process on its state: it always leads, and there is no fleet to join."""

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def leads(self) -> bool:
        return True

    async def wait_leading(self) -> None:
        pass

    async def join(self) -> None:
        pass

    async def leave(self) -> None:
        pass

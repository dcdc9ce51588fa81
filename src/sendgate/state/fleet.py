"""What a `state` URL means for a fleet of processes: how sends are admitted, who leads, who may join.

One process on its own state (SQLite) admits on its event loop, always leads, and holds its file
against a second `sendgate serve` (`state/sqlite/membership.py`).
On PostgreSQL every process and replica on the database shares all three: admission through
advisory locks per key (`state/postgresql/admission.py`), the lead and the membership through
one lock each (`state/postgresql/leader.py`).
"""

from __future__ import annotations

from sendgate.state.admission import Admission, LocalAdmission
from sendgate.state.leader import FleetLeader, FleetMembership, SoleProcess

__all__ = ["open_admission", "open_leader", "open_membership"]

_SHARED = "postgresql://"  # the state URLs several processes share


def open_admission(state_url: str) -> Admission:
    """The admission a `state` URL needs: across processes on PostgreSQL, else in this process."""
    if state_url.startswith(_SHARED):
        from sendgate.state.postgresql.admission import PostgresAdmission

        return PostgresAdmission(state_url)
    return LocalAdmission()


def open_leader(state_url: str) -> FleetLeader:
    """Who runs the fleet's timed work: one process of all those on a PostgreSQL database, else this one."""
    if state_url.startswith(_SHARED):
        from sendgate.state.postgresql.leader import PostgresLeader

        return PostgresLeader(state_url)
    return SoleProcess()


def open_membership(state_url: str, *, shares_counters: bool) -> FleetMembership:
    """This process's place among those on its database. `shares_counters`: `redis_url` is set, so
    it may share the database with others (without it, it must be the database's only process)."""
    if state_url.startswith(_SHARED):
        from sendgate.state.postgresql.leader import PostgresMembership

        return PostgresMembership(state_url, shares_counters=shares_counters)
    if state_url.startswith("sqlite:///"):
        from sendgate.state.sqlite.membership import SQLiteMembership

        return SQLiteMembership(state_url.removeprefix("sqlite:///"))
    return SoleProcess()

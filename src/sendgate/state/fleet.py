"""What a `state` URL means for a fleet of processes: how sends are admitted, and who leads.

One process on its own state (SQLite) admits on its event loop and always leads. On PostgreSQL
every process and replica on the database shares both: admission through advisory locks per key
(`state/postgresql/admission.py`), the lead through one lock (`state/postgresql/leader.py`).
"""

from __future__ import annotations

from sendgate.state.admission import Admission, LocalAdmission
from sendgate.state.leader import FleetLeader, SoleLeader

__all__ = ["open_admission", "open_leader"]

_SHARED = "postgresql://"  # the state URLs several processes share


def open_admission(state_url: str) -> Admission:
    """The admission a `state` URL needs: across processes on PostgreSQL, else in this process."""
    if state_url.startswith(_SHARED):
        from sendgate.state.postgresql.admission import PostgresAdmission

        return PostgresAdmission(state_url)
    return LocalAdmission()


def open_leader(state_url: str, *, shares_counters: bool) -> FleetLeader:
    """The fleet leader a `state` URL needs. `shares_counters`: `redis_url` is set, so this process
    may share its database with others (without it, it must be the database's only process)."""
    if state_url.startswith(_SHARED):
        from sendgate.state.postgresql.leader import PostgresLeader

        return PostgresLeader(state_url, shares_counters=shares_counters)
    return SoleLeader()

"""Review-page sessions: who signed in, their CSRF token, until when; keyed by a hash of the cookie.

`SessionStore` is the seam; `MemorySessions` keeps them in this process (a restart signs everyone
out), `sendgate/admin/shared.py` keeps them in Redis so that any replica serves any reviewer.
A store that cannot answer raises `SharedStateError`: the pages then fail closed (503).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["MAX_SESSIONS", "MemorySessions", "Session", "SessionStore", "session_digest"]

MAX_SESSIONS = 10_000  # sign-ins kept in one process


def session_digest(value: str) -> bytes:
    """What a cookie value is kept under: never the value itself."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True)
class Session:
    name: str
    role: str  # admin | reviewer
    csrf: str
    expires: float


class SessionStore(Protocol):
    async def create(self, name: str, role: str) -> tuple[str, Session]:
        """A new sign-in lasting the store's ttl: (the cookie value, its session)."""
        ...

    async def get(self, raw: str | None) -> Session | None:
        """The live session of cookie value `raw`, else None (unknown, signed out or expired)."""
        ...

    async def drop(self, raw: str | None) -> None:
        """Sign out: the session of `raw` is gone everywhere."""
        ...


def new_session(name: str, role: str, now: float, ttl: int) -> tuple[str, Session]:
    return secrets.token_urlsafe(32), Session(name, role, secrets.token_urlsafe(32), now + ttl)


class MemorySessions:
    """Sign-ins of this process, at most `MAX_SESSIONS` (then the oldest goes)."""

    def __init__(self, ttl: int, clock: Callable[[], float]) -> None:
        self.ttl = ttl
        self._clock = clock
        self._by_hash: dict[bytes, Session] = {}

    async def create(self, name: str, role: str) -> tuple[str, Session]:
        now = self._clock()
        if len(self._by_hash) >= MAX_SESSIONS:
            self._by_hash = {k: s for k, s in self._by_hash.items() if s.expires > now}
            while len(self._by_hash) >= MAX_SESSIONS:  # still full: the oldest sign-in goes
                del self._by_hash[next(iter(self._by_hash))]
        raw, session = new_session(name, role, now, self.ttl)
        self._by_hash[session_digest(raw)] = session
        return raw, session

    async def get(self, raw: str | None) -> Session | None:
        if not raw:
            return None
        key = session_digest(raw)
        session = self._by_hash.get(key)
        if session is None:
            return None
        if session.expires <= self._clock():
            del self._by_hash[key]
            return None
        return session

    async def drop(self, raw: str | None) -> None:
        if raw:
            self._by_hash.pop(session_digest(raw), None)

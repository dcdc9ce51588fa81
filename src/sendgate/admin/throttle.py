"""The guessing throttle for admin and reviewer tokens, per client address.

`FAILURES` wrong tokens from one address within `WINDOW` seconds block that address for the rest
of those seconds: every attempt from there is refused meanwhile, the right token too (otherwise
guessing is not slowed). The JSON admin API and the sign-in page share one throttle, so both
doors together give an address one count.

`GuessThrottle` is the seam; `MemoryGuessThrottle` keeps the counts in this process,
`sendgate/admin/shared.py`'s `RedisGuessThrottle` in Redis for every replica (`redis_url`); a
shared one that cannot answer raises `SharedStateError`, and the callers refuse (503).
The in-process one's memory is bounded by `MAX_ADDRESSES` addresses; when full, the address
whose last failure is oldest among those not blocked is dropped; a blocked address is kept until
its block expires, never dropped. When every entry is blocked, the addresses not in the table are counted together, as one: `FAILURES` wrong tokens
among all of them block all of them for the window. Nothing is ever unblocked early.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict, deque
from typing import Protocol

from sendgate.state.counters import SharedStateError

__all__ = ["FAILURES", "MAX_ADDRESSES", "WINDOW", "GuessThrottle", "MemoryGuessThrottle", "SharedStateError"]

FAILURES = 10  # wrong tokens per address ...
WINDOW = 300.0  # ... within this many seconds block it for the rest of them
MAX_ADDRESSES = 10_000  # addresses tracked at once (each at most FAILURES timestamps: a few MB in all)


class GuessThrottle(Protocol):
    async def attempt(self, address: str, now: float, *, failed: bool) -> float | None:
        """One token attempt from `address`: the seconds to wait if the address is blocked (the
        attempt is refused, whatever the token), else None, after counting it if `failed`.

        One call decides and counts, so concurrent guesses cannot all pass one check.
        Raises `SharedStateError` when a shared throttle cannot answer.
        """
        ...


class MemoryGuessThrottle:
    """`GuessThrottle` in this process (see the module docstring). Never suspends: atomic on the loop."""

    def __init__(self, failures: int = FAILURES, window: float = WINDOW, max_addresses: int = MAX_ADDRESSES) -> None:
        if failures < 1 or window <= 0 or max_addresses < 1:
            raise ValueError("failures, window and max_addresses must be positive")
        self.failures = failures
        self.window = window
        self.max_addresses = max_addresses
        # Not blocked, with failures inside the window; oldest last failure first.
        self._counting: OrderedDict[str, deque[float]] = OrderedDict()
        self._blocked: dict[str, float] = {}  # address -> blocked until
        self._expiry: list[tuple[float, str]] = []  # heap of (until, address), one per blocked address
        self._overflow: deque[float] = deque(maxlen=failures)  # the untracked addresses' failures, together
        self._overflow_until: float | None = None

    def __len__(self) -> int:
        """Addresses tracked (at most `max_addresses`)."""
        return len(self._counting) + len(self._blocked)

    async def attempt(self, address: str, now: float, *, failed: bool) -> float | None:
        self._expire(now)
        until = self._blocked.get(address)
        if until is None and address not in self._counting:
            until = self._overflow_until  # counted together while the table was full: blocked together
        if until is not None:
            return until - now
        if failed:
            self._fail(address, now)
        return None

    def _fail(self, address: str, now: float) -> None:
        failures = self._counting.get(address)
        if failures is not None:
            self._counting.move_to_end(address)
        elif len(self) < self.max_addresses or self._counting:
            if len(self) >= self.max_addresses:
                self._counting.popitem(last=False)  # the oldest unblocked address goes, never a blocked one
            failures = self._counting[address] = deque(maxlen=self.failures)
        else:  # every entry is blocked: count with the rest of the untracked addresses
            if self._add(self._overflow, now):
                self._overflow_until = self._overflow[0] + self.window
                self._overflow.clear()
            return
        if self._add(failures, now):
            del self._counting[address]
            until = failures[0] + self.window
            self._blocked[address] = until
            heapq.heappush(self._expiry, (until, address))

    def _add(self, failures: deque[float], now: float) -> bool:
        """Count one failure; True when that makes `failures` within the window."""
        failures.append(now)
        while failures[0] <= now - self.window:
            failures.popleft()
        return len(failures) >= self.failures

    def _expire(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] <= now:
            _, address = heapq.heappop(self._expiry)
            del self._blocked[address]
        horizon = now - self.window
        while self._counting:  # an address whose last failure has aged out counts nothing
            oldest = next(iter(self._counting.values()))
            if oldest[-1] > horizon:
                break
            self._counting.popitem(last=False)
        if self._overflow_until is not None and self._overflow_until <= now:
            self._overflow_until = None

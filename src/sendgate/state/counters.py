"""Rate and pacing counters per sending number and per account: a moving window of members per key.

`SendCounters` is the seam; `LocalCounters` keeps the windows in this process (the embedded
default), `state/redis/counters.py`'s `RedisCounters` in Redis for every replica (`redis_url`).

One structure serves every rule that needs a count over a moving window: per key, the members
counted in the last `window` seconds, each with when it leaves (its last count plus `window`).

- `take(key, limit=, window=, now=)`: one unit of a rate, e.g. a sending number's messages per
  second (`limit=80, window=1.0`). Each take is a fresh member, so the key admits at most
  `limit` takes in any `window` seconds: an exact sliding window, not a token bucket's
  approximation.
- `add_distinct(key, member, limit=, window=, now=)`: distinct members, e.g. the unique recipients
  of a portfolio in 24 h, or the recipients of one content hash from one account in T minutes.
  A member already in the window is always admitted (and counted from `now` on); a new one only
  while fewer than `limit` are.

Both check and add in one step, atomically: in process they never suspend, so no other send on
the event loop runs in between; in Redis one Lua script per call. So concurrent sends, on any
number of replicas, get exactly `limit` admissions. A refusal adds nothing and says, exactly,
when a new member would be admitted (`retry_after`: when the oldest member leaves the window).

Counting what is forwarded only: reserve, then undo. A rule adds while the send's facts are
gathered (inside the admission hold, before the policy decides); if the send is then not
forwarded (another rule denies or defers it, or it never reaches Meta), the send path calls
`undo(counted)`, which takes the add back as if it had not happened: the member leaves the
window, or goes back to its previous time. Check-then-commit was the alternative; across replicas
it is exact only under a lock on the counter's key (for a sending number, one lock serializing all
of its sends), while a reservation is exact without one. The price is on the safe side: a send
that arrives while another send's reservation is still held, and later undone, may be deferred
(with an exact `Retry-After`), never admitted over the limit. `undo` is exact when calls for one
member are not concurrent: for a recipient, the send's admission hold on the recipient's key (from
the facts to the record) guarantees it; a take's member is unique to it.

Times are the caller's (`now`, the gateway clock): the windows move with it. A member counted at
`now` stays until `now + window` (kept as that time, so that waiting `retry_after` exactly is
enough, with no rounding in between); that time never moves back (a member counted again from a
replica whose clock is behind keeps its later one). Memory is bounded: at most `limit` members
per key, and a key whose members have all left its window is dropped (in process when the next
call sweeps it, in Redis by its TTL of `window` seconds).

A counter that cannot answer (Redis down) raises `SharedStateError`: the rule fails closed (the
send is refused with its own error), never "admitted because the count is unknown".
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Counted", "LocalCounters", "SendCounters", "SharedStateError", "check_limits"]


class SharedStateError(Exception):
    """State shared by the replicas (Redis) could not be read or written: fail closed."""


@dataclass(frozen=True)
class Counted:
    """One add's answer, and what `undo` needs to take it back."""

    admitted: bool
    count: int  # members in the window after this call (this one included when admitted)
    retry_after: float  # 0 when admitted; else the seconds until a new member would be
    key: str
    member: str
    until: float  # when the member leaves the window, after this add (when admitted)
    previous: float | None  # when it would have left before (None: it was new)


class SendCounters(Protocol):
    async def take(self, key: str, *, limit: int, window: float, now: float) -> Counted:
        """One unit of `key`'s rate if fewer than `limit` were taken in the last `window` seconds."""
        ...

    async def add_distinct(self, key: str, member: str, *, limit: int, window: float, now: float) -> Counted:
        """Count `member` in `key`'s window: admitted if already in it, or if fewer than `limit` are."""
        ...

    async def undo(self, counted: Counted) -> None:
        """Take back an admitted add (nothing for a refusal, or once the member was counted again since)."""
        ...


def check_limits(limit: int, window: float) -> None:
    """Every implementation refuses the same meaningless counters."""
    if limit < 1 or not window > 0:
        raise ValueError(f"a counter needs limit >= 1 and window > 0, got {limit} and {window}")


class _Window:
    """One key's members: when each leaves, and a heap of (until, member) to find the first to
    leave (entries whose time is no longer the member's are stale and skipped)."""

    __slots__ = ("expires", "heap", "times")

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self.heap: list[tuple[float, str]] = []
        self.expires = 0.0  # when the last member leaves

    def trim(self, now: float) -> None:
        heap, times = self.heap, self.times
        while heap and heap[0][0] <= now:
            until, member = heapq.heappop(heap)
            if times.get(member) == until:
                del times[member]

    def first_to_leave(self) -> float:
        heap, times = self.heap, self.times
        while times.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0]

    def put(self, member: str, until: float) -> None:
        self.times[member] = until
        heapq.heappush(self.heap, (until, member))
        if len(self.heap) > 2 * len(self.times) + 16:  # members counted again leave stale entries
            self.heap = [(t, m) for m, t in self.times.items()]
            heapq.heapify(self.heap)


class LocalCounters:
    """`SendCounters` in this process. No method suspends: each call is atomic on the event loop."""

    def __init__(self) -> None:
        self._windows: dict[str, _Window] = {}
        self._expiry: list[tuple[float, str]] = []  # (expires, key): one entry per key, possibly early
        self._takes = itertools.count()

    def __len__(self) -> int:
        """Keys with members (what the memory bound is about)."""
        return len(self._windows)

    async def take(self, key: str, *, limit: int, window: float, now: float) -> Counted:
        return self._add(key, f"take:{next(self._takes)}", limit, window, now)

    async def add_distinct(self, key: str, member: str, *, limit: int, window: float, now: float) -> Counted:
        return self._add(key, member, limit, window, now)

    async def undo(self, counted: Counted) -> None:
        found = self._windows.get(counted.key)
        if not counted.admitted or found is None or found.times.get(counted.member) != counted.until:
            return
        if counted.previous is None:
            del found.times[counted.member]  # its heap entry is stale now
        else:
            found.put(counted.member, counted.previous)

    def _add(self, key: str, member: str, limit: int, window: float, now: float) -> Counted:
        check_limits(limit, window)
        self._sweep(now)
        found = self._windows.get(key)
        if found is None:
            found = self._windows[key] = _Window()
            heapq.heappush(self._expiry, (now + window, key))
        found.trim(now)
        previous = found.times.get(member)
        count = len(found.times)
        if previous is None and count >= limit:
            return Counted(False, count, found.first_to_leave() - now, key, member, now + window, None)
        until = now + window if previous is None else max(previous, now + window)
        if until != previous:
            found.put(member, until)
        found.expires = max(found.expires, until)
        return Counted(True, count + (previous is None), 0.0, key, member, until, previous)

    def _sweep(self, now: float) -> None:
        """Drop the keys whose members have all left their window."""
        expiry = self._expiry
        while expiry and expiry[0][0] <= now:
            _, key = heapq.heappop(expiry)
            found = self._windows[key]
            if found.expires <= now:
                del self._windows[key]
            else:
                heapq.heappush(expiry, (found.expires, key))

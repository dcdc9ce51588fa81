"""Time-ordered decision ids (ULID layout: 48-bit milliseconds, 80 random bits, Crockford base32)."""

from __future__ import annotations

import os
import time

__all__ = ["DecisionIds", "crockford"]

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RANDOM_BITS = 80
# Two characters per lookup: an id is 13 table reads, not 26 big-int divmods (one ran on every send).
_PAIRS = [high + low for high in _ALPHABET for low in _ALPHABET]


def crockford(value: int, chars: int) -> str:
    """`value` as `chars` Crockford base32 digits, most significant first (`chars` even)."""
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in range(5 * chars - 10, -1, -10)])


class DecisionIds:
    """Ids that sort in issue order, even within one millisecond or when the clock steps back."""

    def __init__(self) -> None:
        self._last = 0

    def new(self, now: float | None = None) -> str:
        millis = int((time.time() if now is None else now) * 1000)
        value = (millis << _RANDOM_BITS) | int.from_bytes(os.urandom(10), "big")
        if value <= self._last:
            value = self._last + 1  # monotonic: same or earlier millisecond, next id up
        self._last = value
        return crockford(value, 26)

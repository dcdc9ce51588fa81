"""Admission: decide and record atomically per key.

A send's decision reads shared state (the recipient's consent, window, caps and
pair rate) and its send record changes that state. Two sends to the same
recipient that both read the facts before either committed would both see the
old history, and a cap of one would let two through. So every send is admitted
under the keys whose state its decision reads: from reading the facts to
committing its record, no other send holding one of those keys can read them.
Sends that share no key never wait for each other.

`Admission` is the seam; `LocalAdmission` holds keys inside one process (the
embedded default, one SQLite file). A backend shared by several processes
implements the same interface across them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Protocol

__all__ = ["Admission", "AdmissionTimeout", "LocalAdmission", "recipient_key"]


class AdmissionTimeout(Exception):
    """The keys could not all be held within the timeout; the message says which one waited."""

    def __init__(self, key: str, timeout: float) -> None:
        super().__init__(f"another send holding {key} did not finish within {timeout:g} s")
        self.key = key
        self.timeout = timeout


def recipient_key(recipient: str) -> str:
    """The key of everything a recipient's decision reads (consent, window, caps, pair rate)."""
    return f"recipient:{recipient}"


class Admission(Protocol):
    def hold(self, keys: Iterable[str], timeout: float) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold every key for the body of the `async with`, waiting at most `timeout` seconds in
        all to get them; raises AdmissionTimeout when that runs out. Keys are held in one global
        order (sorted), so two sends wanting overlapping keys never deadlock."""
        ...

    def held(self) -> int:
        """How many keys are held or waited for right now (what the memory bound is about)."""
        ...


class _Slot:
    """One held key: the sends waiting for it, first come first served."""

    __slots__ = ("waiters",)

    def __init__(self) -> None:
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()


class LocalAdmission:
    """`Admission` inside one process, on its event loop.

    A key has a slot only while a send holds it, so memory is bounded by the sends in
    flight, not by the number of recipients ever seen. A release hands the key straight
    to the oldest waiter, so a steady stream cannot starve one.
    """

    def __init__(self) -> None:
        self._slots: dict[str, _Slot] = {}

    def held(self) -> int:
        return len(self._slots)

    @contextlib.asynccontextmanager
    async def hold(self, keys: Iterable[str], timeout: float) -> AsyncIterator[None]:
        ordered = sorted(set(keys))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        taken: list[str] = []
        try:
            for key in ordered:
                await self._take(key, deadline, timeout)
                taken.append(key)
            yield
        finally:
            for key in reversed(taken):
                self._release(key)

    async def _take(self, key: str, deadline: float, timeout: float) -> None:
        slot = self._slots.get(key)
        if slot is None:  # free: take it without suspending
            self._slots[key] = _Slot()
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        slot.waiters.append(waiter)
        try:
            async with asyncio.timeout_at(deadline):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self._release(key)  # it was handed over as we gave up: pass it on
            else:
                waiter.cancel()
                with contextlib.suppress(ValueError):
                    slot.waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                raise AdmissionTimeout(key, timeout) from None
            raise

    def _release(self, key: str) -> None:
        slot = self._slots[key]
        while slot.waiters:
            waiter = slot.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # handed over: the slot stays held
                return
        del self._slots[key]

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
implements the same interface across them (PostgreSQL: `state/postgresql/admission.py`;
`state/fleet.py` picks the one a `state` URL needs).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Iterable
from typing import Protocol

from sendgate.state.base import StoreError

__all__ = [
    "Admission", "AdmissionTimeout", "AdmissionUnavailable", "LocalAdmission", "recipient_admission_key",
]  # fmt: skip


class AdmissionTimeout(Exception):
    """The keys could not all be held within the timeout; the message says which one waited."""

    def __init__(self, key: str, timeout: float, message: str | None = None) -> None:
        super().__init__(message or f"another send holding {key} did not finish within {timeout:g} s")
        self.key = key
        self.timeout = timeout


class AdmissionUnavailable(StoreError):
    """The keys are held where several processes share them (a database), and that could not be
    reached: nothing was admitted. A `StoreError`, so whatever does not tell them apart fails closed."""


def recipient_admission_key(recipient: str) -> str:
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

    async def close(self) -> None:
        """Let go of what holding keys needed (connections); called once no send holds any."""
        ...


class _Slot:
    """One held key: the sends waiting for it, first come first served."""

    __slots__ = ("waiters",)

    def __init__(self) -> None:
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()


class _Hold:
    """One send's hold on its keys (a class, not a generator: this runs for every send)."""

    __slots__ = ("_admission", "_keys", "_taken", "_timeout")

    def __init__(self, admission: LocalAdmission, keys: list[str], timeout: float) -> None:
        self._admission = admission
        self._keys = keys
        self._timeout = timeout
        self._taken = 0

    async def __aenter__(self) -> None:
        slots = self._admission._slots
        deadline: float | None = None
        try:
            for key in self._keys:
                if key in slots:  # held by another send: wait for it, up to the deadline
                    if deadline is None:
                        deadline = asyncio.get_running_loop().time() + self._timeout
                    await self._admission._take(key, deadline, self._timeout)
                else:  # free: take it without suspending
                    slots[key] = _Slot()
                self._taken += 1
        except BaseException:
            self._release()
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        self._release()

    def _release(self) -> None:
        for key in reversed(self._keys[: self._taken]):
            self._admission._release(key)
        self._taken = 0


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

    async def close(self) -> None:
        pass

    def hold(self, keys: Iterable[str], timeout: float) -> _Hold:
        return _Hold(self, sorted(set(keys)), timeout)

    async def _take(self, key: str, deadline: float, timeout: float) -> None:
        slot = self._slots[key]
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


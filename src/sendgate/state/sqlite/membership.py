"""One serving process per SQLite file: `sendgate serve` holds an exclusive lock on `<file>.serve.lock`.

Two gateways on one file would each admit sends in their own process (caps no longer exact) and
each mark the other's sends in flight *outcome unknown* at start. The lock (`flock`) goes with the
process, however it ends; CLI commands (`sendgate consent`, `sendgate log`...) do not take it and
keep working beside a running server.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from sendgate.state.leader import FleetError, SoleProcess

__all__ = ["SQLiteMembership"]


class SQLiteMembership(SoleProcess):
    """The only process serving from its file: it always leads; a second one may not join."""

    def __init__(self, path: str | Path) -> None:
        self.lock_path = Path(f"{path}.serve.lock")
        self._fd: int | None = None

    async def join(self) -> None:
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FleetError(
                f"another sendgate serve uses the SQLite file {self.lock_path.name.removesuffix('.serve.lock')}"
                " (one serving process per SQLite file): stop it, or use state: postgresql://... and redis_url"
                " for several"
            ) from None
        self._fd = fd

    async def leave(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None

"""Hot reload of the policies: one entry point for the file watch, SIGHUP and the admin API.

`PolicyReloader.reload(trigger)` asks the engine to load, compile and test the
policy directory again; the engine swaps only if everything passes (the embedded
engine compiles a new regorus engine and replaces a reference; the OPA engine
pushes and holds decisions back meanwhile), so requests are never dropped: they
are decided by the old revision or by the new one. A refused reload leaves the
old revision serving; the reason is logged and kept.

`status()` is the one account of how reloads stand: `GET /admin/v1/policy`, `/readyz`
and `sendgate_policy_reload_failed` all read it. A reload has *failed* while the
policy files on disk differ from the serving revision and the last attempt to load
those very files was refused. Once the files are back to the serving revision (a
restored file), or a later reload succeeds, there is no failure; files changed since
the refused attempt and not tried yet are *pending*, not failed. Without a watched
directory (OPA serving its own bundle) it has failed while the last attempt did.

The file watch polls the modification times and sizes of `policy_dir` (every
second by default: a policy directory is a few dozen files), waits until a change
has settled for one interval (an editor or `git pull` writes several files), then
reloads. No dependency beyond the standard library.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from sendgate.policy.base import EngineError, PolicyEngine, PolicyLoadError
from sendgate.policy.bundle import directory_revision

__all__ = ["RELOADER", "PolicyReloader", "ReloadStatus", "snapshot"]

log = logging.getLogger("sendgate.policy")

_WATCHED = (".rego", ".json", ".yaml", ".yml")
WATCH_INTERVAL = 1.0  # seconds between scans of policy_dir


def snapshot(root: Path) -> tuple[tuple[str, int, int], ...]:
    """(path, mtime_ns, size) of every policy or data file under `root`, sorted; () if it is gone."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.endswith(_WATCHED) and not name.startswith("."):
                path = os.path.join(dirpath, name)
                try:
                    st = os.stat(path)
                except OSError:
                    continue  # removed while we looked
                found.append((os.path.relpath(path, root), st.st_mtime_ns, st.st_size))
    return tuple(sorted(found))


@dataclass(frozen=True)
class ReloadStatus:
    """How reloads stand, as `PolicyReloader.status()` works it out (see the module docstring)."""

    ok: bool  # no failure
    revision: str  # serving
    files_revision: str | None  # of the policy files on disk now (None: no watched directory, or unreadable)
    pending: bool  # the files differ from the serving revision and no reload has tried them yet
    error: str | None  # why, while failed
    last_trigger: str | None  # file | SIGHUP | admin
    last_attempt_at: float | None
    last_success_at: float | None
    last_error: str | None  # None when the last attempt succeeded
    last_error_at: float | None
    reloads: int
    failures: int

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Attempts:
    """What the reloads did: the facts `status()` is worked out from."""

    last_trigger: str | None = None
    last_attempt_at: float | None = None
    last_success_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    tried_files: str | None = None  # the revision of the files the last attempt read
    reloads: int = 0
    failures: int = 0


class PolicyReloader:
    """Serializes reloads of one engine and remembers how the last one went."""

    def __init__(
        self,
        engine: PolicyEngine,
        policy_dir: str | Path | None,
        *,
        interval: float | None = None,
        clock: Callable[[], float] = time.time,
        on_result: Callable[[bool], None] | None = None,
    ) -> None:
        self.engine = engine
        self.policy_dir = None if policy_dir is None else Path(policy_dir)
        self.interval = WATCH_INTERVAL if interval is None else interval
        self._clock = clock
        self._on_result = on_result  # e.g. a metric
        self._lock = asyncio.Lock()
        self._attempts = _Attempts(tried_files=engine.revision)  # the files the engine loaded at startup
        self._task: asyncio.Task[None] | None = None

    def bind_metrics(self, registry: Any) -> Callable[[], None]:
        """`sendgate_policy_reloads_total{result}` and `sendgate_policy_reload_failed` on a Prometheus registry.

        Returns the gauge's refresh, for the scrape to call first (`status()` is the truth). It runs
        after each reload too, so that under workers (whose scrape adds up every worker's files,
        any worker failed counting as failed) each worker's value is as of its own last attempt.
        """
        from prometheus_client import Counter, Gauge

        reloads = Counter("sendgate_policy_reloads", "Policy reloads by result (ok / failed)", ["result"],
                          registry=registry)
        failed = Gauge("sendgate_policy_reload_failed", "1 while a policy reload has failed: the files differ from "
                       "the serving revision, which keeps serving, and loading them was refused", registry=registry,
                       multiprocess_mode="livemax")

        def refresh() -> None:
            failed.set(0.0 if self.status().ok else 1.0)

        def counted(ok: bool) -> None:
            reloads.labels("ok" if ok else "failed").inc()
            refresh()

        self._on_result = counted
        refresh()
        return refresh

    def _files_revision(self) -> str | None:
        return None if self.policy_dir is None else directory_revision(self.policy_dir)

    def status(self) -> ReloadStatus:
        """How reloads stand now. Reads the policy files (a few dozen small ones) to compare them."""
        attempts, revision = self._attempts, self.engine.revision
        files = self._files_revision()
        refused = attempts.last_error is not None  # the last attempt was
        if self.policy_dir is None:
            failed, pending = refused, False
        else:
            failed = refused and files != revision and files == attempts.tried_files
            pending = files != revision and files != attempts.tried_files
        return ReloadStatus(
            ok=not failed,
            revision=revision,
            files_revision=files,
            pending=pending,
            error=attempts.last_error if failed else None,
            last_trigger=attempts.last_trigger,
            last_attempt_at=attempts.last_attempt_at,
            last_success_at=attempts.last_success_at,
            last_error=attempts.last_error,
            last_error_at=attempts.last_error_at,
            reloads=attempts.reloads,
            failures=attempts.failures,
        )

    async def reload(self, trigger: str) -> tuple[bool, str, str | None]:
        """(reloaded, serving revision, error). Never raises for a bad policy or an unreachable OPA."""
        async with self._lock:
            attempts = self._attempts
            attempts.last_trigger, attempts.last_attempt_at = trigger, self._clock()
            loop = asyncio.get_running_loop()
            attempts.tried_files = await loop.run_in_executor(None, self._files_revision)  # what the engine reads
            old = self.engine.revision
            try:
                revision = await self.engine.reload()
            except Exception as exc:  # refused (PolicyLoadError, EngineError) or a bug: either way, keep serving
                if not isinstance(exc, (PolicyLoadError, EngineError)):
                    log.exception("policy reload (%s) failed unexpectedly", trigger)
                attempts.failures += 1
                attempts.last_error, attempts.last_error_at = str(exc), attempts.last_attempt_at
                log.error("policy reload (%s) refused, still serving %s: %s", trigger, self.engine.revision, exc)
                self._notify(False)
                return False, self.engine.revision, str(exc)
            attempts.reloads += 1
            attempts.last_error, attempts.last_success_at = None, attempts.last_attempt_at
            if revision != old:
                log.info("policy reload (%s): now serving %s (was %s)", trigger, revision, old)
            self._notify(True)
            return True, revision, None

    def _notify(self, ok: bool) -> None:
        if self._on_result is not None:
            try:
                self._on_result(ok)
            except Exception:  # a metric must never break a reload
                log.exception("reload callback failed")

    # -- the file watch --------------------------------------------------------------------

    def start_watching(self) -> None:
        if self.policy_dir is None or self._task is not None:
            return
        self._task = asyncio.get_running_loop().create_task(self._watch(), name="sendgate-policy-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _watch(self) -> None:
        assert self.policy_dir is not None
        loop = asyncio.get_running_loop()
        seen = await loop.run_in_executor(None, snapshot, self.policy_dir)
        pending: tuple[tuple[str, int, int], ...] | None = None
        while True:
            await asyncio.sleep(self.interval)
            try:
                now = await loop.run_in_executor(None, snapshot, self.policy_dir)
            except OSError as exc:  # e.g. permissions; try again next time
                log.warning("policy watch: cannot scan %s: %s", self.policy_dir, exc)
                continue
            if now == seen:
                pending = None
                continue
            if now != pending:  # still changing: wait until it holds still for one interval
                pending = now
                continue
            seen, pending = now, None
            ok, _, _ = await self.reload("file")
            if not ok and "changed while" in (self._attempts.last_error or ""):
                seen = ()  # edited again during the test run: reload on the next poll


RELOADER = web.AppKey("policy_reloader", PolicyReloader)  # the app's reloader: file watch, SIGHUP, admin

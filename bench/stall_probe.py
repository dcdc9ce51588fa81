"""Run a Python module under a probe of the pauses a sampling profiler does not name.

    python bench/stall_probe.py OUT.json -- -m sendgate.cli serve

Records every garbage collection (generation, duration) through `gc.callbacks`, and times every
event-loop callback (asyncio's `Handle._run`: task steps, I/O callbacks, timers), keeping the
slow ones (over 1 ms) with what they ran, and, when the module is sendgate, every commit of the
SQLite writer thread (`GroupCommitWriter._commit`: duration, items in the batch). At exit it writes a summary and the slow events,
each with its time since start, to OUT.json. For benches only: it costs two clock reads per
callback.
"""

from __future__ import annotations

import asyncio.events
import atexit
import gc
import runpy
import sys
import threading
import time
from typing import Any

import orjson

SLOW = 0.001  # seconds
KEEP = 5000  # slow events kept

_started = time.perf_counter()
_gc_start: dict[int, float] = {}
_gc: dict[int, list[float]] = {0: [], 1: [], 2: []}
_slow: list[dict[str, Any]] = []
_callbacks = {"count": 0, "seconds": 0.0, "over_1ms": 0, "over_5ms": 0}
_commits: list[float] = []
_gen2_objects: list[tuple[float, int]] = []  # (seconds since start, objects the collector tracks)
_batch_items: list[int] = []


def _on_gc(phase: str, info: dict[str, int]) -> None:
    ident = threading.get_ident()
    if phase == "start":
        if info["generation"] == 2 and len(_gen2_objects) < KEEP:  # how big the heap it walks is
            _gen2_objects.append((round(time.perf_counter() - _started, 2), len(gc.get_objects())))
        _gc_start[ident] = time.perf_counter()
        return
    began = _gc_start.pop(ident, None)
    if began is None:
        return
    took = time.perf_counter() - began
    _gc[info["generation"]].append(took)
    if took > SLOW and len(_slow) < KEEP:
        _slow.append({"at": round(began - _started, 4), "ms": round(took * 1000, 3), "what": f"gc gen{info['generation']}",
                      "thread": threading.current_thread().name, "collected": info.get("collected", 0)})  # fmt: skip


_original_run = asyncio.events.Handle._run


def _timed_run(self: asyncio.events.Handle) -> None:
    began = time.perf_counter()
    _original_run(self)
    took = time.perf_counter() - began
    _callbacks["count"] += 1
    _callbacks["seconds"] += took
    if took > SLOW:
        _callbacks["over_1ms"] += 1
        if took > 0.005:
            _callbacks["over_5ms"] += 1
        if len(_slow) < KEEP:
            _slow.append({"at": round(began - _started, 4), "ms": round(took * 1000, 3), "what": repr(self)[:300]})


def _time_commits() -> None:
    try:
        from sendgate.state.sqlite import writer
    except ImportError:
        return
    original = writer.GroupCommitWriter._commit

    def timed(self: writer.GroupCommitWriter, batch: Any) -> None:
        began = time.perf_counter()
        original(self, batch)
        took = time.perf_counter() - began
        _commits.append(took)
        _batch_items.append(len(batch.items))
        if took > SLOW and len(_slow) < KEEP:
            _slow.append({"at": round(began - _started, 4), "ms": round(took * 1000, 3), "what": "sqlite commit",
                          "items": len(batch.items)})  # fmt: skip

    writer.GroupCommitWriter._commit = timed  # type: ignore[method-assign]


def _dump(path: str) -> None:
    def stats(values: list[float]) -> dict[str, float]:
        values = sorted(values)
        if not values:
            return {"count": 0}
        return {"count": len(values), "total_ms": round(sum(values) * 1000, 2),
                "median_ms": round(values[len(values) // 2] * 1000, 3), "max_ms": round(values[-1] * 1000, 3)}  # fmt: skip

    summary = {
        "seconds": round(time.perf_counter() - _started, 2),
        "gc": {f"gen{gen}": stats(values) for gen, values in _gc.items()},
        "gc_thresholds": gc.get_threshold(),
        "gen2_tracked_objects": _gen2_objects,
        "callbacks": {**_callbacks, "seconds": round(float(_callbacks["seconds"]), 3)},
        "commits": stats(_commits),
        "commit_p99_ms": round(sorted(_commits)[int(len(_commits) * 0.99)] * 1000, 3) if _commits else None,
        "batch_items_mean": round(sum(_batch_items) / len(_batch_items), 2) if _batch_items else None,
        "slow": _slow,
    }
    with open(path, "wb") as out:
        out.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2))


def main() -> None:
    out, sep, *rest = sys.argv[1:]
    if sep != "--" or rest[:1] != ["-m"] or len(rest) < 2:
        raise SystemExit(__doc__)
    gc.callbacks.append(_on_gc)
    asyncio.events.Handle._run = _timed_run  # type: ignore[method-assign]
    _time_commits()
    atexit.register(_dump, out)
    sys.argv = [rest[1], *rest[2:]]
    runpy.run_module(rest[1], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()

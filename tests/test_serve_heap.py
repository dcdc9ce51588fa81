"""`sendgate serve` settles its heap once it listens: start-up objects frozen, young collections rarer."""

from __future__ import annotations

import gc

from sendgate import serve


def test_settling_freezes_what_start_up_made_and_raises_the_young_threshold() -> None:
    before = gc.get_threshold()
    kept = [object() for _ in range(1000)]  # start-up state still referenced when the server listens
    try:
        serve._settle_heap()
        assert gc.get_freeze_count() >= len(kept)  # out of every later collection's walk
        assert gc.get_threshold() == serve._GC_THRESHOLDS
        assert serve._GC_THRESHOLDS[0] > before[0]  # fewer young collections than Python's default
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)

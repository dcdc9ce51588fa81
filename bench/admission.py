"""What admission costs a send, against the same work without it, in one run.

Admission (sendgate/state/admission.py) holds a send's recipient key from reading its
facts to committing its record. Sends to distinct recipients never wait for each other;
this measures what holding a key costs them anyway, and what a hot recipient costs.

Each row runs N concurrent tasks, each doing `--sends` iterations of a stand-in for the
decision (a yield to the event loop plus a short busy spin, the part of a send that runs
while its key is held), wrapped in:

- `baseline`: nothing (the send path before admission);
- `distinct`: `LocalAdmission.hold([recipient_admission_key(r)])`, every send a new recipient;
- `one hot recipient`: the same, every send to one recipient (they queue, by design).

Prints sends/s, the overhead per send against the baseline, and the keys left held; then
the cost of one uncontended hold and release alone (the figure the rows' noise can hide),
against an empty `async with` in the same loop.

    python bench/admission.py [--concurrency 32] [--sends 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from sendgate.state.admission import LocalAdmission, recipient_admission_key  # noqa: E402

SPIN_SECONDS = 20e-6  # about what a send's in-process work between facts and commit takes


def _work() -> None:
    end = time.perf_counter() + SPIN_SECONDS
    while time.perf_counter() < end:
        pass


class _Nothing:
    """The cheapest `async with` there is: what a send did before admission, plus the statement."""

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc_info: object) -> None:
        return None


def _nothing(_keys: list[str], _timeout: float) -> _Nothing:
    return _Nothing()


async def _run(hold: Callable[[list[str], float], contextlib.AbstractAsyncContextManager[None]],
               keys: Callable[[int], str], concurrency: int, sends: int) -> float:
    counter = itertools.count()

    async def worker() -> None:
        for _ in range(sends // concurrency):
            i = next(counter)
            async with hold([keys(i)], 5.0):
                await asyncio.sleep(0)  # the fact read and the commit are awaits
                _work()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return (sends // concurrency * concurrency) / (time.perf_counter() - started)


async def _main(args: argparse.Namespace) -> None:
    admission = LocalAdmission()
    rows: dict[str, list[float]] = {"baseline": [], "distinct recipients": [], "one hot recipient": []}
    for _ in range(args.rounds):  # interleaved, so drift in the machine's load hits all rows alike
        rows["baseline"].append(await _run(_nothing, lambda i: f"1650{i:07d}", args.concurrency, args.sends))
        rows["distinct recipients"].append(
            await _run(admission.hold, lambda i: recipient_admission_key(f"1650{i:07d}"), args.concurrency, args.sends)
        )
        rows["one hot recipient"].append(
            await _run(admission.hold, lambda i: recipient_admission_key("16505551234"), args.concurrency, args.sends)
        )
    base = statistics.median(rows["baseline"])
    print(f"{args.concurrency} concurrent tasks, {args.sends} sends a row, median of {args.rounds} rounds")
    print(f"{'':22} {'sends/s':>10} {'vs baseline':>12} {'µs/send added':>14}")
    for name, rates in rows.items():
        rate = statistics.median(rates)
        added = (1 / rate - 1 / base) * 1e6
        print(f"{name:22} {rate:10,.0f} {rate / base:11.2f}x {added:14.2f}")
    print(f"keys still held afterwards: {admission.held()}")
    hold_us, empty_us = await _alone(admission, 100_000)
    print(f"one uncontended hold + release: {hold_us:.2f} µs (an empty async with: {empty_us:.2f} µs)")


async def _alone(admission: LocalAdmission, n: int) -> tuple[float, float]:
    """µs per `hold` of a new key with nobody waiting, and per empty `async with`, best of 5."""
    keys = [recipient_admission_key(f"1650{i:07d}") for i in range(n)]
    best_hold = best_empty = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for key in keys:
            async with admission.hold([key], 5.0):
                pass
        best_hold = min(best_hold, (time.perf_counter() - started) / n * 1e6)
        started = time.perf_counter()
        for key in keys:
            async with _nothing([key], 5.0):
                pass
        best_empty = min(best_empty, (time.perf_counter() - started) / n * 1e6)
    return best_hold, best_empty


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--sends", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()

"""Summarise py-spy's collapsed stacks (`py-spy record --format raw`): where one thread's time goes.

    python bench/profile_summary.py DIR/sendgate-200.txt [--top 40] [--match regorus,sqlite3]

Per thread, its share of the samples; for the busiest thread (the event loop's), the functions by
inclusive share (a function counted once per stack it is on) and by self share (the leaf frame).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_LINE = re.compile(r":\d+\)$")


def parse(path: Path) -> dict[str, Counter[tuple[str, ...]]]:
    """thread -> Counter of stacks (root first, frames without line numbers)."""
    threads: dict[str, Counter[tuple[str, ...]]] = {}
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        thread = next((f for f in frames if f.startswith("thread ")), "thread ?")
        frames = [_LINE.sub(")", f) for f in frames if not f.startswith(("thread ", "process "))]
        threads.setdefault(thread, Counter())[tuple(frames)] += int(count)
    return threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", type=Path)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--match", default="", help="comma-separated substrings: inclusive share of frames matching each")
    args = parser.parse_args()
    threads = parse(args.path)
    totals = {thread: sum(stacks.values()) for thread, stacks in threads.items()}
    grand = sum(totals.values())
    for thread, total in sorted(totals.items(), key=lambda item: -item[1]):
        print(f"{thread:40} {total:7} samples  {100 * total / grand:5.1f}%")
    busiest = max(totals, key=lambda thread: totals[thread])
    stacks = threads[busiest]
    total = totals[busiest]
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    for frames, count in stacks.items():
        for frame in set(frames):
            inclusive[frame] += count
        if frames:
            leaf[frames[-1]] += count
    print(f"\n{busiest}: inclusive (share of its samples)")
    for frame, count in inclusive.most_common(args.top):
        print(f"{100 * count / total:5.1f}%  {frame}")
    print(f"\n{busiest}: self")
    for frame, count in leaf.most_common(args.top):
        print(f"{100 * count / total:5.1f}%  {frame}")
    for needle in filter(None, args.match.split(",")):
        hit = sum(count for frames, count in stacks.items() if any(needle in frame for frame in frames))
        print(f"\nstacks through {needle!r}: {100 * hit / total:5.1f}% of {busiest}")


if __name__ == "__main__":
    main()

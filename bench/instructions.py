"""Instructions per message, counted by callgrind: a noise-free A/B of the send path's own work.

On a shared virtual machine, timings of the same code differ by 30-50% from one minute to the
next, more than most changes to the hot path buy. Valgrind's callgrind counts the instructions a
process executes in user space, the same every run. This starts the fake Graph API and each target
under callgrind (the bare aiohttp proxy; sendgate with the default policies on a populated SQLite
store; with --against REV, sendgate as of git revision REV too), sends each a warm-up, zeroes the
counters, sends the same N allowed messages (half texts in the window, half utility templates,
as bench/gateway.py, each to a new recipient, --concurrency at a time), dumps the counters and
prints the instructions per message, in total and by the object file that ran them (the Python
interpreter, which runs all Python code; regorus; SQLite; orjson; libc...).

What it does not count: the kernel's work (socket reads and writes, the commit's write and sync),
time spent waiting, and what a cache miss costs. So it is for comparing two versions of the code,
not a measure of CPU time: bench/gateway.py and bench/latency.py measure that.

    python bench/instructions.py [--messages 400] [--concurrency 8] [--against REV]

Needs valgrind (Debian: apt-get install valgrind). Under callgrind a process runs about 50x slower:
a run takes a few minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from gateway import _drive  # noqa: E402  (the load of the saturation bench)
from harness import ROOT, free_port, gateway_env, populate, python_env, start_fake_graph  # noqa: E402
from latency import _remove_worktrees, revision_tree  # noqa: E402  (--against, as bench/latency.py)

_NAMED = re.compile(r"c?ob=\((\d+)\)(?: (.*))?$")  # an object file's id, and its name where first used


def _under_callgrind(cmd: list[str], env: dict[str, str], out: Path) -> subprocess.Popen[bytes]:
    """`cmd` under callgrind; returns once it prints its ready line (start-up is slow under valgrind)."""
    wrapped = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-instr=no", *cmd]
    proc = subprocess.Popen(wrapped, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
    assert proc.stdout is not None
    deadline = time.time() + 900
    while time.time() < deadline:
        line = proc.stdout.readline().decode()
        if "listening" in line:
            return proc
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError(f"{cmd[:4]} did not start under callgrind")


def _by_object(dump: Path) -> tuple[int, Counter[str]]:
    """Total instructions in a callgrind dump, and the instructions each object file ran itself.

    Read from the file itself (callgrind's format: `ob=` names the object of the cost lines that
    follow; the one line after `calls=` is a call's inclusive cost, not the caller's own), since
    callgrind_annotate counts the functions still running when the counters were zeroed (the event
    loop's) as if each had run everything since."""
    names: dict[str, str] = {}
    current = "?"
    objects: Counter[str] = Counter()
    after_call = False
    for line in dump.read_text(errors="replace").splitlines():
        if line.startswith(("ob=", "cob=")):
            match = _NAMED.match(line)
            if match is None:
                continue
            if match.group(2) is not None:
                names[match.group(1)] = match.group(2)
            if line.startswith("ob="):
                current = _object_name(names.get(match.group(1), "?"))
        elif line.startswith("calls="):
            after_call = True
        elif line[:1].isdigit() or line[:1] in "+-*":
            if after_call:
                after_call = False
                continue
            parts = line.split()
            if len(parts) >= 2:
                objects[current] += int(parts[1])
    return sum(objects.values()), objects


def _object_name(path: str) -> str:
    name = Path(path).name
    for prefix, label in (("regorus", "regorus"), ("libsqlite3", "SQLite"), ("_sqlite3", "SQLite (module)"),
                          ("orjson", "orjson"), ("libc.", "libc"), ("libpython", "Python"), ("python3", "Python"),
                          ("_http_parser", "aiohttp parser"), ("_quoting", "yarl"), ("_multidict", "multidict"),
                          ("ld-linux", "loader")):  # fmt: skip
        if name.startswith(prefix):
            return label
    return name


async def _measure(name: str, cmd: list[str], env: dict[str, str], out: Path, port: int, first: int,
                   args: argparse.Namespace) -> tuple[str, int, Counter[str], dict[int, int]]:  # fmt: skip
    proc = _under_callgrind(cmd, env, out)
    try:
        base = f"http://127.0.0.1:{port}"
        await _drive(base, first, args.concurrency, math.inf, args.warmup)
        subprocess.run(["callgrind_control", "--zero", str(proc.pid)], check=True, capture_output=True)
        _, statuses, _ = await _drive(base, first + args.warmup, args.concurrency, math.inf, args.messages)
        subprocess.run(["callgrind_control", "--dump", str(proc.pid)], check=True, capture_output=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=600)
    dumps = sorted(out.parent.glob(out.name + ".*"), key=os.path.getmtime)
    total, objects = _by_object(dumps[-1])
    return name, total, objects, statuses


async def _main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="sendgate-instructions-"))
    graph_port = free_port()
    fake = start_fake_graph(graph_port)
    upstream = f"http://127.0.0.1:{graph_port}"
    try:
        db = work / "sendgate.db"
        await populate(db, args.recipients)
        per = args.warmup + args.messages
        targets: list[tuple[str, list[str], dict[str, str], int]] = []
        port = free_port()
        targets.append(("bare", [sys.executable, str(BENCH / "bare_proxy.py"), "--port", str(port), "--upstream",
                                 upstream], python_env(), port))  # fmt: skip
        trees = [("sendgate", ROOT, db)]
        if args.against:
            copy = work / "against.db"
            shutil.copyfile(db, copy)  # the store as populated, before any send
            trees.append((f"@{args.against}"[:9], revision_tree(args.against, work), copy))
        for name, tree, store in trees:
            port = free_port()
            env = {**gateway_env(port, upstream, store, tree / "policies"), "PYTHONPATH": str(tree / "src")}
            targets.append((name, [sys.executable, "-m", "sendgate.cli", "serve"], env, port))
        results = []
        for i, (name, cmd, env, port) in enumerate(targets):
            results.append(await _measure(name, cmd, env, work / f"cg-{i}", port, i * per, args))
            print(f"{name}: measured", file=sys.stderr, flush=True)
    finally:
        fake.terminate()
        fake.wait(timeout=10)
        _remove_worktrees(work)
        shutil.rmtree(work, ignore_errors=True)
    bare = results[0][1] / args.messages
    print(f"\n{args.messages} allowed messages per target (half texts, half utility templates), "
          f"{args.concurrency} at a time; user-space instructions per message (callgrind)\n")  # fmt: skip
    names = sorted({obj for _, _, objects, _ in results for obj, n in objects.items() if n / args.messages > 2000},
                   key=lambda obj: -max(objects[obj] for _, _, objects, _ in results))  # fmt: skip
    print(f"{'':12}{'total':>12}{'vs bare':>9}  " + "".join(f"{n[:14]:>15}" for n in names))
    for name, total, objects, statuses in results:
        cells = "".join(f"{objects[obj] / args.messages:15,.0f}" for obj in names)
        print(f"{name:12}{total / args.messages:12,.0f}{total / args.messages / bare:8.2f}x  {cells}   {statuses}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=400, help="messages counted per target")
    parser.add_argument("--warmup", type=int, default=100, help="messages sent first, not counted")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--recipients", type=int, default=200_000, help="opted-in recipients in the store")
    parser.add_argument("--against", help="git revision: sendgate as of it too, on a copy of the same store")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is needed (apt-get install valgrind)")
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()

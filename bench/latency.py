"""Latency at a constant offered rate: the bare aiohttp pass-through beside sendgate, one run.

An open-loop load generator: request i is due at start + i/rate and is sent then, whether or not
the earlier ones have been answered (a new connection is opened when all are busy), and its
latency is measured from the time it was due, not from when it left. A stall of the proxy thus
shows in every request that fell due during it (no coordinated omission). The load is allowed
utility templates, each to a distinct opted-in recipient, so the pair-rate rule does not defer.

Starts the fake Graph API, a bare aiohttp proxy and sendgate (default policies, a populated
SQLite store, the bench number at 1,000 messages/s) as separate processes, as bench/gateway.py
does. For each offered rate the two targets take turns (the order alternating), and for each it
prints p50/p99/p99.9 latency, the achieved rate (answers / time from the first due send to the
last answer), the CPU each proxy process used per message (from /proc, same run), how late the
generator itself sent (its own lag, on the shared cores), and the p99 sendgate adds.

    python bench/latency.py [--rates 200,500,800,1000,1100] [--duration 10] [--against REV]
                            [--profile DIR --profile-rates 200,1000 --py-spy PATH]

With --against REV, a third target runs in the same turns: sendgate as of git revision REV (a
temporary worktree of this repository; its own copy of the store, made before any send), so
that a change is measured against what it replaced in one run, on the same machine load.

With --profile, sendgate is run once more at each profile rate with py-spy attached (not
pausing it: --nonblocking), writing collapsed stacks per thread to DIR/sendgate-<rate>.txt, and
under a probe (bench/stall_probe.py) that records garbage collections and event-loop callbacks
longer than 1 ms into DIR/probe-<rate>.json. These runs are not in the table.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from harness import (  # noqa: E402  (bench/harness.py: the account, the store, the processes)
    RECIPIENTS,
    ROOT,
    cpu_seconds,
    free_port,
    gateway_env,
    messages_url,
    populate,
    start,
    start_bare_proxy,
    start_fake_graph,
    start_gateway,
    utility_template,
)

HEADERS = {"Authorization": "Bearer bench-token", "Content-Type": "application/json"}


def template(i: int) -> bytes:
    return orjson.dumps(utility_template(i))


@dataclass
class Run:
    """One target at one offered rate."""

    latencies: list[float] = field(default_factory=list)  # seconds, from the time each was due
    lateness: list[float] = field(default_factory=list)  # seconds the generator sent after the due time
    statuses: dict[int, int] = field(default_factory=dict)  # 0: no answer (connection error)
    seconds: float = 0.0  # first due send to the last answer
    cpu: float = 0.0  # CPU seconds of the proxy process


async def offer(base: str, rate: float, duration: float, first: int) -> Run:
    """Send int(rate * duration) templates to recipients first, first + 1, ... at `rate` per second,
    each from its bench number (`messages_url`) through the target at `base`."""
    run = Run()
    count = int(rate * duration)
    sends = [(messages_url(base, first + i), template(first + i)) for i in range(count)]  # before the clock starts
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30)

    async def send(session: aiohttp.ClientSession, url_body: tuple[str, bytes], due: float) -> None:
        run.lateness.append(time.perf_counter() - due)
        status = 0
        url, body = url_body
        try:
            async with session.post(url, data=body, headers=HEADERS) as response:
                await response.read()
                status = response.status
        except aiohttp.ClientError:
            pass
        run.latencies.append(time.perf_counter() - due)
        run.statuses[status] = run.statuses.get(status, 0) + 1

    # The generator's own garbage collections would delay the answers it reads (its heap holds the
    # earlier runs' figures): none during a run, the heap so far frozen out of the collector's walk.
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        await _schedule(session_factory=lambda: aiohttp.ClientSession(connector=connector), send=send, sends=sends,
                        rate=rate, run=run)  # fmt: skip
    finally:
        gc.enable()
    return run


async def _schedule(
    session_factory: Callable[[], aiohttp.ClientSession],
    send: Callable[[aiohttp.ClientSession, tuple[str, bytes], float], Coroutine[None, None, None]],
    sends: list[tuple[str, bytes]],
    rate: float,
    run: Run,
) -> None:
    count = len(sends)
    async with session_factory() as session:
        tasks: list[asyncio.Task[None]] = []
        start = time.perf_counter() + 0.01
        interval = 1.0 / rate
        i = 0
        while i < count:
            now = time.perf_counter()
            # Everything due by now leaves now; the latency of a late one counts from its due time.
            while i < count and start + i * interval <= now:
                tasks.append(asyncio.create_task(send(session, sends[i], start + i * interval)))
                i += 1
            if i < count:
                await asyncio.sleep(max(0.0, start + i * interval - time.perf_counter()))
        await asyncio.gather(*tasks)
        run.seconds = time.perf_counter() - start


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


@dataclass
class Target:
    name: str
    url: str
    pid: int


async def reset_fake_graph(upstream: str) -> None:
    """The fake Graph API keeps every request it received: forgotten before each run, or its
    growing heap's garbage collections (hundreds of ms after 100,000 sends) stall both targets."""
    async with aiohttp.ClientSession() as session, session.post(f"{upstream}/__fake/reset") as response:
        response.raise_for_status()


async def measure(target: Target, rate: float, duration: float, first: int, upstream: str) -> Run:
    await reset_fake_graph(upstream)
    cpu = cpu_seconds(target.pid)
    run = await offer(target.url, rate, duration, first)
    run.cpu = cpu_seconds(target.pid) - cpu
    return run


def row(name: str, rate: float, run: Run) -> dict[str, float]:
    lat = sorted(run.latencies)
    late = sorted(run.lateness)
    count = len(lat)
    figures = {
        "p50": percentile(lat, 0.50) * 1000,
        "p99": percentile(lat, 0.99) * 1000,
        "p999": percentile(lat, 0.999) * 1000,
        "max": lat[-1] * 1000,
        "rate": count / run.seconds,
        "cpu_ms": run.cpu / count * 1000,
        "late_p99": percentile(late, 0.99) * 1000,
    }
    print(f"{rate:6.0f}/s  {name:9} p50 {figures['p50']:6.2f}  p99 {figures['p99']:6.2f}  p99.9 {figures['p999']:6.2f}"
          f"  max {figures['max']:6.1f} ms   achieved {figures['rate']:6.0f}/s   CPU {figures['cpu_ms']:5.3f} ms/msg"
          f"   generator late p99 {figures['late_p99']:5.2f} ms   statuses {dict(sorted(run.statuses.items()))}",
          flush=True)  # fmt: skip
    return figures


async def profile(
    args: argparse.Namespace, upstream: str, db: Path, first: int, procs: list[subprocess.Popen[bytes]]
) -> int:
    """sendgate under py-spy and the stall probe, at each profile rate; not part of the table."""
    out = Path(args.profile)
    out.mkdir(parents=True, exist_ok=True)
    for rate in args.profile_rates:
        port = free_port()
        probe = out / f"probe-{rate:g}.json"
        prefix = [sys.executable, str(BENCH / "stall_probe.py"), str(probe), "--", "-m", "sendgate.cli"]
        gate = start_gateway(port, upstream, db, ROOT / "policies", prefix)
        procs.append(gate)
        target = Target("sendgate", f"http://127.0.0.1:{port}", gate.pid)
        await offer(target.url, 200, 1.0, first)  # warm-up
        first += 200
        spy = subprocess.Popen(
            [args.py_spy, "record", "--pid", str(gate.pid), "--nonblocking", "--threads", "--rate", "250",
             "--format", "raw", "--duration", str(int(args.profile_duration) + 1),
             "-o", str(out / f"sendgate-{rate:g}.txt")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        await asyncio.sleep(0.5)  # py-spy attached
        run = await measure(target, rate, args.profile_duration, first, upstream)
        first += int(rate * args.profile_duration)
        row("(profiled)", rate, run)
        spy.wait(timeout=60)
        gate.terminate()
        gate.wait(timeout=10)
        procs.remove(gate)
    return first


def revision_tree(rev: str, work: Path) -> Path:
    """A worktree of this repository at git revision `rev`, under `work` (`_remove_worktrees` removes it)."""
    tree = work / f"rev-{rev}"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    return tree


def start_revision(rev: str, work: Path, port: int, upstream: str, db: Path) -> subprocess.Popen[bytes]:
    """sendgate as of git revision `rev`: a worktree under `work`, its policies, a copy of the store."""
    tree = revision_tree(rev, work)
    copy = work / f"rev-{rev}.db"
    shutil.copyfile(db, copy)  # the store as populated, before any send (WAL checkpointed by populate)
    env = {**gateway_env(port, upstream, copy, tree / "policies"), "PYTHONPATH": str(tree / "src")}
    return start([sys.executable, "-m", "sendgate.cli", "serve"], "listening", env)


def _remove_worktrees(work: Path) -> None:
    for tree in work.glob("rev-*"):
        if tree.is_dir():
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


async def main_async(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="sendgate-latency-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        db = work / "sendgate.db"
        await populate(db, RECIPIENTS)
        fake_port = free_port()
        upstream = f"http://127.0.0.1:{fake_port}"
        procs.append(start_fake_graph(fake_port))
        bare_port, gate_port = free_port(), free_port()
        procs.append(start_bare_proxy(bare_port, upstream))
        bare = Target("bare", f"http://127.0.0.1:{bare_port}", procs[-1].pid)
        if args.against:  # before sendgate starts on `db`: the copy must be of the untouched store
            old_port = free_port()
            procs.append(start_revision(args.against, work, old_port, upstream, db))
            old = Target(f"@{args.against}"[:9], f"http://127.0.0.1:{old_port}",
                         procs[-1].pid)  # fmt: skip
        procs.append(start_gateway(gate_port, upstream, db, ROOT / "policies"))
        gate = Target("sendgate", f"http://127.0.0.1:{gate_port}", procs[-1].pid)
        targets = [bare, gate, old] if args.against else [bare, gate]
        needed = int(sum(args.rates) * args.duration * len(targets) + 1200
                     + sum(args.profile_rates) * args.profile_duration)  # fmt: skip
        if needed > RECIPIENTS:
            raise SystemExit(f"{needed} sends need more than the store's {RECIPIENTS} distinct recipients")
        print(f"open-loop load: allowed utility templates to distinct recipients, {args.duration:g} s per rate"
              f" and target, latency from each send's due time (ms)\n", flush=True)  # fmt: skip
        first = 0
        for target in targets:
            await offer(target.url, 200, 1.0, first)  # warm-up: connections, caches
            first += 200
        if args.idle > 0:  # what each process spends with no load at all (timers, watches, ticks)
            before = {target.name: cpu_seconds(target.pid) for target in targets}
            await asyncio.sleep(args.idle)
            for target in targets:
                used = (cpu_seconds(target.pid) - before[target.name]) / args.idle * 1000
                print(f"idle      {target.name:9} CPU {used:5.1f} ms per second with no load", flush=True)
        results: list[tuple[float, dict[str, dict[str, float]]]] = []
        for n, rate in enumerate(args.rates):
            figures: dict[str, dict[str, float]] = {}
            for target in targets[n % len(targets):] + targets[:n % len(targets)]:  # the order turns
                await asyncio.sleep(args.pause)  # the previous run's backlog and commits drained
                run = await measure(target, rate, args.duration, first, upstream)
                first += int(rate * args.duration)
                figures[target.name] = row(target.name, rate, run)
            results.append((rate, figures))
        print("\nadded by sendgate (sendgate minus bare, same run; targets: p99 <= 1 ms at 200/s, <= 2 ms at 1000/s;"
              " CPU <= 2x):")  # fmt: skip
        for target in targets[1:]:
            for rate, figures in results:
                b, g = figures["bare"], figures[target.name]
                print(f"{rate:6.0f}/s  {target.name:9} p50 +{g['p50'] - b['p50']:5.2f} ms"
                      f"   p99 +{g['p99'] - b['p99']:6.2f} ms   p99.9 +{g['p999'] - b['p999']:6.2f} ms"
                      f"   CPU per message {g['cpu_ms'] / b['cpu_ms']:4.1f}x   achieved {g['rate'] / b['rate']:4.2f}x")
        if args.profile:
            table_gate = procs.pop()  # one sendgate at a time on the store (its fleet membership)
            table_gate.terminate()
            table_gate.wait(timeout=10)
            await profile(args, upstream, db, first, procs)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)
        _remove_worktrees(work)
        shutil.rmtree(work, ignore_errors=True)


def _rates(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", type=_rates, default=[200, 500, 800, 1000, 1100], help="offered messages/s")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per rate and target")
    parser.add_argument("--pause", type=float, default=1.0, help="seconds of quiet before each run")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of no load, for the CPU it costs")
    parser.add_argument("--against", help="git revision: run sendgate as of it too, in the same turns")
    parser.add_argument("--profile", help="directory: profile sendgate at --profile-rates after the table")
    parser.add_argument("--profile-rates", type=_rates, default=[200, 1000])
    parser.add_argument("--profile-duration", type=float, default=10.0)
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy", help="the py-spy binary")
    args = parser.parse_args()
    if not args.profile:
        args.profile_rates = []
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()

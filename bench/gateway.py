"""Gateway throughput and latency against a bare pass-through proxy, in one run.

Starts the fake Graph API, sendgate (default policies, a populated SQLite store),
sendgate again with a one-line allow-all policy (the gateway's own cost: HTTP,
facts, decision log) and a bare aiohttp proxy, as separate processes, and drives
the same load at each (N concurrent connections, allowed messages only: texts
inside an open window and utility templates to opted-in recipients, each
recipient once so the pair-rate rule does not defer). The targets take turns, in
rounds, so a change in the machine's load hits them alike. Prints messages/s,
p50/p99 latency and the CPU each proxy process used per message, the
sendgate/bare ratios, and the policy evaluation time per message from the
decision log.

    python bench/gateway.py [--concurrency 32] [--duration 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from harness import (  # noqa: E402  (bench/harness.py: the account, the store, the processes)
    RECIPIENTS,
    cpu_seconds,
    free_port,
    messages_url,
    populate,
    recipient,
    start_bare_proxy,
    start_fake_graph,
    start_gateway,
    utility_template,
)


def _message(i: int) -> bytes:
    if i % 2:  # inside the window populate opened
        return orjson.dumps({"messaging_product": "whatsapp", "to": recipient(i), "type": "text",
                             "text": {"body": f"Your code is {i}"}})  # fmt: skip
    return orjson.dumps(utility_template(i))


async def _drive(
    base: str, start: int, concurrency: int, duration: float, count: int = RECIPIENTS
) -> tuple[list[float], dict[int, int], int]:
    """Messages start, start + 1, ... over `concurrency` connections, for `duration` seconds or
    `count` messages, whichever ends first: latencies, statuses, and the next message number."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counter = iter(range(start, start + count))
    headers = {"Authorization": "Bearer bench-token", "Content-Type": "application/json"}
    stop_at = time.perf_counter() + duration

    async def worker(session: aiohttp.ClientSession) -> None:
        for i in counter:
            if time.perf_counter() >= stop_at:
                break
            body = _message(i)
            t0 = time.perf_counter()
            async with session.post(messages_url(base, i), data=body, headers=headers) as response:
                await response.read()
            latencies.append(time.perf_counter() - t0)
            statuses[response.status] = statuses.get(response.status, 0) + 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return latencies, statuses, next(counter, start + count)


ALLOW_ALL = """package sendgate

# METADATA
# entrypoint: true
decision := {"allow": true, "deny": [], "defer": [], "warn": [], "retry_after": null}
"""


class _Target:
    def __init__(self, name: str, port: int, proc: subprocess.Popen[bytes]) -> None:
        self.name, self.proc = name, proc
        self.url = f"http://127.0.0.1:{port}"
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.seconds = 0.0
        self.cpu = 0.0

    def summary(self) -> dict[str, float]:
        self.latencies.sort()
        count = len(self.latencies)
        rate = count / self.seconds
        p50 = self.latencies[count // 2] * 1000
        p99 = self.latencies[int(count * 0.99)] * 1000
        cpu_ms = self.cpu / count * 1000
        print(f"{self.name:20} {rate:7.0f} msg/s   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms   "
              f"CPU {cpu_ms:5.3f} ms/msg   statuses {self.statuses}")  # fmt: skip
        return {"rate": rate, "p50": p50, "p99": p99, "cpu_ms": cpu_ms}


def _summary(name: str, latencies: list[float], statuses: dict[int, int], duration: float) -> dict[str, float]:
    latencies.sort()
    rate = len(latencies) / duration
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    print(f"{name:9} {rate:9.0f} msg/s   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms   statuses {statuses}")
    return {"rate": rate, "p50": p50, "p99": p99}


def _evaluation(db: Path) -> str:
    conn = sqlite3.connect(db)
    evals = sorted(row[0] for row in conn.execute("SELECT eval_us FROM decisions WHERE eval_us IS NOT NULL"))
    decisions = dict(conn.execute("SELECT decision, count(*) FROM decisions GROUP BY decision").fetchall())
    conn.close()
    return (f"median {statistics.median(evals):.1f} us, p99 {evals[int(len(evals) * 0.99)]:.1f} us"
            f" over {len(evals)} decisions {decisions}")  # fmt: skip


async def _run(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="sendgate-bench-"))
    try:
        await _measure(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # two copies of a 200,000-recipient store


async def _measure(args: argparse.Namespace, work: Path) -> None:
    db = work / "sendgate.db"
    await populate(db, RECIPIENTS)
    floor_db = work / "allow-all.db"
    shutil.copyfile(db, floor_db)
    allow_all = work / "allow-all-policy"
    allow_all.mkdir()
    (allow_all / "allow_all.rego").write_text(ALLOW_ALL)
    fake_port = free_port()
    upstream = f"http://127.0.0.1:{fake_port}"
    procs = [start_fake_graph(fake_port)]

    def gateway(database: Path, policies: Path) -> tuple[int, subprocess.Popen[bytes]]:
        port = free_port()
        procs.append(start_gateway(port, upstream, database, policies))
        return port, procs[-1]

    try:
        bare_port = free_port()
        procs.append(start_bare_proxy(bare_port, upstream))
        targets = [
            _Target("bare", bare_port, procs[-1]),
            _Target("sendgate", *gateway(db, BENCH.parent / "policies")),
            _Target("sendgate, allow-all", *gateway(floor_db, allow_all)),
        ]
        per_round = args.duration / args.rounds
        print(f"load: {args.concurrency} concurrent connections, {args.duration:g} s per target"
              f" in {args.rounds} rounds of {per_round:g} s, after a 1 s warm-up each\n")  # fmt: skip
        next_recipient = 0
        for target in targets:
            _, _, next_recipient = await _drive(target.url, next_recipient, args.concurrency, 1.0)
        for _ in range(args.rounds):
            for target in targets:
                cpu = cpu_seconds(target.proc.pid)
                started = time.perf_counter()
                latencies, statuses, next_recipient = await _drive(target.url, next_recipient, args.concurrency, per_round)
                target.seconds += time.perf_counter() - started
                target.cpu += cpu_seconds(target.proc.pid) - cpu
                target.latencies.extend(latencies)
                for status, n in statuses.items():
                    target.statuses[status] = target.statuses.get(status, 0) + n
        results = {target.name: target.summary() for target in targets}
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)
    bare, gate, floor = results["bare"], results["sendgate"], results["sendgate, allow-all"]
    print(f"\nthroughput ratio sendgate/bare: {gate['rate'] / bare['rate']:.2f}x (target >= 0.5x);"
          f" with the allow-all policy: {floor['rate'] / bare['rate']:.2f}x")
    print(f"CPU per message: sendgate {gate['cpu_ms'] / bare['cpu_ms']:.1f}x the bare proxy's;"
          f" with the allow-all policy {floor['cpu_ms'] / bare['cpu_ms']:.1f}x")
    print(f"p50 latency added by sendgate: {gate['p50'] - bare['p50']:.2f} ms")
    print(f"policy evaluation per message (decision log, default policies): {_evaluation(db)} (target median < 100 us)")
    print(f"policy evaluation per message (decision log, allow-all policy): {_evaluation(floor_db)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per target, all rounds")
    parser.add_argument("--rounds", type=int, default=3, help="the targets take turns this many times")
    asyncio.run(_run(parser.parse_args()))


if __name__ == "__main__":
    main()

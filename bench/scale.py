"""The same load as `make bench` against sendgate on SQLite, on PostgreSQL with one worker, and
on PostgreSQL (and Redis) with two workers, in one run.

Each target is a `sendgate serve` process (the two-worker one a parent and its two workers) in
front of the fake Graph API, with the same 200,000 opted-in recipients: the SQLite store is
populated, then copied to a throwaway PostgreSQL with `sendgate db copy` (tests/services.py:
Debian's server programs, fsync off, on 127.0.0.1; a fresh database per target). The targets
take turns, in rounds, so a change in the machine's load hits them alike. Prints messages/s,
p50/p99 latency, the CPU sendgate's processes used per message (all workers together, and per
worker), and PostgreSQL's CPU per message.

The machine's cores are shared by the load generator, the fake Meta, PostgreSQL and the
gateway's workers: two workers cannot double the throughput of one here.

    python bench/scale.py [--concurrency 32] [--duration 12] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(BENCH), str(ROOT), str(ROOT / "src")]
import gateway as load  # noqa: E402  (bench/gateway.py: the load, the fake Meta, the store's content)
import harness  # noqa: E402  (bench/harness.py: the account, the store, the processes)

from tests.services import PostgresServer, RedisServer  # noqa: E402


def _tree(pid: int) -> list[int]:
    """`pid` and its descendants (Linux)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            found += _tree(int(child))
    return found


def _cpu(pids: list[int]) -> dict[int, float]:
    seconds: dict[int, float] = {}
    for pid in pids:
        try:
            seconds[pid] = harness.cpu_seconds(pid)
        except OSError:
            pass
    return seconds


class Target(load._Target):
    """A sendgate whose CPU is its whole process tree's, and the database's beside it."""

    def __init__(
        self, name: str, port: int, proc: subprocess.Popen[bytes], database_pid: int | None, workers: int
    ) -> None:
        super().__init__(name, port, proc)
        self.database_pid = database_pid
        self.database_cpu = 0.0
        self.workers = workers

    def cpu_now(self) -> tuple[float, float]:
        gateway = sum(_cpu(_tree(self.proc.pid)).values())
        database = sum(_cpu(_tree(self.database_pid)).values()) if self.database_pid else 0.0
        return gateway, database

    def report(self) -> dict[str, float]:
        row = self.summary()
        count = len(self.latencies)
        row["database_cpu_ms"] = self.database_cpu / count * 1000
        # With workers, the CPU above is the whole process tree's (parent and workers) over all the
        # messages: each worker spent about that per message it served.
        print(f"{'':20} {self.workers} worker(s); PostgreSQL CPU {row['database_cpu_ms']:5.3f} ms/msg")
        return row


async def _run(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="sendgate-bench-scale-"))
    postgres = PostgresServer()
    redis = RedisServer()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        sqlite_db = work / "sendgate.db"
        await harness.populate(sqlite_db, harness.RECIPIENTS)
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}

        def database_copy() -> str:
            url = postgres.create_database()
            subprocess.run([sys.executable, "-m", "sendgate.cli", "db", "copy", "--from", f"sqlite:///{sqlite_db}",
                            "--to", url], env=env, check=True, stdout=subprocess.DEVNULL)  # fmt: skip
            return url

        fake_port = harness.free_port()
        upstream = f"http://127.0.0.1:{fake_port}"
        procs.append(harness.start([sys.executable, "-m", "sendgate.fakegraph", "--port", str(fake_port)], "listening", env))

        def gateway(state: str, workers: int) -> tuple[int, subprocess.Popen[bytes]]:
            port = harness.free_port()
            gate_env = {
                **env,
                "SENDGATE_LISTEN": f"127.0.0.1:{port}",
                "SENDGATE_UPSTREAM_URL": upstream,
                "SENDGATE_STATE": state,
                "SENDGATE_POLICY_DIR": str(ROOT / "policies"),
                "SENDGATE_WORKERS": str(workers),
                "SENDGATE_ACCOUNTS": orjson.dumps(harness.ACCOUNTS).decode(),
                "SENDGATE_LOG": "{level: WARNING}",
            }
            if workers > 1:
                gate_env["SENDGATE_REDIS_URL"] = redis.url
            procs.append(harness.start([sys.executable, "-m", "sendgate.cli", "serve"], "listening", gate_env))
            return port, procs[-1]

        assert postgres.process is not None
        targets = [
            Target("sqlite", *gateway(f"sqlite:///{sqlite_db}", 1), None, 1),
            Target("postgresql, 1 worker", *gateway(database_copy(), 1), postgres.process.pid, 1),
            Target("postgresql, 2 workers", *gateway(database_copy(), 2), postgres.process.pid, 2),
        ]
        per_round = args.duration / args.rounds
        print(f"load: {args.concurrency} concurrent connections, {args.duration:g} s per target"
              f" in {args.rounds} rounds of {per_round:g} s, after a 1 s warm-up each; {os.cpu_count()} cores"
              " shared by the load, the fake Meta, PostgreSQL and sendgate\n")  # fmt: skip
        next_recipient = 0
        for target in targets:
            _, _, next_recipient = await load._drive(target.url, next_recipient, args.concurrency, 1.0)
        for _ in range(args.rounds):
            for target in targets:
                gateway_cpu, database_cpu = target.cpu_now()
                started = time.perf_counter()
                latencies, statuses, next_recipient = await load._drive(
                    target.url, next_recipient, args.concurrency, per_round
                )
                target.seconds += time.perf_counter() - started
                after_gateway, after_database = target.cpu_now()
                target.cpu += after_gateway - gateway_cpu
                target.database_cpu += after_database - database_cpu
                target.latencies.extend(latencies)
                for status, n in statuses.items():
                    target.statuses[status] = target.statuses.get(status, 0) + n
        results = {target.name: target.report() for target in targets}
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        redis.stop()
        postgres.stop()
        shutil.rmtree(work, ignore_errors=True)
    sqlite, one, two = results["sqlite"], results["postgresql, 1 worker"], results["postgresql, 2 workers"]
    print(f"\nPostgreSQL, 1 worker / SQLite: {one['rate'] / sqlite['rate']:.2f}x (target >= 0.8x)")
    print(f"PostgreSQL, 2 workers / 1 worker: {two['rate'] / one['rate']:.2f}x (target > 1x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=12.0, help="seconds of load per target, all rounds")
    parser.add_argument("--rounds", type=int, default=3, help="the targets take turns this many times")
    asyncio.run(_run(parser.parse_args()))


if __name__ == "__main__":
    main()

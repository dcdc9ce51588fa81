"""The floor under sendgate's cost: what the least a compliant gateway must do costs here, same run.

Beside the bare aiohttp proxy (bench/bare_proxy.py) and sendgate with the allow-all policy, runs a
"floor" proxy: the bare proxy plus, per message, the work no design of sendgate can skip: one
SQLite read of the recipient's consent, one evaluation on the register VM of a real 1.9 KB input
document (sendgate's own, built by `build_input` for an allowed utility template), one record
committed on the event loop before the message leaves (group commit, as sendgate's writer does),
and one update with Meta's answer after. It runs twice: with the allow-all policy and with the
default policies. Same load as bench/gateway.py (32 connections, allowed messages), targets in
turns. What the floor costs over the bare proxy bounds what any redesign of sendgate can reach
on this machine; what sendgate costs over the floor is its own (normalize, facts, counts, the
decision record and its indexes, metrics).

    python bench/floor.py [--concurrency 32] [--duration 9] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "src"))
from bare_proxy import pooled_session, relay  # noqa: E402  (the bare proxy's network work, exactly)
from gateway import ALLOW_ALL, _drive  # noqa: E402  (the same load as the saturation bench)
from harness import (  # noqa: E402
    PHONE_NUMBER_IDS,
    RECIPIENTS,
    cpu_seconds,
    free_port,
    gateway_env,
    populate,
    python_env,
    start,
    start_bare_proxy,
    start_fake_graph,
    start_gateway,
    utility_template,
)


def _floor_app(upstream: str, db: Path, policies: Path, document: dict[str, Any]) -> web.Application:
    from sendgate.policy.embedded import EmbeddedEngine

    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE floor_log (id INTEGER PRIMARY KEY, recipient TEXT, body TEXT, status INTEGER)")
    engine = EmbeddedEngine(policies, run_tests=False)
    queued: list[tuple[str, tuple[Any, ...]]] = []
    waiting: list[asyncio.Future[None]] = []
    ids = iter(range(1, 1 << 62))

    def commit() -> None:  # once per turn of the loop, everything that turn queued
        rows, futures = queued[:], waiting[:]
        queued.clear()
        waiting.clear()
        conn.execute("BEGIN IMMEDIATE")
        for sql, params in rows:
            conn.execute(sql, params)
        conn.execute("COMMIT")
        for future in futures:
            future.set_result(None)

    def write(sql: str, params: tuple[Any, ...]) -> asyncio.Future[None]:
        if not queued:
            asyncio.get_running_loop().call_soon(commit)
        queued.append((sql, params))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiting.append(future)
        return future

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        to = orjson.loads(body)["to"]
        conn.execute("SELECT status, categories FROM consent WHERE recipient = ? ORDER BY seq DESC LIMIT 1", (to,)).fetchone()
        decision_id = next(ids)
        decision = await engine.evaluate({**document, "now": time.time()})
        assert decision.outcome == "allow", decision
        await write("INSERT INTO floor_log VALUES (?, ?, ?, NULL)", (decision_id, to, body.decode()))
        response = await relay(request, upstream, body)
        write("UPDATE floor_log SET status = ? WHERE id = ?", (response.status, decision_id))  # not awaited
        return response

    app = web.Application()
    app.cleanup_ctx.append(pooled_session)
    app.router.add_post("/{tail:.*}", forward)
    return app


async def _serve_floor(args: argparse.Namespace) -> None:
    document = orjson.loads(Path(args.document).read_bytes())
    runner = web.AppRunner(_floor_app(args.upstream, Path(args.db), Path(args.policies), document), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port).start()
    print(f"floor proxy listening on http://127.0.0.1:{args.port}", flush=True)
    await asyncio.Event().wait()


async def _document(db: Path, policies: Path) -> dict[str, Any]:
    """sendgate's input document for an allowed utility template (counts as the send path fills them)."""
    from sendgate.config import load_config
    from sendgate.facts import build_input
    from sendgate.messages import normalize
    from sendgate.state.sqlite import SQLiteStore

    env = gateway_env(free_port(), "http://127.0.0.1:9", db, policies)
    store = SQLiteStore(db)
    try:
        now = time.time()
        document = await build_input(load_config(None, env=env), store, "messages", "v23.0", PHONE_NUMBER_IDS[0],
                                     normalize(utility_template(0), "messages"), now)  # fmt: skip
    finally:
        await store.close()
    counted = {"window_seconds": 1, "admitted": True, "count": 1, "retry_after": 0, "retry_after_ms": 0}
    document["account"]["throughput"] = {"limit": 1000, **counted}
    return document


async def _measure(args: argparse.Namespace, work: Path) -> None:
    db = work / "sendgate.db"
    await populate(db, RECIPIENTS)
    allow_all = work / "allow-all-policy"
    allow_all.mkdir()
    (allow_all / "allow_all.rego").write_text(ALLOW_ALL)
    default = BENCH.parent / "policies"
    document = work / "input.json"
    document.write_bytes(orjson.dumps(await _document(db, default)))
    fake_port = free_port()
    upstream = f"http://127.0.0.1:{fake_port}"
    procs = [start_fake_graph(fake_port)]
    targets: list[dict[str, Any]] = []

    def target(name: str, port: int) -> None:
        targets.append({"name": name, "url": f"http://127.0.0.1:{port}", "pid": procs[-1].pid, "cpu": 0.0, "n": 0, "s": 0.0})

    try:
        port = free_port()
        procs.append(start_bare_proxy(port, upstream))
        target("bare", port)
        for name, policies in (("floor, allow-all", allow_all), ("floor, default policies", default)):
            copy = work / f"floor-{len(targets)}.db"
            shutil.copyfile(db, copy)
            port = free_port()
            cmd = [sys.executable, __file__, "--serve-floor", "--port", str(port), "--upstream", upstream,
                   "--db", str(copy), "--policies", str(policies), "--document", str(document)]  # fmt: skip
            procs.append(start(cmd, "listening", python_env()))
            target(name, port)
        copy = work / "sendgate-allow-all.db"
        shutil.copyfile(db, copy)
        port = free_port()
        procs.append(start_gateway(port, upstream, copy, allow_all))
        target("sendgate, allow-all", port)
        next_recipient = 0
        for t in targets:
            _, _, next_recipient = await _drive(t["url"], next_recipient, args.concurrency, 1.0)
        for _ in range(args.rounds):
            for t in targets:
                cpu, started = cpu_seconds(t["pid"]), time.perf_counter()
                _, statuses, next_recipient = await _drive(t["url"], next_recipient, args.concurrency, args.duration / args.rounds)
                t["s"] += time.perf_counter() - started
                t["cpu"] += cpu_seconds(t["pid"]) - cpu
                t["n"] += statuses.get(200, 0)
                if set(statuses) != {200}:
                    raise RuntimeError(f"{t['name']}: answers other than 200: {statuses}")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)
    bare_rate, bare_cpu = targets[0]["n"] / targets[0]["s"], targets[0]["cpu"] / targets[0]["n"]
    print(f"load: {args.concurrency} concurrent connections, {args.duration:g} s per target in {args.rounds} rounds\n")
    for t in targets:
        rate, cpu = t["n"] / t["s"], t["cpu"] / t["n"]
        print(f"{t['name']:26s} {rate:6.0f} msg/s ({rate / bare_rate:.2f}x bare)   CPU {cpu * 1000:.3f} ms/msg ({cpu / bare_cpu:.2f}x bare)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=9.0, help="seconds of load per target, all rounds")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve-floor", action="store_true", help=argparse.SUPPRESS)
    for option in ("--port", "--upstream", "--db", "--policies", "--document"):
        parser.add_argument(option, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_floor:
        args.port = int(args.port)
        asyncio.run(_serve_floor(args))
        return
    work = Path(tempfile.mkdtemp(prefix="sendgate-floor-"))
    try:
        asyncio.run(_measure(args, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

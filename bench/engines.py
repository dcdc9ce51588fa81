"""The two policy engines side by side, in one run, on the same inputs.

1. Policy evaluation per decision: the same policy input documents (built by the
   gateway's own fact gathering from a populated store: texts inside and outside
   the window, utility and marketing templates, opted-in and opted-out recipients)
   are evaluated one at a time by the embedded engine (regorus in-process) and by
   the OPA engine (`engine: opa`: opa-python-client's async client, one keep-alive
   connection pool, against `opa run --server` on loopback serving the same
   policies as a bundle). Prints median and p99 per decision, and the ratio. OPA's
   own evaluation time (its `?metrics` timer) shows how much of the round trip is
   HTTP and JSON.
2. End-to-end gateway throughput with each engine: sendgate serving with
   `engine: embedded`, then with `engine: opa`, each driven like bench/gateway.py
   (allowed messages, N concurrent connections, D seconds), in front of the fake
   Graph API.

    python bench/engines.py [--decisions 5000] [--concurrency 32] [--duration 10]

Needs `opa` (`make tools`) on PATH or at ~/.cache/sendgate-tools/bin/opa.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import gateway as gw  # noqa: E402  (bench/gateway.py: store population, load driver)
import harness  # noqa: E402  (bench/harness.py: the account, the store, the processes)

from sendgate.config import load_config  # noqa: E402
from sendgate.facts import build_input  # noqa: E402
from sendgate.messages import normalize  # noqa: E402
from sendgate.policy.bundle import PolicyBundle, write_bundle  # noqa: E402
from sendgate.policy.embedded import EmbeddedEngine  # noqa: E402
from sendgate.policy.opa import OpaEngine  # noqa: E402
from sendgate.state import ConsentRecord  # noqa: E402
from sendgate.state.sqlite import SQLiteStore  # noqa: E402

MARKETING = {"name": "spring_sale", "language": "en_US", "status": "APPROVED", "category": "MARKETING", "id": "2",
             "components": [{"type": "BODY", "text": "Hi {{1}}, 20% off this week."}]}


def _opa_binary() -> str:
    found = shutil.which("opa") or str(Path.home() / ".cache" / "sendgate-tools" / "bin" / "opa")
    if not Path(found).is_file():
        sys.exit("opa not found: run `make tools` (it installs the pinned OPA)")
    return found


def _start_opa(bundle: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [_opa_binary(), "run", "--server", "--addr", f"127.0.0.1:{port}", "--bundle", str(bundle),
         "--log-level", "error"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health?bundles", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("opa did not start")


async def _documents(db: Path, count: int) -> list[dict[str, Any]]:
    """Policy inputs as the gateway builds them, for a mix of sends that allow, deny and defer."""
    await harness.populate(db, count)  # utility consent for all, the window open for odd recipients
    store = SQLiteStore(db)
    config = load_config(None, env={"SENDGATE_ACCOUNTS": orjson.dumps(harness.ACCOUNTS).decode()})
    now = time.time()
    await store.put_templates(harness.WABA_ID, {"data": [*harness.TEMPLATES["data"], MARKETING]})
    await store.import_consent([ConsentRecord(harness.recipient(i), "opted_in", ("marketing", "utility"), "bench", None,
                                              now - 60) for i in range(4, count, 5)])
    await store.import_consent([ConsentRecord(harness.recipient(i), "opted_out", (), "bench", None, now - 30)
                                for i in range(0, count, 20)])  # one in 20 opted out since
    documents = []
    for i in range(count):
        kind = i % 5
        if kind == 4:  # marketing template: needs marketing consent, within caps and outside quiet hours
            body = {"messaging_product": "whatsapp", "to": harness.recipient(i), "type": "template",
                    "template": {"name": "spring_sale", "language": {"code": "en_US"},
                                 "components": [{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}]}}
        elif kind == 3:  # a text with a link through a shortener: denied
            body = {"messaging_product": "whatsapp", "to": harness.recipient(i), "type": "text",
                    "text": {"body": f"Order {i}: details at https://bit.ly/x{i}"}}
        else:
            body = orjson.loads(gw._message(i))
        message = normalize(body, "messages")
        number = harness.PHONE_NUMBER_IDS[i % len(harness.PHONE_NUMBER_IDS)]  # the one with i's window
        documents.append(await build_input(config, store, "messages", "v23.0", number, message, now))
    await store.close()
    return documents


def _stats(samples: list[float]) -> tuple[float, float]:
    samples = sorted(samples)
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))]


async def _evaluation(documents: list[dict[str, Any]], opa_url: str) -> dict[str, Any]:
    embedded = EmbeddedEngine(ROOT / "policies", run_tests=False)
    opa = OpaEngine(opa_url, None, policies="bundle", timeout=5.0)
    await opa.start()
    try:
        for document in documents:  # warm-up, a whole pass each: connections, allocators, caches
            await embedded.evaluate(document)
        for document in documents:
            await opa.evaluate(document)
        times: dict[str, list[float]] = {"embedded": [], "opa": []}
        outcomes: dict[str, dict[str, int]] = {"embedded": {}, "opa": {}}
        # Alternating blocks of 500 inputs: both engines see the same inputs under the same machine
        # load. A pause before each block lets the other side go idle first (OPA's Go runtime keeps
        # its threads spinning for a moment after a burst of requests, on the same 2 cores).
        for start in range(0, len(documents), 500):
            block = documents[start : start + 500]
            for name, engine in (("embedded", embedded), ("opa", opa)):
                await asyncio.sleep(0.1)
                for document in block:
                    started = time.perf_counter()
                    decision = await engine.evaluate(document)
                    times[name].append((time.perf_counter() - started) * 1e6)
                    outcomes[name][decision.outcome] = outcomes[name].get(decision.outcome, 0) + 1
        server_side = []
        client = opa._decisions
        assert client is not None
        for document in documents[:1000]:
            _, body = await client.post_data("/sendgate/decision", document, "?metrics")
            server_side.append(body["metrics"]["timer_rego_query_eval_ns"] / 1000)
    finally:
        await opa.close()
    return {"times": times, "outcomes": outcomes, "opa_eval_us": statistics.median(server_side)}


async def _throughput(args: argparse.Namespace, work: Path, opa_url: str) -> dict[str, dict[str, float]]:
    db = work / "gateway.db"
    await harness.populate(db, harness.RECIPIENTS)
    fake_port = harness.free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    upstream = f"http://127.0.0.1:{fake_port}"
    fake = harness.start([sys.executable, "-m", "sendgate.fakegraph", "--port", str(fake_port)], "listening", env)
    results: dict[str, dict[str, float]] = {}
    next_recipient = 0
    try:
        for engine in ("embedded", "opa"):
            port = harness.free_port()
            gate_env = {
                **env,
                "SENDGATE_LISTEN": f"127.0.0.1:{port}",
                "SENDGATE_UPSTREAM_URL": upstream,
                "SENDGATE_STATE": f"sqlite:///{db}",
                "SENDGATE_POLICY_DIR": str(ROOT / "policies"),
                "SENDGATE_ACCOUNTS": orjson.dumps(harness.ACCOUNTS).decode(),
                "SENDGATE_LOG": "{level: WARNING}",
                "SENDGATE_ENGINE": engine,
                "SENDGATE_OPA_URL": opa_url,
                "SENDGATE_OPA_POLICIES": "bundle",
                "SENDGATE_POLICY_WATCH": "false",
            }
            gate = harness.start([sys.executable, "-m", "sendgate.cli", "serve"], "listening", gate_env)
            try:
                url = f"http://127.0.0.1:{port}"  # gw._drive spreads the load over the bench numbers
                _, _, next_recipient = await gw._drive(url, next_recipient, args.concurrency, 1.0)  # warm-up
                latencies, statuses, next_recipient = await gw._drive(url, next_recipient, args.concurrency,
                                                                      args.duration)
                results[engine] = gw._summary(f"{engine:8}", latencies, statuses, args.duration)
            finally:
                gate.terminate()
                gate.wait(timeout=15)
    finally:
        fake.terminate()
        fake.wait(timeout=10)
    return results


async def _run(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="sendgate-bench-engines-"))
    bundle = write_bundle(PolicyBundle.load(ROOT / "policies"), work / "bundle")
    opa_port = harness.free_port()
    opa = _start_opa(bundle, opa_port, work / "opa.log")
    opa_url = f"http://127.0.0.1:{opa_port}"
    try:
        documents = await _documents(work / "inputs.db", args.decisions)
        print(f"policy evaluation per decision: {len(documents)} inputs, each through both engines, one at a time\n")
        result = await _evaluation(documents, opa_url)
        medians = {}
        for name in ("embedded", "opa"):
            p50, p99 = _stats(result["times"][name])
            medians[name] = p50
            label = "embedded (regorus, in-process)" if name == "embedded" else "opa (HTTP round trip, keep-alive)"
            print(f"  {label:34} median {p50:8.1f} us   p99 {p99:8.1f} us   outcomes {result['outcomes'][name]}")
        print(f"  {'opa, evaluation inside OPA':34} median {result['opa_eval_us']:8.1f} us   (its ?metrics timer)")
        print(f"\n  embedded is {medians['opa'] / medians['embedded']:.1f}x faster per decision (target >= 5x)\n")
        if result["outcomes"]["embedded"] != result["outcomes"]["opa"]:
            print("  WARNING: the engines' outcomes differ on these inputs")
        if args.duration > 0:
            print(f"gateway throughput, {args.concurrency} connections, {args.duration:g} s per engine "
                  "(allowed messages, as bench/gateway.py):\n")
            rates = await _throughput(args, work, opa_url)
            print(f"\n  throughput opa/embedded: {rates['opa']['rate'] / rates['embedded']['rate']:.2f}x")
    finally:
        opa.terminate()
        opa.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decisions", type=int, default=5000, help="policy inputs, each through both engines")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per engine; 0 skips it")
    asyncio.run(_run(parser.parse_args()))


if __name__ == "__main__":
    main()

"""Concurrent bursts at one recipient, against a real `sendgate serve` in front of the fake Meta.

What a worker pool does to a gateway: N sends to the same recipient at once. Starts the fake
Graph API and `sendgate serve` (default policies, SQLite in a temporary directory) as
processes, gives one recipient marketing consent and an open window through the admin API,
then fires each burst and counts what reached the fake Meta, against what the policies allow
(the daily marketing cap; the pair rate's burst). Repeats each burst `--runs` times, each on a
recipient of its own.

    python bench/bursts.py [--size 20] [--runs 5] [--src DIR]

`--src` runs another checkout's `src/` and `policies/` (e.g. a worktree of an older commit), to
compare before and after in the same conditions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import gateway as gw  # noqa: E402  (bench/gateway.py: starting the processes)
import harness  # noqa: E402  (bench/harness.py: the account, the store, the processes)

PHONE_NUMBER_ID = "106540352242922"
WABA_ID = "102290129340398"
TOKEN = "bench-admin-token"
CATALOG = {"data": [
    {"name": "spring_sale", "language": "en_US", "status": "APPROVED", "category": "MARKETING", "id": "12",
     "components": [{"type": "BODY", "text": "Spring sale: 20% off."}]},
]}  # fmt: skip


def _recipient(i: int) -> str:
    """A number where it is daytime now, so quiet hours (21:00-08:00 local) defer nothing."""
    los_angeles_hour = (time.gmtime().tm_hour - 8) % 24
    return f"1650555{i:04d}" if 8 <= los_angeles_hour < 21 else f"9198765{i:05d}"  # else India, UTC+5:30


async def _burst(session: aiohttp.ClientSession, url: str, bodies: list[bytes]) -> Counter[int]:
    headers = {"Authorization": "Bearer app-token", "Content-Type": "application/json"}

    async def one(body: bytes) -> int:
        async with session.post(url, data=body, headers=headers) as response:
            await response.read()
            return response.status

    return Counter(await asyncio.gather(*(one(b) for b in bodies)))


async def _received(session: aiohttp.ClientSession, fake: str, recipient: str) -> int:
    async with session.get(f"{fake}/__fake/received") as response:
        received = await response.json()
    return sum(1 for r in received if r["to"] == recipient and r["message_id"])


async def _run(args: argparse.Namespace, gateway: str, fake: str) -> None:
    params = json.loads((args.src.parent / "policies" / "data.json").read_text())["sendgate"]["params"]["frequency"]
    cap = min(c["max"] for c in params["marketing_caps"] if c["window_seconds"] <= 86400)
    allowed_texts = params.get("pair_rate", {}).get("burst", 1)  # before the token bucket: one per interval
    admin = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async with session.put(f"{gateway}/admin/v1/templates/{WABA_ID}", json=CATALOG, headers=admin) as r:
            assert r.status == 200, await r.text()
        url = f"{gateway}/v23.0/{PHONE_NUMBER_ID}/messages"
        for kind, allowed in (("marketing templates", cap), ("texts in the window", allowed_texts)):
            counts = []
            for run in range(args.runs):
                recipient = _recipient((1000 if kind.startswith("t") else 0) + run)
                consent = {"status": "opted_in", "categories": ["marketing", "utility"], "source": "bench"}
                async with session.put(f"{gateway}/admin/v1/consent/{recipient}", json=consent, headers=admin) as r:
                    assert r.status == 200, await r.text()
                inbound = {"phone_number_id": PHONE_NUMBER_ID, "from": recipient}
                async with session.post(f"{gateway}/admin/v1/inbound", json=inbound, headers=admin) as r:
                    assert r.status == 200, await r.text()
                if kind.startswith("marketing"):
                    body = {"messaging_product": "whatsapp", "to": recipient, "type": "template",
                            "template": {"name": "spring_sale", "language": {"code": "en_US"}}}  # fmt: skip
                else:
                    body = {"messaging_product": "whatsapp", "to": recipient, "type": "text", "text": {"body": "Hi"}}
                statuses = await _burst(session, url, [orjson.dumps(body)] * args.size)
                counts.append(await _received(session, fake, recipient))
                print(f"  {kind}, run {run + 1}: {counts[-1]} reached Meta; answers {dict(statuses)}")
            print(f"{args.size} concurrent {kind}: reached Meta {counts} (the rules allow {allowed})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=20, help="sends per burst")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--src", type=Path, default=ROOT / "src", help="the src/ directory to run")
    args = parser.parse_args()
    args.src = args.src.resolve()
    env = {**os.environ, "PYTHONPATH": str(args.src)}
    fake_port, port = harness.free_port(), harness.free_port()
    with tempfile.TemporaryDirectory(prefix="sendgate-bursts-") as work:
        procs = [harness.start([sys.executable, "-m", "sendgate.fakegraph", "--port", str(fake_port)], "listening", env)]
        try:
            gate_env = {**env,
                "SENDGATE_LISTEN": f"127.0.0.1:{port}",
                "SENDGATE_UPSTREAM_URL": f"http://127.0.0.1:{fake_port}",
                "SENDGATE_STATE": f"sqlite:///{work}/sendgate.db",
                "SENDGATE_POLICY_DIR": str(args.src.parent / "policies"),
                "SENDGATE_ADMIN_TOKEN": TOKEN,
                "SENDGATE_ACCOUNTS": orjson.dumps(
                    [{"phone_number_id": PHONE_NUMBER_ID, "waba_id": WABA_ID, "markets": ["US", "IN"], "throughput_mps": 1000}]).decode(),
                "SENDGATE_LOG": "{level: WARNING}",
            }  # fmt: skip
            procs.append(harness.start([sys.executable, "-m", "sendgate.cli", "serve"], "listening", gate_env))
            asyncio.run(_run(args, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{fake_port}"))
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=10)


if __name__ == "__main__":
    main()

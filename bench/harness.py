"""What the benches share: the bench account, the populated store, starting the processes, /proc CPU.

The fake Graph API, sendgate (with the bench account at Meta's upgraded throughput, so that the
throughput rule does not defer the load) and the bare aiohttp pass-through each run as their own
process; `start` returns once the process prints its ready line.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
PHONE_NUMBER_ID = "106540352242922"
# The load is spread over four numbers of one WABA, message i from number i % 4: each number may
# send at most Meta's upgraded 1,000 messages/s (the throughput rule), and the gateway is what is
# measured, not that cap.
PHONE_NUMBER_IDS = [PHONE_NUMBER_ID, "106540352242923", "106540352242924", "106540352242925"]
WABA_ID = "102290129340398"
RECIPIENTS = 200_000
TEMPLATES = {
    "data": [
        {
            "name": "order_update",
            "language": "en_US",
            "status": "APPROVED",
            "category": "UTILITY",
            "id": "1",
            "components": [{"type": "BODY", "text": "Hi {{1}}, order {{2}} has shipped."}],
        }
    ]
}
# The bench numbers are configured at Meta's upgraded throughput: the default (80/s) would defer the load.
ACCOUNTS = [
    {"phone_number_id": number, "waba_id": WABA_ID, "name": "Bench", "markets": ["US"], "throughput_mps": 1000}
    for number in PHONE_NUMBER_IDS
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start(cmd: list[str], ready: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    assert proc.stdout is not None
    deadline = time.time() + 30
    while time.time() < deadline:
        line = proc.stdout.readline().decode()
        if ready in line:
            return proc
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError(f"{cmd[:3]} did not start")


def python_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def start_fake_graph(port: int) -> subprocess.Popen[bytes]:
    return start([sys.executable, "-m", "sendgate.fakegraph", "--port", str(port)], "listening", python_env())


def start_bare_proxy(port: int, upstream: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, str(ROOT / "bench" / "bare_proxy.py"), "--port", str(port), "--upstream", upstream]
    return start(cmd, "listening", python_env())


def gateway_env(port: int, upstream: str, database: Path, policies: Path) -> dict[str, str]:
    """sendgate's environment for the bench: SQLite store `database`, the bench account, warnings only."""
    return {
        **python_env(),
        "SENDGATE_LISTEN": f"127.0.0.1:{port}",
        "SENDGATE_UPSTREAM_URL": upstream,
        "SENDGATE_STATE": f"sqlite:///{database}",
        "SENDGATE_POLICY_DIR": str(policies),
        "SENDGATE_ACCOUNTS": orjson.dumps(ACCOUNTS).decode(),
        "SENDGATE_LOG": "{level: WARNING}",
    }


def start_gateway(
    port: int, upstream: str, database: Path, policies: Path, prefix: list[str] | None = None
) -> subprocess.Popen[bytes]:
    """`sendgate serve`; `prefix` replaces `python -m sendgate.cli` (a wrapper that instruments it)."""
    cmd = (prefix or [sys.executable, "-m", "sendgate.cli"]) + ["serve"]
    return start(cmd, "listening", gateway_env(port, upstream, database, policies))


def messages_url(base: str, i: int) -> str:
    """Where message i goes: its number's /messages under `base` (http://host:port)."""
    return f"{base}/v23.0/{PHONE_NUMBER_IDS[i % len(PHONE_NUMBER_IDS)]}/messages"


def utility_template(i: int) -> dict[str, Any]:
    """An allowed utility template to recipient i (opted in to utility by `populate`)."""
    return {
        "messaging_product": "whatsapp",
        "to": recipient(i),
        "type": "template",
        "template": {
            "name": "order_update",
            "language": {"code": "en_US"},
            "components": [
                {"type": "body", "parameters": [{"type": "text", "text": "Ana"}, {"type": "text", "text": str(i)}]}
            ],
        },
    }


def recipient(i: int) -> str:
    return f"1650{5550000 + i:07d}"  # US numbers, distinct per message


async def populate(db: Path, count: int) -> None:
    """Templates, `count` recipients opted in to utility, the odd ones with an open window (with the
    number that sends to them: `messages_url`)."""
    sys.path.insert(0, str(ROOT / "src"))
    from sendgate.state import ConsentRecord
    from sendgate.state.sqlite import SQLiteStore

    store = SQLiteStore(db)
    now = time.time()
    await store.put_templates(WABA_ID, TEMPLATES)
    await store.import_consent(
        [ConsentRecord(recipient(i), "opted_in", ("utility",), "bench", None, now) for i in range(count)]
    )
    conn = sqlite3.connect(db)
    with conn:
        conn.executemany(
            "INSERT OR REPLACE INTO inbound VALUES (?, ?, ?)",
            [(PHONE_NUMBER_IDS[i % len(PHONE_NUMBER_IDS)], recipient(i), now) for i in range(1, count, 2)],
        )
    conn.close()
    await store.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all threads (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

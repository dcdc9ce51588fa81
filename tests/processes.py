"""Real `sendgate serve` processes and the fake Graph API as a process, for the tests that kill,
split load across, or run several of them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import aiohttp
import orjson

from .conftest import APP_TOKEN, PHONE_NUMBER_ID, POLICIES, ROOT, WABA_ID
from .opa_support import free_port

START_TIMEOUT = 60.0
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def start_process(cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start `cmd` and return once it prints its "listening" line (its output after that is discarded)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                            start_new_session=True)  # fmt: skip
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        line = proc.stdout.readline().decode()
        seen.append(line)
        if "listening" in line:
            _drain(proc)
            return proc
        if not line and proc.poll() is not None:
            break
    stop(proc, signal.SIGKILL)
    raise AssertionError(f"{cmd} did not start: {''.join(seen)[-3000:]}")


def _drain(proc: subprocess.Popen[bytes]) -> None:
    """Keep reading the process's output so that it never blocks on a full pipe."""
    import threading

    assert proc.stdout is not None
    threading.Thread(target=proc.stdout.read, daemon=True).start()


def stop(proc: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGTERM) -> int:
    """Signal the process's whole group (a parent and its workers) and wait for it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode


class FakeMetaProcess:
    """`python -m sendgate.fakegraph` on a free port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = start_process([sys.executable, "-m", "sendgate.fakegraph", "--port", str(self.port)], ENV)

    async def received(self) -> list[dict[str, Any]]:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{self.url}/__fake/received") as response:
                body: list[dict[str, Any]] = await response.json()
                return body

    async def recipients(self) -> list[str]:
        """The `to` of every message Meta received, in arrival order."""
        return [r["body"]["to"] for r in await self.received() if r["path"].endswith("/messages")]

    def stop(self) -> None:
        stop(self.proc, signal.SIGKILL)


class GatewayProcess:
    """`sendgate serve` on a free port, configured through SENDGATE_* variables."""

    def __init__(self, state: str, upstream: str, **settings: Any) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.messages_url = f"{self.base}/v23.0/{PHONE_NUMBER_ID}/messages"
        env = {
            **ENV,
            "SENDGATE_LISTEN": f"127.0.0.1:{self.port}",
            "SENDGATE_UPSTREAM_URL": upstream,
            "SENDGATE_STATE": state,
            "SENDGATE_POLICY_DIR": str(POLICIES),
            # Meta's upgraded throughput: the loads here are about faults, not the 80/s default.
            "SENDGATE_ACCOUNTS": orjson.dumps(
                [{"phone_number_id": PHONE_NUMBER_ID, "waba_id": WABA_ID, "throughput_mps": 1000}]
            ).decode(),
            "SENDGATE_LOG": "{level: WARNING}",
        }
        for key, value in settings.items():
            env[f"SENDGATE_{key.upper()}"] = value if isinstance(value, str) else orjson.dumps(value).decode()
        self.env = env
        self.proc = start_process([sys.executable, "-m", "sendgate.cli", "serve"], env)

    def restart(self) -> None:
        stop(self.proc)
        self.proc = start_process([sys.executable, "-m", "sendgate.cli", "serve"], self.env)

    def kill(self) -> None:
        stop(self.proc, signal.SIGKILL)

    def stop(self) -> int:
        return stop(self.proc)


APP_HEADERS = {"Authorization": f"Bearer {APP_TOKEN}", "Content-Type": "application/json"}


async def post_message(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with session.post(url, data=orjson.dumps(body), headers=APP_HEADERS) as response:
        answer: dict[str, Any] = await response.json(content_type=None)
        return response.status, answer



# Numbers in three time zones: one of them is always between 09:00 and 20:00 local, so quiet
# hours (21:00-08:00) defer nothing in a test, whenever it runs.
_ZONES = (("1604555", "America/Vancouver"),  # Canada: marketing to US numbers is paused
           ("551198765", "America/Sao_Paulo"), ("91987650", "Asia/Kolkata"))


def daytime_recipient(i: int) -> str:
    """A distinct number (per `i`, below 1,000) where it is daytime now."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    for prefix, zone in _ZONES:
        if 9 <= datetime.now(ZoneInfo(zone)).hour < 20:
            return f"{prefix}{i:04d}"
    raise AssertionError("no daytime zone")  # the zones above cover every hour of the day

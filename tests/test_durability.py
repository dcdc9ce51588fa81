"""Nothing lost: SIGKILL the gateway under load, then compare its log with what Meta received.

A restart on the same database then settles what the kill left open: every forwarded record
has Meta's answer or is marked outcome unknown; none says forwarded with nothing.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

import aiohttp
import orjson

from sendgate.state import OUTCOME_UNKNOWN, DecisionQuery, DecisionRecord, open_store

from .conftest import APP_TOKEN, PHONE_NUMBER_ID, POLICIES, WABA_ID
from .opa_support import free_port
from .processes import ENV, start_process, stop

SENDS = 4000


def _recipient(i: int) -> str:
    return f"1650{5550000 + i:07d}"


async def test_sigkill_under_load_loses_no_forwarded_record(tmp_path: Path) -> None:
    state = f"sqlite:///{tmp_path / 'sendgate.db'}"
    store = open_store(state)
    for i in range(SENDS):  # every recipient wrote in the last minute: all sends are allowed
        await store.record_inbound(PHONE_NUMBER_ID, _recipient(i), time.time() - 60)
    await store.close()

    env = ENV
    fake_port, gate_port = free_port(), free_port()
    fake = start_process([sys.executable, "-m", "sendgate.fakegraph", "--port", str(fake_port)], env)
    gate_env = {
        **env,
        "SENDGATE_LISTEN": f"127.0.0.1:{gate_port}",
        "SENDGATE_UPSTREAM_URL": f"http://127.0.0.1:{fake_port}",
        "SENDGATE_STATE": state,
        "SENDGATE_POLICY_DIR": str(POLICIES),
        # Meta's upgraded throughput: this load is about the kill, not the 80/s default.
        "SENDGATE_ACCOUNTS": orjson.dumps(
            [{"phone_number_id": PHONE_NUMBER_ID, "waba_id": WABA_ID, "throughput_mps": 1000}]
        ).decode(),
        "SENDGATE_LOG": "{level: WARNING}",
    }
    gate = start_process([sys.executable, "-m", "sendgate.cli", "serve"], gate_env)
    answered = 0
    try:
        url = f"http://127.0.0.1:{gate_port}/v23.0/{PHONE_NUMBER_ID}/messages"
        headers = {"Authorization": f"Bearer {APP_TOKEN}", "Content-Type": "application/json"}
        numbers = iter(range(SENDS))

        async def worker(session: aiohttp.ClientSession) -> None:
            nonlocal answered
            for i in numbers:
                body = {"messaging_product": "whatsapp", "to": _recipient(i), "type": "text", "text": {"body": "hi"}}
                try:
                    async with session.post(url, data=orjson.dumps(body), headers=headers) as response:
                        await response.read()
                        answered += response.status == 200
                except aiohttp.ClientError:
                    return  # the gateway is gone

        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as session:
            workers = [asyncio.create_task(worker(session)) for _ in range(32)]
            while answered < 300:  # mid-load: well after the start, well before the end
                assert not all(w.done() for w in workers), f"load ended after {answered} answers, before the kill"
                await asyncio.sleep(0.01)
            gate.send_signal(signal.SIGKILL)
            await asyncio.wait_for(asyncio.gather(*workers), timeout=60)
        gate.wait(timeout=10)
        assert gate.returncode == -signal.SIGKILL

        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{fake_port}/__fake/received") as response:
                received = await response.json()
    finally:
        for proc in (gate, fake):
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    reached_meta = {r["body"]["to"] for r in received if r["path"].endswith("/messages")}
    assert answered >= 300 and len(reached_meta) >= answered
    assert len(reached_meta) < SENDS, "the kill must land mid-load"
    records = await _log(state)
    logged = {r.recipient for r in records if r.forwarded}
    open_after_kill = _forwarded_with_nothing(records)
    missing = reached_meta - logged
    assert not missing, f"{len(missing)} messages reached Meta without a committed record"

    # The restart marks what the kill left open before it serves, and nothing else.
    restarted = start_process([sys.executable, "-m", "sendgate.cli", "serve"], gate_env)
    assert stop(restarted) == 0
    records = await _log(state)
    assert _forwarded_with_nothing(records) == [], f"{len(open_after_kill)} were open after the kill"
    marked = [r for r in records if r.upstream_error == OUTCOME_UNKNOWN]
    assert sorted(r.id for r in marked) == sorted(open_after_kill)
    # Meta may have delivered them: their sends keep counting (one send per recipient here).
    store = open_store(state)
    try:
        for r in marked:
            assert r.recipient is not None
            facts = await store.recipient_facts(PHONE_NUMBER_ID, WABA_ID, r.recipient, time.time())
            assert facts.last_sent_at is not None, r.id
    finally:
        await store.close()


async def _log(state: str) -> list[DecisionRecord]:
    """The whole decision log, read through the store interface."""
    store = open_store(state)
    try:
        return await store.decisions(DecisionQuery(limit=2 * SENDS))
    finally:
        await store.close()


def _forwarded_with_nothing(records: list[DecisionRecord]) -> list[str]:
    return [r.id for r in records if r.forwarded and r.upstream_status is None and r.upstream_error is None]

"""Hot reload: the file watch, SIGHUP, and how a refused reload shows (admin API, /readyz, /metrics)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from sendgate.policy import watch
from sendgate.policy.bundle import PolicyBundle
from sendgate.policy.watch import snapshot

from .conftest import (
    ADMIN_TOKEN,
    AFTERNOON,
    PHONE_NUMBER_ID,
    POLICIES,
    ROOT,
    US_RECIPIENT,
    GatewayFactory,
    admin,
    send,
    text_message,
)
from .opa_support import free_port


@pytest.fixture
def policy_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(POLICIES, tmp_path / "policies"))


def _ban(policy_dir: Path, term: str) -> None:
    data = orjson.loads((policy_dir / "data.json").read_bytes())
    data["sendgate"]["params"]["content"]["banned_terms"].append(term)
    (policy_dir / "data.json").write_bytes(orjson.dumps(data))


async def _until(predicate: Any, timeout: float = 8.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_snapshot_sees_edits_additions_and_removals(policy_copy: Path) -> None:
    first = snapshot(policy_copy)
    assert any(name == "main.rego" for name, _, _ in first)
    (policy_copy / "notes.txt").write_text("not policy")  # ignored
    assert snapshot(policy_copy) == first
    (policy_copy / "extra.rego").write_text("package sendgate.extra\n")
    assert snapshot(policy_copy) != first
    (policy_copy / "extra.rego").unlink()
    assert snapshot(policy_copy) == first
    assert snapshot(policy_copy / "gone") == ()


async def test_file_watch_reloads_good_changes_and_exposes_bad_ones(
    gateway_factory: GatewayFactory, policy_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watch, "WATCH_INTERVAL", 0.05)
    client = await gateway_factory(policy_dir=str(policy_copy), policy_watch=True)
    await admin(client, "POST", "/inbound", {"phone_number_id": PHONE_NUMBER_ID, "from": US_RECIPIENT,
                                            "timestamp": AFTERNOON - 60})
    _, before = await admin(client, "GET", "/policy")
    assert before["reload"]["reloads"] == 0 and before["engine"]["ok"] is True

    _ban(policy_copy, "zebra")

    async def reloaded() -> Any:
        _, body = await admin(client, "GET", "/policy")
        return body if body["revision"] != before["revision"] else None

    after = await _until(reloaded)
    assert after["revision"] == PolicyBundle.load(policy_copy).revision
    assert after["reload"]["last_trigger"] == "file" and after["reload"]["ok"] is True
    status, _, payload = await send(client, text_message(body="zebra crossing"))
    assert status == 403 and payload["error"]["code"] == 770400

    (policy_copy / "broken.rego").write_text("package sendgate.broken\n\ndeny contains x if {\n")

    async def refused() -> Any:
        _, body = await admin(client, "GET", "/policy")
        return body if body["reload"]["failures"] else None

    failed = await _until(refused)
    assert failed["revision"] == after["revision"]  # the old revision keeps serving
    assert failed["reload"]["ok"] is False and "broken.rego" in failed["reload"]["last_error"]
    ready = await client.get("/readyz")
    body = await ready.json()
    assert ready.status == 200  # a refused reload is not an outage
    assert body["checks"]["policy_reload"]["ok"] is False
    metrics = await (await client.get("/metrics")).text()
    assert "sendgate_policy_reload_failed 1.0" in metrics
    assert 'sendgate_policy_reloads_total{result="failed"} 1.0' in metrics
    status, _, _ = await send(client, text_message(body="zebra crossing"))
    assert status == 403

    (policy_copy / "broken.rego").unlink()  # fixed: the next scan reloads, and the failure clears

    async def recovered() -> Any:
        _, body = await admin(client, "GET", "/policy")
        return body if body["reload"]["ok"] else None

    assert (await _until(recovered))["reload"]["reloads"] == 2


async def test_admin_reload_goes_through_the_reloader(gateway_factory: GatewayFactory, policy_copy: Path) -> None:
    client = await gateway_factory(policy_dir=str(policy_copy))
    (policy_copy / "extra_test.rego").write_text("package sendgate.extra_test\n\ntest_fails if {\n\tfalse\n}\n")
    status, body = await admin(client, "POST", "/policy/reload")
    assert status == 422 and "test_fails" in body["error"]
    _, policy = await admin(client, "GET", "/policy")
    assert policy["reload"]["last_trigger"] == "admin" and "test_fails" in policy["reload"]["last_error"]


def test_sighup_reloads_a_running_server(tmp_path: Path, policy_copy: Path) -> None:
    port = free_port()
    config = tmp_path / "sendgate.yaml"
    config.write_text(
        f"listen: 127.0.0.1:{port}\nstate: sqlite:///{tmp_path / 'state.db'}\npolicy_dir: {policy_copy}\n"
        f"admin_token: {ADMIN_TOKEN}\npolicy_watch: false\nupstream_url: http://127.0.0.1:9\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    server = subprocess.Popen([sys.executable, "-m", "sendgate.cli", "-c", str(config), "serve"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        assert server.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = server.stdout.readline().decode()
            if "listening" in line or not line:
                break
        assert "listening" in line, line

        def policy() -> dict[str, Any]:
            request = urllib.request.Request(f"http://127.0.0.1:{port}/admin/v1/policy",
                                             headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
            with urllib.request.urlopen(request, timeout=5) as response:
                return orjson.loads(response.read())

        before = policy()["revision"]
        _ban(policy_copy, "zebra")
        server.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and policy()["revision"] == before:
            time.sleep(0.05)
        after = policy()
        assert after["revision"] == PolicyBundle.load(policy_copy).revision != before
        assert after["reload"]["last_trigger"] == "SIGHUP"
    finally:
        server.terminate()
        server.wait(timeout=15)

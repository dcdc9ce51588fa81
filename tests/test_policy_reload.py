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

from sendgate.policy import EngineError, PolicyLoadError, watch
from sendgate.policy.bundle import PolicyBundle, directory_revision
from sendgate.policy.watch import PolicyReloader, snapshot

from .conftest import (
    ADMIN_TOKEN,
    AFTERNOON,
    PHONE_NUMBER_ID,
    POLICIES,
    ROOT,
    US_RECIPIENT,
    GatewayFactory,
    admin,
    edit_params,
    send,
    text_message,
)
from .opa_support import OpaServer, free_port, require_tool


@pytest.fixture
def policy_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(POLICIES, tmp_path / "policies"))


def _ban(policy_dir: Path, term: str) -> None:
    edit_params(policy_dir, lambda params: params["content"]["banned_terms"].append(term))


async def _until(predicate: Any, timeout: float = 60.0) -> Any:  # a reload runs every Rego test
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

    (policy_copy / "broken.rego").unlink()  # fixed: the failure clears, and the next scan reloads

    async def reloaded_again() -> Any:
        _, body = await admin(client, "GET", "/policy")
        return body if body["reload"]["reloads"] == 2 else None

    assert (await _until(reloaded_again))["reload"]["ok"] is True


async def test_admin_reload_goes_through_the_reloader(gateway_factory: GatewayFactory, policy_copy: Path) -> None:
    client = await gateway_factory(policy_dir=str(policy_copy))
    (policy_copy / "extra_test.rego").write_text("package sendgate.extra_test\n\ntest_fails if {\n\tfalse\n}\n")
    status, body = await admin(client, "POST", "/policy/reload")
    assert status == 422 and "test_fails" in body["error"]
    _, policy = await admin(client, "GET", "/policy")
    assert policy["reload"]["last_trigger"] == "admin" and "test_fails" in policy["reload"]["last_error"]


@pytest.fixture(params=["embedded", "opa-push"])
async def reloading_gateway(
    request: pytest.FixtureRequest, gateway_factory: GatewayFactory, policy_copy: Path, tmp_path: Path
) -> Any:
    """A gateway on `policy_copy`, file watch off: the embedded engine, or a real OPA it pushes to."""
    if request.param == "embedded":
        yield await gateway_factory(policy_dir=str(policy_copy))
        return
    opa = OpaServer(require_tool("opa"), [], tmp_path / "opa.log")
    try:
        yield await gateway_factory(engine="opa", opa_url=opa.url, opa_policies="push", policy_dir=str(policy_copy))
    finally:
        opa.stop()


async def _reload_truth(client: Any) -> tuple[dict[str, Any], dict[str, Any], str]:
    """The reload status as the admin API, /readyz and /metrics tell it (which must agree)."""
    _, policy = await admin(client, "GET", "/policy")
    ready = await client.get("/readyz")
    checks = (await ready.json())["checks"]
    assert ready.status == 200  # a refused reload is never an outage: the old revision serves
    metrics = await (await client.get("/metrics")).text()
    gauge = next(line for line in metrics.splitlines() if line.startswith("sendgate_policy_reload_failed "))
    reload = policy["reload"]
    assert checks["policy_reload"] == reload
    return reload, policy, gauge


async def test_a_restored_file_clears_a_refused_reload_everywhere(reloading_gateway: Any, policy_copy: Path) -> None:
    client = reloading_gateway
    serving = PolicyBundle.load(policy_copy).revision
    good = (policy_copy / "data.json").read_bytes()
    (policy_copy / "data.json").write_bytes(good[: len(good) // 2])  # cut short: not JSON
    status, body = await admin(client, "POST", "/policy/reload")
    assert status == 422 and "data.json" in body["error"]
    reload, policy, gauge = await _reload_truth(client)
    assert reload["ok"] is False and "data.json" in reload["error"] and reload["pending"] is False
    assert reload["files_revision"] == directory_revision(policy_copy) != serving == policy["revision"]
    assert gauge == "sendgate_policy_reload_failed 1.0"

    (policy_copy / "data.json").write_bytes(good)  # restored, and nothing reloaded since
    reload, policy, gauge = await _reload_truth(client)
    assert reload["ok"] is True and reload["error"] is None and reload["pending"] is False
    assert reload["files_revision"] == serving == policy["revision"] and reload["reloads"] == 0
    assert "data.json" in reload["last_error"]  # what the last attempt said, kept
    assert gauge == "sendgate_policy_reload_failed 0.0"

    (policy_copy / "data.json").write_bytes(good[:-3])  # broken again, but not tried yet: pending, no failure
    reload, _, gauge = await _reload_truth(client)
    assert reload["ok"] is True and reload["pending"] is True and gauge == "sendgate_policy_reload_failed 0.0"
    assert (await admin(client, "POST", "/policy/reload"))[0] == 422
    reload, _, gauge = await _reload_truth(client)
    assert reload["ok"] is False and reload["failures"] == 2 and gauge == "sendgate_policy_reload_failed 1.0"
    (policy_copy / "data.json").write_bytes(good)
    _ban(policy_copy, "zebra")  # edited on: these files were never tried, so they have not failed
    reload, _, gauge = await _reload_truth(client)
    assert reload["ok"] is True and reload["pending"] is True and gauge == "sendgate_policy_reload_failed 0.0"
    status, body = await admin(client, "POST", "/policy/reload")
    assert status == 200 and body["revision"] == PolicyBundle.load(policy_copy).revision != serving
    reload, policy, gauge = await _reload_truth(client)
    assert reload["ok"] is True and reload["pending"] is False and reload["last_error"] is None
    assert reload["files_revision"] == policy["revision"] == body["revision"]


def test_directory_revision_is_the_bundle_revision_even_for_files_that_do_not_load(policy_copy: Path) -> None:
    assert directory_revision(policy_copy) == PolicyBundle.load(policy_copy).revision
    (policy_copy / "notes.md").write_text("not policy")  # not part of a bundle
    assert directory_revision(policy_copy) == PolicyBundle.load(policy_copy).revision
    seen = {directory_revision(policy_copy)}
    (policy_copy / "data.json").write_text("{")
    seen.add(directory_revision(policy_copy))
    (policy_copy / "data.json").write_bytes(b"\xff\xfe")
    seen.add(directory_revision(policy_copy))
    assert None not in seen and len(seen) == 3
    assert directory_revision(policy_copy / "gone") is None


class _Engine:
    """A stand-in engine whose reloads succeed or fail as told."""

    def __init__(self) -> None:
        self.revision = "r1"
        self.next: str | Exception = "r1"

    async def reload(self) -> str:
        if isinstance(self.next, Exception):
            raise self.next
        self.revision = self.next
        return self.revision


async def test_without_a_policy_directory_a_reload_has_failed_until_one_succeeds() -> None:
    engine = _Engine()
    reloader = PolicyReloader(engine, None)  # type: ignore[arg-type]
    assert reloader.status().ok is True
    engine.next = EngineError("OPA unreachable")
    assert (await reloader.reload("admin"))[0] is False
    status = reloader.status()
    assert status.ok is False and status.error == "OPA unreachable" and status.files_revision is None
    engine.next = "r2"
    assert (await reloader.reload("SIGHUP")) == (True, "r2", None)
    assert reloader.status().ok is True and reloader.status().error is None


async def test_a_refused_reload_of_the_files_on_disk_is_a_failure_until_they_change(policy_copy: Path) -> None:
    engine = _Engine()
    engine.revision = engine.next = PolicyBundle.load(policy_copy).revision
    reloader = PolicyReloader(engine, policy_copy)  # type: ignore[arg-type]
    assert reloader.status().ok is True and reloader.status().pending is False
    _ban(policy_copy, "zebra")
    assert reloader.status().pending is True
    engine.next = PolicyLoadError("refused")
    await reloader.reload("file")
    assert reloader.status().ok is False and reloader.status().pending is False
    engine.next = directory_revision(policy_copy) or ""
    await reloader.reload("file")
    assert reloader.status().ok is True and reloader.status().revision == directory_revision(policy_copy)


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

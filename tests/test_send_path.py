"""The send path around the rules: bad input, status calls, shadow mode, engine and upstream failures."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from sendgate.fakegraph import FakeGraph

from .conftest import (
    AFTERNOON,
    APP_TOKEN,
    PHONE_NUMBER_ID,
    US_RECIPIENT,
    GatewayFactory,
    send,
    store_of,
    text_message,
)


async def _open_window(client: TestClient, recipient: str = US_RECIPIENT) -> None:
    await store_of(client).record_inbound(PHONE_NUMBER_ID, recipient, AFTERNOON - 60)


async def _record(client: TestClient, decision_id: str) -> Any:
    await store_of(client).flush()
    record = await store_of(client).decision(decision_id)
    assert record is not None
    return record


DEEP: dict[str, Any] = {"messaging_product": "whatsapp", "to": US_RECIPIENT, "type": "text", "text": {"body": "x"}}
_node = DEEP
for _ in range(40):
    _node["nested"] = {}
    _node = _node["nested"]


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2, 3]", "JSON object"),
        (b'"text"', "JSON object"),
        (orjson.dumps({"messaging_product": "whatsapp", "type": "text", "text": {"body": "hi"}}), "to"),
        (orjson.dumps({"messaging_product": "whatsapp", "to": US_RECIPIENT, "type": "hologram", "hologram": {}}),
         "hologram"),
        (orjson.dumps({"messaging_product": "whatsapp", "to": US_RECIPIENT, "type": "image"}), "image"),
        (orjson.dumps({"messaging_product": "whatsapp", "to": 16505551234, "type": "text", "text": {"body": "x"}}),
         "to"),
        (orjson.dumps(DEEP), "nested deeper"),
        (b"", "not valid JSON"),
    ],
)
async def test_bad_input_is_a_graph_400_logged_and_never_forwarded(
    gateway: TestClient, fake_graph: tuple[FakeGraph, str], raw: bytes, needle: str
) -> None:
    fake, _ = fake_graph
    status, headers, payload = await send(gateway, None, raw=raw)
    assert status == 400
    error = payload["error"]
    assert error["code"] == 100 and error["message"].startswith("(#100) ")
    assert needle in error["message"]
    assert fake.received == []
    record = await _record(gateway, headers["X-Sendgate-Decision-Id"])
    assert record.decision == "invalid" and record.forwarded is False
    assert needle in record.reasons[0]["message"]
    # The server keeps serving.
    await _open_window(gateway)
    assert (await send(gateway, text_message()))[0] == 200


async def test_oversized_body_is_rejected_before_reading_it_all(
    gateway_factory: GatewayFactory, fake_graph: tuple[FakeGraph, str]
) -> None:
    client = await gateway_factory(max_body_bytes=4096)
    big = text_message(body="x" * 5000)
    status, headers, payload = await send(client, big)
    assert status == 400 and payload["error"]["code"] == 100
    assert "4096" in payload["error"]["message"]
    assert fake_graph[0].received == []
    assert (await _record(client, headers["X-Sendgate-Decision-Id"])).decision == "invalid"


async def test_read_receipt_skips_message_rules(gateway: TestClient, fake_graph: tuple[FakeGraph, str]) -> None:
    body = {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQz",
            "typing_indicator": {"type": "text"}}
    status, headers, payload = await send(gateway, body)  # no window open: a message would be denied
    assert (status, payload) == (200, {"success": True})
    assert fake_graph[0].received[-1].body == body
    record = await _record(gateway, headers["X-Sendgate-Decision-Id"])
    assert (record.type, record.decision, record.forwarded) == ("status", "allow", True)


async def test_shadow_mode_forwards_and_logs_the_would_be_denial(
    gateway_factory: GatewayFactory, fake_graph: tuple[FakeGraph, str]
) -> None:
    client = await gateway_factory(mode="shadow")
    status, headers, payload = await send(client, text_message())  # window closed
    assert status == 200 and payload["messages"][0]["id"].startswith("wamid.")
    assert headers["X-Sendgate-Decision"] == "deny; mode=shadow"
    record = await _record(client, headers["X-Sendgate-Decision-Id"])
    assert (record.decision, record.mode, record.forwarded) == ("deny", "shadow", True)
    assert [r["rule"] for r in record.reasons] == ["window.closed"]
    assert record.upstream_message_id == payload["messages"][0]["id"]


@pytest.fixture
def broken_policy_dir(tmp_path: Path) -> Path:
    """A policy that compiles but fails at evaluation time for text messages (conflicting values)."""
    root = tmp_path / "broken-policies"
    root.mkdir()
    (root / "main.rego").write_text(
        "package sendgate\n\n"
        'decision := {"allow": true, "deny": [], "defer": [], "warn": [], "retry_after": null} if {\n'
        '\tinput.message.type == "text"\n}\n\n'
        'decision := {"allow": false, "deny": [{"rule": "x", "message": "x"}], "defer": [], "warn": [],'
        ' "retry_after": null} if {\n\tinput.message.recipient\n}\n'
    )
    return root


@pytest.mark.parametrize("on_engine_error", ["deny", "allow"])
async def test_engine_failure(
    gateway_factory: GatewayFactory, fake_graph: tuple[FakeGraph, str], broken_policy_dir: Path, on_engine_error: str
) -> None:
    client = await gateway_factory(policy_dir=str(broken_policy_dir), on_engine_error=on_engine_error)
    status, headers, payload = await send(client, text_message())
    record = await _record(client, headers["X-Sendgate-Decision-Id"])
    assert record.decision == "error"
    assert record.reasons[0]["rule"] == "engine.error"
    assert "conflict" in record.reasons[0]["message"]
    if on_engine_error == "deny":
        assert status == 503 and payload["error"]["code"] == 2
        assert fake_graph[0].received == [] and record.forwarded is False
    else:
        assert status == 200 and len(fake_graph[0].received) == 1 and record.forwarded is True
    # Later calls still get answers.
    assert (await send(client, text_message()))[0] in (200, 503)


@pytest.mark.parametrize(("mode", "status"), [("drop", 502), ("stall", 504), ("error", 500)])
async def test_upstream_failures(
    gateway_factory: GatewayFactory, fake_graph: tuple[FakeGraph, str], mode: str, status: int
) -> None:
    fake, _ = fake_graph
    client = await gateway_factory(upstream_timeout=0.5)
    await _open_window(client)
    fake.set_fault(mode, code=131000, delay=5, count=1)
    got, headers, payload = await send(client, text_message())
    assert got == status
    record = await _record(client, headers["X-Sendgate-Decision-Id"])
    assert record.decision == "allow" and record.forwarded is True
    if mode == "error":  # Meta's own error goes back unchanged
        assert payload["error"]["code"] == 131000 and payload["error"]["type"] == "OAuthException"
        assert record.upstream_error_code == 131000 and record.upstream_status == 500
    else:
        assert payload["error"]["type"] == "SendgateUpstreamError"
        assert record.upstream_status is None
        assert ("within" if mode == "stall" else "unreachable") in record.upstream_error
    # A failed send does not count towards the pair rate: an immediate retry goes through.
    assert (await send(client, text_message()))[0] == 200


async def test_dead_upstream(gateway_factory: GatewayFactory) -> None:
    client = await gateway_factory(upstream_url="http://127.0.0.1:9")  # nothing listens on the discard port
    await _open_window(client)
    status, headers, payload = await send(client, text_message())
    assert status == 502 and payload["error"]["code"] == 2
    assert (await _record(client, headers["X-Sendgate-Decision-Id"])).upstream_error.startswith("upstream unreachable")


async def test_version_passes_through_as_sent(gateway: TestClient, fake_graph: tuple[FakeGraph, str]) -> None:
    await _open_window(gateway)
    status, _, _ = await send(gateway, text_message(), version="v26.0")
    assert status == 200
    assert fake_graph[0].received[-1].path == f"/v26.0/{PHONE_NUMBER_ID}/messages"


async def test_tokens_are_never_logged(
    gateway_factory: GatewayFactory, caplog: pytest.LogCaptureFixture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    client = await gateway_factory(log={"json_stdout": True, "keep_allowed_content": True})
    await _open_window(client)
    await send(client, text_message())
    await send(client, text_message(body="x" * 5000))
    await client.get(f"/v23.0/{PHONE_NUMBER_ID}?access_token={APP_TOKEN}")
    await store_of(client).flush()
    assert APP_TOKEN not in caplog.text
    out = capsys.readouterr()
    assert APP_TOKEN not in out.out + out.err
    assert '"decision":"allow"' in out.out  # the JSON lines are there
    for path in tmp_path.glob("sendgate.db*"):
        assert APP_TOKEN.encode() not in path.read_bytes()

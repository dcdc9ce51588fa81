"""The fake Graph API must answer like Meta and fail on demand like Meta."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from sendgate.fakegraph import ERRORS, FakeGraph

AUTH = {"Authorization": "Bearer test-token-123"}
SEND = "/v23.0/106540352242922/messages"
TEXT = {
    "messaging_product": "whatsapp",
    "recipient_type": "individual",
    "to": "+16505551234",
    "type": "text",
    "text": {"body": "hello"},
}
SHARED = Path("/work/shared/cloud-api")
SRC = Path(__file__).resolve().parents[1] / "src"


def _templates(n: int) -> list[dict[str, Any]]:
    return [
        {"id": str(1000 + i), "name": f"tmpl_{i}", "language": "en_US", "status": "APPROVED", "category": "UTILITY"}
        for i in range(n)
    ]


@pytest.fixture
def fake() -> FakeGraph:
    return FakeGraph({"waba1": {"data": _templates(7)}})


@pytest.fixture
async def client(fake: FakeGraph, aiohttp_client: Any) -> TestClient:
    return await aiohttp_client(fake.app())


def _assert_meta_error(payload: dict[str, Any], code: int) -> None:
    error = payload["error"]
    assert set(error) == {"message", "type", "code", "error_data", "fbtrace_id"}
    assert error["code"] == code
    assert error["type"] == "OAuthException"
    assert error["message"].startswith(f"(#{code}) ")
    assert error["error_data"]["messaging_product"] == "whatsapp"
    assert isinstance(error["error_data"]["details"], str) and error["error_data"]["details"]
    assert isinstance(error["fbtrace_id"], str) and len(error["fbtrace_id"]) >= 11


# ----------------------------------------------------------------------------- sends


def _meta_send_examples() -> list[dict[str, Any]]:
    path = SHARED / "send-responses.json"
    if not path.exists():
        pytest.skip("Meta's examples are not available here")
    examples = json.loads(path.read_text())["messages"].values()
    return [e for e in examples if "messages" in e]


async def test_send_matches_meta_example_shape(client: TestClient, fake: FakeGraph) -> None:
    response = await client.post(SEND, json=TEXT, headers=AUTH)
    assert response.status == 200
    assert response.content_type == "application/json"
    body = await response.json()
    for example in _meta_send_examples():
        assert set(example) == set(body)
        assert set(example["contacts"][0]) == set(body["contacts"][0])
        assert set(example["messages"][0]) <= set(body["messages"][0])
    assert body["messaging_product"] == "whatsapp"
    assert body["contacts"] == [{"input": "+16505551234", "wa_id": "16505551234"}]
    [message] = body["messages"]
    assert message["message_status"] == "accepted"
    assert message["id"].startswith("wamid.")
    raw = base64.b64decode(message["id"][len("wamid.") :])
    assert b"16505551234" in raw  # like Meta's, the wamid embeds the recipient
    [record] = fake.received
    assert record.message_id == message["id"]
    assert record.body == TEXT and record.to == "+16505551234"
    assert record.status == 200 and record.method == "POST" and record.path == SEND


async def test_marketing_messages_and_versionless_path(client: TestClient, fake: FakeGraph) -> None:
    template = {**TEXT, "type": "template", "template": {"name": "promo", "language": {"code": "en_US"}}}
    response = await client.post("/v23.0/1/marketing_messages", json=template, headers=AUTH)
    assert response.status == 200
    assert (await response.json())["messages"][0]["message_status"] == "accepted"
    response = await client.post("/1/messages", json=TEXT, headers=AUTH)  # Graph's version is optional
    assert response.status == 200
    assert len(fake.sent) == 2


async def test_wamids_are_unique_and_recorded(client: TestClient, fake: FakeGraph) -> None:
    async def send(i: int) -> str:
        response = await client.post(SEND, json={**TEXT, "to": f"1650555{i:04d}"}, headers=AUTH)
        return str((await response.json())["messages"][0]["id"])

    ids = await asyncio.gather(*(send(i) for i in range(300)))
    assert len(set(ids)) == 300
    by_to = {r.to: r.message_id for r in fake.received}
    assert by_to["16505550007"] == ids[7]
    assert {r.message_id for r in fake.sent} == set(ids)


async def test_read_receipt_returns_success(client: TestClient, fake: FakeGraph) -> None:
    read = {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.abc"}
    response = await client.post(SEND, json=read, headers=AUTH)
    assert response.status == 200
    assert await response.json() == {"success": True}
    typing = {**read, "typing_indicator": {"type": "text"}}
    assert await (await client.post(SEND, json=typing, headers=AUTH)).json() == {"success": True}
    assert fake.sent == []
    assert [r.status for r in fake.received] == [200, 200]


@pytest.mark.parametrize(
    "body",
    [
        {**TEXT, "messaging_product": "sms"},
        {k: v for k, v in TEXT.items() if k != "messaging_product"},
        {k: v for k, v in TEXT.items() if k != "to"},
        ["not", "an", "object"],
    ],
)
async def test_invalid_send_gets_code_100(client: TestClient, fake: FakeGraph, body: Any) -> None:
    response = await client.post(SEND, json=body, headers=AUTH)
    assert response.status == 400
    _assert_meta_error(await response.json(), 100)
    assert fake.sent == []


async def test_garbage_body_is_recorded_raw(client: TestClient, fake: FakeGraph) -> None:
    response = await client.post(SEND, data=b"{not json", headers=AUTH)
    assert response.status == 400
    _assert_meta_error(await response.json(), 100)
    assert fake.received[0].body == b"{not json"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer "}, {"Authorization": "Basic abc"}])
async def test_missing_token_is_oauth_190(client: TestClient, fake: FakeGraph, headers: dict[str, str]) -> None:
    response = await client.post(SEND, json=TEXT, headers=headers)
    assert response.status == 401
    error = (await response.json())["error"]
    assert error["code"] == 190 and error["type"] == "OAuthException"
    assert error["message"] and error["fbtrace_id"]
    assert fake.sent == [] and fake.received[0].status == 401


# ----------------------------------------------------------------------------- faults


@pytest.mark.parametrize("code,status", [(131056, 400), (131000, 500), (130429, 400), (131047, 400), (2, 503)])
async def test_error_fault_uses_meta_code_and_status(
    client: TestClient, fake: FakeGraph, code: int, status: int
) -> None:
    fake.fail_next(code=code)
    response = await client.post(SEND, json=TEXT, headers=AUTH)
    assert response.status == status == ERRORS[code][1]
    payload = await response.json()
    _assert_meta_error(payload, code)
    assert payload["error"]["message"] == f"(#{code}) {ERRORS[code][0]}"
    assert fake.received[0].fault == "error" and fake.received[0].message_id is None
    assert (await client.post(SEND, json=TEXT, headers=AUTH)).status == 200  # count=1: used up


async def test_error_fault_status_and_details_override(client: TestClient) -> None:
    fake_details = "pair limit for this test"
    fault = {"mode": "error", "code": 131056, "status": 429, "details": fake_details, "count": 1}
    response = await client.post("/__fake/faults", json=fault)
    assert response.status == 200
    response = await client.post(SEND, json=TEXT, headers=AUTH)
    assert response.status == 429
    error = (await response.json())["error"]
    assert error["error_data"]["details"] == fake_details
    assert error["message"] == "(#131056) (Business Account, Consumer Account) pair rate limit hit"


async def test_count_limits_fault_and_queue_runs_in_order(client: TestClient, fake: FakeGraph) -> None:
    fake.fail_next(2, code=131056)
    fake.fail_next(1, code=131000)
    statuses = [(await client.post(SEND, json=TEXT, headers=AUTH)).status for _ in range(5)]
    assert statuses == [400, 400, 500, 200, 200]
    assert [r.fault for r in fake.received] == ["error", "error", "error", None, None]


async def test_persistent_mode_until_ok(client: TestClient, fake: FakeGraph) -> None:
    fake.set_fault("error", code=2)
    assert [(await client.post(SEND, json=TEXT, headers=AUTH)).status for _ in range(3)] == [503, 503, 503]
    fake.set_fault("ok")
    assert (await client.post(SEND, json=TEXT, headers=AUTH)).status == 200


async def test_send_scoped_fault_spares_other_endpoints(client: TestClient, fake: FakeGraph) -> None:
    fake.fail_next(1, code=131000)
    response = await client.get("/v23.0/waba1/message_templates", headers=AUTH)
    assert response.status == 200  # template sync is not a send: the fault waits
    assert (await client.post(SEND, json=TEXT, headers=AUTH)).status == 500
    fake.fail_next(1, code=131000, scope="all")
    assert (await client.get("/v23.0/waba1/message_templates", headers=AUTH)).status == 500


async def test_stall_makes_client_time_out(client: TestClient, fake: FakeGraph) -> None:
    fake.set_fault("stall", delay=1.0, count=1)
    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        await client.post(SEND, json=TEXT, headers=AUTH, timeout=aiohttp.ClientTimeout(total=0.2))
    assert time.monotonic() - started < 0.9
    assert fake.received[0].fault == "stall" and fake.received[0].status is None
    response = await client.post(SEND, json=TEXT, headers=AUTH)
    assert response.status == 200


async def test_stall_never_answers_even_to_a_patient_client(client: TestClient, fake: FakeGraph) -> None:
    fake.set_fault("stall", delay=0.2, count=1)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await client.post(SEND, json=TEXT, headers=AUTH, timeout=aiohttp.ClientTimeout(total=5))


async def test_drop_closes_connection_without_response(client: TestClient, fake: FakeGraph) -> None:
    fake.set_fault("drop", count=1)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await client.post(SEND, json=TEXT, headers=AUTH)
    assert fake.received[0].fault == "drop"
    assert fake.received[0].status is None and fake.received[0].message_id is None
    assert (await client.post(SEND, json=TEXT, headers=AUTH)).status == 200


async def test_slow_answers_normally_after_delay(client: TestClient, fake: FakeGraph) -> None:
    fake.set_fault("slow", delay=0.3, count=1)
    started = time.monotonic()
    response = await client.post(SEND, json=TEXT, headers=AUTH)
    assert time.monotonic() - started >= 0.3
    assert response.status == 200
    assert (await response.json())["messages"][0]["id"] == fake.received[0].message_id
    assert fake.received[0].fault == "slow"


async def test_http_fault_control_and_received(client: TestClient, fake: FakeGraph) -> None:
    response = await client.post("/__fake/faults", json={"mode": "error", "code": 130429, "status": 400, "count": 1})
    assert response.status == 200
    assert (await response.json())["queue"][0]["code"] == 130429
    first = await client.post(SEND, json=TEXT, headers=AUTH)
    assert first.status == 400
    _assert_meta_error(await first.json(), 130429)
    second = await client.post(SEND, json=TEXT, headers=AUTH)
    wamid = (await second.json())["messages"][0]["id"]
    await client.post(SEND, json=TEXT)  # no token

    response = await client.get("/__fake/received")
    text = await response.text()
    assert "test-token-123" not in text  # the token never leaves the fake
    records = json.loads(text)
    assert [r["status"] for r in records] == [400, 200, 401]
    assert [r["fault"] for r in records] == ["error", None, None]
    assert [r["message_id"] for r in records] == [None, wamid, None]
    assert [r["authorization_present"] for r in records] == [True, True, False]
    assert records[1]["body"] == TEXT and records[1]["to"] == "+16505551234"
    assert records[1]["method"] == "POST" and records[1]["path"] == SEND
    assert len(await (await client.get("/__fake/received?since=2")).json()) == 1
    assert len(fake.received) == 3  # control requests are not recorded

    await client.post("/__fake/faults", json={"mode": "drop", "count": None})
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await client.post(SEND, json=TEXT, headers=AUTH)
    assert (await client.post("/__fake/reset")).status == 200
    assert await (await client.get("/__fake/received")).json() == []
    assert (await client.post(SEND, json=TEXT, headers=AUTH)).status == 200  # reset healed the fault
    assert (await client.get("/__fake/faults")).status == 200


@pytest.mark.parametrize(
    "body",
    [
        {"mode": "explode"},
        {"mode": "error", "code": "131056"},
        {"mode": "error", "count": 0},
        {"mode": "slow", "delay": -1},
        {"mode": "error", "colour": "red"},
    ],
)
async def test_http_fault_control_rejects_bad_bodies(client: TestClient, fake: FakeGraph, body: Any) -> None:
    response = await client.post("/__fake/faults", json=body)
    assert response.status == 400
    assert fake.faults() == {"persistent": None, "queue": []}


# ----------------------------------------------------------------------------- templates, media, routing


async def test_template_paging_across_three_pages(client: TestClient) -> None:
    url: str | None = str(client.make_url("/v23.0/waba1/message_templates?limit=3"))
    pages: list[list[str]] = []
    cursors: list[dict[str, str]] = []
    while url is not None:
        response = await client.session.get(url, headers=AUTH)  # `next` is absolute, as Graph's is
        assert response.status == 200
        body = await response.json()
        pages.append([t["name"] for t in body["data"]])
        cursors.append(body["paging"]["cursors"])
        url = body["paging"].get("next")
        if url is not None:
            assert url.startswith(str(client.make_url("/v23.0/waba1/message_templates?")))
            assert "after=" in url and "limit=3" in url
    assert pages == [["tmpl_0", "tmpl_1", "tmpl_2"], ["tmpl_3", "tmpl_4", "tmpl_5"], ["tmpl_6"]]
    assert cursors[0] == {"before": "MAZDZD", "after": "MgZDZD"}  # Graph's own cursor encoding of 0 and 2
    previous = body["paging"]["previous"]
    response = await client.session.get(previous, headers=AUTH)
    assert [t["name"] for t in (await response.json())["data"]] == ["tmpl_3", "tmpl_4", "tmpl_5"]


async def test_template_filters_fields_and_unknown_waba(client: TestClient, fake: FakeGraph) -> None:
    response = await client.get("/v23.0/waba1/message_templates?name=tmpl_4&fields=name,status", headers=AUTH)
    body = await response.json()
    assert body["data"] == [{"id": "1004", "name": "tmpl_4", "status": "APPROVED"}]
    assert "next" not in body["paging"]
    response = await client.get("/v23.0/nope/message_templates", headers=AUTH)
    assert response.status == 400
    error = (await response.json())["error"]
    assert (error["code"], error["error_subcode"], error["type"]) == (100, 33, "GraphMethodException")
    fake.templates["empty"] = []
    assert await (await client.get("/v23.0/empty/message_templates", headers=AUTH)).json() == {"data": []}
    bad = await client.get("/v23.0/waba1/message_templates?after=%%%", headers=AUTH)
    assert bad.status == 400


async def test_templates_match_meta_list_example(fake: FakeGraph, aiohttp_client: Any) -> None:
    path = SHARED / "template-examples.json"
    if not path.exists():
        pytest.skip("Meta's examples are not available here")
    example = json.loads(path.read_text())["list_response"]["200 Example response"]
    fake.load_templates({"w": example})
    client = await aiohttp_client(fake.app())
    body = await (await client.get("/v23.0/w/message_templates", headers=AUTH)).json()
    assert body["data"] == example["data"]
    assert set(body["paging"]) == set(example["paging"]) and set(body["paging"]["cursors"]) == {"before", "after"}


async def test_media_upload_and_url(client: TestClient, fake: FakeGraph) -> None:
    form = aiohttp.FormData()
    form.add_field("messaging_product", "whatsapp")
    form.add_field("type", "image/jpeg")
    form.add_field("file", b"\xff\xd8jpegbytes", filename="a.jpg", content_type="image/jpeg")
    response = await client.post("/v23.0/1/media", data=form, headers=AUTH)
    assert response.status == 200
    media_id = (await response.json())["id"]
    assert media_id.isdigit()
    info = await (await client.get(f"/v23.0/{media_id}", headers=AUTH)).json()
    assert info["id"] == media_id and info["messaging_product"] == "whatsapp"
    assert info["mime_type"] == "image/jpeg" and info["file_size"] == "11"
    assert info["sha256"] == hashlib.sha256(b"\xff\xd8jpegbytes").hexdigest()
    assert info["url"].startswith("https://")
    assert await (await client.delete(f"/v23.0/{media_id}", headers=AUTH)).json() == {"success": True}
    assert (await client.get(f"/v23.0/{media_id}", headers=AUTH)).status == 400


async def test_media_upload_of_a_type_meta_does_not_take(client: TestClient, fake: FakeGraph) -> None:
    form = aiohttp.FormData()
    form.add_field("messaging_product", "whatsapp")
    form.add_field("type", "image/png")  # Meta judges the file part's type, not this
    form.add_field("file", b"bytes", filename="a.bin", content_type="application/octet-stream")
    response = await client.post("/v23.0/1/media", data=form, headers=AUTH)
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == 100 and error["type"] == "OAuthException"
    assert error["message"].startswith("(#100) Param file must be a file with one of the following types: audio/aac,")
    assert error["message"].endswith("Received file of type 'application/octet-stream'.")
    assert fake.media == {}


async def test_unknown_path_is_graph_2500(client: TestClient, fake: FakeGraph) -> None:
    response = await client.get("/v23.0/106540352242922/nonsense", headers=AUTH)
    assert response.status == 400  # Graph answers 2500 with HTTP 400
    error = (await response.json())["error"]
    assert set(error) == {"message", "type", "code", "fbtrace_id"}
    assert error["code"] == 2500 and error["type"] == "OAuthException"
    assert error["message"] == "Unknown path components: /106540352242922/nonsense"
    wrong_method = await client.get(SEND, headers=AUTH)
    assert (await wrong_method.json())["error"]["code"] == 2500
    assert fake.received[-1].status == 400


# ----------------------------------------------------------------------------- as a process


def _start_process(*args: str) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    process = subprocess.Popen(
        [sys.executable, "-m", "sendgate.fakegraph", "--host", "127.0.0.1", "--port", "0", *args],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    assert line.startswith("fakegraph listening on http://127.0.0.1:"), line
    return process, line.rsplit(" ", 1)[1]


async def test_main_runs_steerable_and_stops_on_sigterm(tmp_path: Path) -> None:
    templates = tmp_path / "templates.json"
    templates.write_text(json.dumps({"w9": {"data": _templates(2)}}))
    process, base = _start_process("--templates", str(templates))
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/v23.0/w9/message_templates", headers=AUTH) as response:
                assert [t["name"] for t in (await response.json())["data"]] == ["tmpl_0", "tmpl_1"]
            async with session.post(f"{base}{SEND}", json=TEXT, headers=AUTH) as response:
                wamid = (await response.json())["messages"][0]["id"]
            async with session.get(f"{base}/__fake/received") as response:
                assert (await response.json())[-1]["message_id"] == wamid
            async with session.post(f"{base}/__fake/faults", json={"mode": "stall", "delay": 30}) as response:
                assert response.status == 200
            stalled = asyncio.ensure_future(session.post(f"{base}{SEND}", json=TEXT, headers=AUTH))
            await asyncio.sleep(0.3)
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            exit_code = await asyncio.get_running_loop().run_in_executor(None, process.wait, 10)
            assert exit_code == 0
            assert time.monotonic() - started < 5  # the 30 s stall does not hold up shutdown
            with pytest.raises(aiohttp.ClientError):
                await stalled
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stdout is not None
        process.stdout.close()

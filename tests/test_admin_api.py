"""The admin API, over HTTP, against the same store the send path reads."""

from __future__ import annotations

import shutil
from pathlib import Path

from aiohttp.test_utils import TestClient

from sendgate.fakegraph import FakeGraph

from .conftest import (
    AFTERNOON,
    CATALOG,
    PHONE_NUMBER_ID,
    POLICIES,
    US_RECIPIENT,
    GatewayFactory,
    admin,
    send,
    template_message,
    text_message,
)


async def test_admin_needs_the_token(gateway: TestClient) -> None:
    assert (await admin(gateway, "GET", "/decisions", token="wrong"))[0] == 401
    response = await gateway.get("/admin/v1/decisions")
    assert response.status == 401
    assert (await admin(gateway, "GET", "/decisions"))[0] == 200


async def test_admin_is_off_without_a_token(gateway_factory: GatewayFactory) -> None:
    client = await gateway_factory(admin_token=None)
    status, body = await admin(client, "GET", "/decisions")
    assert status == 404 and "admin API is off" in body["error"]["message"]


async def test_consent_put_get_keeps_history(gateway: TestClient) -> None:
    status, body = await admin(gateway, "PUT", "/consent/+1 (650) 555-1234",
                               {"status": "opted_in", "categories": ["marketing", "utility"], "source": "web-form",
                                "evidence": "checkbox on /signup, IP 203.0.113.7"})
    assert status == 200
    assert body["recipient"] == US_RECIPIENT and body["current"]["status"] == "opted_in"
    await admin(gateway, "PUT", f"/consent/{US_RECIPIENT}", {"status": "opted_out", "source": "call-center"})
    status, body = await admin(gateway, "GET", f"/consent/{US_RECIPIENT}")
    assert status == 200
    assert body["current"]["status"] == "opted_out"
    assert [r["status"] for r in body["history"]] == ["opted_in", "opted_out"]
    assert body["history"][0]["evidence"].startswith("checkbox")
    status, body = await admin(gateway, "PUT", f"/consent/{US_RECIPIENT}", {"status": "yes"})
    assert status == 400 and "status must be one of" in body["error"]["message"]
    assert (await admin(gateway, "GET", "/consent/15550000000"))[0] == 404


async def test_consent_changes_what_the_gateway_decides(gateway: TestClient) -> None:
    assert (await send(gateway, template_message()))[2]["error"]["code"] == 770100  # no record yet
    await admin(gateway, "PUT", f"/consent/{US_RECIPIENT}", {"status": "opted_in", "categories": ["utility"]})
    assert (await send(gateway, template_message()))[0] == 200


async def test_consent_import_csv_and_json_lines(gateway: TestClient) -> None:
    csv_text = ("recipient,status,categories,source,evidence\n"
                "+16505550001,opted_in,marketing;utility,shop,paper form 17\n"
                "16505550002,opted_out,,sms,STOP reply\n")
    status, body = await admin(gateway, "POST", "/consent/import", csv_text)
    assert (status, body) == (200, {"imported": 2})
    lines = ('{"recipient": "16505550003", "status": "opted_in", "categories": ["utility"]}\n'
             '{"recipient": "16505550004", "status": "opted_in", "categories": []}\n')
    assert (await admin(gateway, "POST", "/consent/import", lines))[1] == {"imported": 2}
    _, record = await admin(gateway, "GET", "/consent/16505550001")
    assert record["current"]["categories"] == ["marketing", "utility"]
    assert record["current"]["evidence"] == "paper form 17"
    # One bad line imports nothing and says which line.
    bad = "recipient,status\n16505550005,opted_in\n16505550006,perhaps\n"
    status, body = await admin(gateway, "POST", "/consent/import", bad)
    assert status == 400 and "line 3" in body["error"]["message"]
    assert (await admin(gateway, "GET", "/consent/16505550005"))[0] == 404


async def test_templates_put_and_get(gateway: TestClient) -> None:
    status, body = await admin(gateway, "PUT", "/templates/999", CATALOG)
    assert (status, body) == (200, {"waba_id": "999", "templates": len(CATALOG["data"])})
    status, body = await admin(gateway, "GET", "/templates/999")
    assert status == 200 and [t["name"] for t in body["data"]] == [t["name"] for t in CATALOG["data"]]
    status, body = await admin(gateway, "PUT", "/templates/999", {"data": [{"name": "x"}]})
    assert status == 400 and "language" in body["error"]["message"]
    assert (await admin(gateway, "GET", "/templates/12345"))[0] == 404


async def test_inbound_opens_the_window(gateway: TestClient) -> None:
    assert (await send(gateway, text_message()))[2]["error"]["code"] == 131047
    status, body = await admin(gateway, "POST", "/inbound",
                               {"phone_number_id": PHONE_NUMBER_ID, "from": "+16505551234", "timestamp": AFTERNOON - 5})
    assert status == 200 and body["from"] == US_RECIPIENT
    assert (await send(gateway, text_message()))[0] == 200
    status, body = await admin(gateway, "POST", "/inbound", {"from": US_RECIPIENT})
    assert status == 400 and "phone_number_id" in body["error"]["message"]


async def test_decisions_list_filters_and_get(gateway: TestClient, fake_graph: tuple[FakeGraph, str]) -> None:
    await send(gateway, text_message())  # window.closed
    await send(gateway, template_message())  # consent.missing
    await send(gateway, None, raw=b"nope")  # invalid
    status, body = await admin(gateway, "GET", "/decisions")
    assert status == 200 and len(body["data"]) == 3
    assert [r["decision"] for r in body["data"]] == ["invalid", "deny", "deny"]  # newest first
    for key in ("id", "timestamp", "account", "recipient", "type", "template", "decision", "mode", "reasons",
                "policy_revision", "upstream_status", "upstream_message_id"):
        assert key in body["data"][0]
    _, body = await admin(gateway, "GET", "/decisions?rule=window.closed")
    assert [r["reasons"][0]["rule"] for r in body["data"]] == ["window.closed"]
    _, body = await admin(gateway, "GET", f"/decisions?decision=deny&recipient=%2B{US_RECIPIENT}&account={PHONE_NUMBER_ID}")
    assert len(body["data"]) == 2
    _, body = await admin(gateway, "GET", f"/decisions?since={AFTERNOON + 1}")
    assert body["data"] == []
    _, page = await admin(gateway, "GET", "/decisions?limit=2")
    assert len(page["data"]) == 2 and "next" in page["paging"]
    _, rest = await admin(gateway, "GET", f"/decisions?limit=2&before={page['paging']['cursors']['after']}")
    assert len(rest["data"]) == 1 and "next" not in rest["paging"]
    one_id = page["data"][1]["id"]
    status, one = await admin(gateway, "GET", f"/decisions/{one_id}")
    assert status == 200 and one["id"] == one_id and one["template"] == "order_update"
    assert (await admin(gateway, "GET", "/decisions/nope"))[0] == 404
    status, body = await admin(gateway, "GET", "/decisions?decision=maybe")
    assert status == 400 and "decision must be one of" in body["error"]["message"]


async def test_policy_reload_swaps_only_good_policies(gateway_factory: GatewayFactory, tmp_path: Path) -> None:
    policy_dir = tmp_path / "policies"
    shutil.copytree(POLICIES, policy_dir)
    client = await gateway_factory(policy_dir=str(policy_dir))
    _, before = await admin(client, "GET", "/policy")

    # Data change: one more banned term; the reload takes it.
    data = (policy_dir / "data.json").read_text()
    (policy_dir / "data.json").write_text(data.replace('"buy followers",', '"buy followers", "snake oil",', 1))
    status, body = await admin(client, "POST", "/policy/reload")
    assert status == 200 and body["reloaded"] is True and body["revision"] != before["revision"]

    # A broken file is refused and the old revision keeps serving.
    (policy_dir / "broken.rego").write_text("package sendgate.broken\n\ndeny contains x if {\n")
    status, body = await admin(client, "POST", "/policy/reload")
    assert status == 422 and body["reloaded"] is False and "broken.rego" in body["error"]
    assert body["revision"] == (await admin(client, "GET", "/policy"))[1]["revision"]
    await admin(client, "POST", "/inbound", {"phone_number_id": PHONE_NUMBER_ID, "from": US_RECIPIENT,
                                            "timestamp": AFTERNOON - 60})
    status, _, payload = await send(client, text_message(body="Genuine snake oil, 50% off"))
    assert status == 403 and payload["error"]["code"] == 770400  # the reloaded data decides

    # So is a policy whose own Rego tests fail.
    (policy_dir / "broken.rego").unlink()
    (policy_dir / "extra_test.rego").write_text("package sendgate.extra_test\n\ntest_fails if {\n\tfalse\n}\n")
    status, body = await admin(client, "POST", "/policy/reload")
    assert status == 422 and "test_fails" in body["error"]

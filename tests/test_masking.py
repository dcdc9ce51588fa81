"""`log.mask_recipients`: no recipient's number survives in the log, its views or the server's log lines."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from sendgate.cli import main
from sendgate.masking import mask_numbers, mask_recipient_in
from sendgate.policy import EngineError
from sendgate.state import DecisionQuery

from .conftest import PHONE_NUMBER_ID, US_RECIPIENT, GatewayFactory, admin, send, store_of, text_message
from .test_review_pages import login

MASKED = "*******1234"  # US_RECIPIENT as the log shows it
# What of US_RECIPIENT must not be seen, however it was written (16505551234, +1 (650) 555-1234, ...).
LEAKS = ("6505551234", "555-1234", "555 1234", "555)1234")
SEPARATED = "+1 (650) 555-1234"

# Invalid sends whose recipient cannot be known, each carrying the number where only the rule for
# "every number that could be a phone number" finds it.
INVALID_BODIES = {
    "not_json": f"to: {SEPARATED} or {US_RECIPIENT}, text: hi".encode(),
    "to_number": orjson.dumps({"messaging_product": "whatsapp", "to": int(US_RECIPIENT), "type": "text",
                               "text": {"body": "hi"}}),
    "to_list": orjson.dumps({"messaging_product": "whatsapp", "to": [US_RECIPIENT], "type": "text",
                             "text": {"body": "hi"}}),
    "nested_number": orjson.dumps({"messaging_product": "whatsapp", "type": "text", "text": {"body": "hi"},
                                   "extra": {"people": [{"phone": int(US_RECIPIENT)}]}}),
    # The reason quotes the type, so the number is in the reason text (and the CSV) too.
    "separators": orjson.dumps({"messaging_product": "whatsapp", "to": SEPARATED, "type": SEPARATED}),
}  # fmt: skip


def assert_hidden(text: str, where: str, shown: bool = True) -> None:
    for leak in LEAKS:
        assert leak not in text, f"{where}: {leak!r} in {text[:2000]}"
    if shown:
        assert MASKED in text, f"{where}: no {MASKED} in {text[:2000]}"


def cli_config(tmp_path: Path, mask: bool = True) -> Path:
    """A config for the CLI on the store gateway_factory's gateways use."""
    path = tmp_path / "cli.yaml"
    path.write_text(f"state: sqlite:///{tmp_path / 'sendgate.db'}\nlog: {{mask_recipients: {str(mask).lower()}}}\n")
    return path


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, list(argv))  # the CLI runs its own event loop
    out = capsys.readouterr()
    return code, out.out, out.err


async def send_invalid(client: TestClient) -> dict[str, str]:
    """Each invalid body sent once: {case: decision id}."""
    ids = {}
    for case, raw in INVALID_BODIES.items():
        status, headers, body = await send(client, None, raw=raw)
        assert status == 400 and body["error"]["code"] == 100, (case, body)
        ids[case] = headers["X-Sendgate-Decision-Id"]
    return ids


async def check_views(client: TestClient, ids: dict[str, str], config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The admin API, the review detail page, both exports and `sendgate log show --json` of each record: masked."""
    status, listed = await admin(client, "GET", "/decisions?decision=invalid")
    assert status == 200 and set(ids.values()) <= {r["id"] for r in listed["data"]}
    assert_hidden(orjson.dumps(listed).decode(), "admin API list")
    await login(client)
    for case, decision_id in ids.items():
        status, one = await admin(client, "GET", f"/decisions/{decision_id}")
        assert status == 200 and one["id"] == decision_id
        assert_hidden(orjson.dumps(one).decode(), f"{case}: admin API record")
        page = await (await client.get(f"/admin/decisions/{decision_id}")).text()
        assert decision_id in page
        assert_hidden(page, f"{case}: detail page")
        code, out, err = await cli(capsys, "-c", str(config), "log", "show", decision_id, "--json")
        assert code == 0, err
        assert json.loads(out)["id"] == decision_id
        assert_hidden(out, f"{case}: log show --json")
    exported = await (await client.get("/admin/export.jsonl?decision=invalid")).text()
    lines = {json.loads(line)["id"]: line for line in exported.splitlines()}
    for case, decision_id in ids.items():
        assert_hidden(lines[decision_id], f"{case}: JSON lines export")
    exported = await (await client.get("/admin/export.csv?decision=invalid")).text()
    rows = {row["id"]: row for row in csv.DictReader(io.StringIO(exported))}
    for case, decision_id in ids.items():
        # The CSV has no content column: the number shows only where a reason quotes it.
        assert_hidden(",".join(rows[decision_id].values()), f"{case}: CSV export", shown=case == "separators")
    code, out, _ = await cli(capsys, "-c", str(config), "log", "export", "--format", "csv", "--decision", "invalid")
    assert code == 0 and set(ids.values()) <= {row["id"] for row in csv.DictReader(io.StringIO(out))}
    assert_hidden(out, "log export --format csv")


# -- the rule ---------------------------------------------------------------------------


def test_every_number_that_could_be_a_phone_number_is_masked() -> None:
    assert mask_numbers(f"call {SEPARATED} or +{US_RECIPIENT}.") == f"call {MASKED} or {MASKED}."
    assert mask_numbers("1 650.555.1234, (650) 555-1234") == f"{MASKED}, ******1234"
    # Fewer than 7 digits is not a phone number: counts, codes and sizes stay readable.
    assert mask_numbers("order 123456 of 2 items, error 131047") == "order 123456 of 2 items, error 131047"
    assert mask_numbers("1234567") == "***4567"
    # Several numbers written together are masked as one run, never left because the run is long.
    assert mask_numbers(f"{US_RECIPIENT} {US_RECIPIENT}") == "*" * 18 + "1234"
    nested = {"a": [int(US_RECIPIENT), {"b": f"x {US_RECIPIENT}"}], US_RECIPIENT: 16505551234.0, "n": 5, "t": True}
    masked = mask_numbers(nested)
    assert masked == {"a": [MASKED, {"b": f"x {MASKED}"}], MASKED: MASKED, "n": 5, "t": True}
    assert mask_numbers(masked) == masked  # masking a masked record changes nothing


def test_a_known_recipient_is_masked_wherever_and_however_it_is_written() -> None:
    value = {"to": US_RECIPIENT, "text": {"body": "yours: +1 650 555 1234, not mine: 16505559999"}, "n": [16505551234]}
    assert mask_recipient_in(value, US_RECIPIENT) == {
        "to": MASKED, "text": {"body": f"yours: {MASKED}, not mine: 16505559999"}, "n": [MASKED]
    }  # fmt: skip
    bsuid = "US.13491208655302741918"  # not a phone number: masked as `mask_recipient` masks it, digits and all
    assert mask_recipient_in(f"to {bsuid} now", bsuid) == f"to US.{'*' * 20} now"


# -- the decision log -------------------------------------------------------------------


async def test_invalid_records_keep_no_number_when_masking_is_on(
    gateway_factory: GatewayFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client = await gateway_factory(log={"mask_recipients": True})
    ids = await send_invalid(client)
    for case, decision_id in ids.items():
        status, record = await admin(client, "GET", f"/decisions/{decision_id}")
        assert status == 200 and record["decision"] == "invalid" and record["recipient"] is None
        assert_hidden(orjson.dumps(record).decode(), f"{case}: admin API")
    status, listed = await admin(client, "GET", "/decisions?decision=invalid")
    assert status == 200 and {r["id"] for r in listed["data"]} == set(ids.values())
    assert_hidden(orjson.dumps(listed).decode(), "admin API list")
    for record in await store_of(client).decisions(DecisionQuery(decision="invalid")):
        assert_hidden(orjson.dumps(record.as_json()).decode(), f"stored {record.id}")  # in the store itself
    await check_views(client, ids, cli_config(tmp_path), capsys)


async def test_invalid_records_logged_before_masking_are_masked_when_shown(
    gateway_factory: GatewayFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = await gateway_factory()
    ids = await send_invalid(plain)
    stored = await store_of(plain).decisions(DecisionQuery(decision="invalid"))
    assert any(US_RECIPIENT in orjson.dumps(r.as_json()).decode() for r in stored)  # logged as they came
    await plain.close()
    masked = await gateway_factory(log={"mask_recipients": True})
    await check_views(masked, ids, cli_config(tmp_path), capsys)


async def test_the_cut_of_a_long_raw_body_never_leaves_part_of_a_number(gateway_factory: GatewayFactory) -> None:
    client = await gateway_factory(log={"mask_recipients": True})
    status, headers, _ = await send(client, None, raw=b"x" * 4090 + US_RECIPIENT.encode() + b" and more")
    assert status == 400
    record = await store_of(client).decision(headers["X-Sendgate-Decision-Id"])
    assert record is not None and record.content == "x" * 4090 + "******"  # masked whole, then cut at 4096


async def test_the_recipient_is_masked_wherever_the_content_carries_it(gateway_factory: GatewayFactory) -> None:
    client = await gateway_factory(log={"mask_recipients": True})
    body = text_message(to=SEPARATED, body=f"Call me back on {SEPARATED}, or +{US_RECIPIENT}")
    assert (await send(client, body))[0] == 400  # window closed: the content is kept
    status, listed = await admin(client, "GET", "/decisions")
    [record] = listed["data"]
    assert record["recipient"] == MASKED
    assert record["content"]["to"] == MASKED
    assert record["content"]["text"]["body"] == f"Call me back on {MASKED}, or {MASKED}"
    assert_hidden(orjson.dumps(record).decode(), "admin API")
    # Filtering by the number, however it is written, still finds it.
    for written in (US_RECIPIENT, SEPARATED):
        status, found = await admin(client, "GET", f"/decisions?recipient={written.replace('+', '%2B')}")
        assert status == 200 and [r["id"] for r in found["data"]] == [record["id"]]


# -- the server's log lines -------------------------------------------------------------


async def test_access_log_masks_numbers_in_paths(gateway_factory: GatewayFactory, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="aiohttp.access")
    client = await gateway_factory(log={"mask_recipients": True})
    consent = {"status": "opted_in", "categories": ["marketing"]}
    assert (await admin(client, "PUT", f"/consent/{US_RECIPIENT}", consent))[0] == 200
    assert (await admin(client, "GET", "/consent/%2B1%20(650)%20555-1234"))[0] == 200
    assert (await client.get(f"/admin/decisions?recipient={US_RECIPIENT}", allow_redirects=False)).status == 303
    await send(client, text_message())
    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert len(lines) == 4
    assert_hidden("\n".join(lines), "access log")
    assert lines[0].startswith(f"PUT /admin/v1/consent/{MASKED} 200")
    assert lines[1].startswith(f"GET /admin/v1/consent/{MASKED} 200")
    assert lines[2].startswith("GET /admin/decisions 303")
    assert lines[3].startswith("POST /v23.0/***********2922/messages 400")  # ids look like numbers too
    # Without masking the path is logged as it came (still without its query string).
    caplog.clear()
    plain = await gateway_factory()
    await admin(plain, "GET", f"/consent/{US_RECIPIENT}")
    assert [r.getMessage().rsplit(" ", 1)[0] for r in caplog.records if r.name == "aiohttp.access"] == [
        f"GET /admin/v1/consent/{US_RECIPIENT} 200"
    ]


async def test_engine_failures_are_logged_without_the_number(
    gateway_factory: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    class Failing:
        revision = "sha256:failing"

        async def evaluate(self, document: dict[str, Any]) -> Any:
            raise EngineError(f"builtin failed on {document['message']['recipient']}")

        async def health(self) -> dict[str, Any]:
            return {"ok": True, "engine": "embedded", "detail": None}

        async def params(self) -> dict[str, Any]:
            return {}

        async def close(self) -> None:
            return None

    caplog.set_level(logging.ERROR, logger="sendgate.gateway")
    client = await gateway_factory(policy_engine=Failing(), log={"mask_recipients": True})
    assert (await send(client, text_message(to=SEPARATED)))[0] == 503
    assert f"builtin failed on {MASKED}" in caplog.text
    assert_hidden(caplog.text, "server log")
    [record] = await store_of(client).decisions(DecisionQuery())
    assert record.decision == "error" and record.reasons[0]["message"] == f"builtin failed on {MASKED}"


def test_cli_messages_mask_the_number(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = cli_config(tmp_path)
    assert main(["-c", str(config), "inbound", "--phone-number-id", PHONE_NUMBER_ID, "--from", SEPARATED]) == 0
    assert main(["-c", str(config), "consent", "show", "+15550000000"]) == 1
    out = capsys.readouterr()
    assert out.out.startswith(f"window open for {MASKED} on {PHONE_NUMBER_ID}")
    assert out.err == "no consent records for *******0000\n"
    assert_hidden(out.out + out.err, "CLI")

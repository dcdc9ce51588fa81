"""Bad input gets a Graph 4xx, never a 500, and records tell the truth (issue 9).

Request lines aiohttp's client would normalize (absolute URIs, percent-encoded
paths) go over a raw socket; the fake Graph API's `received` shows what reached Meta.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib
from collections.abc import Callable
from typing import Any
from unittest import mock

import orjson
import pytest
from aiohttp import StreamReader
from hypothesis import given, settings
from hypothesis import strategies as st
from aiohttp.test_utils import TestClient, make_mocked_request

from sendgate.app import SEND_PATH as SEND_PATH_KEY
from sendgate.fakegraph import FakeGraph
from sendgate.gateway.body import BodyDecoder
from sendgate.gateway.send import parse_body
from sendgate.messages import InvalidMessage

from .conftest import (
    ADMIN_TOKEN,
    AFTERNOON,
    APP_TOKEN,
    PHONE_NUMBER_ID,
    US_RECIPIENT,
    WABA_ID,
    GatewayFactory,
    send,
    store_of,
    text_message,
)

SEND_PATH = f"/v23.0/{PHONE_NUMBER_ID}/messages"
WAMID = "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQTdCNTg5RjY1MEMyRTNGQjlEQQA="


async def raw_request(
    client: TestClient, method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    """One request written byte for byte, so nothing normalizes the request target."""
    lines = [f"{method} {target} HTTP/1.1", "Host: evil.example", "Connection: close",
             f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    await writer.drain()
    response = await reader.read()
    writer.close()
    head, _, payload = response.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    found = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        found[name.strip().lower()] = value.strip()
    try:
        parsed: Any = orjson.loads(payload)
    except orjson.JSONDecodeError:
        parsed = payload
    return int(status_line.split()[1]), found, parsed


async def _record(client: TestClient, decision_id: str) -> Any:
    await store_of(client).flush()
    record = await store_of(client).decision(decision_id)
    assert record is not None
    return record


async def _open_window(client: TestClient) -> None:
    await store_of(client).record_inbound(PHONE_NUMBER_ID, US_RECIPIENT, AFTERNOON - 60)


def _graph_error(payload: Any, code: int = 100) -> dict[str, Any]:
    assert isinstance(payload, dict), payload  # a Graph error, not aiohttp's plain text
    error: dict[str, Any] = payload["error"]
    assert error["code"] == code and error["message"].startswith(f"(#{code}) ")
    assert error["error_data"]["messaging_product"] == "whatsapp" and error["fbtrace_id"]
    return error


def _sent_headers(**extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {APP_TOKEN}", "Content-Type": "application/json", **extra}


# --- 1. absolute-URI request lines ----------------------------------------------------------


async def test_absolute_uri_send_is_a_graph_400_never_forwarded_nor_counted(
    gateway: TestClient, fake_graph: tuple[FakeGraph, str]
) -> None:
    fake, _ = fake_graph
    await _open_window(gateway)
    status, headers, payload = await raw_request(
        gateway, "POST", f"http://evil.example{SEND_PATH}", orjson.dumps(text_message()), _sent_headers()
    )
    assert status == 400
    assert "absolute" in _graph_error(payload)["message"]
    assert fake.received == []
    record = await _record(gateway, headers["x-sendgate-decision-id"])
    assert (record.decision, record.forwarded) == ("invalid", False)
    # Not in the send history: the next real send is not held back by the pair rate (131056).
    status, _, payload = await send(gateway, text_message())
    assert status == 200, payload
    assert len(fake.sent) == 1


@pytest.mark.parametrize(
    "path",
    [f"/v23.0/{WABA_ID}/message_templates", "/admin/v1/stats", "/healthz", "/admin/login"],
)
async def test_absolute_uri_is_refused_on_every_path(
    gateway: TestClient, fake_graph: tuple[FakeGraph, str], path: str
) -> None:
    status, _, payload = await raw_request(
        gateway, "GET", f"https://evil.example{path}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert status == 400
    _graph_error(payload)
    assert fake_graph[0].received == []


# --- 2. Content-Encoding ---------------------------------------------------------------------

_BODY = orjson.dumps(text_message())


def _deflate_raw(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    ("coding", "body"),
    [
        ("gzip", b"this is not gzip at all"),
        ("gzip", gzip.compress(_BODY)[:-12]),  # cut short
        ("gzip", gzip.compress(_BODY) + b"trailing junk"),
        ("deflate", b"\x78\x9c not deflate"),
        ("deflate", zlib.compress(_BODY)[:-6]),
        ("br", b"\xff\xff not brotli"),
        ("zstd", b"not zstd"),
        ("compress", _BODY),  # not a coding sendgate decodes: refused, not forwarded as if plain
        ("gzip, gzip", gzip.compress(gzip.compress(_BODY))),
    ],
)
async def test_a_body_that_does_not_decode_is_a_graph_400_logged_invalid(
    gateway: TestClient, fake_graph: tuple[FakeGraph, str], coding: str, body: bytes
) -> None:
    await _open_window(gateway)
    status, headers, payload = await raw_request(
        gateway, "POST", SEND_PATH, body, _sent_headers(**{"Content-Encoding": coding})
    )
    assert status == 400
    assert "Content-Encoding" in _graph_error(payload)["message"]
    assert fake_graph[0].received == []
    record = await _record(gateway, headers["x-sendgate-decision-id"])
    assert (record.decision, record.forwarded) == ("invalid", False)
    assert "Content-Encoding" in record.reasons[0]["message"]
    assert (await send(gateway, text_message()))[0] == 200  # and the gateway keeps serving


async def test_compressed_bodies_are_decoded_checked_and_forwarded_decoded(
    gateway_factory: GatewayFactory, fake_graph: tuple[FakeGraph, str]
) -> None:
    fake, _ = fake_graph
    client = await gateway_factory(max_body_bytes=64 * 1024)
    await _open_window(client)
    # The policy sees the decoded message: a banned term inside a gzip body is found.
    spam = orjson.dumps(text_message(body="Buy followers now"))
    status, _, payload = await raw_request(
        client, "POST", SEND_PATH, gzip.compress(spam), _sent_headers(**{"Content-Encoding": "gzip"})
    )
    assert status == 403 and payload["error"]["sendgate"]["reasons"][0]["rule"] == "content.banned_term"
    codings: list[tuple[str, Callable[[bytes], bytes]]] = [("GZIP", gzip.compress), ("x-gzip", gzip.compress), ("deflate", zlib.compress),
               ("deflate", _deflate_raw), ("identity", bytes)]
    for i, (coding, encode) in enumerate(codings):
        to = f"1650555000{i}"  # one recipient each: the pair rate allows one text at a time
        await store_of(client).record_inbound(PHONE_NUMBER_ID, to, AFTERNOON - 60)
        body = orjson.dumps(text_message(to=to))
        status, headers, payload = await raw_request(
            client, "POST", SEND_PATH, encode(body), _sent_headers(**{"Content-Encoding": coding})
        )
        assert status == 200, payload
        # Meta gets the decoded body, and no Content-Encoding header that would describe another one.
        assert fake.received[-1].body == orjson.loads(body)
        assert "Content-Encoding" not in fake.received[-1].headers
        record = await _record(client, headers["x-sendgate-decision-id"])
        assert (record.decision, record.forwarded, record.type) == ("allow", True, "text")
    fake.reset()
    # A compression bomb: 50 MiB of zeros in ~50 KB of gzip; decoding stops at max_body_bytes.
    bomb = gzip.compress(b'{"a": "' + b"0" * (50 * 1024 * 1024) + b'"}', compresslevel=9)
    status, headers, payload = await raw_request(
        client, "POST", SEND_PATH, bomb, _sent_headers(**{"Content-Encoding": "gzip"})
    )
    assert status == 400 and "65536" in _graph_error(payload)["message"]
    assert (await _record(client, headers["x-sendgate-decision-id"])).decision == "invalid"
    assert fake.received == []


async def test_passthrough_bodies_are_decoded_the_same_way(
    gateway_factory: GatewayFactory, fake_graph: tuple[FakeGraph, str]
) -> None:
    fake, _ = fake_graph
    client = await gateway_factory(passthrough=[{"method": "POST", "path": "/{phone_number_id}/register"}])
    target = f"/v23.0/{PHONE_NUMBER_ID}/register"
    body = b'{"messaging_product":"whatsapp","pin":"123456"}'
    await raw_request(client, "POST", target, gzip.compress(body), _sent_headers(**{"Content-Encoding": "x-gzip"}))
    assert fake.received[-1].body == orjson.loads(body)  # decoded, as for a send
    assert "Content-Encoding" not in fake.received[-1].headers
    fake.reset()
    for coding, broken in [("gzip", b"not gzip"), ("gzip", gzip.compress(body)[:-8]), ("br", b"x")]:
        status, _, payload = await raw_request(client, "POST", target, broken, _sent_headers(**{"Content-Encoding": coding}))
        assert status == 400 and "Content-Encoding" in _graph_error(payload)["message"]
        assert [r.status for r in fake.received if r.status is not None] == []  # nothing Meta could act on


async def test_paths_that_read_bodies_themselves_refuse_compressed_ones(gateway: TestClient) -> None:
    inbound = {"phone_number_id": PHONE_NUMBER_ID, "from": US_RECIPIENT, "timestamp": AFTERNOON - 60}
    body = gzip.compress(orjson.dumps(inbound))
    status, _, payload = await raw_request(
        gateway, "POST", "/admin/v1/inbound", body,
        {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert status == 400 and "send the body plain" in _graph_error(payload)["message"]
    status, _, payload = await send(gateway, text_message())
    assert status == 400 and payload["error"]["code"] == 131047  # the inbound message was not recorded


async def test_a_send_is_never_recorded_as_forwarded_when_its_upstream_url_cannot_be_built(
    gateway: TestClient, fake_graph: tuple[FakeGraph, str]
) -> None:
    # Behind app.py's request checks, straight at the send path: the URL is built before any record.
    await _open_window(gateway)
    payload = StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=asyncio.get_running_loop())
    payload.feed_data(orjson.dumps(text_message()))
    payload.feed_eof()
    request = make_mocked_request(
        "POST", f"http://evil.example{SEND_PATH}", headers=_sent_headers(), payload=payload,
        match_info={"version": "v23.0", "phone_number_id": PHONE_NUMBER_ID, "endpoint": "messages"},
    )
    response = await gateway.app[SEND_PATH_KEY].handle(request)
    assert response.status == 400
    record = await _record(gateway, response.headers["X-Sendgate-Decision-Id"])
    assert (record.decision, record.forwarded) == ("invalid", False)
    assert fake_graph[0].received == []
    assert (await send(gateway, text_message()))[0] == 200  # and it is not in the send history


# --- 4. status calls are exactly Meta's read receipt / typing indicator ---------------------


async def test_a_status_field_on_a_message_does_not_skip_the_message_rules(
    gateway: TestClient, fake_graph: tuple[FakeGraph, str]
) -> None:
    body = {**text_message(), "status": "read", "message_id": WAMID}  # window closed: a message is denied
    status, headers, payload = await send(gateway, body)
    assert status == 400 and payload["error"]["code"] == 131047
    assert fake_graph[0].received == []
    record = await _record(gateway, headers["X-Sendgate-Decision-Id"])
    assert (record.type, record.decision, record.forwarded) == ("text", "deny", False)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"text": {"body": "hello"}}, "text"),
        ({"recipient_type": "individual"}, "recipient_type"),
        ({"biz_opaque_callback_data": "x"}, "biz_opaque_callback_data"),
        ({"typing_indicator": {"type": "text", "text": {"body": "hi"}}}, "typing_indicator"),
        ({"typing_indicator": {"type": "audio"}}, "typing_indicator.type"),
    ],
)
async def test_a_status_call_with_anything_more_is_a_graph_400(
    gateway: TestClient, fake_graph: tuple[FakeGraph, str], extra: dict[str, Any], needle: str
) -> None:
    body = {"messaging_product": "whatsapp", "status": "read", "message_id": WAMID, **extra}
    status, headers, payload = await send(gateway, body)
    assert status == 400 and needle in _graph_error(payload)["message"]
    assert fake_graph[0].received == []
    assert (await _record(gateway, headers["X-Sendgate-Decision-Id"])).decision == "invalid"


# --- 5. messaging_product and duplicate keys -------------------------------------------------


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"messaging_product": None}, "The parameter messaging_product is required"),
        ({"messaging_product": "sms"}, "Param messaging_product must be one of {WHATSAPP} - got \"sms\""),
        ({"messaging_product": "WhatsApp"}, "got \"WhatsApp\""),
    ],
)
@pytest.mark.parametrize("kind", ["text", "status"])
async def test_messaging_product_must_be_whatsapp(
    gateway: TestClient, fake_graph: tuple[FakeGraph, str], change: dict[str, Any], needle: str, kind: str
) -> None:
    await _open_window(gateway)
    body: dict[str, Any] = (
        text_message() if kind == "text" else {"messaging_product": "whatsapp", "status": "read", "message_id": WAMID}
    )
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}
    status, headers, payload = await send(gateway, body)
    assert status == 400 and needle in _graph_error(payload)["message"]
    assert fake_graph[0].received == []
    assert (await _record(gateway, headers["X-Sendgate-Decision-Id"])).decision == "invalid"


@pytest.mark.parametrize(
    "raw",
    [
        # The policy would see the second `to`; Meta might send to the first.
        b'{"messaging_product":"whatsapp","to":"5511987654321","type":"text","to":"16505551234",'
        b'"text":{"body":"hi"}}',
        b'{"messaging_product":"whatsapp","to":"16505551234","type":"text","text":{"body":"buy followers",'
        b' "body": "hi"}}',
        b'{"messaging_product":"whatsapp","to":"16505551234","type":"template","template":{"name":"order_update",'
        b'"language":{"code":"en_US","code":"pt_BR"}}}',
        b'{"messaging_product":"whatsapp","to":"16505551234","type":"interactive","interactive":{"type":"button",'
        b'"body":{"text":"hi"},"action":{"buttons":[{"type":"reply","reply":{"id":"a","title":"Yes","title":"No"}}]}}}',
    ],
)
async def test_duplicate_json_keys_are_a_graph_400(
    gateway: TestClient, fake_graph: tuple[FakeGraph, str], raw: bytes
) -> None:
    await _open_window(gateway)
    status, headers, payload = await send(gateway, None, raw=raw)
    assert status == 400 and "duplicate key" in _graph_error(payload)["message"]
    assert fake_graph[0].received == []
    assert (await _record(gateway, headers["X-Sendgate-Decision-Id"])).decision == "invalid"


# --- 6. the gateway's own paths and encoded traversal are never relayed ----------------------


@pytest.mark.parametrize(
    "target",
    [
        "/Admin/v1/stats",
        "/ADMIN/V1/stats",
        "/admin%2Fv1/stats",
        "/admin%2fv1/stats",
        "/%2561dmin/v1/stats",
        "/v23.0/%2e%2e/admin/v1/stats",
        "/v23.0/admin/v1/stats",
        "/Admin/decisions",
        "/Webhook",
        "/webhook/x",
        "/Healthz",
        "/METRICS",
        "/readyz/x",
    ],
)
async def test_the_gateways_own_paths_are_never_relayed(
    gateway: TestClient, fake_graph: tuple[FakeGraph, str], target: str
) -> None:
    status, _, payload = await raw_request(gateway, "GET", target, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert status == 404
    message = _graph_error(payload)["message"]
    assert "sendgate's own path" in message or "refusing path" in message
    assert fake_graph[0].received == []


@pytest.mark.parametrize(
    "target",
    [
        f"/v23.0/{WABA_ID}/%2e%2e/{PHONE_NUMBER_ID}",
        f"/v23.0/{WABA_ID}/%2E%2e/{PHONE_NUMBER_ID}",
        f"/v23.0/{WABA_ID}/%2e/message_templates",
        f"/v23.0/{WABA_ID}/%252e%252e/{PHONE_NUMBER_ID}",
        f"/v23.0/{WABA_ID}/%25252e%25252e/{PHONE_NUMBER_ID}",
        "/%2F%2Fevil.example/steal",
        "/%2f/evil.example/steal",
        f"/v23.0/{WABA_ID}%2F%2Fmessage_templates",
        "/v23.0/%5Cevil.example/x",
        "/v23.0/%5cevil.example/x",
        "/v23.0/%255Cevil.example/x",
    ],
)
async def test_percent_encoded_traversal_is_refused_like_its_raw_form(
    gateway: TestClient, fake_graph: tuple[FakeGraph, str], target: str
) -> None:
    status, _, payload = await raw_request(gateway, "GET", target, headers={"Authorization": f"Bearer {APP_TOKEN}"})
    assert status == 404
    assert "refusing path" in _graph_error(payload)["message"]
    assert fake_graph[0].received == []


# --- the building blocks ---------------------------------------------------------------------

_TRICKY = st.sampled_from(list('ab:"\\/ é\u2028{}[],'))


class _Pairs(list):  # type: ignore[type-arg]
    """An object as a list of (key, value) pairs, so that a key may repeat."""


_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(_TRICKY, max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.lists(st.tuples(st.text(_TRICKY, max_size=3), inner), max_size=3).map(_Pairs),
    max_leaves=16,
)


def _dump(value: Any, item: str, key: str, ascii_only: bool) -> str:
    if isinstance(value, _Pairs):
        return "{" + item.join(
            json.dumps(k, ensure_ascii=ascii_only) + key + _dump(v, item, key, ascii_only) for k, v in value
        ) + "}"
    if isinstance(value, list):
        return "[" + item.join(_dump(v, item, key, ascii_only) for v in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only)


def _repeats_a_key(value: Any) -> bool:
    if isinstance(value, _Pairs):
        keys = [k for k, _ in value]
        return len(set(keys)) < len(keys) or any(_repeats_a_key(v) for _, v in value)
    return isinstance(value, list) and any(_repeats_a_key(v) for v in value)


@settings(max_examples=400, deadline=None)
@given(
    value=st.lists(st.tuples(st.text(_TRICKY, max_size=3), _VALUES), max_size=4).map(_Pairs),
    item=st.sampled_from([",", ", ", " ,\n "]),
    key=st.sampled_from([":", ": ", " : ", "\t:"]),
    ascii_only=st.booleans(),
    escaped_slashes=st.booleans(),
)
def test_duplicate_keys_are_found_exactly_whatever_the_strings_hold(
    value: _Pairs, item: str, key: str, ascii_only: bool, escaped_slashes: bool
) -> None:
    raw = _dump(value, item, key, ascii_only)
    if escaped_slashes:  # PHP's json_encode writes "\/"; "/" only ever occurs inside strings
        raw = raw.replace("/", "\\/")
    if _repeats_a_key(value):
        with pytest.raises(InvalidMessage, match="duplicate key"):
            parse_body(raw.encode(), 64)
    else:
        assert parse_body(raw.encode(), 64) == json.loads(raw)


def test_duplicates_are_found_at_the_deepest_level_the_depth_limit_allows() -> None:
    with pytest.raises(InvalidMessage, match="duplicate key 'a'"):
        parse_body(b"[" * 31 + b'{"a":1,"a":2}' + b"]" * 31, 32)
    assert parse_body(b"[" * 31 + b'{"a":1,"b":2}' + b"]" * 31, 32) is not None
    for raw in (b"[" * 33 + b"]" * 33, b'{"a":' * 33 + b"1" + b"}" * 33, b"[" * 32 + b"{}" + b"]" * 32):
        with pytest.raises(InvalidMessage, match="nested deeper than 32"):
            parse_body(raw, 32)


def test_decoding_is_incremental_and_bounded() -> None:
    body = orjson.dumps(text_message())
    decoder = BodyDecoder("gzip")
    packed = gzip.compress(body)
    assert b"".join(piece for i in range(len(packed)) for piece in decoder.decode(packed[i:i + 1])) == body
    decoder.finish()
    bomb = BodyDecoder("gzip").decode(gzip.compress(b"0" * (8 * 1024 * 1024)))
    assert max(len(next(bomb)) for _ in range(10)) <= 64 * 1024  # one small chunk never expands all at once

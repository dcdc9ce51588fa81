"""Non-send Graph paths: forwarded only when listed, and only ever to the configured upstream."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from sendgate.config import PassthroughRule
from sendgate.fakegraph import FakeGraph
from sendgate.gateway.passthrough import rule_matches
from sendgate.gateway.upstream import UnsafePath, Upstream

from .conftest import APP_TOKEN, CATALOG, PHONE_NUMBER_ID, WABA_ID, GatewayFactory

AUTH = {"Authorization": f"Bearer {APP_TOKEN}"}


@pytest.mark.parametrize(
    ("rule", "method", "path", "expected"),
    [
        (PassthroughRule("GET", "*"), "GET", "/v23.0/123/message_templates", True),
        (PassthroughRule("GET", "*"), "POST", "/v23.0/123/message_templates", False),
        (PassthroughRule("POST", "/{phone_number_id}/media"), "POST", "/v23.0/123/media", True),
        (PassthroughRule("POST", "/{phone_number_id}/media"), "POST", "/123/media", True),
        (PassthroughRule("POST", "/{phone_number_id}/media"), "POST", "/v23.0/123/media/extra", False),
        (PassthroughRule("POST", "/{phone_number_id}/media"), "POST", "/v23.0/123/register", False),
        (PassthroughRule("*", "/{waba_id}/message_templates"), "DELETE", "/v26.0/9/message_templates", True),
    ],
)
def test_rule_matching(rule: PassthroughRule, method: str, path: str, expected: bool) -> None:
    assert rule_matches(rule, method, path) is expected


async def test_listed_paths_are_forwarded(gateway: TestClient, fake_graph: tuple[FakeGraph, str]) -> None:
    fake, _ = fake_graph
    fake.load_templates({WABA_ID: CATALOG})
    response = await gateway.get(f"/v23.0/{WABA_ID}/message_templates?limit=2", headers=AUTH)
    assert response.status == 200
    body = await response.json()
    assert len(body["data"]) == 2 and "next" in body["paging"]
    assert "limit=2" in fake.received[-1].query
    form = aiohttp.FormData({"messaging_product": "whatsapp", "type": "image/png"})
    form.add_field("file", b"\x89PNG fake image bytes", filename="a.png", content_type="image/png")
    response = await gateway.post(f"/v23.0/{PHONE_NUMBER_ID}/media", data=form, headers=AUTH)
    assert response.status == 200 and (await response.json())["id"].isdigit()


async def test_unlisted_paths_get_a_graph_404(gateway: TestClient, fake_graph: tuple[FakeGraph, str]) -> None:
    response = await gateway.post(f"/v23.0/{PHONE_NUMBER_ID}/register", json={"pin": "123456"}, headers=AUTH)
    assert response.status == 404
    body = await response.json()
    assert body["error"]["code"] == 100 and "not in passthrough" in body["error"]["message"]
    assert fake_graph[0].received == []


async def test_custom_passthrough_list(gateway_factory: GatewayFactory, fake_graph: tuple[FakeGraph, str]) -> None:
    client = await gateway_factory(passthrough=[{"method": "POST", "path": "/{phone_number_id}/register"}])
    response = await client.post(f"/v23.0/{PHONE_NUMBER_ID}/register", json={"pin": "1"}, headers=AUTH)
    assert len(fake_graph[0].received) == 1  # forwarded (the fake has no such path and says so)
    assert (await response.json())["error"]["code"] == 2500
    assert (await client.get(f"/v23.0/{WABA_ID}/message_templates", headers=AUTH)).status == 404  # GET not listed


@pytest.mark.parametrize(
    "path",
    [
        "//evil.example/steal", "/v23.0/../../evil", "/\\evil.example/x", "/v23.0/./x", "/v23.0/1//media",
        # percent-encoded forms, at any depth of encoding, are the same paths
        "/v23.0/%2e%2e/evil", "/v23.0/%2E%2e/evil", "/v23.0/.%2e/evil", "/v23.0/%2e/x", "/%2F%2Fevil.example/x",
        "/%2f/evil.example", "/v23.0/1%2F%2Fmedia", "/%5Cevil.example/x", "/%5cevil.example/x",
        "/v23.0/%252e%252e/evil", "/v23.0/%25252E%25252E/evil", "/%255C%255Cevil", "/v23.0/%2525252525252e/x",
    ],
)
def test_upstream_urls_never_change_host(path: str) -> None:
    upstream = Upstream("https://graph.facebook.com", 1, session=None)  # type: ignore[arg-type]
    with pytest.raises(UnsafePath):
        upstream.url_for(path)
    assert str(upstream.url_for("/v23.0/1/media?x=1")) == "https://graph.facebook.com/v23.0/1/media?x=1"
    # Encoded characters that change nothing about where the path goes still pass, as sent.
    assert str(upstream.url_for("/v23.0/1/%6Dedia?q=..%2F")) == "https://graph.facebook.com/v23.0/1/%6Dedia?q=..%2F"


def test_judged_paths_are_remembered_but_an_unsafe_one_never_is() -> None:
    import sendgate.gateway.upstream as upstream_module

    upstream = Upstream("https://graph.facebook.com", 1, session=None)  # type: ignore[arg-type]
    safe = "/v23.0/1/messages"
    assert upstream.url_for(safe) is upstream.url_for(safe)  # the second answer is the remembered URL
    with_query = "/v23.0/1/media?access_token=secret"
    assert str(upstream.url_for(with_query)) == "https://graph.facebook.com" + with_query
    assert with_query not in upstream._safe  # a query may hold a token: judged each time, never kept
    for _ in range(2):  # refused every time, not remembered as judged
        with pytest.raises(UnsafePath):
            upstream.url_for("/v23.0/%2e%2e/evil")
    for i in range(3 * upstream_module._SAFE_PATHS):  # paths from clients: the memory stays bounded
        upstream.url_for(f"/v23.0/{i}/messages")
    assert len(upstream._safe) <= upstream_module._SAFE_PATHS
    assert str(upstream.url_for(safe)) == "https://graph.facebook.com/v23.0/1/messages"


@pytest.mark.parametrize("target", ["//evil.example/steal", "http://evil.example/steal"])
async def test_proxy_style_requests_are_not_relayed(
    gateway: TestClient, fake_graph: tuple[FakeGraph, str], target: str
) -> None:
    # A client trying to use the gateway as an open forward proxy, on a raw socket.
    reader, writer = await asyncio.open_connection(gateway.host, gateway.port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    status_line = (await reader.readline()).decode()
    writer.close()
    assert status_line.split()[1] in ("400", "404")
    assert fake_graph[0].received == []

"""The media rules end to end: an upload through the gateway to the fake Graph API, then sends by
that id (and by link), on each engine and backend: HTTP status, Graph code and the record."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from sendgate.fakegraph import FakeGraph

from .conftest import APP_TOKEN, ENGINES_AND_BACKENDS, PHONE_NUMBER_ID, US_RECIPIENT, GatewayFactory, send, store_of
from .test_media_upload import ANIMATED_WEBP, PNG, STILL_WEBP, form
from .test_rules_e2e import _expect_rejection, _record, _user_wrote

BOUNDARY = "----sendgate7MA4YWxkTrZu0gW"
MB = 1024 * 1024


@pytest.fixture(params=ENGINES_AND_BACKENDS, ids="-".join)
def gateway_kind(request: pytest.FixtureRequest) -> tuple[str, str]:
    """Every test here runs on the embedded engine and a real OPA server on SQLite, and on PostgreSQL."""
    kind: tuple[str, str] = request.param
    return kind


async def _upload(client: TestClient, file: bytes, content_type: str) -> str:
    """Upload through the gateway, as an app does; the media id Meta (the fake) answered."""
    response = await client.post(
        f"/v23.0/{PHONE_NUMBER_ID}/media",
        data=form(file, content_type=content_type, declared=content_type, boundary=BOUNDARY),
        headers={"Authorization": f"Bearer {APP_TOKEN}", "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    assert response.status == 200
    media_id = (await response.json())["id"]
    assert isinstance(media_id, str)
    return media_id


def _media_message(kind: str, media: dict[str, Any], to: str = US_RECIPIENT) -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to, "type": kind, kind: media}


async def _forwarded(client: TestClient, fake: FakeGraph, body: dict[str, Any]) -> None:
    status, headers, payload = await send(client, body)
    assert status == 200, payload
    assert fake.received[-1].body == body
    record = await _record(client, headers["X-Sendgate-Decision-Id"])
    assert (record.decision, record.forwarded) == ("allow", True)


async def test_a_send_by_an_uploaded_id_is_judged_on_the_upload(
    gateway: TestClient, fake_graph: tuple[FakeGraph, str]
) -> None:
    fake, _ = fake_graph
    await _user_wrote(gateway, 600)
    small = await _upload(gateway, PNG, "image/png")
    await _forwarded(gateway, fake, _media_message("image", {"id": small, "caption": "Your receipt"}))

    big = await _upload(gateway, PNG + bytes(5 * MB), "image/png")  # over the 5 MB image limit
    payload = await _expect_rejection(gateway, fake, _media_message("image", {"id": big}), status=400, code=131053,
                                      rule="media.size")  # fmt: skip
    reason = payload["error"]["sendgate"]["reasons"][0]
    assert (reason["kind"], reason["size"], reason["max_bytes"]) == ("image", len(PNG) + 5 * MB, 5 * MB)
    assert payload["error"]["message"].startswith(f"(#131053) media {big} is {len(PNG) + 5 * MB} bytes")

    pdf = await _upload(gateway, b"%PDF-1.7 " + bytes(100), "application/pdf")
    payload = await _expect_rejection(gateway, fake, _media_message("image", {"id": pdf}), status=400, code=131053,
                                      rule="media.type")  # fmt: skip
    assert payload["error"]["sendgate"]["reasons"][0]["mime_types"] == ["application/pdf"]
    await _forwarded(gateway, fake, _media_message("document", {"id": pdf, "filename": "receipt.pdf"}))


async def test_stickers_by_id_get_the_static_or_animated_limit(
    gateway: TestClient, fake_graph: tuple[FakeGraph, str]
) -> None:
    fake, _ = fake_graph
    await _user_wrote(gateway, 600)
    still = await _upload(gateway, STILL_WEBP + bytes(150 * 1024), "image/webp")  # over 100 KB, still
    moving = await _upload(gateway, ANIMATED_WEBP + bytes(150 * 1024), "image/webp")  # under 500 KB, animated
    await _expect_rejection(gateway, fake, _media_message("sticker", {"id": still}), status=400, code=131053,
                            rule="media.size")  # fmt: skip
    await _forwarded(gateway, fake, _media_message("sticker", {"id": moving}))
    await _expect_rejection(gateway, fake, _media_message("image", {"id": moving}), status=400, code=131053,
                            rule="media.type")  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "link"),
    [
        ("image", "https://cdn.acme.example/promo.gif"),
        ("image", "https://cdn.acme.example/promo.WEBP?v=3"),
        ("image", "https://cdn.acme.example/terms.pdf"),
        ("audio", "https://cdn.acme.example/voice.opus"),
        ("video", "https://cdn.acme.example/clip.mov"),
        ("sticker", "https://cdn.acme.example/s.png"),
        ("document", "https://cdn.acme.example/export.zip"),
    ],
)
async def test_sends_by_link_with_a_wrong_extension(gateway: TestClient, fake_graph: tuple[FakeGraph, str],
                                                    kind: str, link: str) -> None:
    await _user_wrote(gateway, 600)
    payload = await _expect_rejection(gateway, fake_graph[0], _media_message(kind, {"link": link}), status=400,
                                      code=131053, rule="media.type")  # fmt: skip
    assert f"link {link} ends in ." in payload["error"]["error_data"]["details"]


@pytest.mark.parametrize(
    ("kind", "link"),
    [
        ("image", "https://cdn.acme.example/a.JPG"),
        ("audio", "https://cdn.acme.example/a.mp4"),  # audio/mp4 fits
        ("document", "https://cdn.acme.example/a.pdf#page=2"),
        ("image", "https://cdn.acme.example/render?id=7"),  # no extension: allowed on what is known
        ("video", "https://cdn.acme.example/clip.unknownext"),
    ],
)
async def test_sends_by_link_that_fit_or_say_nothing_are_forwarded(
    gateway: TestClient, fake_graph: tuple[FakeGraph, str], kind: str, link: str
) -> None:
    await _user_wrote(gateway, 600)
    await _forwarded(gateway, fake_graph[0], _media_message(kind, {"link": link}))


async def test_an_id_not_uploaded_through_sendgate_is_allowed(
    gateway: TestClient, fake_graph: tuple[FakeGraph, str]
) -> None:
    await _user_wrote(gateway, 600)
    await _forwarded(gateway, fake_graph[0], _media_message("image", {"id": "1480000000000001"}))
    # Uploaded for another number: this one's send knows nothing of it either.
    await store_of(gateway).record_media("106540352242999", "1480000000000002", "application/pdf", 10, 0.0)
    await _forwarded(gateway, fake_graph[0], _media_message("image", {"id": "1480000000000002"}))


async def test_a_burst_of_uploads_and_sends_forwards_exactly_the_good_ones(
    gateway_factory: GatewayFactory, fake_graph: tuple[FakeGraph, str]
) -> None:
    # 70 MB relayed at once: on a slow machine that outlasts the suite's 2 s upstream timeout, and
    # this test is about which sends are forwarded, not about timeouts.
    gateway = await gateway_factory(upstream_timeout=120)
    fake, _ = fake_graph
    recipients = [f"1650555{n:04d}" for n in range(20)]  # one each: the pair rate stays out of it
    for recipient in recipients:
        await _user_wrote(gateway, 600, recipient)
    ids = await asyncio.gather(*(_upload(gateway, PNG + bytes(n * MB), "image/png") for n in (1, 6) * 10))
    before = len(fake.received)
    answers = await asyncio.gather(*(send(gateway, _media_message("image", {"id": i}, to))
                                     for i, to in zip(ids, recipients)))
    assert [status for status, _, _ in answers] == [200, 400] * 10
    assert len(fake.received) == before + 10
    assert {r.body["image"]["id"] for r in fake.received[before:]} == set(ids[::2])

"""Media uploads through the passthrough: relayed byte for byte, read on the way, kept by id."""

from __future__ import annotations

import gzip
import hashlib
import random

import pytest
from aiohttp.test_utils import TestClient

from sendgate.app import CONFIG
from sendgate.facts import build_input, link_extension
from sendgate.fakegraph import FakeGraph
from sendgate.gateway.media import UploadSniffer, multipart_boundary, upload_phone_number_id, webp_animated
from sendgate.messages import normalize

from .conftest import APP_TOKEN, AFTERNOON, PHONE_NUMBER_ID, store_of

BOUNDARY = "----sendgate7MA4YWxkTrZu0gW"
# The first bytes of real WebP files: a still one (lossy `VP8 `) and an animated one (`VP8X`, flag 0x02).
STILL_WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 \x18\x00\x00\x00" + bytes(100)
ANIMATED_WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8X\x0a\x00\x00\x00\x12\x00\x00\x00" + bytes(100)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)


def form(file: bytes, *, content_type: str | None = "image/png", declared: str | None = "image/png",
         boundary: str = BOUNDARY, filename: str = "a.png", close: bool = True) -> bytes:
    """A multipart/form-data body as curl writes one (`-F file=@a.png;type=... -F type=...`)."""
    parts = [(b'Content-Disposition: form-data; name="messaging_product"', b"whatsapp")]
    if declared is not None:
        parts.append((b'Content-Disposition: form-data; name="type"', declared.encode()))
    headers = f'Content-Disposition: form-data; name="file"; filename="{filename}"'.encode()
    if content_type is not None:
        headers += f"\r\nContent-Type: {content_type}".encode()
    parts.append((headers, file))
    delimiter = b"--" + boundary.encode()
    body = b"".join(delimiter + b"\r\n" + head + b"\r\n\r\n" + data + b"\r\n" for head, data in parts)
    return body + (delimiter + b"--\r\n" if close else b"")


def sniff(body: bytes, sizes: list[int] | None = None, boundary: str = BOUNDARY) -> UploadSniffer:
    sniffer = UploadSniffer(boundary)
    at = 0
    for size in sizes or [len(body)]:
        sniffer.feed(body[at:at + size])
        at += size
    sniffer.feed(body[at:])
    sniffer.end()
    return sniffer


def test_the_form_is_read_whatever_the_chunking() -> None:
    # The delimiter text inside the file, bar its leading line end, is file content.
    file = PNG + b"--" + BOUNDARY.encode() + b"-- not a delimiter \r\n--" + BOUNDARY[:-1].encode() + bytes(5000)
    body = form(file)
    whole = sniff(body).result()
    assert whole is not None
    assert (whole.mime_type, whole.declared_type, whole.size, whole.animated) == ("image/png", "image/png", len(file), None)
    assert sniff(body, [1] * len(body)).result() == whole  # byte by byte
    rng = random.Random(11)
    for _ in range(50):
        sizes = [rng.randint(1, 200) for _ in range(rng.randint(1, 60))]
        assert sniff(body, sizes).result() == whole


def test_preamble_epilogue_padding_and_missing_headers() -> None:
    body = b"preamble text\r\n" + form(b"abc", content_type=None, declared=None).replace(
        b"--" + BOUNDARY.encode() + b"\r\n", b"--" + BOUNDARY.encode() + b" \t\r\n", 1
    ) + b"epilogue, ignored"
    upload = sniff(body).result()
    assert upload is not None and (upload.mime_type, upload.declared_type, upload.size) == (None, None, 3)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (form(PNG, close=False), "before the form's closing boundary"),
        (form(PNG).replace(b'name="file"', b'name="file"\r\nX-Long: ' + b"x" * 20000), "headers are longer"),
        (form(PNG).replace(b'name="type"', b'name="file"'), "2 file parts"),
        (form(PNG).replace(b'name="file"', b'name="document"'), "0 file parts"),
        (b"--" + BOUNDARY.encode() + b"garbage\r\n" + bytes(10), "something else than a line end"),
        (b"not a form at all", "before the form's closing boundary"),
    ],
)
def test_malformed_forms_give_no_upload(body: bytes, problem: str) -> None:
    sniffer = sniff(body)
    assert sniffer.result() is None
    assert sniffer.problem is not None and problem in sniffer.problem


def test_webp_animation_flag() -> None:
    assert webp_animated(STILL_WEBP) is False
    assert webp_animated(b"RIFF\x00\x00\x00\x00WEBPVP8L" + bytes(10)) is False
    assert webp_animated(ANIMATED_WEBP) is True
    assert webp_animated(ANIMATED_WEBP[:20] + b"\x10" + ANIMATED_WEBP[21:]) is False  # VP8X, alpha only
    assert webp_animated(PNG) is None
    assert webp_animated(b"RIFF") is None


def test_which_requests_are_uploads() -> None:
    assert upload_phone_number_id("POST", "/v23.0/106540352242922/media") == "106540352242922"
    assert upload_phone_number_id("POST", "/106540352242922/media") == "106540352242922"
    assert upload_phone_number_id("GET", "/v23.0/106540352242922/media") is None
    assert upload_phone_number_id("POST", "/v23.0/106540352242922/media/x") is None
    assert upload_phone_number_id("POST", "/v23.0/1480000000000001") is None
    assert multipart_boundary(f'multipart/form-data; boundary="{BOUNDARY}"') == BOUNDARY
    assert multipart_boundary(f"multipart/form-data; boundary={BOUNDARY}") == BOUNDARY
    assert multipart_boundary("multipart/form-data") is None
    assert multipart_boundary("application/json") is None
    assert multipart_boundary(None) is None


async def _upload(client: TestClient, body: bytes, *, boundary: str = BOUNDARY, phone: str = PHONE_NUMBER_ID,
                  headers: dict[str, str] | None = None) -> tuple[int, dict[str, object]]:
    sent = {"Authorization": f"Bearer {APP_TOKEN}", "Content-Type": f"multipart/form-data; boundary={boundary}"}
    response = await client.post(f"/v23.0/{phone}/media", data=body, headers={**sent, **(headers or {})})
    return response.status, await response.json()


async def test_an_upload_is_relayed_byte_identical_and_its_id_kept(
    gateway: TestClient, fake_graph: tuple[FakeGraph, str]
) -> None:
    fake, _ = fake_graph
    file = PNG + random.Random(3).randbytes(6 * 1024 * 1024)  # over the 5 MB image limit, streamed in pieces
    body = form(file)
    status, answer = await _upload(gateway, body)
    assert status == 200, answer
    received = fake.received[-1]
    assert isinstance(received.body, bytes) and hashlib.sha256(received.body).digest() == hashlib.sha256(body).digest()
    assert received.headers["Content-Type"] == f"multipart/form-data; boundary={BOUNDARY}"
    media_id = answer["id"]
    assert isinstance(media_id, str) and fake.media[media_id]["file_size"] == str(len(file))
    facts = await store_of(gateway).media_facts(PHONE_NUMBER_ID, media_id, AFTERNOON)
    assert facts is not None
    assert (facts.mime_type, facts.declared_type, facts.size, facts.animated) == ("image/png", "image/png", len(file), None)
    assert facts.uploaded_at == AFTERNOON  # the gateway's clock


async def test_a_sticker_upload_keeps_its_animation(gateway: TestClient) -> None:
    status, answer = await _upload(gateway, form(ANIMATED_WEBP, content_type="image/webp", declared="image/webp"))
    assert status == 200
    facts = await store_of(gateway).media_facts(PHONE_NUMBER_ID, str(answer["id"]), AFTERNOON)
    assert facts is not None and facts.animated is True and facts.mime_type == "image/webp"


async def test_a_gzipped_upload_is_read_as_meta_gets_it(gateway: TestClient, fake_graph: tuple[FakeGraph, str]) -> None:
    body = form(b"%PDF-1.7 " + bytes(3000), content_type="application/pdf", declared="application/pdf")
    status, answer = await _upload(gateway, gzip.compress(body), headers={"Content-Encoding": "gzip"})
    assert status == 200, answer
    assert fake_graph[0].received[-1].body == body  # decoded, as every body sendgate forwards
    facts = await store_of(gateway).media_facts(PHONE_NUMBER_ID, str(answer["id"]), AFTERNOON)
    assert facts is not None and (facts.mime_type, facts.size) == ("application/pdf", 3009)


async def test_a_malformed_form_is_still_relayed_and_nothing_kept(
    gateway: TestClient, fake_graph: tuple[FakeGraph, str]
) -> None:
    fake, _ = fake_graph
    body = form(PNG, close=False)  # cut off before its closing boundary
    status, answer = await _upload(gateway, body)
    assert fake.received[-1].body == body  # Meta judges it: sendgate relays it as it came
    assert status == 200 and isinstance(answer["id"], str)  # the fake is lenient; Meta may not be
    assert await store_of(gateway).media_facts(PHONE_NUMBER_ID, answer["id"], AFTERNOON) is None


@pytest.mark.parametrize(
    "body",
    [
        form(PNG).replace(b"whatsapp", b"telegram"),  # Meta wants messaging_product "whatsapp"
        form(PNG, content_type="application/octet-stream"),  # and a file type it takes
    ],
)
async def test_metas_refusal_keeps_nothing(gateway: TestClient, fake_graph: tuple[FakeGraph, str], body: bytes) -> None:
    fake, _ = fake_graph
    status, answer = await _upload(gateway, body)
    assert status == 400 and answer["error"]["code"] == 100  # type: ignore[index]
    assert fake.media == {}


@pytest.mark.parametrize(
    ("link", "extension"),
    [
        ("https://cdn.acme.example/a/terms.PDF?v=2#p3", "pdf"),
        ("https://cdn.acme.example/clip.tar.gz", "gz"),
        ("https://cdn.acme.example/render?file=a.pdf", None),  # the query is not the path
        ("https://cdn.acme.example/.hidden", None),
        ("https://cdn.acme.example/dir.d/", None),
        ("https://cdn.acme.example/a.verylongextension", None),
        ("https://[::1/a.png", None),  # unreadable
        (None, None),
    ],
)
def test_link_extensions(link: str | None, extension: str | None) -> None:
    assert link_extension(link) == extension


async def test_the_input_document_carries_the_media_facts(gateway: TestClient) -> None:
    config, store = gateway.app[CONFIG], store_of(gateway)
    status, answer = await _upload(gateway, form(STILL_WEBP, content_type="image/webp; q=1", declared="IMAGE/WEBP"))
    assert status == 200
    media_id = str(answer["id"])

    async def media_of(body: dict[str, object]) -> object:
        document = await build_input(config, store, "messages", "v23.0", PHONE_NUMBER_ID, normalize(body), AFTERNOON)
        return document["message"]["media"]

    sticker = {"messaging_product": "whatsapp", "to": "16505551234", "type": "sticker", "sticker": {"id": media_id}}
    assert await media_of(sticker) == {
        "kind": "sticker", "id": media_id, "link": None, "extension": None, "known": True,
        "mime_type": "image/webp", "declared_type": "image/webp", "size": len(STILL_WEBP), "animated": False,
    }  # fmt: skip
    image = {"messaging_product": "whatsapp", "to": "16505551234", "type": "image",
             "image": {"link": "https://cdn.acme.example/a.JPG"}}  # fmt: skip
    assert await media_of(image) == {
        "kind": "image", "id": None, "link": "https://cdn.acme.example/a.JPG", "extension": "jpg", "known": False,
        "mime_type": None, "declared_type": None, "size": None, "animated": None,
    }  # fmt: skip

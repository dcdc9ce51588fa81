"""Media uploads through the passthrough (`POST /{phone_number_id}/media`): what the file is.

The upload is relayed to Meta byte for byte as it streams in; `UploadSniffer` reads the
multipart form on the way (the part headers, the `type` field, the file part's byte count and
first bytes) and keeps nothing else, so a 100 MB upload costs a few hundred bytes here. When Meta
answers with a media id, `record_upload` keeps the id's type and size in the media catalog
(`MediaCatalog`), for the send path's facts (docs/input.md `message.media`).

A body that is not a well-formed multipart form (no boundary, an unterminated part, headers too
long, two file parts) is still relayed as it is: Meta judges uploads, and answers its own error.
sendgate then keeps nothing, and a send of whatever id Meta gave is judged on what is known.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.message import Message
from email.utils import collapse_rfc2231_value

import orjson

from sendgate.state import MediaCatalog, StoreError

__all__ = [
    "Upload", "UploadSniffer", "answered_media_id", "multipart_boundary", "record_upload", "upload_phone_number_id",
    "webp_animated",
]  # fmt: skip

log = logging.getLogger("sendgate")

_UPLOAD_PATH = re.compile(r"^(?:/v\d+\.\d+)?/(\d+)/media/?$")
_HEADERS_LIMIT = 16 * 1024  # one part's headers: more is no form Meta takes
_FIELD_LIMIT = 1024  # the bytes kept of the `type` and `messaging_product` fields
_HEAD = 32  # the file's first bytes: enough for a WebP's animation flag (byte 20)
_FIELDS = frozenset({"type", "messaging_product"})


def upload_phone_number_id(method: str, plain_path: str) -> str | None:
    """The phone number id of a media upload (`POST [/vX.Y]/{id}/media`), else None."""
    if method != "POST":
        return None
    match = _UPLOAD_PATH.match(plain_path)
    return match.group(1) if match else None


def multipart_boundary(content_type: str | None) -> str | None:
    """The boundary of a `multipart/form-data` Content-Type header, or None."""
    if not content_type:
        return None
    header = Message()
    header["content-type"] = content_type
    if header.get_content_type() != "multipart/form-data":
        return None
    boundary = header.get_param("boundary")
    if isinstance(boundary, tuple):
        boundary = collapse_rfc2231_value(boundary)
    return boundary if isinstance(boundary, str) and 0 < len(boundary) <= 200 else None


def webp_animated(head: bytes) -> bool | None:
    """Whether a file starting with `head` is an animated WebP; None when it is no WebP.

    A WebP is `RIFF....WEBP` then its first chunk: `VP8 ` or `VP8L` are still images; `VP8X`
    carries flags, of which 0x02 says the file has an animation (Google's WebP container spec)."""
    if len(head) < 16 or head[:4] != b"RIFF" or head[8:12] != b"WEBP":
        return None
    chunk = head[12:16]
    if chunk in (b"VP8 ", b"VP8L"):
        return False
    if chunk == b"VP8X" and len(head) > 20:
        return bool(head[20] & 0x02)
    return None


@dataclass(frozen=True)
class Upload:
    """What a well-formed upload form held: the file part's Content-Type, the form's `type`
    field, the file's size, and whether it is an animated WebP."""

    mime_type: str | None
    declared_type: str | None
    size: int
    animated: bool | None


class UploadSniffer:
    """Reads a multipart/form-data body as it streams past (`observe`), buffering only a
    delimiter's length between chunks (and one part's headers)."""

    def __init__(self, boundary: str) -> None:
        self._delimiter = b"\r\n--" + boundary.encode("latin-1", "replace")
        self._buf = b"\r\n"  # the first delimiter opens the body with no CRLF before it
        self._state = "preamble"  # preamble | delimiter | headers | body | done | broken
        self._part: str | None = None  # "file", one of _FIELDS, or None: a part not read
        self._fields: dict[str, bytearray] = {}
        self._file_type: str | None = None
        self._file_parts = 0
        self._size = 0
        self._head = bytearray()
        self.problem: str | None = None  # why the body is not a form read whole, if it is not

    async def observe(self, body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """`body` unchanged, read on the way."""
        async for chunk in body:
            self.feed(chunk)
            yield chunk
        self.end()

    def feed(self, chunk: bytes) -> None:
        if self._state in ("done", "broken"):
            return  # the epilogue, or past a fault: relayed, not read
        self._buf += chunk
        while self._step():
            pass

    def end(self) -> None:
        if self._state not in ("done", "broken"):
            self._broken("the body ended before the form's closing boundary")

    def result(self) -> Upload | None:
        """The upload, when the body was a whole form with exactly one `file` part."""
        if self._state != "done":
            return None
        if self._file_parts != 1:
            self.problem = f"the form has {self._file_parts} file parts, not one"
            return None
        declared = self._fields.get("type")
        declared_type = declared.decode("utf-8", "replace").strip() if declared is not None else ""
        return Upload(self._file_type, declared_type or None, self._size, webp_animated(bytes(self._head)))

    def _broken(self, problem: str) -> None:
        self._state = "broken"
        self.problem = problem
        self._buf = b""

    def _step(self) -> bool:
        """Take what the buffer holds for the current state; True when a state change may allow more."""
        buf = self._buf
        if self._state in ("preamble", "body"):
            at = buf.find(self._delimiter)
            if at < 0:
                keep = len(self._delimiter) - 1  # a delimiter may straddle this chunk and the next
                if len(buf) > keep:
                    self._data(buf[:-keep])
                    self._buf = buf[-keep:]
                return False
            self._data(buf[:at])
            self._buf = buf[at + len(self._delimiter):]
            self._state = "delimiter"
            return True
        if self._state == "delimiter":
            if len(buf) < 2:
                return False
            if buf.startswith(b"--"):
                self._state = "done"
                self._buf = b""
                return False
            end = buf.find(b"\r\n")
            if end < 0:
                if len(buf) > 256:
                    self._broken("a boundary delimiter is not followed by a line end")
                return False
            if buf[:end].strip(b" \t"):  # only transport padding may come between the two
                self._broken("a boundary delimiter is followed by something else than a line end")
                return False
            self._buf = buf[end + 2:]
            self._state = "headers"
            return True
        if self._state == "headers":
            if buf.startswith(b"\r\n"):
                raw, rest = b"", buf[2:]
            else:
                end = buf.find(b"\r\n\r\n")
                if (end < 0 and len(buf) > _HEADERS_LIMIT) or end > _HEADERS_LIMIT:
                    self._broken(f"a part's headers are longer than {_HEADERS_LIMIT} bytes")
                    return False
                if end < 0:
                    return False
                raw, rest = buf[:end], buf[end + 4:]
            self._start_part(raw)
            self._buf = rest
            self._state = "body"
            return True
        return False

    def _start_part(self, raw: bytes) -> None:
        headers = Message()
        for line in raw.decode("utf-8", "replace").split("\r\n"):
            field, sep, value = line.partition(":")
            if sep:
                headers[field.strip()] = value.strip()
        param = headers.get_param("name", header="content-disposition")
        name = collapse_rfc2231_value(param) if isinstance(param, tuple) else param
        if name == "file":
            self._part = "file"
            self._file_parts += 1
            if self._file_parts == 1:
                content_type = str(headers.get("content-type", "")).strip()
                self._file_type = content_type or None
        elif name in _FIELDS:
            self._part = str(name)
            self._fields[self._part] = bytearray()
        else:
            self._part = None

    def _data(self, data: bytes) -> None:
        part = self._part
        if not data or part is None or self._state == "preamble":
            return
        if part == "file":
            if self._file_parts == 1:
                self._size += len(data)
                if len(self._head) < _HEAD:
                    self._head += data[: _HEAD - len(self._head)]
            return
        value = self._fields[part]
        if len(value) < _FIELD_LIMIT:
            value += data[: _FIELD_LIMIT - len(value)]


def answered_media_id(status: int, body: bytes) -> str | None:
    """The media id of Meta's answer to an upload (`{"id": "..."}`), or None."""
    if status != 200:
        return None
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    media_id = parsed.get("id") if isinstance(parsed, dict) else None
    return media_id if isinstance(media_id, str) and media_id else None


async def record_upload(
    catalog: MediaCatalog, phone_number_id: str, sniffer: UploadSniffer, status: int, body: bytes, at: float
) -> bool:
    """Keep the id Meta answered with what the form held; True when kept. A store failure is
    logged, not raised: the upload did succeed at Meta, and an id sendgate does not know is
    judged on what is known."""
    media_id = answered_media_id(status, body)
    if media_id is None:
        return False
    upload = sniffer.result()
    if upload is None:
        log.info("media %s uploaded for %s is not kept: %s", media_id, phone_number_id, sniffer.problem)
        return False
    try:
        await catalog.record_media(
            phone_number_id, media_id, upload.mime_type, upload.size, at,
            declared_type=upload.declared_type, animated=upload.animated,
        )  # fmt: skip
    except StoreError as exc:
        log.error("media %s uploaded for %s is not kept: the store failed: %s", media_id, phone_number_id, exc)
        return False
    return True

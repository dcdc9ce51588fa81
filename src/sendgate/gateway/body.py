"""Request bodies as the gateway reads them: decoded here, by sendgate, never by aiohttp.

aiohttp's own decoding answers some bodies with its plain-text 400 before any handler runs
(`br` and `zstd` without their optional libraries) and fails others half-way through the
read (a 500), so the app turns it off (`auto_decompress`) and the two paths that read bodies
for Meta decode them here: gzip (also `x-gzip`) and deflate (zlib-wrapped or raw),
incrementally and in bounded pieces, so a compression bomb costs at most the limit.
Any other Content-Encoding is refused. What is forwarded is always the decoded body, and
Content-Encoding is never forwarded (upstream.py), so body and headers always agree.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Iterator, Mapping

from aiohttp import web

from sendgate.messages import InvalidMessage

__all__ = ["BodyDecoder", "content_coding", "iter_body", "read_body"]

_PIECE = 64 * 1024  # the most one compressed chunk may expand to before it is counted
_GZIP = ("gzip", "x-gzip")  # RFC 9110 8.4.1.3: x-gzip is gzip


def content_coding(headers: Mapping[str, str]) -> str:
    """The request's Content-Encoding, lower-cased: "identity", "gzip" or "deflate".

    Raises InvalidMessage for any other coding, or several, rather than forwarding a
    body nothing here can read as if it were plain.
    """
    value = headers.get("Content-Encoding")
    if value is None:
        return "identity"
    coding = value.strip().lower()
    if coding in ("", "identity"):
        return "identity"
    if coding in _GZIP:
        return "gzip"
    if coding == "deflate":
        return "deflate"
    raise InvalidMessage(
        f"Content-Encoding {value.strip()!r} is not supported; send the body plain, gzip or deflate"
    )


class BodyDecoder:
    """Decodes one gzip or deflate body, chunk by chunk."""

    def __init__(self, coding: str) -> None:
        self.coding = coding
        self.failure: InvalidMessage | None = None  # why the body did not decode, once it did not
        self._inflater: zlib._Decompress | None = None

    def _start(self, first: bytes) -> zlib._Decompress:
        if self.coding == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        # "deflate" means zlib-wrapped (RFC 9110), but clients also send raw deflate: a
        # zlib stream's first byte names method 8 in its low bits.
        return zlib.decompressobj(zlib.MAX_WBITS if first[0] & 0x0F == 8 else -zlib.MAX_WBITS)

    def decode(self, chunk: bytes) -> Iterator[bytes]:
        """The decoded bytes of `chunk`, in pieces of at most 64 KiB."""
        if not chunk:
            return
        inflater = self._inflater = self._inflater or self._start(chunk)
        if inflater.eof:
            raise self._fail("has data after the end of its compressed stream")
        data = chunk
        try:
            while True:
                piece = inflater.decompress(data, _PIECE)
                if piece:
                    yield piece
                data = inflater.unconsumed_tail
                if inflater.eof or (not data and len(piece) < _PIECE):
                    break
        except zlib.error as exc:
            raise self._fail(f"does not decode: {exc}") from None
        if inflater.unused_data:
            raise self._fail("has data after the end of its compressed stream")

    def finish(self) -> None:
        """Raises InvalidMessage when the body ended before its compressed stream did."""
        if self._inflater is not None and not self._inflater.eof:
            raise self._fail("is cut short: its compressed stream does not end")

    def _fail(self, problem: str) -> InvalidMessage:
        self.failure = InvalidMessage(f"request body with Content-Encoding {self.coding} {problem}")
        return self.failure


async def read_body(request: web.BaseRequest, limit: int) -> bytes:
    """The whole decoded body, refusing more than `limit` bytes (before or after decoding)."""
    coding = content_coding(request.headers)
    if request.content_length is not None and request.content_length > limit:
        raise InvalidMessage(f"request body is {request.content_length} bytes; the limit is {limit}")
    decoder = None if coding == "identity" else BodyDecoder(coding)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        for piece in (chunk,) if decoder is None else decoder.decode(chunk):
            size += len(piece)
            if size > limit:
                raise InvalidMessage(f"request body exceeds the limit of {limit} bytes")
            chunks.append(piece)
    if decoder is not None:
        decoder.finish()
    return b"".join(chunks)


async def iter_body(request: web.BaseRequest, decoder: BodyDecoder | None) -> AsyncIterator[bytes]:
    """The decoded body as a stream, for bodies relayed without being read whole (media uploads)."""
    async for chunk in request.content.iter_chunked(_PIECE):
        if decoder is None:
            yield chunk
        else:
            for piece in decoder.decode(chunk):
                yield piece
    if decoder is not None:
        decoder.finish()

"""What sendgate keeps of media uploaded through it (`MediaCatalog`), shared by every backend.

Kept apart from `base.py` and `rules.py`: the media catalog is one small concern of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from sendgate.state.base import InvalidRecord

__all__ = ["MEDIA_COLUMNS", "MEDIA_SECONDS", "MediaFacts", "check_media", "media_facts_from_row", "media_row"]

# Meta: "Media IDs returned by the API expire after 30 days" (Cloud API, Media reference, "Get media
# ID"). An id older than that is Meta's to refuse; sendgate no longer claims to know it.
MEDIA_SECONDS = 30 * 86400

MEDIA_COLUMNS = ("phone_number_id", "media_id", "mime_type", "declared_type", "size", "animated", "uploaded_at")


@dataclass(frozen=True)
class MediaFacts:
    """One upload Meta answered with a media id (docs/input.md `message.media`).

    `mime_type` is the file part's Content-Type (what Meta checks the upload by), `declared_type`
    the form's `type` field, `size` the file part's bytes, `animated` whether a WebP file is an
    animated one (None: not a WebP, or not readable)."""

    mime_type: str | None
    declared_type: str | None
    size: int | None
    animated: bool | None
    uploaded_at: float


def check_media(phone_number_id: str, media_id: str, facts: MediaFacts) -> None:
    """Raise `InvalidRecord` for an upload no backend should keep."""
    if not phone_number_id or not media_id:
        raise InvalidRecord("media: phone_number_id and media_id must be non-empty strings")
    if facts.size is not None and (isinstance(facts.size, bool) or facts.size < 0):
        raise InvalidRecord(f"media: size must be a byte count, not {facts.size!r}")


def media_row(phone_number_id: str, media_id: str, facts: MediaFacts) -> tuple[object, ...]:
    """The row in `MEDIA_COLUMNS` order."""
    return (phone_number_id, media_id, facts.mime_type, facts.declared_type, facts.size, facts.animated,
            facts.uploaded_at)  # fmt: skip


def media_facts_from_row(row: tuple[object, ...] | None, now: float) -> MediaFacts | None:
    """(mime_type, declared_type, size, animated, uploaded_at) as kept, or None when absent or expired."""
    if row is None:
        return None
    mime_type, declared_type, size, animated, uploaded_at = row
    assert isinstance(uploaded_at, (int, float))
    if uploaded_at <= now - MEDIA_SECONDS:
        return None
    return MediaFacts(
        mime_type if isinstance(mime_type, str) else None,
        declared_type if isinstance(declared_type, str) else None,
        int(size) if isinstance(size, int) else None,
        None if animated is None else bool(animated),
        float(uploaded_at),
    )

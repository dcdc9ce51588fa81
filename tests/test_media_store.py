"""The media catalog's contract (`MediaCatalog`), on every backend (the `store` fixture)."""

from __future__ import annotations

import asyncio

import pytest

from sendgate.state import InvalidRecord, MediaFacts, Store
from sendgate.state.media import MEDIA_COLUMNS, MEDIA_SECONDS
from sendgate.state.rows import COPIED_TABLES

PHONE = "106540352242922"
NOW = 1_795_557_600.0


async def test_an_upload_is_kept_per_number_and_read_back_exactly(store: Store) -> None:
    await store.record_media(PHONE, "1234567890", "image/png", 5 * 1024 * 1024 + 1, NOW - 10,
                             declared_type="image/png", animated=None)  # fmt: skip
    await store.record_media(PHONE, "77", "image/webp", 400_000, NOW - 5, animated=True)
    assert await store.media_facts(PHONE, "1234567890", NOW) == MediaFacts(
        "image/png", "image/png", 5 * 1024 * 1024 + 1, None, NOW - 10
    )
    assert await store.media_facts(PHONE, "77", NOW) == MediaFacts("image/webp", None, 400_000, True, NOW - 5)
    # Another number's id, or one never uploaded through sendgate: unknown.
    assert await store.media_facts("106540352242999", "1234567890", NOW) is None
    assert await store.media_facts(PHONE, "999", NOW) is None


async def test_unknown_type_and_size_stay_null_and_a_reupload_replaces(store: Store) -> None:
    await store.record_media(PHONE, "5", None, None, NOW - 100, animated=False)
    assert await store.media_facts(PHONE, "5", NOW) == MediaFacts(None, None, None, False, NOW - 100)
    await store.record_media(PHONE, "5", "video/mp4", 3, NOW - 50)
    assert await store.media_facts(PHONE, "5", NOW) == MediaFacts("video/mp4", None, 3, None, NOW - 50)


async def test_ids_older_than_metas_30_days_are_forgotten(store: Store) -> None:
    await store.record_media(PHONE, "8", "application/pdf", 10, NOW - MEDIA_SECONDS + 1)
    assert await store.media_facts(PHONE, "8", NOW) is not None
    assert await store.media_facts(PHONE, "8", NOW + 1) is None


async def test_concurrent_uploads_are_all_kept(store: Store) -> None:
    await asyncio.gather(*(store.record_media(PHONE, str(i), "image/jpeg", i, NOW) for i in range(50)))
    facts = await asyncio.gather(*(store.media_facts(PHONE, str(i), NOW) for i in range(50)))
    assert [f.size if f else None for f in facts] == list(range(50))


@pytest.mark.parametrize(("phone", "media_id", "size"), [("", "1", 1), (PHONE, "", 1), (PHONE, "1", -1)])
async def test_malformed_uploads_are_refused(store: Store, phone: str, media_id: str, size: int) -> None:
    with pytest.raises(InvalidRecord):
        await store.record_media(phone, media_id, "image/png", size, NOW)


def test_the_media_table_is_copied_whole() -> None:
    assert COPIED_TABLES["media"] == MEDIA_COLUMNS

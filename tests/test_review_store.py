"""The store contract, review side (every backend, through the interface): filters, paging, hourly
counts, the review trail, pruning."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace

import pytest

from sendgate.admin.records import decision_query
from sendgate.gateway.recorder import recipient_key
from sendgate.ids import DecisionIds
from sendgate.state import DecisionQuery, DecisionRecord, InvalidRecord, ReviewRecord, SendRecord, Store

from .review_seed import ACCOUNTS, brute_counts, seed, synthetic

NOW = 1795557600.0  # 2026-11-24 22:00 UTC


@pytest.fixture
async def seeded(store: Store) -> list[DecisionRecord]:
    records = await seed(store, NOW, 700, span=3 * 86400)
    # A few shadow-mode would-be rejections, and an allowed record with a rule-less warning.
    rng = random.Random(3)
    ids = DecisionIds()
    extra = [
        synthetic(ids, NOW + i, rng, mode="shadow", decision="deny", forwarded=True,
                  reasons=[{"rule": "window.closed", "message": "closed"}])
        for i in range(1, 6)
    ]  # fmt: skip
    for record in extra:
        await store.log_decision(record)
    return records + extra


def _rules(record: DecisionRecord) -> set[str]:
    return {r["rule"] for r in record.reasons}


def _expected(records: list[DecisionRecord], keep) -> list[str]:
    return [r.id for r in sorted(records, key=lambda r: r.id, reverse=True) if keep(r)]


async def _ids(store: Store, **filters) -> list[str]:
    return [r.id for r in await store.decisions(DecisionQuery(limit=1000, **filters))]


async def test_every_filter_matches_a_brute_force_scan(store: Store, seeded: list[DecisionRecord]) -> None:
    some = seeded[123]
    cases = {
        "rejected": ({"decision": "rejected"}, lambda r: r.decision != "allow"),
        "shadow": ({"decision": "shadow"}, lambda r: r.mode == "shadow" and r.decision in ("deny", "defer")),
        "deny": ({"decision": "deny"}, lambda r: r.decision == "deny"),
        "invalid": ({"decision": "invalid"}, lambda r: r.decision == "invalid"),
        "rule": ({"rule": "consent.missing"}, lambda r: "consent.missing" in _rules(r)),
        "template": ({"template": "spring_sale"}, lambda r: r.template == "spring_sale"),
        "account": ({"account": ACCOUNTS[1]}, lambda r: r.account == ACCOUNTS[1]),
        "recipient": ({"recipient_key": some.recipient_key}, lambda r: r.recipient_key == some.recipient_key),
        "since": ({"since": NOW - 86400}, lambda r: r.timestamp >= NOW - 86400),
        "range": ({"since": NOW - 2 * 86400, "until": NOW - 86400},
                  lambda r: NOW - 2 * 86400 <= r.timestamp < NOW - 86400),
        "combined": ({"decision": "rejected", "rule": "window.closed", "account": ACCOUNTS[0], "since": NOW - 2 * 86400},
                     lambda r: r.decision != "allow" and "window.closed" in _rules(r) and r.account == ACCOUNTS[0]
                     and r.timestamp >= NOW - 2 * 86400),
        "template+rule": ({"template": "paused_promo", "rule": "template.paused"},
                          lambda r: r.template == "paused_promo" and "template.paused" in _rules(r)),
    }  # fmt: skip
    for name, (filters, keep) in cases.items():
        expected = _expected(seeded, keep)
        assert expected, name  # every case selects something
        assert await _ids(store, **filters) == expected, name


async def test_reviewed_filter_and_trail(store: Store, seeded: list[DecisionRecord]) -> None:
    rejected = [r for r in seeded if r.decision != "allow"]
    picked = rejected[:3]
    for i, record in enumerate(picked):
        saved = await store.add_review(ReviewRecord(record.id, "ana", f"checked {i}", NOW + 100 + i))
        assert saved is not None and saved.seq is not None
    await store.add_review(ReviewRecord(picked[0].id, "bo", "second look", NOW + 200))
    reviewed = await _ids(store, decision="rejected", reviewed=True)
    assert reviewed == sorted((r.id for r in picked), reverse=True)
    unreviewed = await _ids(store, decision="rejected", reviewed=False)
    assert set(unreviewed) == {r.id for r in rejected} - {r.id for r in picked}
    trail = await store.reviews([picked[0].id, picked[1].id, "nope"])
    assert [(r.reviewer, r.note) for r in trail[picked[0].id]] == [("ana", "checked 0"), ("bo", "second look")]
    assert "nope" not in trail
    assert await store.add_review(ReviewRecord("no-such-decision", "ana", "", NOW)) is None
    with pytest.raises(InvalidRecord):
        await store.add_review(ReviewRecord(picked[0].id, "ana", "x" * 4001, NOW))


async def test_paging_newest_first_both_ways(store: Store, seeded: list[DecisionRecord]) -> None:
    everything = _expected(seeded, lambda r: r.decision != "allow")
    pages, cursor = [], None
    while True:
        page = await _ids_page(store, before_id=cursor)
        if not page:
            break
        pages.append(page)
        cursor = page[-1]
    assert [i for p in pages for i in p] == everything
    # From the third page, `after` gives back the second one, still newest first.
    assert await _ids_page(store, after_id=pages[2][0]) == pages[1]


async def _ids_page(store: Store, **paging) -> list[str]:
    return [r.id for r in await store.decisions(DecisionQuery(decision="rejected", limit=40, **paging))]


async def _counts(
    store: Store, since: float, until: float, bucket: int | None, dimension: str | None = None
) -> Counter:
    return Counter({(c.bucket, c.dimension, c.key, c.decision, c.mode): c.count
                    for c in await store.decision_counts(since, until, bucket, dimension)})  # fmt: skip


async def test_counts_are_exact_on_any_range(store: Store, seeded: list[DecisionRecord]) -> None:
    for since, until, bucket in (
        (NOW - 3 * 86400, NOW + 10, None),  # everything
        (NOW - 86400 + 1234.5, NOW - 3600 * 5 + 77, None),  # neither end on an hour
        (NOW - 1800, NOW - 600, None),  # inside one hour
        (NOW - 86400, NOW + 3600, 3600),
        (NOW - 3 * 86400 - 500, NOW + 10, 86400),  # day rows, hour rows and records
        (NOW - 3 * 86400 - 500, NOW + 10, 7200),  # buckets of two hours from hour rows
        (NOW - 2 * 86400, NOW - 3600, None),  # whole days and whole hours
    ):
        assert await _counts(store, since, until, bucket) == brute_counts(seeded, since, until, bucket), (since, until)
        rules_only = Counter({k: n for k, n in brute_counts(seeded, since, until, bucket).items() if k[1] == "rule"})
        assert await _counts(store, since, until, bucket, "rule") == rules_only
    with pytest.raises(InvalidRecord):
        await store.decision_counts(NOW - 10, NOW, 600)


async def test_prune_removes_old_records_their_rules_and_notes_only(
    store: Store, seeded: list[DecisionRecord]
) -> None:
    cutoff = NOW - 86400 - 1000.5  # not on an hour: the boundary hour's counts are recomputed
    old = next(r for r in seeded if r.timestamp < cutoff and r.decision == "deny")
    kept = next(r for r in reversed(seeded) if r.timestamp >= cutoff and r.decision == "deny")
    await store.add_review(ReviewRecord(old.id, "ana", "old note", NOW))
    await store.add_review(ReviewRecord(kept.id, "ana", "kept note", NOW))
    # Send history: rows inside the 30 days the frequency rules read stay whatever the cutoff.
    await store.log_decision(
        replace(kept, id="S1", timestamp=cutoff - 10),
        SendRecord("S1", "1", "2", "16505550001", "marketing", cutoff - 10),
    )
    await store.log_decision(replace(kept, id="S2", timestamp=NOW - 40 * 86400),
                             SendRecord("S2", "1", "2", "16505550001", "marketing", NOW - 40 * 86400))  # fmt: skip
    result = await store.prune_decisions(cutoff, NOW)
    survivors = [r for r in seeded if r.timestamp >= cutoff]
    assert result.decisions == len(seeded) - len(survivors) + 2 and result.reviews == 1 and result.sends == 1
    assert set(await _ids(store)) == {r.id for r in survivors}
    assert await store.decision(old.id) is None
    assert await store.reviews([old.id]) == {}
    assert [r.note for r in (await store.reviews([kept.id]))[kept.id]] == ["kept note"]
    assert await _ids(store, rule=next(iter(_rules(old)))) == _expected(survivors, lambda r: _rules(old) & _rules(r))
    assert await _counts(store, 0, NOW + 10, 3600) == brute_counts(survivors, 0, NOW + 10, 3600)
    assert (await store.recipient_facts("1", "2", "16505550001", NOW)).marketing_sent_at == [cutoff - 10]


async def test_recipient_filter_uses_the_unmasked_key(store: Store) -> None:
    ids = DecisionIds()
    record = synthetic(ids, NOW, random.Random(1), recipient="*******1234", recipient_key=recipient_key("16505551234"))
    await store.log_decision(record)
    query = decision_query({"recipient": "+1 (650) 555-1234"})
    assert [r.id for r in await store.decisions(query)] == [record.id]

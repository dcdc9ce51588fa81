"""The store contract with two store instances on one database, as two processes (replicas,
workers) have them: concurrent writes for the same recipient, number, template or decision
end as the rules say for the events in order, whatever the interleaving. Every backend, through
the interface (SQLite: two stores on one file)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from sendgate.ids import DecisionIds
from sendgate.state import ConsentRecord, ReviewRecord, Store, open_store
from sendgate.state.rules import merge_consent_event

from .conftest import CATALOG, PHONE_NUMBER_ID, WABA_ID
from .review_seed import brute_counts, seed, synthetic

NOW = 1795557600.0
ROUNDS = 30
RECIPIENTS = [f"1650555{i:04d}" for i in range(8)]


@pytest.fixture
async def stores(store_url: str) -> AsyncIterator[tuple[Store, Store]]:
    """Two stores on the new database: what two sendgate processes open."""
    first, second = open_store(store_url), open_store(store_url)
    yield first, second
    await first.close()
    await second.close()


def fresh_read(store_url: str) -> Store:
    """A third store: reads without the caches the writing stores keep ("may lag a few seconds")."""
    return open_store(store_url)


def _expected_latest(history: list[ConsentRecord], events: list[tuple[str, ConsentRecord]]) -> ConsentRecord | None:
    """The latest record after `events` merged one by one in time order, an opt-out first on a
    tie, by `rules.merge_consent_event` alone."""
    ledger = list(history)
    newest_optout: int | None = None
    for action, event in sorted(events, key=lambda e: (int(e[1].recorded_at), e[0] != "opt_out")):
        latest = ledger[-1] if ledger else None
        last_opt_in = next((r for r in reversed(ledger) if r.status == "opted_in"), None)
        merge = merge_consent_event(event, action, latest=latest, last_opt_in=last_opt_in,
                                    newest_optout_at=newest_optout)  # fmt: skip
        if action == "opt_out":
            newest_optout = max(newest_optout or 0, int(event.recorded_at))
        if merge.append is not None:
            ledger.append(merge.append)
    return ledger[-1] if ledger else None


async def test_concurrent_optout_and_resubscribe_never_lose_the_optout(stores: tuple[Store, Store]) -> None:
    """STOP and START of the same second for one recipient, reaching two processes at once, round
    after round: the opt-out wins every time, as in either order one after the other."""
    first, second = stores
    for recipient in RECIPIENTS:
        await first.record_consent(ConsentRecord(recipient, "opted_out", (), "web", None, NOW))
    rng = random.Random(10)
    for round_ in range(ROUNDS):
        calls = []
        for recipient in RECIPIENTS:
            (_, stop), (_, start) = _round(recipient, round_)
            # Which process gets which event, and which starts first, changes every time.
            a, b = (first, second) if rng.random() < 0.5 else (second, first)
            pair = [a.apply_consent_event(f"stop:{recipient}:{round_}", stop, "opt_out"),
                    b.apply_consent_event(f"start:{recipient}:{round_}", start, "resubscribe")]  # fmt: skip
            calls.extend(pair if rng.random() < 0.5 else reversed(pair))
        await asyncio.gather(*calls)
        for recipient in RECIPIENTS:
            history = await first.consent_history(recipient)
            expected = _expected_latest(history[:1], [e for r in range(round_ + 1) for e in _round(recipient, r)])
            assert expected is not None and expected.status == "opted_out"
            assert (history[-1].status, history[-1].categories) == (expected.status, expected.categories), (
                round_, recipient, history)  # fmt: skip


def _round(recipient: str, round_: int) -> list[tuple[str, ConsentRecord]]:
    """A STOP and a START of the same whole second (the app's fraction on the START)."""
    at = NOW + 10 * (round_ + 1)
    stop = ConsentRecord(recipient, "opted_out", (), "whatsapp:keyword", "{}", at)
    start = ConsentRecord(recipient, "opted_in", ("marketing",), "whatsapp:keyword", "{}", at + 0.5)
    return [("opt_out", stop), ("resubscribe", start)]


async def test_concurrent_account_state_updates_end_at_the_newest(stores: tuple[Store, Store], store_url: str) -> None:
    """Quality and status updates arriving out of order at two processes at once: each field ends
    at its newest event's value."""
    first, second = stores
    rng = random.Random(11)
    updates = [(NOW + i, {"quality": f"Q{i}", "status": f"S{i}"} if i % 3 else {"quality": f"Q{i}"}) for i in range(60)]
    for round_ in range(5):
        number = f"{PHONE_NUMBER_ID}{round_}"
        rng.shuffle(updates)
        await asyncio.gather(*(
            (first if rng.random() < 0.5 else second).set_account_state("phone", number, values, at)
            for at, values in updates
        ))  # fmt: skip
        reader = fresh_read(store_url)
        try:
            state = await reader.account_state(number, None)
        finally:
            await reader.close()
        newest_status = max(at for at, values in updates if "status" in values)
        assert (state["quality"], state["status"]) == ("Q59", f"S{int(newest_status - NOW)}"), round_


async def test_concurrent_template_events_end_at_the_newest_per_field(
    stores: tuple[Store, Store], store_url: str
) -> None:
    """Status and quality events for two templates of one WABA, out of order, at two processes at
    once: every field of both ends at its newest event's, none lost to the other's catalog write."""
    first, second = stores
    await first.put_templates(WABA_ID, CATALOG)
    rng = random.Random(12)
    statuses = ("APPROVED", "PAUSED", "REJECTED", "DISABLED")
    events = [(name, NOW + i, statuses[i % 4], f"{'GREEN' if i % 2 else 'RED'}{i}")
              for i in range(40) for name in ("order_update", "spring_sale")]  # fmt: skip
    rng.shuffle(events)

    async def update(store: Store, name: str, at: float, status: str, quality: str) -> None:
        # Odd seconds carry the status only, even ones the quality score too.
        await store.update_template(WABA_ID, template_id=None, name=name, language="en_US", at=at, status=status,
                                    quality=None if at % 2 else quality)  # fmt: skip

    await asyncio.gather(*(update(first if rng.random() < 0.5 else second, *event) for event in events))
    reader = fresh_read(store_url)
    try:
        catalog = await reader.templates(WABA_ID)
        assert catalog is not None
        for name in ("order_update", "spring_sale"):
            [template] = [t for t in catalog["data"] if t["name"] == name and t["language"] == "en_US"]
            newest = max((e for e in events if e[0] == name), key=lambda e: e[1])
            newest_quality = max((e for e in events if e[0] == name and not e[1] % 2), key=lambda e: e[1])
            assert template["status"] == newest[2], name
            assert template["quality_score"] == {"score": newest_quality[3], "date": int(newest_quality[1])}, name
            assert (await reader.template_facts(WABA_ID, name, "en_US")).status == newest[2], name
    finally:
        await reader.close()


async def test_concurrent_review_notes_are_all_kept_in_order(stores: tuple[Store, Store]) -> None:
    """Notes on one decision from reviewers on two processes at once: every note is in the trail,
    each with its own seq, the trail in seq order."""
    first, second = stores
    record = synthetic(DecisionIds(), NOW, random.Random(13), decision="deny",
                       reasons=[{"rule": "window.closed", "message": "closed"}])  # fmt: skip
    await first.log_decision(record)
    saved = await asyncio.gather(*(
        (first, second)[i % 2].add_review(ReviewRecord(record.id, f"reviewer{i % 2}", f"note {i}", NOW + i))
        for i in range(40)
    ))  # fmt: skip
    trail = (await second.reviews([record.id]))[record.id]
    assert sorted(r.note for r in trail) == sorted(f"note {i}" for i in range(40))
    seqs = [r.seq for r in trail]
    assert all(isinstance(s, int) for s in seqs) and seqs == sorted(set(seqs))  # type: ignore[type-var]
    assert {s.seq for s in saved if s is not None} == set(seqs)


async def test_pruning_while_another_process_logs_and_reviews(stores: tuple[Store, Store]) -> None:
    """One process prunes while another logs new records and adds notes to the records being
    pruned: no note outlives its decision, every note kept is counted as pruned, and the hourly
    counts stay exact."""
    first, second = stores
    old = await seed(first, NOW, 400, span=2 * 86400)
    cutoff = NOW - 86400 - 1000.5  # not on an hour
    doomed = [r for r in old if r.timestamp < cutoff]
    ids = DecisionIds()
    rng = random.Random(14)
    new = [synthetic(ids, NOW + i * 0.25, rng) for i in range(120)]
    pruned, *results = await asyncio.gather(
        first.prune_decisions(cutoff, NOW),
        *(second.add_review(ReviewRecord(r.id, "ana", "late look", NOW)) for r in doomed[-60:]),
        *(second.log_decision(r) for r in new),
    )
    notes = [r for r in results if isinstance(r, ReviewRecord)]
    assert pruned.decisions == len(doomed) and pruned.reviews == len(notes)
    assert await first.reviews([r.id for r in doomed]) == {}
    survivors = [r for r in old if r.timestamp >= cutoff] + new
    counts = await first.decision_counts(0, NOW + 3600, 3600)
    assert Counter({(c.bucket, c.dimension, c.key, c.decision, c.mode): c.count for c in counts}) == brute_counts(
        survivors, 0, NOW + 3600, 3600)  # fmt: skip

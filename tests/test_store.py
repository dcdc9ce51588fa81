"""The store contract: every backend (the `store` fixture, tests/conftest.py), through the interface."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import pytest

from sendgate.places import recipient_place
from sendgate.state import ConsentRecord, DecisionQuery, DecisionRecord, InvalidRecord, SendRecord, Store, open_store
from sendgate.state.rules import PAIR_HISTORY_LIMIT
from sendgate.state.catalog import count_placeholders

SHARED = Path(__file__).resolve().parents[2] / "shared" / "cloud-api"


def _decision(i: int, **fields) -> DecisionRecord:
    base = dict(
        id=f"01J{i:023d}", timestamp=1_700_000_000 + i, endpoint="messages", api_version="v23.0",
        account="111", waba_id="222", recipient="16505551234", type="text", template=None, category=None,
        decision="allow", mode="enforce", forwarded=True, recipient_key="k1",
    )
    base.update(fields)
    return DecisionRecord(**base)


async def test_consent_is_append_only_and_latest_wins(store: Store) -> None:
    await store.record_consent(ConsentRecord("1650", "opted_in", ("marketing",), "web", "form #1", 100.0))
    await store.record_consent(ConsentRecord("1650", "opted_out", (), "whatsapp", "STOP", 200.0))
    current = (await store.recipient_facts("111", None, "1650", 300.0)).consent
    assert current is not None and current.status == "opted_out" and current.evidence == "STOP"
    history = await store.consent_history("1650")
    assert [(r.status, r.recorded_at) for r in history] == [("opted_in", 100.0), ("opted_out", 200.0)]
    assert (await store.recipient_facts("111", None, "999", 300.0)).consent is None


def test_consent_record_validation() -> None:
    with pytest.raises(InvalidRecord, match="status"):
        ConsentRecord("1", "maybe", (), None, None, 0)
    with pytest.raises(InvalidRecord, match="categories"):
        ConsentRecord("1", "opted_in", ("spam",), None, None, 0)


def test_placeholder_counts_on_meta_examples() -> None:
    examples = json.loads((SHARED / "template-examples.json").read_text())["list_response"]["200 Example response"]
    counts = {t["name"]: count_placeholders(t) for t in examples["data"]}
    assert counts["hello_world"] == {"header": 0, "body": 0}
    assert counts["2023_april_promo"] == {"header": 0, "body": 2}  # quick replies are not counted
    named = {"components": [
        {"type": "HEADER", "format": "IMAGE"},
        {"type": "BODY", "text": "Hi {{first_name}}, {{first_name}} your order {{order_id}}"},
        {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Stop"},
                                        {"type": "URL", "url": "https://x.example/{{1}}"},
                                        {"type": "URL", "url": "https://x.example/static"},
                                        {"type": "COPY_CODE", "example": "SAVE"}]},
    ]}
    assert count_placeholders(named) == {"header": 1, "body": 2, "button_1": 1, "button_3": 1}


async def test_templates_replace_atomically_and_answer_facts(store: Store) -> None:
    body = {"data": [
        {"name": "promo", "language": "en_US", "status": "APPROVED", "category": "MARKETING",
         "components": [{"type": "BODY", "text": "Hi {{1}}"}]},
        {"name": "promo", "language": "pt_BR", "status": "PAUSED", "category": "MARKETING", "components": []},
    ]}
    assert await store.put_templates("222", body) == 2
    facts = await store.template_facts("222", "promo", "en_US")
    assert (facts.found, facts.language_found, facts.status, facts.category) == (True, True, "APPROVED", "MARKETING")
    assert facts.languages == ["en_US", "pt_BR"] and facts.placeholders == {"header": 0, "body": 1}
    assert facts.as_input() == dataclasses.asdict(facts)  # every field reaches the policy input
    facts = await store.template_facts("222", "promo", "de")
    assert facts.found and not facts.language_found and facts.status is None
    await store.put_templates("222", {"data": [{"name": "other", "language": "en", "status": "APPROVED"}]})
    assert not (await store.template_facts("222", "promo", "en_US")).found  # replaced, not merged
    assert (await store.templates("222"))["data"][0]["name"] == "other"
    with pytest.raises(InvalidRecord, match="data"):
        await store.put_templates("222", {"templates": []})


async def test_inbound_window_never_moves_back(store: Store) -> None:
    await store.record_inbound("111", "1650", 500.0)
    await store.record_inbound("111", "1650", 400.0)  # a late redelivery
    assert (await store.recipient_facts("111", None, "1650", 600.0)).last_inbound_at == 500.0
    assert (await store.recipient_facts("999", None, "1650", 600.0)).last_inbound_at is None


async def test_send_history_counts_per_business_and_skips_failures(store: Store) -> None:
    now = 1_700_000_000.0
    sends = [
        SendRecord("d1", "111", "222", "1650", "marketing", now - 3600),
        SendRecord("d2", "333", "222", "1650", "marketing", now - 7200),  # same WABA, other number
        SendRecord("d3", "444", "999", "1650", "marketing", now - 100),  # another business
        SendRecord("d4", "111", "222", "1650", "utility", now - 10),
        SendRecord("d5", "111", "222", "1650", "marketing", now - 5),
    ]
    for i, send in enumerate(sends):
        await store.log_decision(_decision(i, id=send.decision_id), send)
    store.log_upstream("d5", None, None, None, "timeout", send_failed=True)
    await store.flush()
    facts = await store.recipient_facts("111", "222", "1650", now)
    assert facts.last_sent_at == now - 10
    assert facts.marketing_sent_at == [now - 3600, now - 7200]


async def test_send_history_keeps_whether_marketing_went_inside_a_window(store: Store) -> None:
    now = 1_700_000_000.0
    sends = [
        SendRecord("w1", "111", "222", "1650", "marketing", now - 60, in_window=True),
        SendRecord("w2", "111", "222", "1650", "marketing", now - 120, in_window=False),
        SendRecord("w3", "111", "222", "1650", "marketing", now - 180),  # not known: counts as outside
    ]
    for i, send in enumerate(sends):
        await store.log_decision(_decision(i, id=send.decision_id), send)
    await store.flush()
    facts = await store.recipient_facts("111", "222", "1650", now)
    assert facts.marketing_sent_at == [now - 60, now - 120, now - 180]
    assert facts.marketing_outside_window_sent_at == [now - 120, now - 180]


async def test_pair_history_lists_this_numbers_sends_of_the_last_hour(store: Store) -> None:
    now = 1_700_000_000.0
    sends = [SendRecord(f"d{i}", "111", "222", "1650", None, now - 40 * i - 0.5) for i in range(70)]  # 70 in 47 min
    sends += [
        SendRecord("other", "333", "222", "1650", None, now - 1),  # another number of the same business
        SendRecord("failed", "111", "222", "1650", None, now - 2),  # Meta refused it
        SendRecord("someone", "111", "222", "1999", None, now - 3),  # another recipient
    ]
    for i, send in enumerate(sends):
        await store.log_decision(_decision(i, id=send.decision_id), send)
    store.log_upstream("failed", 400, None, 131056, "pair rate", send_failed=True)
    await store.flush()
    facts = await store.recipient_facts("111", "222", "1650", now)
    assert facts.pair_sent_at == [now - 40 * i - 0.5 for i in range(PAIR_HISTORY_LIMIT)]  # the newest 64
    assert facts.last_sent_at == now - 0.5
    # An hour later only those strictly newer than an hour are listed (and the 30-day `last_sent_at` stays).
    later = await store.recipient_facts("111", "222", "1650", now + 1200)
    assert later.pair_sent_at == [now - 40 * i - 0.5 for i in range(60)]
    assert (await store.recipient_facts("111", "222", "1650", now + 3600.5)).pair_sent_at == []
    assert (await store.recipient_facts("111", "222", "1650", now + 3600.5)).last_sent_at == now - 0.5
    assert (await store.recipient_facts("111", "222", "2000", now)).pair_sent_at == []


async def test_decision_log_filters_and_pages(store: Store) -> None:
    await asyncio.gather(*(
        store.log_decision(_decision(i, decision="deny" if i % 3 == 0 else "allow",
                                     reasons=[{"rule": "window.closed", "message": "m"}] if i % 3 == 0 else [],
                                     account="111" if i < 10 else "555"))
        for i in range(20)
    ))
    newest = await store.decisions(DecisionQuery(limit=5))
    assert [r.id for r in newest] == [f"01J{i:023d}" for i in range(19, 14, -1)]
    older = await store.decisions(DecisionQuery(limit=5, before_id=newest[-1].id))
    assert older[0].id == f"01J{14:023d}"
    denied = await store.decisions(DecisionQuery(rule="window.closed", limit=100))
    assert {r.id for r in denied} == {f"01J{i:023d}" for i in range(0, 20, 3)}
    assert all(r.decision == "deny" for r in await store.decisions(DecisionQuery(decision="deny", limit=100)))
    assert len(await store.decisions(DecisionQuery(account="555", decision="deny", limit=100))) == 3
    window = await store.decisions(DecisionQuery(since=1_700_000_005, until=1_700_000_008, limit=100))
    assert sorted(r.timestamp for r in window) == [1_700_000_005, 1_700_000_006, 1_700_000_007]
    assert len(await store.decisions(DecisionQuery(recipient_key="nobody", limit=100))) == 0


async def test_a_failing_write_does_not_fail_its_batch(store: Store) -> None:
    good = [store.log_decision(_decision(i)) for i in range(10)]
    duplicate = store.log_decision(_decision(3))  # primary key clash
    results = await asyncio.gather(*good, duplicate, return_exceptions=True)
    assert all(r is None for r in results[:10])
    assert isinstance(results[10], Exception)
    assert len(await store.decisions(DecisionQuery(limit=100))) == 10


async def test_upstream_outcome_completes_the_record(store: Store) -> None:
    await store.log_decision(_decision(1, content={"to": "1650"}))
    store.log_upstream(_decision(1).id, 200, "wamid.X", None, None, send_failed=False)
    await store.flush()
    record = await store.decision(_decision(1).id)
    assert record is not None
    assert (record.upstream_status, record.upstream_message_id, record.content) == (200, "wamid.X", {"to": "1650"})


async def test_recipient_facts_keep_times_exact_and_places_stored(store: Store) -> None:
    # Times go through SQLite's JSON functions: every digit of a float must come back.
    now = 1_795_557_600.123456789
    at = [now - 0.000_123_456, now - 86_399.987_654_321]
    for i, sent_at in enumerate(at):
        send = SendRecord(f"d{i}", "111", "222", "16505551234", "marketing", sent_at)
        await store.log_decision(_decision(i, id=f"d{i}"), send)
    await store.record_delivery_failure("wamid.1", 131049, "16505551234", "111", now - 1.000_000_7)
    await store.record_consent(ConsentRecord("16505551234", "opted_in", ("marketing",), "web", None, now - 5.5e-7))
    await store.record_inbound("111", "442079460000", now - 3.25)
    await store.record_inbound("111", "447700900123", now - 3.25)  # a number phonenumbers cannot place
    facts = await store.recipient_facts("111", "222", "16505551234", now)
    assert facts.marketing_sent_at == at and facts.last_sent_at == at[0]
    assert facts.delivery_failures == [{"code": 131049, "at": now - 1.000_000_7}]
    assert facts.consent is not None and facts.consent.recorded_at == now - 5.5e-7
    # Where the number is: stored when consent or an inbound message made it known, as placed by
    # phonenumbers; not stored for a number never seen.
    assert facts.place == ("US", "America/Los_Angeles") == recipient_place("16505551234")
    assert (await store.recipient_facts("111", None, "442079460000", now)).place == ("GB", "Europe/London")
    assert (await store.recipient_facts("111", None, "447700900123", now)).place == (None, None)
    assert (await store.recipient_facts("111", None, "5511987654321", now)).place is None


async def test_consent_import_appends_in_order_and_places_each_number(store: Store) -> None:
    recipients = [f"1650555{i:04d}" for i in range(40)] + ["5511987654321", "bsuid.AB12"]
    records = [ConsentRecord(r, "opted_in" if (i + j) % 2 else "opted_out", ("marketing",) if j else (),
                             "import", f"row {i}.{j}", 1000.0 + j)
               for j in range(3) for i, r in enumerate(recipients)]  # fmt: skip
    assert await store.import_consent(records) == len(records)
    for i, r in enumerate(recipients):
        assert [c.evidence for c in await store.consent_history(r)] == [f"row {i}.{j}" for j in range(3)]
        facts = await store.recipient_facts("111", None, r, 2000.0)
        assert facts.consent == records[2 * len(recipients) + i]  # the last imported is the state
        assert facts.place == recipient_place(r)
    assert await store.import_consent([]) == 0


async def test_close_commits_what_was_queued_and_is_idempotent(store_url: str) -> None:
    first = open_store(store_url)
    await first.log_decision(_decision(1))
    first.log_upstream(_decision(1).id, 200, "wamid.Q", None, None, send_failed=False)  # not awaited
    await first.close()
    await first.close()
    second = open_store(store_url)
    try:
        record = await second.decision(_decision(1).id)
        assert record is not None and record.upstream_message_id == "wamid.Q"
        await second.ping()
    finally:
        await second.close()

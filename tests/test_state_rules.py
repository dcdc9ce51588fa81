"""The state layer's business rules (state/rules.py), tested directly: no store, no I/O."""

from __future__ import annotations

import pytest

from sendgate.state import ConsentRecord, InvalidRecord, ReviewRecord
from sendgate.state.rules import (
    FAILURE_LIMIT,
    MAX_NOTE,
    PAIR_HISTORY_LIMIT,
    apply_template_change,
    check_review,
    count_keys,
    decision_rules,
    delivery_status_advances,
    match_templates,
    merge_consent_event,
    most_severe_status,
    recipient_facts,
    template_event_applies,
)

R = "15550001111"


def consent(status: str, at: float, *categories: str) -> ConsentRecord:
    return ConsentRecord(R, status, categories, "test", None, at)


def test_an_optout_goes_in_unless_the_latest_record_covers_it() -> None:
    optout = consent("opted_out", 100.0, "marketing")
    newer_optin = consent("opted_in", 200.0, "marketing")
    merged = merge_consent_event(optout, "opt_out", latest=newer_optin, last_opt_in=newer_optin, newest_optout_at=None)
    assert merged.append == optout and merged.seen  # older than the opt-in, still in: the safe side
    covered = merge_consent_event(
        optout, "opt_out", latest=consent("opted_out", 50.0), last_opt_in=None, newest_optout_at=50
    )
    assert covered.append is None and covered.seen  # an opt-out of everything covers marketing
    wider = merge_consent_event(
        consent("opted_out", 100.0), "opt_out", latest=consent("opted_out", 50.0, "marketing"), last_opt_in=None,
        newest_optout_at=50,
    )  # fmt: skip
    assert wider.append is not None  # everything is more than marketing


def test_an_optin_needs_a_strictly_newer_whole_second() -> None:
    latest = consent("opted_out", 100.9)
    same_second = merge_consent_event(
        consent("opted_in", 100.2, "marketing"), "resubscribe", latest=latest, last_opt_in=None, newest_optout_at=100
    )
    assert same_second.append is None and not same_second.seen  # a later change may still let it in
    after = merge_consent_event(
        consent("opted_in", 101.0, "marketing"), "resubscribe", latest=latest, last_opt_in=None, newest_optout_at=100
    )
    assert after.append is not None and after.append.categories == ("marketing",)
    behind_an_optout_event = merge_consent_event(
        consent("opted_in", 101.0), "resume", latest=consent("opted_in", 90.0), last_opt_in=None, newest_optout_at=101
    )
    assert behind_an_optout_event.append is None  # on a tie the opt-out wins


def test_resubscribe_restores_the_last_optins_categories_and_resume_adds() -> None:
    last_in = consent("opted_in", 10.0, "utility", "marketing")
    restored = merge_consent_event(
        consent("opted_in", 30.0, "marketing"), "resubscribe", latest=consent("opted_out", 20.0), last_opt_in=last_in,
        newest_optout_at=20,
    )  # fmt: skip
    assert restored.append is not None and restored.append.categories == ("utility", "marketing")
    not_opted_out = merge_consent_event(
        consent("opted_in", 30.0, "marketing"), "resubscribe", latest=last_in, last_opt_in=last_in, newest_optout_at=None
    )
    assert not_opted_out.append is None and not_opted_out.seen
    added = merge_consent_event(
        consent("opted_in", 30.0, "authentication"), "resume", latest=last_in, last_opt_in=last_in, newest_optout_at=None
    )
    assert added.append is not None and added.append.categories == ("utility", "marketing", "authentication")
    held = merge_consent_event(
        consent("opted_in", 30.0, "utility"), "resume", latest=last_in, last_opt_in=last_in, newest_optout_at=None
    )
    assert held.append is None and held.seen
    with pytest.raises(ValueError, match="unknown consent action"):
        merge_consent_event(last_in, "subscribe", latest=None, last_opt_in=None, newest_optout_at=None)


def test_template_events_match_by_id_then_name_and_never_go_back() -> None:
    templates = [
        {"id": "1", "name": "hello", "language": "en_US", "status": "APPROVED", "category": "UTILITY"},
        {"id": "2", "name": "hello", "language": "de", "status": "APPROVED"},
    ]
    assert match_templates(templates, "2", "hello", "en_US") == [templates[1]]  # the id wins
    assert match_templates(templates, "9", "hello", None) == templates
    assert match_templates(templates, None, "hello", "en_US") == [templates[0]]
    assert template_event_applies(None, 5.0) and template_event_applies(5.0, 5.0)
    assert not template_event_applies(6.0, 5.0)
    apply_template_change(templates[0], "category", "MARKETING", 7.0)
    apply_template_change(templates[0], "quality", "RED", 7.5)
    assert templates[0]["category"] == "MARKETING" and templates[0]["previous_category"] == "UTILITY"
    assert templates[0]["quality_score"] == {"score": "RED", "date": 7}


def test_delivery_statuses_move_forward_and_severity_picks_the_worst() -> None:
    assert delivery_status_advances(None, "sent") and delivery_status_advances("read", "failed")
    assert not delivery_status_advances("read", "delivered") and not delivery_status_advances("read", "read")
    assert not delivery_status_advances(None, "deleted")  # not a status Meta sends for a message
    assert most_severe_status(["FLAGGED", None, "RESTRICTED"]) == "RESTRICTED"
    assert most_severe_status(["SOMETHING_NEW", "FLAGGED"]) == "FLAGGED"
    assert most_severe_status([None, None]) is None


def test_recipient_facts_count_marketing_per_business_and_bound_the_pair_history() -> None:
    now = 10_000.0
    sends: list[tuple[str, str | None, str | None, float, bool | None]] = [
        ("p1", "w1", "marketing", now - i, i == 1) for i in range(1, 70)
    ] + [
        ("p2", "w1", "marketing", now - 100.5, None),  # same WABA, other number
        ("p3", None, "marketing", now - 101.0, False),  # another business
        ("p1", "w1", "utility", now - 5000.0, None),  # older than the pair rate's hour
    ]
    sends.sort(key=lambda s: -s[3])
    facts = recipient_facts(
        "p1", "w1", now, consent=None, place=None, last_inbound_at=None, sends=sends,
        failures=[(131026, now - i) for i in range(FAILURE_LIMIT + 5)], free_entry_point_at=None,
    )  # fmt: skip
    assert facts.last_sent_at == now - 1
    assert len(facts.pair_sent_at) == PAIR_HISTORY_LIMIT and facts.pair_sent_at[0] == now - 1
    assert now - 100.5 in facts.marketing_sent_at and now - 101.0 not in facts.marketing_sent_at
    assert len(facts.delivery_failures) == FAILURE_LIMIT
    # sent inside a window the user opened: left out of the list Meta's limit counts; unknown counts
    assert now - 1 in facts.marketing_sent_at and now - 1 not in facts.marketing_outside_window_sent_at
    assert now - 2 in facts.marketing_outside_window_sent_at and now - 100.5 in facts.marketing_outside_window_sent_at
    no_waba = recipient_facts(
        "p1", None, now, consent=None, place=None, last_inbound_at=None, sends=sends, failures=[],
        free_entry_point_at=None,
    )  # fmt: skip
    assert now - 100.5 not in no_waba.marketing_sent_at  # without a WABA: this number's only


def test_review_notes_need_a_reviewer_and_a_bounded_note() -> None:
    check_review(ReviewRecord("d", "ana", "x" * MAX_NOTE, 1.0))
    with pytest.raises(InvalidRecord, match="reviewer"):
        check_review(ReviewRecord("d", "", "ok", 1.0))
    with pytest.raises(InvalidRecord, match=str(MAX_NOTE)):
        check_review(ReviewRecord("d", "ana", "x" * (MAX_NOTE + 1), 1.0))


def test_counts_key_every_decision_by_account_and_rejections_by_template_and_rule() -> None:
    reasons = [{"rule": "window.closed"}, {"rule": "consent.required"}, {"rule": "window.closed"}, {"message": "x"}, "odd"]
    rules = decision_rules(reasons)
    assert rules == ["consent.required", "window.closed"]
    assert count_keys("allow", "111", "spring_sale", rules) == [("all", ""), ("account", "111")]
    assert count_keys("deny", "111", "spring_sale", rules) == [
        ("all", ""), ("account", "111"), ("template", "spring_sale"), ("rule", "consent.required"),
        ("rule", "window.closed"),
    ]  # fmt: skip
    assert count_keys("defer", "111", None, []) == [("all", ""), ("account", "111")]

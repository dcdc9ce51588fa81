"""The state layer's business rules, as pure functions every backend calls: no I/O here.

A backend reads what a rule needs, calls it, and writes what it says, in one transaction;
so two backends that read and write faithfully behave the same (`state/roles.py` states
each contract, tests/test_state_rules.py tests these directly).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import islice, takewhile
from typing import Any

from sendgate.state.base import ConsentRecord, InvalidRecord, RecipientFacts, ReviewRecord
from sendgate.state.catalog import OWN_KEY, effective_status

__all__ = [
    "ACCOUNT_SCOPES",
    "account_view",
    "CONSENT_ACTIONS",
    "DELIVERY_RANK",
    "FAILURE_LIMIT",
    "HISTORY_SECONDS",
    "MAX_NOTE",
    "PAIR_HISTORY_LIMIT",
    "PAIR_HISTORY_SECONDS",
    "SEVERITY",
    "ConsentMerge",
    "apply_status_event",
    "apply_template_change",
    "carry_webhook_facts",
    "repair_event_statuses",
    "check_review",
    "count_keys",
    "counter_state",
    "decision_rules",
    "delivery_status_advances",
    "match_templates",
    "merge_consent_event",
    "most_severe_status",
    "optout_second",
    "pair_history",
    "recipient_facts",
    "RESTRICTION_FIELD",
    "restrictions",
    "template_changes",
    "template_event_applies",
    "template_event_key",
]

# What the send path reads of a recipient's past (sends, Meta's delivery failures) and what
# retention keeps of the send history whatever `log.retention_days` says: 30 days.
HISTORY_SECONDS = 30 * 86400
FAILURE_LIMIT = 100  # delivery failures the policy input lists, newest first

# What the pair rate (policies/frequency.rego) can need of the sends from one number to one
# recipient: those of the last hour, at most 64. The rule decides exactly on that: a list of
# PAIR_HISTORY_LIMIT may have been cut, and the rule then assumes the worst of what came
# before; sends older than the hour cannot matter while PAIR_HISTORY_LIMIT intervals fit in
# it (policies/frequency_test.rego checks data.json). Short, because it is part of every
# message's input document.
PAIR_HISTORY_SECONDS = 3600
PAIR_HISTORY_LIMIT = 64

MAX_NOTE = 4000  # characters of one review note

# Delivery statuses only move forward: a later event of a lower rank changes nothing.
DELIVERY_RANK = {"sent": 1, "delivered": 2, "read": 3, "played": 4, "failed": 5}
# Account statuses, most severe first: `account_state` shows the worse of the number's and the WABA's.
SEVERITY = ("DELETED", "DISABLED", "RESTRICTED", "SCHEDULED_FOR_DISABLE", "VIOLATION", "FLAGGED")

CONSENT_ACTIONS = frozenset({"opt_out", "resubscribe", "resume"})

# `account_state`'s scopes: a phone number id, a WABA id, a business portfolio (its messaging limit).
ACCOUNT_SCOPES = frozenset({"phone", "waba", "portfolio"})


def account_view(fields: Mapping[tuple[str, str], str | None], pause: dict[str, Any] | None) -> dict[str, Any]:
    """`AccountState.account_state` from the number's, its WABA's and its portfolio's
    `account_state` rows ((scope, field) -> value) and the number's marketing pause, if any."""
    return {
        "quality": fields.get(("phone", "quality")),
        "status": most_severe_status([fields.get(("phone", "status")), fields.get(("waba", "status"))]),
        "messaging_limit": fields.get(("phone", "messaging_limit")),
        "marketing_paused": pause,
        "restrictions": restrictions((name, value) for (scope, name), value in fields.items() if scope == "waba"),
        **counter_state(fields),
    }


def counter_state(fields: Mapping[tuple[str, str], str | None]) -> dict[str, Any]:
    """The limits `account_state` adds for the send counters (docs/input.md): the number's
    upgraded throughput (THROUGHPUT_UPGRADE) and its portfolio's messaging limit, as integers."""

    def number(value: str | None) -> int | None:
        try:
            return None if value is None else int(value)
        except ValueError:
            return None

    return {
        "throughput_mps": number(fields.get(("phone", "throughput_mps"))),
        "portfolio_messaging_limit": number(fields.get(("portfolio", "messaging_limit"))),
    }


# -- recipient facts --------------------------------------------------------------------


def pair_history(sent_at: Iterable[float], now: float) -> list[float]:
    """`RecipientFacts.pair_sent_at` from the sends from this number to this recipient, newest first."""
    since = now - PAIR_HISTORY_SECONDS
    return list(islice(takewhile(lambda at: at > since, sent_at), PAIR_HISTORY_LIMIT))


def recipient_facts(
    phone_number_id: str,
    waba_id: str | None,
    now: float,
    *,
    consent: ConsentRecord | None,
    place: tuple[str | None, str | None] | None,
    last_inbound_at: float | None,
    sends: Iterable[tuple[str, str | None, str | None, float, bool | None]],
    failures: Iterable[tuple[int, float]],
    free_entry_point_at: float | None,
) -> RecipientFacts:
    """`RecipientFacts` from what the store holds of a recipient.

    `sends`: (phone number id, WABA id, category, sent at, in window) of the forwarded, not failed sends
    to the recipient, newest first; `failures`: (code, at), newest first. Marketing sends count
    for the same business: the WABA's when the sending number's WABA is known, else the number's.
    """
    sends = list(sends)
    if waba_id is not None:
        same_business = [s for s in sends if s[1] == waba_id]
    else:
        same_business = [s for s in sends if s[0] == phone_number_id]
    from_this_number = [s[3] for s in sends if s[0] == phone_number_id]
    return RecipientFacts(
        consent=consent,
        place=place,
        last_inbound_at=last_inbound_at,
        last_sent_at=from_this_number[0] if from_this_number else None,
        pair_sent_at=pair_history(from_this_number, now),
        marketing_sent_at=[s[3] for s in same_business if s[2] == "marketing"],
        delivery_failures=[{"code": code, "at": at} for code, at in islice(failures, FAILURE_LIMIT)],
        free_entry_point_at=free_entry_point_at,
        marketing_outside_window_sent_at=[s[3] for s in same_business if s[2] == "marketing" and not s[4]],
    )


# -- consent events from webhooks ---------------------------------------------------------


@dataclass(frozen=True)
class ConsentMerge:
    """What to do with one consent event: the record to append (None: nothing) and whether to
    mark the event seen, so its redeliveries change nothing."""

    append: ConsentRecord | None
    seen: bool


def optout_second(record: ConsentRecord) -> int:
    """An opt-out event's time as kept among the opt-outs seen: Meta's resolution, whole seconds."""
    return math.floor(record.recorded_at)


def merge_consent_event(
    record: ConsentRecord,
    action: str,
    *,
    latest: ConsentRecord | None,
    last_opt_in: ConsentRecord | None,
    newest_optout_at: int | None,
) -> ConsentMerge:
    """Decide a consent event from Meta's webhooks (see `ConsentLedger.apply_consent_event`).

    `latest`: the recipient's latest ledger record; `last_opt_in`: its latest opt-in record;
    `newest_optout_at`: the newest opt-out event seen for it before this one (whole seconds).

    Times are compared at Meta's resolution, whole seconds (floor): the app's records carry
    fractions, Meta's events do not.

    - `opt_out` is never dropped for ordering: it goes in unless the latest record already is an
      opt-out covering its categories (no categories = everything). One older than a later
      opt-in goes in too: the safe side wins, the app must confirm consent again.
    - `resubscribe` (an opt-in keyword) and `resume` (user_preferences resume) go in only when
      strictly newer than the latest record and than the newest opt-out event seen: on a tie
      the opt-out wins. `resubscribe` needs the latest record to be an opt-out and restores the
      last opt-in's categories, else `record.categories`; `resume` adds `record.categories` to
      the last opt-in's, unless the latest record already holds them.

    The event is seen when it went in or the state already held it; an opt-in not newer than the
    ledger, or with no opt-out to resubscribe from, is not, so its redelivery once the ledger has
    changed (a late opt-out appended since) can still apply it.
    """
    if action not in CONSENT_ACTIONS:
        raise ValueError(f"unknown consent action {action!r}")
    latest_categories = set(latest.categories) if latest else set()
    if action == "opt_out":
        covered = (
            latest is not None
            and latest.status == "opted_out"
            and (not latest_categories or (bool(record.categories) and set(record.categories) <= latest_categories))
        )
        return ConsentMerge(append=None if covered else record, seen=True)
    second = math.floor(record.recorded_at)
    if latest is not None and second <= math.floor(latest.recorded_at):
        return ConsentMerge(append=None, seen=False)
    if newest_optout_at is not None and second <= newest_optout_at:
        return ConsentMerge(append=None, seen=False)
    previous = latest if latest is not None and latest.status == "opted_in" else last_opt_in
    held = previous.categories if previous else ()
    if action == "resubscribe":
        if latest is None:
            return ConsentMerge(append=None, seen=False)
        if latest.status != "opted_out":
            return ConsentMerge(append=None, seen=True)
        categories = held or record.categories
    else:
        categories = tuple(dict.fromkeys([*held, *record.categories]))
        if latest is not None and latest.status == "opted_in" and set(categories) <= latest_categories:
            return ConsentMerge(append=None, seen=True)
    return ConsentMerge(append=dataclasses.replace(record, categories=categories), seen=True)


# -- template events ----------------------------------------------------------------------


def template_changes(status: str | None, quality: str | None, category: str | None) -> dict[str, str]:
    """The fields a template event changes (those it gives)."""
    return {k: v for k, v in (("status", status), ("quality", quality), ("category", category)) if v}


def match_templates(
    templates: list[dict[str, Any]], template_id: str | None, name: str | None, language: str | None
) -> list[dict[str, Any]]:
    """The catalog entries an event is about: by template id, else by name (and language when given)."""
    matches = [t for t in templates if template_id is not None and str(t.get("id")) == template_id]
    if not matches and name is not None:
        matches = [t for t in templates if t.get("name") == name and (language is None or t.get("language") == language)]
    return matches


def template_event_key(template: dict[str, Any]) -> str:
    """What a field's last applied change is kept under, per template (name and language)."""
    return f"{template.get('name')}:{template.get('language')}"


def template_event_applies(last_applied_at: float | None, at: float) -> bool:
    """A change to a field applies unless a newer change to it was applied (ties apply: redelivery
    of the same event rewrites the same value)."""
    return last_applied_at is None or last_applied_at <= at


def apply_template_change(
    template: dict[str, Any], field: str, value: str, at: float, disable_at: float | None = None
) -> None:
    """Write one applied change into a catalog entry (Graph's shape), in place. A status change
    is Meta's event name (`apply_status_event`)."""
    if field == "status":
        apply_status_event(template, value, at, disable_at)
    elif field == "quality":
        template["quality_score"] = {"score": value, "date": int(at)}
    else:
        if template.get("category") != value:
            template["previous_category"] = template.get("category")
        template["category"] = value


def apply_status_event(template: dict[str, Any], event: str, at: float, disable_at: float | None = None) -> None:
    """A message_template_status_update event into a catalog entry, in place (Meta's event names:
    webhooks reference message_template_status_update; pywa TemplateStatus).

    Graph's `status` changes as the event says, except: FLAGGED keeps the status and records the
    flag and its disable date (`disable_at`, from disable_info); LOCKED / UNLOCKED only record the
    lock; REINSTATED is APPROVED again; ARCHIVED keeps the status it ends (`status_before_archive`)
    and UNARCHIVED brings it back (APPROVED when sendgate never saw it). APPROVED, REINSTATED and
    DISABLED end a flag. What sendgate keeps lives under the entry's `sendgate` key."""
    own: dict[str, Any] = found if isinstance(found := template.get(OWN_KEY), dict) else {}
    event = event.upper()
    if event == "FLAGGED":
        own.update(flagged=True, flagged_at=at, flagged_until=disable_at)
        if str(template.get("status", "")).upper() == "FLAGGED":
            template["status"] = "APPROVED"
    elif event in ("LOCKED", "UNLOCKED"):
        own["locked"] = event == "LOCKED"
        if str(template.get("status", "")).upper() in ("LOCKED", "UNLOCKED"):
            template["status"] = "APPROVED"
    elif event == "ARCHIVED":
        current = effective_status(template)
        if current != "ARCHIVED":  # a redelivery keeps the status the first one saved
            own["status_before_archive"] = current
        template["status"] = "ARCHIVED"
    elif event == "UNARCHIVED":
        # Kept, not popped: a redelivered UNARCHIVED restores the same status.
        template["status"] = own.get("status_before_archive") or "APPROVED"
    else:
        template["status"] = "APPROVED" if event == "REINSTATED" else event
        if event in ("APPROVED", "REINSTATED", "DISABLED"):
            for key in ("flagged", "flagged_at", "flagged_until"):
                own.pop(key, None)
    if own:
        template[OWN_KEY] = own
    else:
        template.pop(OWN_KEY, None)


def carry_webhook_facts(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> None:
    """A catalog replacing `old` keeps, per name and language, what Meta's status webhooks told
    of a template that Graph's listing does not say (the `sendgate` key: flag, lock, the status
    before an archive); an entry that brings its own keeps its own. In place, on `new`."""
    kept = {
        (t.get("name"), t.get("language")): t[OWN_KEY]
        for t in old
        if isinstance(t, dict) and isinstance(t.get(OWN_KEY), dict)
    }
    for template in new:
        facts = kept.get((template.get("name"), template.get("language")))
        if facts is not None and OWN_KEY not in template:
            template[OWN_KEY] = dict(facts)


# Event names that sendgate before schema 2 stored as a template's status.
_EVENTS_STORED_AS_STATUS = frozenset({"FLAGGED", "LOCKED", "UNLOCKED", "UNARCHIVED"})


def repair_event_statuses(templates: list[dict[str, Any]]) -> bool:
    """Catalog entries whose status is one of those events become what the event means
    (`apply_status_event`, with no disable date known); whether any changed. In place."""
    changed = False
    for template in templates:
        status = str(template.get("status", "")).upper() if isinstance(template, dict) else ""
        if status in _EVENTS_STORED_AS_STATUS:
            apply_status_event(template, status, 0.0)
            changed = True
    return changed


# -- delivery and account status -----------------------------------------------------------


def delivery_status_advances(current: str | None, new: str) -> bool:
    """Whether `new` moves a record's delivery status forward (an unknown status never does)."""
    rank = DELIVERY_RANK.get(new)
    return rank is not None and DELIVERY_RANK.get(current or "", 0) < rank


def most_severe_status(statuses: Iterable[str | None]) -> str | None:
    """The most severe of the given account statuses (unknown ones rank last), None when none."""
    known = sorted((s for s in statuses if s), key=lambda s: SEVERITY.index(s) if s in SEVERITY else len(SEVERITY))
    return known[0] if known else None


# A WABA's typed restriction from account_update (ACCOUNT_RESTRICTION) is an `account_state` row
# of scope `waba`, field RESTRICTION_FIELD + its type, value its expiry in Unix seconds ("" when
# Meta gave none), NULL once lifted.
RESTRICTION_FIELD = "restriction:"


def restrictions(fields: Iterable[tuple[str, str | None]]) -> list[dict[str, Any]]:
    """`account.restrictions` of the input from a WABA's (field, value) rows: [{"type", "expires_at"}]
    by type; an expiry that passed stays listed (the policies compare it with `now`)."""
    out = []
    for name, value in fields:
        if name.startswith(RESTRICTION_FIELD) and value is not None:
            try:
                expires_at: float | None = float(value) if value else None
            except ValueError:
                expires_at = None
            out.append({"type": name[len(RESTRICTION_FIELD):], "expires_at": expires_at})
    return sorted(out, key=lambda r: str(r["type"]))


# -- decision counts ----------------------------------------------------------------------


def decision_rules(reasons: Iterable[Any]) -> list[str]:
    """The rule ids a record's reasons name, sorted and once each: what the rule filter and the
    `rule` counts key on."""
    return sorted({r["rule"] for r in reasons if isinstance(r, dict) and isinstance(r.get("rule"), str)})


def count_keys(decision: str, account: str, template: str | None, rules: Iterable[str]) -> list[tuple[str, str]]:
    """The (dimension, key) pairs one decision counts under (`DecisionCount`): every decision under
    `all` and its account; a rejection also under its template and each of its rules."""
    keys = [("all", ""), ("account", account)]
    if decision != "allow":
        if template is not None:
            keys.append(("template", template))
        keys.extend(("rule", rule) for rule in rules)
    return keys


# -- review trail -----------------------------------------------------------------------


def check_review(review: ReviewRecord) -> None:
    """Raise `InvalidRecord` for a note the trail does not take: no reviewer, or too long."""
    if not review.reviewer:
        raise InvalidRecord("a review needs a reviewer")
    if len(review.note) > MAX_NOTE:
        raise InvalidRecord(f"a review note is at most {MAX_NOTE} characters")

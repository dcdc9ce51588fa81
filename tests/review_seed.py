"""Synthetic decision records for the review tests: a spread of rules, accounts, templates and outcomes."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

from sendgate.gateway.recorder import recipient_key
from sendgate.ids import DecisionIds
from sendgate.state import DecisionRecord, Store

RULE_MESSAGES = {
    "window.closed": "the customer service window is closed: the recipient last wrote more than 24 h ago",
    "consent.missing": "no consent record for this recipient",
    "consent.opted_out": "the recipient opted out",
    "template.not_approved": "template status is PENDING",
    "template.paused": "template is paused",
    "frequency.marketing": "marketing cap reached: 1 per 24 h",
    "frequency.pair_rate": "5 messages in the last 30 s: the pair rate's burst is used up",
    "content.banned_term": "banned term in the text",
    "content.url_domain": "link through a URL shortener",
    "quiet_hours": "21:00-08:00 in the recipient's time zone",
    "account.market": "recipient country outside the account's markets",
}
ACCOUNTS = ("106540352242922", "106540352242933", "106540352242944")
TEMPLATES = ("order_update", "spring_sale", "paused_promo", "pending_notice", None)


def synthetic(ids: DecisionIds, ts: float, rng: random.Random, **overrides: Any) -> DecisionRecord:
    """One record at `ts`: mostly allowed, the rest rejected for one or two rules."""
    roll = rng.random()
    template = rng.choice(TEMPLATES)
    recipient = f"1650555{rng.randrange(10_000):04d}"
    reasons: list[dict[str, Any]] = []
    if roll < 0.55:
        decision = "allow"
    elif roll < 0.85:
        decision = "deny"
        for rule in rng.sample(sorted(RULE_MESSAGES), 2 if rng.random() < 0.15 else 1):
            if rule not in ("frequency.pair_rate", "quiet_hours"):
                reasons.append({"rule": rule, "message": RULE_MESSAGES[rule]})
        if not reasons:
            reasons.append({"rule": "window.closed", "message": RULE_MESSAGES["window.closed"]})
    elif roll < 0.93:
        decision = "defer"
        rule = rng.choice(("frequency.pair_rate", "quiet_hours"))
        reasons.append({"rule": rule, "message": RULE_MESSAGES[rule]})
    elif roll < 0.98:
        decision = "invalid"
        reasons.append({"rule": "request.invalid", "message": "to must be a string"})
        template = None
    else:
        decision = "error"
        reasons.append({"rule": "engine.error", "message": "policy evaluation failed"})
    rejected = decision != "allow"
    values: dict[str, Any] = dict(
        id=ids.new(ts), timestamp=ts, endpoint="messages", api_version="v23.0", account=rng.choice(ACCOUNTS),
        waba_id="102290129340398", recipient=recipient, recipient_key=recipient_key(recipient),
        type="template" if template else "text", template=template,
        category="marketing" if template == "spring_sale" else ("utility" if template else None),
        decision=decision, mode="enforce", forwarded=not rejected, reasons=reasons,
        policy_revision="rev-3f9a1c", eval_us=41.0,
        content={"to": recipient, "type": "text", "text": {"body": "Hello"}} if rejected else None,
        facts={"recipient": {"id": recipient, "country": "US", "timezone": "America/Los_Angeles",
                             "local_time": {"hour": 14, "minute": 0, "weekday": 1}, "consent": None,
                             "last_inbound_at": None, "history": {"last_sent_at": None, "marketing_sent_at": []}},
               "template": None} if rejected else None,
    )  # fmt: skip
    values.update(overrides)
    return DecisionRecord(**values)


async def seed(store: Store, now: float, count: int, span: float = 30 * 86400, seed: int = 7) -> list[DecisionRecord]:
    """`count` records spread over the `span` seconds before `now`, logged oldest first."""
    rng = random.Random(seed)
    ids = DecisionIds()
    times = sorted(now - rng.random() * span for _ in range(count))
    records = [synthetic(ids, ts, rng) for ts in times]
    await asyncio.gather(*(store.log_decision(record) for record in records))  # group-committed
    return records


def brute_counts(
    records: list[DecisionRecord], since: float, until: float, bucket: int | None
) -> Counter[tuple[Any, ...]]:
    """What `decision_counts` must say of `records`, counted one by one."""
    counts: Counter[tuple[Any, ...]] = Counter()
    for r in records:
        if not since <= r.timestamp < until:
            continue
        b = None if bucket is None else float(int(r.timestamp // bucket) * bucket)
        counts[(b, "all", "", r.decision, r.mode)] += 1
        counts[(b, "account", r.account, r.decision, r.mode)] += 1
        if r.decision != "allow":
            if r.template is not None:
                counts[(b, "template", r.template, r.decision, r.mode)] += 1
            for rule in {reason["rule"] for reason in r.reasons}:
                counts[(b, "rule", rule, r.decision, r.mode)] += 1
    return counts

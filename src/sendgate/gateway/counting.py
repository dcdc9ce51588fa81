"""The send counters a decision reads: Meta's throughput, its messaging limit, same-content pacing.

Each is a count over a moving window (`state/counters.py`), taken while the send's facts are
gathered, inside its admission hold, and given to the policies as a fact of the input
(docs/input.md): the rules only read whether the count admitted the send.

- `account.throughput`: `take("throughput:<phone_number_id>")`, `account.throughput_mps` per
  1 s (Meta: 80 messages/s per number, 20 for a coexistence number, 1,000 after an upgrade;
  FACTS.md §3). Every call counts, read receipts and encrypted sends too: Meta's throughput
  counts every message.
- `account.same_content`: `add_distinct("content:<phone_number_id>:<hash>", recipient)`: the
  distinct recipients of one normalized content from one number in a moving window, the
  threshold per category from the serving policies' `data.sendgate.params.pacing.same_content`.
- `account.reach`: `add_distinct("reach:<portfolio>", recipient)`, `account.messaging_limit` per
  86,400 s: the unique users a portfolio reaches with business-initiated messages (templates,
  Direct Send) outside an open customer-service window (Meta's messaging limit).

Counted in that order, and a count that refuses ends the counting: a send deferred for the
throughput or the pacing takes no place in the portfolio's 24 h. What was counted is undone
(`undo`) when the send is then not forwarded (SendPath), so only forwarded sends count.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from typing import Any

import orjson

from sendgate.config import Config
from sendgate.facts import WINDOW_SECONDS, in_open_window
from sendgate.messages import DIRECT_SEND_CATEGORIES, DIRECT_SEND_TYPES
from sendgate.state.counters import Counted, SendCounters, SharedStateError

__all__ = ["REACH_WINDOW", "SendCounting", "content_hash", "pacing_threshold"]

log = logging.getLogger("sendgate.gateway")

REACH_WINDOW = 86400.0  # Meta's messaging limit: unique users in a moving 24 h (FACTS.md §3)
THROUGHPUT_WINDOW = 1.0  # messages per second


def content_hash(message: Mapping[str, Any]) -> str | None:
    """The normalized content of a message, hashed: a template's name, language and parameter
    texts, or a message's type, visible texts and media; case and runs of spaces do not count.
    None for a message with no content to compare (a reaction without text...)."""
    template = message.get("template")
    if isinstance(template, Mapping):
        texts = [
            _normalized(str(parameter.get("text", parameter.get("payload", ""))))
            for component in template.get("components") or []
            for parameter in component.get("parameters") or []
            if isinstance(parameter, Mapping)
        ]
        parts: list[Any] = ["template", template.get("name"), template.get("language"), texts]
    else:
        media = message.get("media") or {}
        texts = [_normalized(t) for t in message.get("texts") or [] if isinstance(t, str)]
        parts = [message.get("type"), texts, media.get("id"), media.get("link")]
        if not any(texts) and media.get("id") is None and media.get("link") is None:
            return None
    return hashlib.sha256(orjson.dumps(parts)).hexdigest()[:16]


def _normalized(text: str) -> str:
    return " ".join(text.casefold().split())


def _category(doc: Mapping[str, Any]) -> str:
    """MARKETING | UTILITY | AUTHENTICATION (templates, Direct Send), SERVICE (free-form), UNKNOWN."""
    message = doc["message"]
    if doc.get("endpoint") == "marketing_messages":
        return "MARKETING"
    if message.get("type") == "template":
        category = (doc.get("template") or {}).get("category")
        return str(category).upper() if isinstance(category, str) else "UNKNOWN"
    direct = message.get("category")
    if isinstance(direct, str) and direct.lower() in DIRECT_SEND_CATEGORIES:
        return direct.upper()
    return "SERVICE"


def pacing_threshold(params: Mapping[str, Any], doc: Mapping[str, Any], digest: str) -> dict[str, Any] | None:
    """The same-content threshold for this send from `params.pacing.same_content` (docs/policies.md):
    a vetted campaign's (by content hash, else template name), else its category's; for a marketing
    template whose quality is in `low_quality.qualities` (null counts as UNKNOWN), the stricter of
    that and `low_quality`'s. None: this content is not paced."""
    pacing = params.get("pacing")
    options = pacing.get("same_content") if isinstance(pacing, Mapping) else None
    if not isinstance(options, Mapping):
        return None
    category = _category(doc)
    template = doc["message"].get("template") or {}
    found = options.get("vetted")
    vetted: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    chosen = vetted.get(digest) or (vetted.get(str(template["name"])) if template.get("name") else None)
    source = "vetted"
    if not _valid(chosen):
        found = options.get("categories")
        categories: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        chosen, source = categories.get(category), "category"
    low = options.get("low_quality")
    if category == "MARKETING" and template and isinstance(low, Mapping) and _valid(low):
        quality = (doc.get("template") or {}).get("quality")
        quality = str(quality).upper() if isinstance(quality, str) else "UNKNOWN"
        stricter = not isinstance(chosen, Mapping) or not _valid(chosen) or low["max_recipients"] < chosen["max_recipients"]
        if quality in set(low.get("qualities") or []) and stricter:
            chosen, source = low, "low_quality"
    if not isinstance(chosen, Mapping) or not _valid(chosen):
        return None
    return {"limit": chosen["max_recipients"], "window_seconds": chosen["window_seconds"], "category": category,
            "threshold": source}  # fmt: skip


def _valid(threshold: Any) -> bool:
    if not isinstance(threshold, Mapping):
        return False
    limit, window = threshold.get("max_recipients"), threshold.get("window_seconds")
    return (isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1
            and isinstance(window, (int, float)) and not isinstance(window, bool) and window > 0)  # fmt: skip


def _fact(counted: Counted, limit: int, window: float, **extra: Any) -> dict[str, Any]:
    return {
        "limit": limit,
        "window_seconds": window,
        "admitted": counted.admitted,
        "count": counted.count,
        "retry_after": counted.retry_after,  # exact seconds until a new one is admitted; 0 when admitted
        "retry_after_ms": -(-round(counted.retry_after * 1e6) // 1000),  # the same, whole ms rounded up
        **extra,
    }


class SendCounting:
    """Counts one send into the counters its rules read, and takes the counts back."""

    def __init__(self, config: Config, counters: SendCounters) -> None:
        self._config = config
        self._counters = counters

    async def count(self, doc: dict[str, Any], params: Mapping[str, Any], now: float) -> list[Counted]:
        """Fill in `doc`'s counter facts; what was counted (for `undo`). Raises SharedStateError
        (Redis down) after taking back what it had counted."""
        counted: list[Counted] = []
        try:
            await self._count(doc, params, now, counted)
        except SharedStateError:
            await self.undo(counted)
            raise
        return counted

    async def _count(self, doc: dict[str, Any], params: Mapping[str, Any], now: float, counted: list[Counted]) -> None:
        account, message = doc["account"], doc["message"]
        phone = account["phone_number_id"]
        limit = int(account["throughput_mps"])
        taken = await self._counters.take(f"throughput:{phone}", limit=limit, window=THROUGHPUT_WINDOW, now=now)
        account["throughput"] = _fact(taken, limit, THROUGHPUT_WINDOW)
        if not taken.admitted:
            return
        counted.append(taken)
        recipient = message.get("recipient")
        if recipient is None or message.get("is_status") or message.get("type") == "encrypted":
            return  # no content the gateway can read, no user reached
        digest = content_hash(message)
        threshold = None if digest is None else pacing_threshold(params, doc, digest)
        if threshold is not None:
            window = float(threshold["window_seconds"])
            added = await self._counters.add_distinct(
                f"content:{phone}:{digest}", recipient, limit=threshold["limit"], window=window, now=now
            )
            account["same_content"] = _fact(added, threshold["limit"], window, hash=digest, category=threshold["category"],
                                            threshold=threshold["threshold"])  # fmt: skip
            if not added.admitted:
                return
            counted.append(added)
        reach_limit = account.get("messaging_limit")
        portfolio = account.get("portfolio")
        if (
            portfolio is None
            or not isinstance(reach_limit, int)
            or reach_limit < 1  # -1: unlimited
            or not _business_initiated(doc)
            or _window_open(doc, params, now)
        ):
            return
        reached = await self._counters.add_distinct(
            f"reach:{portfolio}", recipient, limit=reach_limit, window=REACH_WINDOW, now=now
        )
        account["reach"] = _fact(reached, reach_limit, REACH_WINDOW)
        if reached.admitted:
            counted.append(reached)

    async def undo(self, counted: list[Counted]) -> None:
        """Take back every count of a send that was not forwarded (newest first). A Redis that
        cannot answer keeps them: the counts are then higher than what was sent, the safe side,
        for at most their window."""
        for one in reversed(counted):
            try:
                await self._counters.undo(one)
            except SharedStateError as exc:
                log.warning("could not take back the count %s of a send that was not forwarded: %s", one.key, exc)
        counted.clear()


def _business_initiated(doc: Mapping[str, Any]) -> bool:
    """A template, or a Direct Send (a text or interactive with a utility or authentication
    `category`): what Meta's messaging limit counts."""
    message = doc["message"]
    if message.get("type") == "template" or doc.get("endpoint") == "marketing_messages":
        return True
    category = message.get("category")
    return (
        message.get("type") in DIRECT_SEND_TYPES
        and isinstance(category, str)
        and category.lower() in DIRECT_SEND_CATEGORIES
    )


def _window_open(doc: Mapping[str, Any], params: Mapping[str, Any], now: float) -> bool:
    """The user wrote within the customer-service window (`params.window.seconds`, else Meta's 24 h)."""
    window = params.get("window")
    seconds = window.get("seconds") if isinstance(window, Mapping) else None
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        seconds = WINDOW_SECONDS
    return in_open_window(doc, now, seconds) is True

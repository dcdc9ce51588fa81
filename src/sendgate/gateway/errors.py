"""Errors in the Graph API's own shape, with Meta's codes where a rule matches one.

Apps already handle Meta's codes (131047: send a template instead; 131056: retry
this user later...), so a rejection that mirrors one costs them no new code and
happens before the message is paid for.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

__all__ = [
    "CODE_ENGINE",
    "CODE_INVALID",
    "CODE_UNMATCHED_RULE",
    "RULE_CODES",
    "SENDGATE_CODES",
    "graph_error",
    "http_status",
    "policy_error",
    "primary_reason",
    "rule_code",
]

CODE_INVALID = 100  # Meta: invalid parameter
CODE_ENGINE = 2  # Meta: service temporarily unavailable
CODE_UNMATCHED_RULE = 770000  # a rule with no code of its own (e.g. one the compliance team added)

# Meta's code where the rule means what Meta's error means; sendgate's 770xxx otherwise.
RULE_CODES: dict[str, int] = {
    "window.closed": 131047,
    "consent.opted_out": 770101,  # 131050 when the template is marketing, see rule_code()
    "consent.missing": 770100,
    "consent.category": 770102,
    "template.unknown": 132001,
    "template.not_approved": 132001,
    "template.language": 132001,
    "template.paused": 132015,
    "template.params": 132000,
    "template.disabled": 132016,  # DISABLED, or FLAGGED past its disable date
    "template.param_format": 132018,  # a newline, tab or more than 4 consecutive spaces
    "template.param_empty": 100,  # Meta: "Parameter 'text' is mandatory..."
    "template.auth_code_length": 131009,  # "exceeds the maximum length in the AUTHENTICATION category"
    "template.header_length": 132005,
    "template.body_length": 132005,  # hydrated text too long
    "template.param_name": 100,  # Meta: "Parameter name is missing or empty"
    "template.header_format": 132012,  # parameter format mismatch
    "frequency.pair_rate": 131056,
    "frequency.marketing": 131049,
    "content.banned_term": 770400,
    "content.url_domain": 770401,
    "content.length": 770402,
    "content.encrypted": 770403,
    "content.prohibited_commerce": 770404,  # Meta has no code: its policies, enforced on the account later
    "content.card_number": 770405,
    "content.iban": 770406,
    # Meta: 131009 "Parameter value is not valid" ("Button title length invalid. Min length: 1,
    # Max length: 20", "Total row count exceed max allowed count: 10"); 100 is for a parameter
    # that is missing, unknown or of the wrong type, which normalize() answers before the policies.
    "payload.length": 131009,
    "payload.buttons": 131009,
    "payload.duplicate_button": 131009,
    "payload.list": 131009,
    "payload.location": 131009,
    "quiet_hours": 770500,
    "account.unknown": 770600,
    "account.market": 130497,
    "account.quality": 770601,  # Meta flagged the number or rated it RED: marketing paused
    "account.paused": 770602,  # an alert paused marketing until an operator clears it
    "account.restricted": 368,  # Meta restricted the WABA (account_update): temporarily blocked
    # Direct Send (Meta's direct-send/api-reference): 100 for an account not enabled and for a
    # ttl_seconds out of range; an authentication message to a BSUID: pywa's BSUID-unsupported code
    "direct_send.not_enabled": 100,
    "direct_send.ttl_range": 100,
    "direct_send.authentication_bsuid": 131062,
    "delivery.marketing_country": 131049,  # USER_MARKETING_TEMPLATE_LIMIT: US marketing paused
    "delivery.marketing_limited": 131049,  # Meta held marketing back in the last 24 h
    "delivery.undeliverable": 131026,  # undeliverable again and again: held
    "throughput.exceeded": 130429,  # Meta's throughput per number (a defer: 429 + Retry-After)
    # Meta has no send-time code for its messaging limit (FACTS.md §3; 131064 is a limit set for
    # template classification violations, not this): sendgate's own.
    "messaging_limit.reached": 770700,
    "pacing.same_content": 770701,  # same content to many recipients at once (a defer)
    # Meta's "Media upload error": a media type or size Meta does not take for the message's type
    "media.type": 131053,
    "media.size": 131053,
}

# The HTTP status Meta answers each of its codes with that differs from 400, its status for the
# policy and parameter errors (FACTS.md §2, Meta's error-codes table). Only the codes a rejection
# can carry matter here; the fake Graph API keeps Meta's whole table on its own, and a test holds
# the two equal.
_META_STATUS: dict[int, int] = {
    0: 401, 190: 401,
    2: 503,
    3: 500, 131000: 500, 131016: 500, 131045: 500, 131057: 500,
    10: 403, 200: 403, 368: 403, 130497: 403, 131005: 403, 131031: 403,
    132001: 404,
}  # fmt: skip

SENDGATE_CODES = range(770000, 780000)  # sendgate's own: refusals Meta has no code for


def http_status(code: int) -> int:
    """The HTTP status of a denial with Graph code `code`: Meta's for Meta's codes, 403 for sendgate's own.

    Apps key on Meta's codes, and some on Meta's statuses too: a denial that mirrors Meta's error
    looks like it in both. A deferral is always 429 with Retry-After, whatever its code.
    """
    if code in SENDGATE_CODES:
        return 403
    if 200 <= code <= 299:  # Meta's API permission range
        return 403
    return _META_STATUS.get(code, 400)


# Which reason names the error when several fire: the one an app can act on first.
_PRIORITY = (
    "account.",
    "content.encrypted",
    "direct_send.",
    "consent.opted_out",
    "window.",
    "template.",
    "payload.",
    "media.",
    "consent.",
    "delivery.",
    "messaging_limit.",
    "frequency.",
    "content.",
    "throughput.",
    "pacing.",
    "quiet_hours",
)


def rule_code(reason: dict[str, Any]) -> int:
    """The Graph error code for one reason. A reason may carry its own integer `code`."""
    code = reason.get("code")
    if isinstance(code, int) and not isinstance(code, bool):
        return code
    rule = reason.get("rule", "")
    if rule == "consent.opted_out" and reason.get("category") == "marketing":
        return 131050
    return RULE_CODES.get(rule, CODE_UNMATCHED_RULE)


def _rank(reason: dict[str, Any]) -> int:
    rule = str(reason.get("rule", ""))
    return next((i for i, prefix in enumerate(_PRIORITY) if rule.startswith(prefix)), len(_PRIORITY))


def primary_reason(reasons: list[dict[str, Any]]) -> dict[str, Any]:
    return min(reasons, key=_rank)  # min() is stable: list order breaks ties


def graph_error(
    status: int,
    code: int,
    summary: str,
    *,
    kind: str,
    trace_id: str,
    details: str | None = None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    error: dict[str, Any] = {
        "message": f"(#{code}) {summary}",
        "type": kind,
        "code": code,
        "error_data": {"messaging_product": "whatsapp", "details": details or summary},
        "fbtrace_id": trace_id,
    }
    if extra:
        error["sendgate"] = extra
    return web.Response(
        status=status,
        body=orjson.dumps({"error": error}),
        content_type="application/json",
        headers={"X-Sendgate-Decision-Id": trace_id, **(headers or {})},
    )


def policy_error(
    decision_id: str, mode: str, reasons: list[dict[str, Any]], retry_after: int | None = None
) -> web.Response:
    """A denial answers with the status Meta uses for its code (`http_status`), a deferral with
    429 and Retry-After."""
    primary = primary_reason(reasons)
    code = rule_code(primary)
    extra: dict[str, Any] = {"decision_id": decision_id, "mode": mode, "reasons": reasons}
    headers = {}
    if retry_after is not None:
        extra["retry_after"] = retry_after
        headers["Retry-After"] = str(retry_after)
    return graph_error(
        http_status(code) if retry_after is None else 429,
        code,
        str(primary.get("message", primary.get("rule"))),
        kind="SendgatePolicyError",
        trace_id=decision_id,
        details="; ".join(f"{r.get('rule')}: {r.get('message', '')}" for r in reasons),
        extra=extra,
        headers=headers,
    )

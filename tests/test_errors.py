"""Rejections in Meta's shape: the code of each rule, and the HTTP status Meta uses for that code."""

from __future__ import annotations

import orjson
import pytest

from sendgate.fakegraph import ERRORS
from sendgate.gateway.errors import RULE_CODES, SENDGATE_CODES, http_status, policy_error, primary_reason, rule_code

# Every Graph code a rule can answer with: the table's, and 131050 for a marketing opt-out.
ANSWERED = sorted({*RULE_CODES.values(), rule_code({"rule": "consent.opted_out", "category": "marketing"})})


@pytest.mark.parametrize("code", ANSWERED)
def test_a_denial_with_metas_code_has_metas_status(code: int) -> None:
    if code in SENDGATE_CODES:
        assert http_status(code) == 403  # sendgate's own refusals: Meta has no status for them
    else:
        # The fake Graph API keeps Meta's error table independently of the gateway.
        assert code in ERRORS, f"{code} is not in Meta's error table"
        assert http_status(code) == ERRORS[code][1]


def test_statuses_of_codes_with_a_status_other_than_400() -> None:
    assert http_status(132001) == 404  # template does not exist or is not approved
    assert http_status(130497) == 403  # restricted from that country
    assert http_status(131047) == http_status(131049) == http_status(131056) == 400
    assert http_status(250) == 403  # Meta's API-permission range


def _answer(reasons: list[dict[str, object]], retry_after: int | None = None) -> tuple[int, dict[str, object], str | None]:
    response = policy_error("01KAV3N4Z4F7Q8W0Y5XGDJ2C9M", "enforce", reasons, retry_after)
    assert response.body is not None and isinstance(response.body, bytes)
    return response.status, orjson.loads(response.body)["error"], response.headers.get("Retry-After")


def test_policy_error_status_follows_the_primary_reason() -> None:
    status, error, retry = _answer([{"rule": "template.unknown", "message": "no such template"}])
    assert (status, error["code"], retry) == (404, 132001, None)
    # The window comes before content in the priority, and its code decides the status.
    status, error, _ = _answer([{"rule": "content.banned_term", "message": "x"}, {"rule": "window.closed", "message": "y"}])
    assert (status, error["code"]) == (400, 131047)
    status, error, _ = _answer([{"rule": "content.banned_term", "message": "x"}])
    assert (status, error["code"]) == (403, 770400)
    # A reason's own code wins, and so does Meta's status for it.
    status, error, _ = _answer([{"rule": "acme.rule", "message": "x", "code": 131026}])
    assert (status, error["code"]) == (400, 131026)


def test_a_deferral_is_429_with_retry_after_whatever_its_code() -> None:
    status, error, retry = _answer([{"rule": "frequency.pair_rate", "message": "wait", "retry_after": 6}], 6)
    assert (status, error["code"], retry) == (429, 131056, "6")


def test_every_rule_has_a_place_in_the_priority() -> None:
    # A rule with no place would never name the error while any ranked one fires beside it.
    last = {"rule": "acme.rule", "message": "a rule the compliance team added"}
    for rule in RULE_CODES:
        assert primary_reason([last, {"rule": rule, "message": "x"}])["rule"] == rule, rule

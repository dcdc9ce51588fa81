"""`frequency.pair_rate`'s closed form (policies/frequency.rego) against a token bucket run one arrival at a time.

The bucket is GCRA by virtual scheduling (ITU-T I.371): a theoretical arrival time
TAT, an arrival at t fits iff t >= TAT - (burst - 1) * interval, and a fitting
arrival moves TAT to max(TAT, t) + interval. Random arrival sequences go through
it one by one; at each, the embedded engine decides `data.sendgate.decision` on a
text whose only possible objection is the pair rate, with the sends admitted so far
as `history.pair_sent_at`. Times lie on a quarter-second grid and intervals are
binary fractions, so both sides compute exactly and every boundary is hit.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from copy import deepcopy
from functools import cache
from typing import Any

import orjson
import regorus
from hypothesis import given, settings
from hypothesis import strategies as st

from sendgate.messages import normalize
from sendgate.policy.base import ENTRYPOINT
from sendgate.policy.bundle import PolicyBundle
from sendgate.policy.embedded import compile_bundle
from sendgate.state.rules import PAIR_HISTORY_LIMIT, PAIR_HISTORY_SECONDS, pair_history

from .conftest import AFTERNOON, POLICIES

# (interval_seconds, burst): the default, a strict one-per-interval, and odd ones.
BUCKETS = [(6.0, 5), (6.0, 1), (2.5, 3), (7.25, 8), (1.0, 2), (6.0, 45)]
TEXT = normalize({"messaging_product": "whatsapp", "to": "16505551234", "type": "text", "text": {"body": "Hi"}},
                 "messages")


class Bucket:
    """GCRA, virtual scheduling: the bucket the rule must agree with."""

    def __init__(self, interval: float, burst: int) -> None:
        self.interval = interval
        self.tolerance = (burst - 1) * interval
        self.tat = -math.inf

    def fits(self, t: float) -> bool:
        return t >= self.tat - self.tolerance

    def take(self, t: float) -> None:
        self.tat = max(self.tat, t) + self.interval

    def retry_after(self, t: float) -> int:
        """Whole seconds from t until an arrival fits, as a Retry-After header says it."""
        return max(1, math.ceil(self.tat - self.tolerance - t))


@cache
def _engine(interval: float, burst: int) -> regorus.Engine:
    bundle = PolicyBundle.load(POLICIES)
    data = deepcopy(bundle.data)
    data["sendgate"]["params"]["frequency"]["pair_rate"] = {"interval_seconds": interval, "burst": burst}
    return compile_bundle(dataclasses.replace(bundle, data=data))


def _decide(interval: float, burst: int, now: float, pair_sent_at: list[float]) -> dict[str, Any]:
    document = {
        "now": now,
        "endpoint": "messages",
        "api_version": "v23.0",
        "gateway": {"mode": "enforce", "allow_unknown_accounts": False},
        "account": {"phone_number_id": "106540352242922", "known": True, "waba_id": "102290129340398",
                    "name": "Acme", "markets": None, "quality": None, "status": None, "messaging_limit": None,
                    "marketing_paused": None, "portfolio": "102290129340398", "throughput_mps": 80, "throughput": None,
                    "reach": None, "same_content": None},
        "message": TEXT,
        "recipient": {"id": "16505551234", "country": "US", "timezone": "America/Los_Angeles",
                      "local_time": {"hour": 12, "minute": 0, "weekday": 1}, "consent": None,
                      "last_inbound_at": now - 60, "delivery_failures": [], "free_entry_point_at": None,
                      "history": {"last_sent_at": pair_sent_at[0] if pair_sent_at else None,
                                  "pair_sent_at": pair_sent_at, "marketing_sent_at": []}},
        "template": None,
    }
    engine = _engine(interval, burst)
    engine.set_input_json(orjson.dumps(document).decode())
    decision: dict[str, Any] = orjson.loads(engine.eval_rule_as_json(ENTRYPOINT))
    assert decision["deny"] == [] and [r["rule"] for r in decision["defer"]] in ([], ["frequency.pair_rate"])
    return decision


def _times(steps: list[int]) -> list[float]:
    """Arrival times, oldest first, on a quarter-second grid: `steps` quarters apart."""
    out, t = [], AFTERNOON
    for step in steps:
        t += step * 0.25
        out.append(t)
    return out


def arrivals(max_size: int, gaps: st.SearchStrategy[int]) -> st.SearchStrategy[list[float]]:
    return st.lists(gaps, min_size=1, max_size=max_size).map(_times)


# Mostly bursts and gaps around an interval, sometimes a pause that empties the bucket.
short_gaps = st.one_of(st.integers(0, 4), st.integers(0, 40), st.sampled_from([10, 24, 29, 30, 31, 400]))


def _run(interval: float, burst: int, times: list[float], history: Callable[[list[float], float], list[float]],
         check: Callable[[Bucket, float, dict[str, Any]], None], shadow: bool = False) -> None:
    """Each arrival through the rule (fed `history` of the sends so far) and the bucket.

    The sends are what the rule let out (everything in shadow mode); the bucket takes
    those that fit it. So it is the bucket run over the sends (the checks assert that
    the rule lets out only what fits), or in shadow mode one that refused the excess.
    """
    bucket = Bucket(interval, burst)
    sent: list[float] = []  # newest first, as the store lists them
    for t in times:
        decision = _decide(interval, burst, t, history(sent, t))
        check(bucket, t, decision)
        if bucket.fits(t) and (decision["allow"] or shadow):
            bucket.take(t)
        if decision["allow"] or shadow:
            sent.insert(0, t)


def _exact(bucket: Bucket, t: float, decision: dict[str, Any]) -> None:
    assert decision["allow"] == bucket.fits(t), (t - AFTERNOON, bucket.tat - AFTERNOON)
    assert decision["retry_after"] == (None if bucket.fits(t) else bucket.retry_after(t))


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(bucket=st.sampled_from(BUCKETS), times=arrivals(60, short_gaps))
def test_pair_rate_decides_as_the_bucket(bucket: tuple[float, int], times: list[float]) -> None:
    """Fed the sends it admitted, the rule admits exactly what the bucket admits, and
    `retry_after` is the whole seconds until the bucket would next admit."""
    _run(*bucket, times, lambda sent, _: sent, _exact)


@settings(max_examples=150, deadline=None, database=None, derandomize=True)
@given(bucket=st.sampled_from(BUCKETS), times=arrivals(40, short_gaps))
def test_pair_rate_on_shadow_history_is_stricter(bucket: tuple[float, int], times: list[float]) -> None:
    """In shadow mode every message goes out: fed all of them, the rule admits only what
    a bucket that refused the excess would admit, and never asks for a shorter wait."""
    def stricter(bucket: Bucket, t: float, decision: dict[str, Any]) -> None:
        if decision["allow"]:
            assert bucket.fits(t)
        elif not bucket.fits(t):
            assert decision["retry_after"] >= bucket.retry_after(t)

    _run(*bucket, times, lambda sent, _: sent, stricter, shadow=True)


seen = {"full lists": 0, "cut by time": 0}


@st.composite
def long_runs(draw: st.DrawFn) -> list[float]:
    """Long runs near the rate, with a few pauses of about the hour the gateway lists."""
    steps = draw(st.lists(st.integers(0, 30), min_size=80, max_size=220))
    for at, pause in draw(st.lists(st.tuples(st.integers(0, len(steps) - 1),
                                             st.sampled_from([4 * 3599, 4 * 3600, 4 * 3601, 4 * 1800])), max_size=3)):
        steps[at] = pause
    return _times(steps)


@settings(max_examples=60, deadline=None, database=None, derandomize=True)
@given(bucket=st.sampled_from(BUCKETS), times=long_runs())
def test_pair_rate_on_the_gateways_bounded_history_is_never_laxer(bucket: tuple[float, int],
                                                                   times: list[float]) -> None:
    """What the gateway lists (state.rules.pair_history: the last hour, at most 64) never lets
    the rule admit what the whole history would defer (the bucket here takes exactly the
    sends the rule let out), nor wait less; short of 64 entries it is exact."""
    def safe(bucket: Bucket, t: float, decision: dict[str, Any], listed: int) -> None:
        if listed < PAIR_HISTORY_LIMIT:
            _exact(bucket, t, decision)
            return
        seen["full lists"] += 1
        assert not decision["allow"] or bucket.fits(t)
        if not bucket.fits(t):
            assert decision["retry_after"] >= bucket.retry_after(t)

    listed = {"n": 0}

    def history(sent: list[float], now: float) -> list[float]:
        bounded = pair_history(sent, now)
        listed["n"] = len(bounded)
        seen["cut by time"] += len(bounded) < min(len(sent), PAIR_HISTORY_LIMIT)
        return bounded

    _run(*bucket, times, history, lambda b, t, d: safe(b, t, d, listed["n"]))


def test_the_bounded_history_test_met_both_cuts() -> None:
    # Runs after it in file order: the strategy must reach a full list and a list cut by the hour.
    assert seen["full lists"] > 0 and seen["cut by time"] > 0, seen


def test_the_gateways_bound_is_the_rules() -> None:
    engine = compile_bundle(PolicyBundle.load(POLICIES))
    assert orjson.loads(engine.eval_rule_as_json("data.sendgate.frequency.pair_history_limit")) == PAIR_HISTORY_LIMIT
    rate = PolicyBundle.load(POLICIES).data["sendgate"]["params"]["frequency"]["pair_rate"]
    assert rate["interval_seconds"] * PAIR_HISTORY_LIMIT <= PAIR_HISTORY_SECONDS
    assert max(interval for interval, _ in BUCKETS) * PAIR_HISTORY_LIMIT <= PAIR_HISTORY_SECONDS

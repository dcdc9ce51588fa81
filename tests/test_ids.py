"""Decision ids: ULID layout in Crockford base32, issued in order."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from sendgate.ids import DecisionIds, crockford

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # no I, L, O, U


def _digits(value: int, chars: int) -> str:
    """The reference: one base-32 digit at a time, least significant first."""
    out = []
    for _ in range(chars):
        value, digit = divmod(value, 32)
        out.append(_CROCKFORD[digit])
    return "".join(reversed(out))


@given(st.integers(min_value=0, max_value=(1 << 130) - 1))
def test_crockford_is_base32_digit_by_digit(value: int) -> None:
    assert crockford(value, 26) == _digits(value, 26)


def test_crockford_edges() -> None:
    assert crockford(0, 10) == "0" * 10
    assert crockford((1 << 50) - 1, 10) == "Z" * 10
    assert crockford(31, 2) == "0Z"
    assert crockford(32, 2) == "10"


def test_an_id_carries_its_millisecond_and_80_random_bits() -> None:
    issued = DecisionIds().new(1_790_000_000.123)
    assert len(issued) == 26
    value = 0
    for c in issued:
        value = value * 32 + _CROCKFORD.index(c)
    assert value >> 80 == 1_790_000_000_123


def test_ids_sort_in_issue_order_within_a_millisecond_and_when_the_clock_steps_back() -> None:
    ids = DecisionIds()
    rng = random.Random(7)
    times = [1_790_000_000.0 + rng.choice((0.0, 0.0004, -2.0, 0.001)) for _ in range(2000)]
    issued = [ids.new(at) for at in times]
    assert issued == sorted(issued)
    assert len(set(issued)) == len(issued)

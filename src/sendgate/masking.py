"""Masking phone numbers (`log.mask_recipients`): one rule for the recorder, the log's views and the server log.

- A record whose recipient is known: that number wherever it appears (recipient column, content at
  any depth, facts, reason and warning texts), however it is written: `+1 (650) 555-1234` in a
  text is the recipient `16505551234`. A recipient that is not a phone number (a BSUID) is masked
  wherever it appears as written.
- A record whose recipient is not known (an invalid request: a body that is not JSON, a `to` that
  is a number or a list...) and a logged path: every run of digits that could be a phone number.
  A run is digits with at most three spaces, dots, dashes or parentheses between each two, and an
  optional leading `+`; it is masked when it holds 7 digits or more. E.164 numbers have at most 15
  digits, but a longer run may be several numbers written together, so it is masked too. Numbers
  in JSON (`"to": 16505551234`) and object keys count like text.

The masked form keeps the last 4 digits: `*******1234`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sendgate.state import DecisionRecord

__all__ = ["MIN_DIGITS", "mask_numbers", "mask_recipient", "mask_recipient_in", "mask_record"]

MIN_DIGITS = 7  # the shortest run of digits taken for a phone number when the recipient is not known
_RUN = re.compile(r"\+?\(?\d(?:[ \t\u00a0.()\-]{0,3}\d)*")
_NOT_DIGIT = re.compile(r"\D")


def mask_recipient(recipient: str) -> str:
    """`16505551234` -> `*******1234`; a BSUID keeps its first 3 characters instead."""
    keep = 4 if recipient.isdigit() else 3
    if len(recipient) <= keep:
        return "*" * len(recipient)
    if recipient.isdigit():
        return "*" * (len(recipient) - keep) + recipient[-keep:]
    return recipient[:keep] + "*" * (len(recipient) - keep)


def mask_numbers(value: Any) -> Any:
    """`value` (text, a number, or JSON of them) with every run of digits that could be a phone number masked."""
    return _Masker(lambda digits: len(digits) >= MIN_DIGITS).value(value)


def mask_recipient_in(value: Any, recipient: str) -> Any:
    """`value` with `recipient` masked wherever it appears, and however it is written when it is a number."""
    digits = recipient if recipient.isdigit() else None
    return _Masker(lambda run: digits is not None and digits in run, literal=None if digits else recipient).value(value)


def shown_record(record: DecisionRecord, mask: bool) -> DecisionRecord:
    """The record as every view of the log shows it: masked when masking is on, also if it was
    logged before masking was turned on (a record logged masked is left as it is)."""
    if not mask or (record.recipient is not None and "*" in record.recipient):
        return record
    return mask_record(record)


def mask_record(record: DecisionRecord) -> DecisionRecord:
    """A record as logged without masking (`recipient` the full number, or None), masked as the log shows it."""
    recipient = record.recipient

    def mask(value: Any) -> Any:
        return mask_numbers(value) if recipient is None else mask_recipient_in(value, recipient)

    return replace(
        record,
        recipient=None if recipient is None else mask_recipient(recipient),
        content=mask(record.content),
        facts=mask(record.facts),
        reasons=mask(record.reasons),
        warnings=mask(record.warnings),
    )


class _Masker:
    """Masks the runs of digits `hides` (given their digits) in text at any depth; `literal` as written."""

    def __init__(self, hides: Callable[[str], bool], literal: str | None = None) -> None:
        self._hides = hides
        self._literal = literal

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bool) or not isinstance(value, (int, float, dict, list, tuple)):
            return value
        if isinstance(value, dict):
            return {self.value(k): self.value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(v) for v in value]
        # A JSON number becomes the masked text when it is one to mask: `16505551234` -> `*******1234`.
        text = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
        masked = self.text(text)
        return value if masked == text else masked

    def text(self, text: str) -> str:
        if self._literal is not None:
            return text.replace(self._literal, mask_recipient(self._literal))
        return _RUN.sub(self._run, text)

    def _run(self, match: re.Match[str]) -> str:
        digits = _NOT_DIGIT.sub("", match[0])
        return mask_recipient(digits) if self._hides(digits) else match[0]

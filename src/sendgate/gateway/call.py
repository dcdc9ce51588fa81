"""The flow object: what is known about one send call as it moves down the path.

Its own module so that the send path, the recorder and the hooks observing them all read it
without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from yarl import URL

from sendgate.policy import Decision

__all__ = ["SendCall"]


@dataclass
class SendCall:
    """What is known about one call as it moves down the path (the flow object)."""

    id: str
    received_at: float
    endpoint: str
    api_version: str
    phone_number_id: str
    upstream_url: URL | None = None  # built before anything is read: a record never says forwarded without one
    raw_body: bytes = b""
    body: Any = None
    message: dict[str, Any] | None = None
    input: dict[str, Any] | None = None
    decision: Decision | None = None
    eval_us: float | None = None
    outcome: str = "invalid"  # allow | deny | defer | invalid | error
    reasons: list[dict[str, Any]] = field(default_factory=list)
    forwarded: bool = False

    @property
    def category(self) -> str | None:
        facts = (self.input or {}).get("template") or {}
        category = facts.get("category")
        if category:
            return str(category).lower()
        if self.endpoint == "marketing_messages":
            return "marketing"
        # Direct Send: a business-initiated message of its category, counted as its template would be
        direct = (self.message or {}).get("category")
        return str(direct) if direct else None

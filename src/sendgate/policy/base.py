"""The policy engine interface and the decision object it returns."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["Decision", "EngineError", "PolicyEngine", "PolicyLoadError"]

ENTRYPOINT = "data.sendgate.decision"


class EngineError(RuntimeError):
    """The engine could not produce a decision (runtime error, timeout, unreachable)."""


class PolicyLoadError(ValueError):
    """The policy files or their data do not load, compile or pass their tests."""


@dataclass(frozen=True)
class Decision:
    """`data.sendgate.decision`: deny wins over defer, defer over allow."""

    deny: list[dict[str, Any]]
    defer: list[dict[str, Any]]
    warn: list[dict[str, Any]]
    retry_after: int | None
    # Set by engines that know them per decision: OPA's own decision id (with its decision
    # logs on), and the revision of the bundle that decided (OPA serving its own bundle).
    decision_id: str | None = None
    revision: str | None = None

    @property
    def outcome(self) -> str:
        if self.deny:
            return "deny"
        if self.defer:
            return "defer"
        return "allow"

    @classmethod
    def from_json(cls, value: Any) -> Decision:
        """Validate the engine's answer; a malformed one is an engine error, not an allow."""
        if not isinstance(value, dict):
            raise EngineError(f"{ENTRYPOINT} is undefined or not an object")
        lists = {}
        for key in ("deny", "defer", "warn"):
            reasons = value.get(key, [])
            if not isinstance(reasons, list) or not all(
                isinstance(r, dict) and isinstance(r.get("rule"), str) for r in reasons
            ):
                raise EngineError(f"{ENTRYPOINT}.{key} must be a list of reasons with a rule id")
            lists[key] = reasons
        retry_after = value.get("retry_after")
        if retry_after is not None:
            if not isinstance(retry_after, (int, float)) or isinstance(retry_after, bool):
                raise EngineError(f"{ENTRYPOINT}.retry_after must be a number")
            retry_after = max(1, math.ceil(retry_after))
        elif lists["defer"]:
            retry_after = 1
        if value.get("allow") is not (not lists["deny"] and not lists["defer"]):
            raise EngineError(f"{ENTRYPOINT}.allow contradicts its deny/defer lists")
        return cls(lists["deny"], lists["defer"], lists["warn"], retry_after)


class PolicyEngine(Protocol):
    """Evaluates the policy input document at `data.sendgate.decision`."""

    @property
    def revision(self) -> str: ...

    async def evaluate(self, document: dict[str, Any]) -> Decision: ...

    async def reload(self) -> str:
        """Load the policies again; swap only if they compile and their tests pass. Returns the revision."""
        ...

    async def start(self) -> None:
        """Open connections, load policies into a remote engine; called once the event loop runs."""
        ...

    async def params(self) -> dict[str, Any]:
        """`data.sendgate.params`, the tunables the serving policies read (caps, lists, hours)."""
        ...

    async def health(self) -> dict[str, Any]:
        """`{"ok": bool, "engine": name, "revision": ..., "detail": why not ok or None}`, for `/readyz`."""
        ...

    async def close(self) -> None: ...

"""Policy engines: one interface, the embedded regorus engine first."""

from sendgate.policy.base import ENTRYPOINT, Decision, EngineError, PolicyEngine, PolicyLoadError

__all__ = ["ENTRYPOINT", "Decision", "EngineError", "PolicyEngine", "PolicyLoadError"]

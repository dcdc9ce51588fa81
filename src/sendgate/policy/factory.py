"""The engine a config asks for: `engine: embedded` (regorus in-process) or `engine: opa`."""

from __future__ import annotations

from sendgate.config import Config
from sendgate.policy.base import PolicyEngine

__all__ = ["create_engine"]


def create_engine(config: Config) -> PolicyEngine:
    """Build the engine; a broken policy directory raises PolicyLoadError here, before serving."""
    if config.engine == "opa":
        from sendgate.policy.opa import OpaEngine

        policy_dir = config.policy_dir if config.opa_policies == "push" else None
        return OpaEngine(config.opa_url, policy_dir, timeout=config.engine_timeout, policies=config.opa_policies)
    from sendgate.policy.embedded import EmbeddedEngine

    return EmbeddedEngine(config.policy_dir)

"""deploy/: nothing here can run a container, so the files are checked against the processes the
tests run directly: the compose file's sendgate configuration is one `load_config` accepts and
that the replica tests exercise (PostgreSQL, Redis, workers, OPA serving the bundle), the OPA and
bundle commands are the ones the OPA tests use, and nginx never resends a request."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from sendgate.config import load_config
from sendgate.state import backend

from .conftest import ROOT

DEPLOY = ROOT / "deploy"


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def _environment(service: dict[str, Any]) -> dict[str, str]:
    """The service's variables, `${NAME:?...}` taken as set (compose refuses to start otherwise)."""
    return {key: re.sub(r"\$\{(\w+):\?[^}]*\}", r"from-\1", str(value)) for key, value in service["environment"].items()}


def test_two_replicas_share_postgresql_redis_and_opa() -> None:
    services = _compose()["services"]
    replicas = [name for name, service in services.items() if "SENDGATE_STATE" in service.get("environment", {})]
    assert sorted(replicas) == ["sendgate-1", "sendgate-2"]
    configs = [load_config(env=_environment(services[name])) for name in replicas]
    assert configs[0] == configs[1]  # any replica serves any request
    config = configs[0]
    assert backend(config.state).shared and config.state.startswith("postgresql://sendgate:sendgate@postgres:5432/")
    assert config.redis_url == "redis://redis:6379/0"  # more than one process on PostgreSQL needs it
    assert config.workers == 2
    assert (config.engine, config.opa_url, config.opa_policies) == ("opa", "http://opa:8181", "bundle")
    assert config.admin_token == "from-SENDGATE_ADMIN_TOKEN"  # required, from the operator's environment
    assert config.listen == "0.0.0.0:8080"
    for name in replicas:
        assert set(services[name]["depends_on"]) == {"postgres", "redis", "opa"}


def test_opa_serves_the_bundle_sendgate_writes() -> None:
    services = _compose()["services"]
    bundle_command = services["bundle"]["command"]
    assert bundle_command[:2] == ["policy", "bundle"] and bundle_command[-2] == "-o"
    written = bundle_command[-1]
    opa = services["opa"]["command"]
    assert opa[:2] == ["run", "--server"] and opa[opa.index("--bundle") + 1] == written
    assert opa[opa.index("--addr") + 1].endswith(":8181")
    assert services["opa"]["depends_on"]["bundle"]["condition"] == "service_completed_successfully"


def test_redis_keeps_nothing_and_postgres_is_checked_before_sendgate_starts() -> None:
    services = _compose()["services"]
    command = services["redis"]["command"]
    assert command[command.index("--save") + 1] == "" and command[command.index("--appendonly") + 1] == "no"
    assert services["sendgate-1"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]


def test_nginx_balances_both_replicas_and_never_resends_a_post() -> None:
    conf = (DEPLOY / "nginx.conf").read_text()
    servers = re.findall(r"^\s*server (\S+?):(\d+)", conf, re.M)
    assert sorted(servers) == [("sendgate-1", "8080"), ("sendgate-2", "8080")]
    # Only connection errors move a request to the other replica; without `non_idempotent`, nginx
    # never passes a POST that was already sent to another server.
    directive = re.search(r"proxy_next_upstream ([^;]+);", conf)
    assert directive is not None and "non_idempotent" not in directive[1]
    body_limit = re.search(r"client_max_body_size (\d+)m;", conf)
    assert body_limit is not None and int(body_limit[1]) * 1024 * 1024 > load_config(env={}).max_body_bytes


def test_the_image_runs_serve_with_the_packaged_policies() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["sendgate"]' in dockerfile and 'CMD ["serve"]' in dockerfile
    assert "SENDGATE_POLICY_DIR=/app/policies" in dockerfile and "COPY policies ./policies" in dockerfile
    assert Path(ROOT / "policies").is_dir()

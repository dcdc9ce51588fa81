"""Fixtures: the real gateway on a real socket, in front of the fake Graph API."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from sendgate.app import STORE, access_logger_class, create_app
from sendgate.config import load_config
from sendgate.fakegraph import FakeGraph
from sendgate.policy.bundle import PolicyBundle, write_bundle
from sendgate.policy import embedded
from sendgate.policy.embedded import EmbeddedEngine
from sendgate.state import Store, open_store

from .opa_support import OpaServer, require_tool
from .services import (  # fixtures, for every test module
    make_postgres, make_redis, postgres_server, postgres_url, redis_server, redis_url)  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"
SHARED = ROOT.parent / "shared" / "cloud-api"

PHONE_NUMBER_ID = "106540352242922"
WABA_ID = "102290129340398"
OTHER_PHONE_NUMBER_ID = "106540352242999"  # not in the config
ADMIN_TOKEN = "admin-secret-token"
APP_TOKEN = "EAAG-app-token-never-logged"
US_RECIPIENT = "16505551234"
BR_RECIPIENT = "5511987654321"
# +1 416, Toronto: a +1 number Meta still delivers marketing to (the US pause is by area code).
CA_RECIPIENT = "14165551234"

CATALOG = {
    "data": [
        {"name": "order_update", "language": "en_US", "status": "APPROVED", "category": "UTILITY", "id": "11",
         "components": [{"type": "HEADER", "format": "IMAGE"},
                        {"type": "BODY", "text": "Hi {{1}}, order {{2}} ships on {{3}}."}]},
        {"name": "spring_sale", "language": "en_US", "status": "APPROVED", "category": "MARKETING", "id": "12",
         "components": [{"type": "BODY", "text": "Hi {{first_name}}, spring sale: 20% off."},
                        {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Stop promotions"}]}]},
        {"name": "spring_sale", "language": "pt_BR", "status": "APPROVED", "category": "MARKETING", "id": "13",
         "components": [{"type": "BODY", "text": "Oi {{first_name}}, 20% de desconto."}]},
        {"name": "paused_promo", "language": "en_US", "status": "PAUSED", "category": "MARKETING", "id": "14",
         "components": [{"type": "BODY", "text": "Deal"}]},
        {"name": "pending_notice", "language": "en_US", "status": "PENDING", "category": "UTILITY", "id": "15",
         "components": [{"type": "BODY", "text": "Notice"}]},
        {"name": "hello_world", "language": "en_US", "status": "APPROVED", "category": "UTILITY", "id": "16",
         "components": [{"type": "BODY", "text": "Hello World"}]},
    ]
}


# 2026-11-24 22:00 UTC: 14:00 in Los Angeles (+1 650), 19:00 in São Paulo (+55 11): outside quiet hours.
AFTERNOON = 1795557600.0


class Clock:
    """The gateway's clock in tests: fixed until a test moves it."""

    def __init__(self, now: float = AFTERNOON) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class _VmDoubts(logging.Handler):
    """The embedded engine's warnings and errors about the register VM, for the default policies."""

    def __init__(self, revision: str) -> None:
        super().__init__(logging.WARNING)
        self.revision = revision
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "register VM" in record.getMessage() and self.revision in record.getMessage():
            self.seen.append(record.getMessage())


@pytest.fixture(scope="session", autouse=True)
def every_decision_cross_checked() -> Iterator[None]:
    """Every decision the embedded engine makes in this run (every gateway test's) is made by the
    register VM and again by the interpreter: for the default policies, the run fails if they ever
    differ, or if the VM's answer had to be replaced by the interpreter's."""
    embedded.CROSS_CHECK_EVERY = 1
    doubts = _VmDoubts(PolicyBundle.load(POLICIES).revision)
    logging.getLogger("sendgate.policy").addHandler(doubts)
    yield
    logging.getLogger("sendgate.policy").removeHandler(doubts)
    assert not doubts.seen, f"the register VM and the interpreter differed on the default policies: {doubts.seen[:3]}"


@pytest.fixture(scope="session")
def default_engine() -> EmbeddedEngine:
    """The default policies, compiled and Rego-tested once for the whole run."""
    return EmbeddedEngine(POLICIES)


@pytest.fixture(scope="session")
def opa_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpaServer]:
    """One real OPA for the run, serving `policies/` as the bundle `sendgate policy bundle` writes.

    The bundle's revision is the policy directory's hash, so records name the same
    revision whichever engine decided. Skips without OPA, fails without it under CI.
    """
    opa = require_tool("opa")
    root = tmp_path_factory.mktemp("opa")
    bundle = write_bundle(PolicyBundle.load(POLICIES), root / "bundle")
    server = OpaServer(opa, ["--bundle", str(bundle)], root / "opa.log")
    yield server
    server.stop()


def _sqlite_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"


def _postgresql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    url: str = request.getfixturevalue("postgres_url")  # a fresh database on the session's server
    return url


# The contract suite: every test taking `store` runs on each backend. A backend plugs in with a
# function giving a state URL to a new, empty store of its kind (a throwaway database).
STORE_BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], str]] = {
    "sqlite": _sqlite_url,
    "postgresql": _postgresql_url,
}


@pytest.fixture(params=sorted(STORE_BACKENDS))
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The state URL of a new, empty store of each backend in turn."""
    return STORE_BACKENDS[request.param](request, tmp_path)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """A new, empty store of each backend in turn, used only through the `Store` interface."""
    opened = open_store(store_url)
    yield opened
    await opened.close()


# (engine, state backend) pairs for a module whose gateways should run on every engine and every
# backend, without their whole product: each engine on SQLite, PostgreSQL with the embedded engine.
ENGINES_AND_BACKENDS = [("embedded", "sqlite"), ("opa", "sqlite"), ("embedded", "postgresql")]


@pytest.fixture
def gateway_kind() -> tuple[str, str]:
    """(engine, state backend) of `gateway_factory`'s gateways: the embedded engine, on the backend
    `SENDGATE_TEST_STATE` names (a `STORE_BACKENDS` name, default sqlite; so
    `SENDGATE_TEST_STATE=postgresql pytest` runs the end-to-end tests on PostgreSQL). A module
    overrides this with params to run on several (`ENGINES_AND_BACKENDS`), or `engine_kind` alone."""
    name = os.environ.get("SENDGATE_TEST_STATE", "sqlite")
    if name not in STORE_BACKENDS:
        raise pytest.UsageError(f"SENDGATE_TEST_STATE={name!r}: not one of {sorted(STORE_BACKENDS)}")
    return "embedded", name


@pytest.fixture
def state_backend(gateway_kind: tuple[str, str]) -> str:
    return gateway_kind[1]


@pytest.fixture
def gateway_state(state_backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The state URL of the test's gateways: one for all of them (a restart finds what the last kept)."""
    if state_backend == "sqlite":
        return f"sqlite:///{tmp_path / 'sendgate.db'}"
    return STORE_BACKENDS[state_backend](request, tmp_path)


@pytest.fixture
def engine_kind(gateway_kind: tuple[str, str]) -> str:
    """Which engine `gateway_factory` builds; a module overrides this fixture with params to run on both."""
    return gateway_kind[0]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def fake_graph(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> AsyncIterator[tuple[FakeGraph, str]]:
    fake = FakeGraph()
    server = await aiohttp_server(fake.app(), access_log=None)
    yield fake, str(server.make_url("")).rstrip("/")


GatewayFactory = Callable[..., Awaitable[TestClient]]


@pytest.fixture
async def gateway_factory(
    gateway_state: str,  # first: its database outlives the gateways (fixtures end in reverse order)
    tmp_path: Path,
    fake_graph: tuple[FakeGraph, str],
    aiohttp_client: Callable[..., Awaitable[TestClient]],
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    clock: Clock,
    default_engine: EmbeddedEngine,
    engine_kind: str,
    request: pytest.FixtureRequest,
) -> GatewayFactory:
    _, upstream = fake_graph
    # engine_kind "opa": the gateway asks the session's real OPA server (`engine: opa`), built
    # from the config as `sendgate serve` builds it; "embedded": the session's regorus engine.
    opa = request.getfixturevalue("opa_server") if engine_kind == "opa" else None

    async def make(**overrides: Any) -> TestClient:
        settings: dict[str, Any] = {
            "upstream_url": upstream,
            "state": gateway_state,
            "policy_dir": str(POLICIES),
            "admin_token": ADMIN_TOKEN,
            "accounts": [{"phone_number_id": PHONE_NUMBER_ID, "waba_id": WABA_ID, "name": "Acme",
                          "markets": ["US", "BR", "CA"]}],
            "upstream_timeout": 2,
            "policy_watch": False,  # the session engine is shared: nothing reloads it behind a test's back
        }
        if opa is not None:
            settings.update(engine="opa", opa_url=opa.url, opa_policies="bundle")
        own_engine = "policy_dir" in overrides or "engine" in overrides or opa is not None
        default = None if own_engine else default_engine  # None: the app builds its engine from the config
        engine = overrides.pop("policy_engine", default)
        settings.update(overrides)
        env = {f"SENDGATE_{k.upper()}": orjson.dumps(v).decode() for k, v in settings.items()}
        config = load_config(None, env=env)
        # The access logger `sendgate serve` uses, so the token tests cover it.
        server = await aiohttp_server(create_app(config, engine, clock), access_log_class=access_logger_class(config))
        client = await aiohttp_client(server)
        await client.app[STORE].put_templates(WABA_ID, CATALOG)
        return client

    return make


@pytest.fixture
async def gateway(gateway_factory: GatewayFactory) -> TestClient:
    return await gateway_factory()


def edit_params(policy_dir: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Apply `change` to `sendgate.params` in policy_dir/data.json (the tunables a test varies)."""
    path = policy_dir / "data.json"
    data = orjson.loads(path.read_bytes())
    change(data["sendgate"]["params"])
    path.write_bytes(orjson.dumps(data))


def policies_with(tmp_path: Path, change: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """A copy of the default policies under tmp_path, with `change` (if any) applied to their params."""
    policy_dir = Path(shutil.copytree(POLICIES, tmp_path / "policies"))
    if change is not None:
        edit_params(policy_dir, change)
    return policy_dir


def store_of(client: TestClient) -> Store:
    return client.app[STORE]


async def send(
    client: TestClient,
    body: Any,
    *,
    phone_number_id: str = PHONE_NUMBER_ID,
    endpoint: str = "messages",
    version: str = "v23.0",
    raw: bytes | None = None,
) -> tuple[int, dict[str, Any], Any]:
    """POST a send; returns (status, headers, parsed body)."""
    response = await client.post(
        f"/{version}/{phone_number_id}/{endpoint}",
        data=raw if raw is not None else orjson.dumps(body),
        headers={"Authorization": f"Bearer {APP_TOKEN}", "Content-Type": "application/json"},
    )
    payload = await response.read()
    try:
        parsed = orjson.loads(payload)
    except orjson.JSONDecodeError:
        parsed = payload
    return response.status, dict(response.headers), parsed


async def admin(client: TestClient, method: str, path: str, body: Any = None, token: str = ADMIN_TOKEN) -> tuple[int, Any]:
    data = body if isinstance(body, (bytes, str)) else (None if body is None else orjson.dumps(body))
    response = await client.request(
        method, f"/admin/v1{path}", data=data, headers={"Authorization": f"Bearer {token}"}
    )
    return response.status, await response.json()


def text_message(to: str = US_RECIPIENT, body: str = "Your table is ready.") -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to, "type": "text",
            "text": {"preview_url": False, "body": body}}


def template_message(name: str = "order_update", language: str = "en_US", to: str = US_RECIPIENT,
                     components: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    if components is None and name == "order_update":
        components = [
            {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://cdn.acme.example/a.png"}}]},
            {"type": "body", "parameters": [{"type": "text", "text": "Ana"}, {"type": "text", "text": "A-1"},
                                            {"type": "text", "text": "Friday"}]},
        ]
    if components is None and name == "spring_sale":
        components = [{"type": "body", "parameters": [{"type": "text", "parameter_name": "first_name",
                                                       "text": "Ana"}]}]
    template: dict[str, Any] = {"name": name, "language": {"code": language}}
    if components is not None:
        template["components"] = components
    return {"messaging_product": "whatsapp", "to": to, "type": "template", "template": template}


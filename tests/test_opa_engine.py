"""`engine: opa`: failures of the OPA server, the push of policies into it, its bundles.

The failure tests use a stand-in OPA (an aiohttp app that stalls, errs or forgets)
and run without the real binary; the rest start a real `opa run --server`.
"""

from __future__ import annotations

import asyncio
import shutil
import tarfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from sendgate.cli import main
from sendgate.fakegraph import FakeGraph
from sendgate.policy import EngineError, PolicyLoadError
from sendgate.policy.bundle import PolicyBundle
from sendgate.policy.embedded import EmbeddedEngine
from sendgate.policy.opa import POLICY_ID_PREFIX, OpaEngine

from .conftest import (
    AFTERNOON,
    POLICIES,
    US_RECIPIENT,
    GatewayFactory,
    admin,
    edit_params,
    send,
    store_of,
    text_message,
)
from .opa_support import OpaServer, free_port, require_tool

ServerFactory = Callable[..., Awaitable[TestServer]]
# One for the module, made on the main thread: a regorus engine must be dropped on the thread that made it.
_EMBEDDED = EmbeddedEngine(POLICIES, run_tests=False)


class FakeOpa:
    """Answers like OPA, or misbehaves on demand: `mode` = ok | slow | error | undefined; `healthy`."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.healthy = True
        self.embedded = _EMBEDDED

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/data/sendgate/decision", self.decide)
        app.router.add_get("/health", self.health)
        app.router.add_get("/v1/data/system/bundles", self.bundles)
        return app

    async def decide(self, request: web.Request) -> web.Response:
        document = (await request.json())["input"]
        if self.mode == "slow":
            await asyncio.sleep(2)
        if self.mode == "error":
            return web.json_response({"code": "internal_error", "message":
                                      "eval_conflict_error: complete rules must not produce multiple outputs"},
                                     status=500)
        if self.mode == "undefined":
            return web.json_response({})
        decision = await self.embedded.evaluate(document)
        result = {"allow": decision.outcome == "allow", "deny": decision.deny, "defer": decision.defer,
                  "warn": decision.warn, "retry_after": decision.retry_after}
        return web.json_response({"result": result, "decision_id": "d-1",
                                  "provenance": {"bundles": {"sendgate": {"revision": "rev-7"}}}})

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({}, status=200 if self.healthy else 500)

    async def bundles(self, request: web.Request) -> web.Response:
        return web.json_response({"result": {"sendgate": {"manifest": {"revision": "rev-7"}}}})


@pytest.fixture
async def fake_opa(aiohttp_server: ServerFactory) -> tuple[FakeOpa, str]:
    fake = FakeOpa()
    server = await aiohttp_server(fake.app())
    return fake, str(server.make_url("")).rstrip("/")


async def _open_window(client: Any) -> None:
    await store_of(client).record_inbound("106540352242922", US_RECIPIENT, AFTERNOON - 60)


async def _record(client: Any, decision_id: str) -> Any:
    await store_of(client).flush()
    return await store_of(client).decision(decision_id)


@pytest.mark.parametrize("on_engine_error", ["deny", "allow"])
async def test_unreachable_opa_follows_on_engine_error(gateway_factory: GatewayFactory,
                                                       fake_graph: tuple[FakeGraph, str], on_engine_error: str) -> None:
    client = await gateway_factory(engine="opa", opa_url=f"http://127.0.0.1:{free_port()}", opa_policies="bundle",
                                   on_engine_error=on_engine_error)
    await _open_window(client)
    before = len(fake_graph[0].received)
    status, headers, payload = await send(client, text_message())
    record = await _record(client, headers["X-Sendgate-Decision-Id"])
    assert record.decision == "error" and record.reasons[0]["rule"] == "engine.error"
    assert "unreachable" in record.reasons[0]["message"]
    if on_engine_error == "deny":
        assert status == 503 and payload["error"]["code"] == 2
        assert len(fake_graph[0].received) == before and record.forwarded is False
    else:
        assert status == 200 and record.forwarded is True


async def test_slow_opa_times_out(gateway_factory: GatewayFactory, fake_opa: tuple[FakeOpa, str]) -> None:
    fake, url = fake_opa
    client = await gateway_factory(engine="opa", opa_url=url, opa_policies="bundle", engine_timeout=0.2)
    await _open_window(client)
    fake.mode = "slow"
    started = time.monotonic()
    status, headers, payload = await send(client, text_message())
    assert status == 503 and time.monotonic() - started < 1.5
    record = await _record(client, headers["X-Sendgate-Decision-Id"])
    assert "did not answer within 0.2 s" in record.reasons[0]["message"]


@pytest.mark.parametrize(("mode", "needle"), [("error", "HTTP 500: internal_error: eval_conflict_error"),
                                              ("undefined", "data.sendgate.decision is undefined")])
async def test_opa_errors_are_engine_errors(gateway_factory: GatewayFactory, fake_opa: tuple[FakeOpa, str],
                                            mode: str, needle: str) -> None:
    fake, url = fake_opa
    client = await gateway_factory(engine="opa", opa_url=url, opa_policies="bundle")
    await _open_window(client)
    fake.mode = mode
    status, headers, _ = await send(client, text_message())
    assert status == 503
    assert needle in (await _record(client, headers["X-Sendgate-Decision-Id"])).reasons[0]["message"]


async def test_decisions_carry_opa_ids_and_bundle_revision(gateway_factory: GatewayFactory,
                                                           fake_opa: tuple[FakeOpa, str]) -> None:
    _, url = fake_opa
    client = await gateway_factory(engine="opa", opa_url=url, opa_policies="bundle")
    await _open_window(client)
    status, headers, _ = await send(client, text_message())
    assert status == 200
    record = await _record(client, headers["X-Sendgate-Decision-Id"])
    assert (record.policy_revision, record.engine_decision_id) == ("rev-7", "d-1")
    assert (await admin(client, "GET", "/policy"))[1]["revision"] == "rev-7"


async def test_readyz_follows_opa_health(gateway_factory: GatewayFactory, fake_opa: tuple[FakeOpa, str]) -> None:
    fake, url = fake_opa
    client = await gateway_factory(engine="opa", opa_url=url, opa_policies="bundle")
    response = await client.get("/readyz")
    assert response.status == 200
    fake.healthy = False
    response = await client.get("/readyz")
    body = await response.json()
    assert response.status == 503 and body["checks"]["engine"]["ok"] is False
    assert "/health" in body["checks"]["engine"]["detail"]
    fake.healthy = True
    assert (await client.get("/readyz")).status == 200


# -- a real OPA -----------------------------------------------------------------------


@pytest.fixture
def empty_opa(tmp_path: Path) -> Any:
    """A real OPA holding no policies: sendgate pushes them (`opa_policies: push`)."""
    server = OpaServer(require_tool("opa"), [], tmp_path / "opa-empty.log")
    yield server
    server.stop()


@pytest.fixture
def policy_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(POLICIES, tmp_path / "policies"))


def _add_banned_term(policy_dir: Path, term: str) -> None:
    edit_params(policy_dir, lambda params: params["content"]["banned_terms"].append(term))


def _text_document(body: str) -> dict[str, Any]:
    words = " " + " ".join(body.lower().split()) + " "
    return {"now": AFTERNOON, "endpoint": "messages", "api_version": "v23.0",
            "gateway": {"mode": "enforce", "allow_unknown_accounts": True},
            "account": {"phone_number_id": "1", "known": True, "waba_id": "2", "name": None, "markets": None},
            "message": {"type": "text", "recipient": US_RECIPIENT, "recipient_type": "individual", "is_status": False,
                        "context_message_id": None, "texts": [body], "words": words, "urls": [], "links": [],
                        "limited_texts": [], "media": None, "interactive_type": None, "template": None},
            "recipient": {"id": US_RECIPIENT, "country": "US", "timezone": None, "local_time": None, "consent": None,
                          "last_inbound_at": AFTERNOON - 60,
                          "history": {"last_sent_at": None, "pair_sent_at": [], "marketing_sent_at": []}},
            "template": None}


async def test_push_mode_loads_reloads_and_refuses(gateway_factory: GatewayFactory, empty_opa: OpaServer,
                                                   policy_copy: Path) -> None:
    client = await gateway_factory(engine="opa", opa_url=empty_opa.url, opa_policies="push",
                                   policy_dir=str(policy_copy))
    first = PolicyBundle.load(policy_copy).revision
    assert (await admin(client, "GET", "/policy"))[1]["revision"] == first
    await _open_window(client)
    status, headers, _ = await send(client, text_message(body="zebra stripes"))
    assert status == 200
    record = await _record(client, headers["X-Sendgate-Decision-Id"])
    assert record.policy_revision == first and record.engine_decision_id  # the file hash; OPA's own id

    _add_banned_term(policy_copy, "zebra")
    status, body = await admin(client, "POST", "/policy/reload")
    assert status == 200 and body["reloaded"] is True and body["revision"] != first
    second = body["revision"]
    status, _, payload = await send(client, text_message(body="zebra stripes"))
    assert status == 403 and payload["error"]["code"] == 770400  # OPA decides with the pushed data

    (policy_copy / "zz_test.rego").write_text("package zz_test\n\ntest_fails if {\n\tfalse\n}\n")
    status, body = await admin(client, "POST", "/policy/reload")
    assert status == 422 and "zz_test.test_fails" in body["error"]
    _, policy = await admin(client, "GET", "/policy")
    assert policy["reload"]["ok"] is False and policy["reload"]["failures"] == 1
    assert policy["revision"] == second and policy["reload"]["revision"] == second
    status, _, _ = await send(client, text_message(body="zebra stripes"))
    assert status == 403  # the last good revision keeps serving


async def test_push_refused_by_opa_rolls_back(empty_opa: OpaServer, policy_copy: Path) -> None:
    engine = OpaEngine(empty_opa.url, policy_copy, timeout=2.0, run_tests=False)
    await engine.start()
    try:
        before = engine.revision
        assert (await engine.evaluate(_text_document("hello"))).outcome == "allow"
        # Someone else's module in OPA (not under sendgate/) clashes with the new policies:
        # regorus, which never saw it, passes them; OPA refuses; the old ones come back.
        admin_client = engine._admin
        assert admin_client is not None
        await admin_client.update_policy_from_string("package sendgate.extra\n\nflag contains 1\n", "foreign.rego",
                                                     rego_compat=False)
        (policy_copy / "extra.rego").write_text("package sendgate.extra\n\nflag := 2\n")
        with pytest.raises(PolicyLoadError, match="OPA refused"):
            await engine.reload()
        assert engine.revision == before
        held = await admin_client.list_policies()
        assert f"{POLICY_ID_PREFIX}extra.rego" not in held
        assert (await engine.evaluate(_text_document("hello"))).outcome == "allow"
        assert (await engine.health())["ok"] is True
    finally:
        await engine.close()


async def test_decisions_during_a_push_wait_and_never_fail(empty_opa: OpaServer, policy_copy: Path) -> None:
    engine = OpaEngine(empty_opa.url, policy_copy, timeout=2.0, run_tests=False)
    await engine.start()
    try:
        _add_banned_term(policy_copy, "zebra")
        document = _text_document("zebra")
        results = await asyncio.gather(engine.reload(), *(engine.evaluate(document) for _ in range(60)))
        outcomes = {d.outcome for d in results[1:]}
        assert outcomes <= {"allow", "deny"}  # each decided wholly by the old or by the new policies
        assert (await engine.evaluate(document)).outcome == "deny"
    finally:
        await engine.close()


async def test_a_restarted_opa_gets_the_policies_again(tmp_path: Path, policy_copy: Path) -> None:
    opa = require_tool("opa")
    server = OpaServer(opa, [], tmp_path / "a.log")
    engine = OpaEngine(server.url, policy_copy, timeout=2.0, run_tests=False)
    await engine.start()
    try:
        port = server.port
        server.stop()
        with pytest.raises(EngineError, match="unreachable"):
            await engine.evaluate(_text_document("hi"))
        assert (await engine.health())["ok"] is False
        server = OpaServer(opa, [], tmp_path / "b.log", port=port)  # empty again
        with pytest.raises(EngineError, match="undefined"):
            await engine.evaluate(_text_document("hi"))  # ... which sets off a new push
        for _ in range(100):
            if (await engine.health())["ok"]:
                break
            await asyncio.sleep(0.05)
        assert (await engine.evaluate(_text_document("hi"))).outcome == "allow"
    finally:
        await engine.close()
        server.stop()


async def test_opa_unreachable_at_startup_pushes_when_it_comes(tmp_path: Path, policy_copy: Path) -> None:
    opa = require_tool("opa")
    port = free_port()
    engine = OpaEngine(f"http://127.0.0.1:{port}", policy_copy, timeout=2.0, run_tests=False)
    await engine.start()  # does not fail: the push is retried every second
    server = None
    try:
        health = await engine.health()
        assert health["ok"] is False
        with pytest.raises(EngineError, match="not loaded into OPA"):
            await engine.evaluate(_text_document("hi"))
        server = OpaServer(opa, [], tmp_path / "late.log", port=port)
        for _ in range(60):
            if (await engine.health())["ok"]:
                break
            await asyncio.sleep(0.1)
        assert (await engine.evaluate(_text_document("hi"))).outcome == "allow"
    finally:
        await engine.close()
        if server is not None:
            server.stop()


def test_policy_bundle_loads_into_a_stock_opa(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    opa = require_tool("opa")
    target = tmp_path / "sendgate.tar.gz"
    assert main(["policy", "bundle", "--dir", str(POLICIES), "-o", str(target)]) == 0
    revision = PolicyBundle.load(POLICIES).revision
    assert revision in capsys.readouterr().out
    with tarfile.open(target) as tar:
        names = set(tar.getnames())
        manifest = orjson.loads(tar.extractfile("/.manifest").read())  # type: ignore[union-attr]
    assert {"/.manifest", "/data.json", "/main.rego"} <= names and not any(n.endswith("_test.rego") for n in names)
    assert manifest["revision"] == revision and manifest["roots"] == ["sendgate"]

    server = OpaServer(opa, ["--bundle", str(target)], tmp_path / "opa.log")

    async def check() -> None:
        engine = OpaEngine(server.url, None, policies="bundle")
        await engine.start()
        try:
            assert engine.revision == revision
            decision = await engine.evaluate(_text_document("cheap firearms"))
            expected = await _EMBEDDED.evaluate(_text_document("cheap firearms"))
            assert (decision.deny, decision.revision) == (expected.deny, revision)
            params = await engine.params()
            assert params == PolicyBundle.load(POLICIES).data["sendgate"]["params"] == await _EMBEDDED.params()
            assert (await _EMBEDDED.health())["ok"] is True
        finally:
            await engine.close()

    try:
        asyncio.run(check())
    finally:
        server.stop()


def test_policy_bundle_refuses_failing_tests(tmp_path: Path, policy_copy: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    (policy_copy / "zz_test.rego").write_text("package zz_test\n\ntest_fails if {\n\tfalse\n}\n")
    assert main(["policy", "bundle", "--dir", str(policy_copy), "-o", str(tmp_path / "b")]) == 2
    assert "zz_test.test_fails" in capsys.readouterr().err
    assert main(["policy", "bundle", "--dir", str(policy_copy), "-o", str(tmp_path / "b"), "--no-test",
                 "--with-tests"]) == 0
    assert (tmp_path / "b" / ".manifest").is_file() and (tmp_path / "b" / "zz_test.rego").is_file()

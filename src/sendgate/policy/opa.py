"""The OPA engine: decisions from an Open Policy Agent server (`engine: opa`).

Every decision is one `POST /v1/data/sendgate/decision` with `{"input": ...}`,
through opa-python-client's async client: one `aiohttp` session (one pool of
keep-alive connections) for the life of the gateway, a hard timeout, no retries
(a retry would only make a slow OPA slower; the gateway's `on_engine_error`
rule decides what a failure means). Pushes go through a second client with a
longer timeout, so a push never waits for a connection behind decisions.

Who puts the policies into OPA (`opa_policies`):

- `push` (default): sendgate does. It loads `policy_dir`, compiles it and runs
  its Rego tests (through regorus, as the embedded engine does) and only then
  pushes the modules and data through OPA's policy and data APIs, under policy
  ids `sendgate/<file>`. OPA has no transaction over several modules, so while a
  push runs sendgate holds its own decisions back (they wait, bounded by the
  engine timeout) and lets the ones in flight finish first: no decision sees half
  a policy. A push OPA refuses is rolled back to the previous policies. If OPA
  restarts and forgets them, the next undefined answer pushes them again. The
  revision logged is the policy directory's hash, as with the embedded engine.
- `bundle`: OPA loads its own bundle (`opa run --bundle`, or a bundle server;
  `sendgate policy bundle` writes one), and activates new ones atomically by
  itself. sendgate never writes to OPA; it asks for provenance with each
  decision and logs the revision of the bundle that decided.

OPA's `decision_id` (present when OPA's decision logs are on) goes into the
decision log beside sendgate's own id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from opa_client import AsyncOpaClient

from sendgate.policy.base import ENTRYPOINT, Decision, EngineError, PolicyLoadError
from sendgate.policy.bundle import PolicyBundle
from sendgate.policy.embedded import check_policy_dir

__all__ = ["POLICY_ID_PREFIX", "OpaEngine"]

log = logging.getLogger("sendgate.policy.opa")

POLICY_ID_PREFIX = "sendgate/"  # ids of the modules sendgate pushes; others are left alone
_DECISION_PATH = "/" + ENTRYPOINT.removeprefix("data.").replace(".", "/")  # /sendgate/decision
_ADMIN_TIMEOUT = 10.0  # seconds, for pushes and reads that are not decisions
_REPUSH_INTERVAL = 0.5


class _Client(AsyncOpaClient):  # type: ignore[misc]  # opa-python-client has no types: its class is Any
    """opa-python-client's async client plus one call it lacks: a decision with OPA's error body.

    `query_rule` raises on a non-2xx answer before reading it, and OPA puts the
    reason (`eval_conflict_error: ...`) in the body; the log needs the reason.
    """

    async def start(self) -> None:
        await self._init_session()

    async def post_data(self, path: str, document: dict[str, Any], query: str = "") -> tuple[int, Any]:
        url = f"{self.root_url}/data{path}{query}"
        body = orjson.dumps({"input": document})
        async with self._request("POST", url, data=body, headers={"Content-Type": "application/json"}) as response:
            raw = await response.read()
            return response.status, _loads(raw)

    async def list_policies(self) -> dict[str, str]:
        """Policy id -> raw source of every module OPA holds."""
        async with self._request("GET", f"{self.root_url}/policies") as response:
            response.raise_for_status()
            body = _loads(await response.read())
        return {p["id"]: p.get("raw", "") for p in (body or {}).get("result", []) if isinstance(p, dict)}


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return {"message": raw[:200].decode("utf-8", "replace")}


def _error_text(exc: BaseException) -> str:
    # opa-python-client's errors carry (expression, message); OPA's own message is the useful part.
    message = getattr(exc, "message", None)
    errors = getattr(exc, "errors", None)
    if errors:
        first = errors[0] if isinstance(errors, list) else errors
        if isinstance(first, dict):
            location = first.get("location") or {}
            where = f"{location.get('file', '')}:{location.get('row', '')}: " if location else ""
            return f"{where}{first.get('code', '')}: {first.get('message', '')}".strip()
    if isinstance(message, str) and message:
        return message
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class OpaEngine:
    """`PolicyEngine` on an OPA server at `url` (`http://127.0.0.1:8181`)."""

    def __init__(
        self,
        url: str,
        policy_dir: str | Path | None = None,
        *,
        timeout: float = 1.0,
        policies: str = "push",
        run_tests: bool = True,
    ) -> None:
        if policies not in ("push", "bundle"):
            raise ValueError(f"opa_policies must be 'push' or 'bundle', got {policies!r}")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
            raise ValueError(f"opa_url must be http(s)://host:port, got {url!r}")
        self.url = url.rstrip("/")
        self.mode = policies
        self._host, self._ssl = parts.hostname, parts.scheme == "https"
        self._port = parts.port or (443 if self._ssl else 80)
        self._timeout = timeout
        self._dir = None if policy_dir is None else Path(policy_dir)
        self._run_tests = run_tests
        self._bundle: PolicyBundle | None = None
        self._revision = "opa:unknown"
        if policies == "push":
            if self._dir is None:
                raise ValueError("opa_policies: push needs a policy_dir")
            self._bundle = self._load_checked()  # a broken policy directory fails at startup, as embedded
            self._revision = self._bundle.revision
        self._decisions: _Client | None = None
        self._admin: _Client | None = None
        self._pushed = False  # push mode: OPA holds self._bundle
        self._push_error: str | None = None
        self._open = asyncio.Event()  # cleared while a push runs: decisions wait
        self._open.set()
        self._inflight = 0
        self._drained = asyncio.Event()
        self._drained.set()
        self._lock = asyncio.Lock()  # one push or reload at a time
        self._repush: asyncio.Task[None] | None = None
        self._closed = False

    # -- the PolicyEngine interface ------------------------------------------------------

    @property
    def revision(self) -> str:
        return self._revision

    @property
    def bundle(self) -> PolicyBundle | None:
        return self._bundle

    async def start(self) -> None:
        common = {"host": self._host, "port": self._port, "ssl": self._ssl}
        self._decisions = _Client(**common, retries=0, timeout=self._timeout)
        # No retries inside the client: a failed push is retried whole (_repush_loop), a decision never.
        self._admin = _Client(**common, retries=0, timeout=_ADMIN_TIMEOUT)
        await self._decisions.start()
        await self._admin.start()
        if self.mode == "bundle":
            await self._read_bundle_revision()
            return
        try:
            async with self._lock:
                await self._push(self._bundle, None)
        except PolicyLoadError:
            raise  # OPA refuses policies regorus accepted: nothing to serve, say so now
        except EngineError as exc:
            log.warning("OPA at %s not reachable yet (%s); pushing the policies once it is", self.url, exc)
            self._schedule_repush()

    async def evaluate(self, document: dict[str, Any]) -> Decision:
        if self._decisions is None:
            raise EngineError("the OPA engine is not started")
        if self.mode == "bundle":
            return await self._ask(document, "?provenance")
        try:
            async with asyncio.timeout(self._timeout):
                if not self._open.is_set():
                    await self._open.wait()  # a push is running: decide on the policies it leaves
                self._inflight += 1
                self._drained.clear()
        except TimeoutError:
            raise EngineError(f"OPA policy push still running after {self._timeout:g} s") from None
        try:
            if not self._pushed:
                raise EngineError(f"policies not loaded into OPA at {self.url}: {self._push_error or 'not yet pushed'}")
            return await self._ask(document, "")
        finally:
            self._inflight -= 1
            if self._inflight == 0:
                self._drained.set()

    async def reload(self) -> str:
        if self.mode == "bundle":
            # OPA's bundle plugin loads and activates bundles itself; report what it serves.
            await self._read_bundle_revision()
            return self._revision
        async with self._lock:
            bundle = await asyncio.get_running_loop().run_in_executor(None, self._load_checked)
            if self._pushed and self._bundle is not None and bundle.revision == self._bundle.revision:
                return self._revision
            await self._push(bundle, self._bundle if self._pushed else None)
            return self._revision

    async def params(self) -> dict[str, Any]:
        admin = self._require(self._decisions)
        try:
            body = await admin.get_data("sendgate/params")
        except Exception as exc:
            raise EngineError(f"OPA at {self.url}: cannot read data.sendgate.params: {_error_text(exc)}") from exc
        result = body.get("result")
        return result if isinstance(result, dict) else {}

    async def health(self) -> dict[str, Any]:
        client = self._require(self._decisions)
        query = {"bundles": "true"} if self.mode == "bundle" else None
        ok = await client.check_health(query=query)
        detail = None if ok else f"OPA at {self.url} fails its /health check"
        if ok and self.mode == "push" and not self._pushed:
            ok, detail = False, f"policies not loaded into OPA: {self._push_error or 'not yet pushed'}"
        return {"ok": ok, "engine": "opa", "url": self.url, "policies": self.mode, "revision": self._revision,
                "detail": detail}

    async def close(self) -> None:
        self._closed = True
        if self._repush is not None:
            self._repush.cancel()
            await asyncio.gather(self._repush, return_exceptions=True)
        for client in (self._decisions, self._admin):
            if client is not None:
                await client.close_connection()

    # -- decisions -----------------------------------------------------------------------

    async def _ask(self, document: dict[str, Any], query: str) -> Decision:
        client = self._decisions
        assert client is not None
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout):
                status, body = await client.post_data(_DECISION_PATH, document, query)
        except TimeoutError:
            raise EngineError(f"OPA at {self.url} did not answer within {self._timeout:g} s") from None
        except aiohttp.ClientError as exc:
            raise EngineError(f"OPA at {self.url} unreachable: {exc}") from exc
        if status != 200:
            reason = body.get("message") if isinstance(body, dict) else None
            code = body.get("code") if isinstance(body, dict) else None
            detail = reason if isinstance(reason, str) else repr(body)[:200]
            raise EngineError(f"OPA answered HTTP {status}: {f'{code}: ' if code else ''}{detail}")
        if not isinstance(body, dict) or "result" not in body:
            if self.mode == "push":
                self._pushed = False
                self._push_error = "OPA answered data.sendgate.decision is undefined (did OPA restart?)"
                self._schedule_repush()
            raise EngineError(f"{ENTRYPOINT} is undefined in OPA at {self.url}")
        decision = Decision.from_json(body["result"])
        revision = _bundle_revision(body.get("provenance")) if query else None
        if revision is not None:
            self._revision = revision
        log.debug("OPA decided in %.0f us", (time.perf_counter() - started) * 1e6)
        return Decision(decision.deny, decision.defer, decision.warn, decision.retry_after,
                        decision_id=body.get("decision_id"), revision=revision)

    async def _read_bundle_revision(self) -> None:
        admin = self._require(self._decisions)
        try:
            body = await admin.get_data("system/bundles")
        except Exception as exc:
            log.warning("OPA at %s: cannot read its bundle revision yet: %s", self.url, _error_text(exc))
            return
        bundles = body.get("result") or {}
        revision = _bundle_revision({"bundles": {name: b.get("manifest", {}) for name, b in bundles.items()}})
        if revision is not None:
            self._revision = revision

    # -- pushing policies (push mode) ------------------------------------------------------

    def _load_checked(self) -> PolicyBundle:
        assert self._dir is not None
        if not self._run_tests:
            return PolicyBundle.load(self._dir)
        bundle, error = check_policy_dir(self._dir)
        if error or bundle is None:
            raise PolicyLoadError(error or "policy check failed")
        return bundle

    async def _push(self, bundle: PolicyBundle | None, previous: PolicyBundle | None) -> None:
        """Make OPA hold `bundle`; on a refusal put `previous` back. Decisions wait meanwhile."""
        assert bundle is not None
        self._open.clear()
        try:
            try:
                async with asyncio.timeout(self._timeout):
                    await self._drained.wait()  # decisions in flight finish on the old policies
            except TimeoutError:
                pass  # a stuck OPA request must not block the push; it ends at its own timeout
            try:
                await self._sync(bundle, previous)
            except PolicyLoadError as exc:
                if previous is None:
                    self._pushed, self._push_error = False, str(exc)
                    raise
                try:  # OPA refused the new policies: put the serving ones back
                    await self._sync(previous, bundle)
                except (PolicyLoadError, EngineError) as again:
                    self._pushed, self._push_error = False, f"rollback to {previous.revision} failed: {again}"
                    log.error("OPA policy rollback failed: %s", again)
                raise
            except EngineError as exc:
                # OPA went away mid-push: what it holds is unknown. Serve nothing from it
                # until the serving policies are pushed again in full.
                self._pushed, self._push_error = False, str(exc)
                if previous is not None:
                    self._schedule_repush()
                raise
            self._bundle, self._revision = bundle, bundle.revision
            self._pushed, self._push_error = True, None
            log.info("policies pushed to OPA at %s: revision %s", self.url, bundle.revision)
        finally:
            self._open.set()

    async def _sync(self, bundle: PolicyBundle, previous: PolicyBundle | None) -> None:
        """Apply the difference between what OPA holds and `bundle`, retrying in rounds.

        One module at a time, OPA compiles everything it holds: a module that uses a
        function another has not got yet is refused until that one lands, and a rule
        moved between files clashes until the old file goes. So every step is tried
        again while the last round made progress.
        """
        admin = self._require(self._admin)
        try:
            held = await admin.list_policies()
        except Exception as exc:
            raise EngineError(f"OPA at {self.url} unreachable: {_error_text(exc)}") from exc
        wanted = {POLICY_ID_PREFIX + rel: source for rel, source in bundle.modules.items()}
        steps: dict[str, Callable[[], Awaitable[Any]]] = {}
        for key, value in bundle.data.items():
            if not isinstance(value, dict):
                raise PolicyLoadError(f"data.{key}: top-level data values must be objects to push them to OPA")
            if previous is None or previous.data.get(key) != value or not self._pushed:
                steps[f"data.{key}"] = _bind(admin.update_or_create_data, value, key)
        for key in (previous.data if previous else {}):
            if key not in bundle.data:
                steps[f"delete data.{key}"] = _bind(admin.delete_data, key)
        for policy_id in held:
            if policy_id.startswith(POLICY_ID_PREFIX) and policy_id not in wanted:
                steps[f"delete {policy_id}"] = _bind(admin.delete_policy, policy_id)
        for policy_id, source in wanted.items():
            if held.get(policy_id) != source:
                steps[policy_id] = _bind(admin.update_policy_from_string, source, policy_id, rego_compat=False)
        errors: dict[str, str] = {}
        progressed = True
        while steps and progressed:
            errors, progressed = {}, False
            for name, step in list(steps.items()):
                try:
                    await step()
                except aiohttp.ClientConnectionError as exc:
                    raise EngineError(f"OPA at {self.url} unreachable: {exc}") from exc
                except TimeoutError as exc:
                    raise EngineError(f"OPA at {self.url} did not answer within {_ADMIN_TIMEOUT:g} s") from exc
                except Exception as exc:
                    errors[name] = _error_text(exc)
                else:
                    del steps[name]
                    progressed = True
        if steps:
            first = next(iter(errors.items()))
            raise PolicyLoadError(f"OPA refused {len(steps)} change(s); {first[0]}: {first[1]}")
        try:
            status, body = await admin.post_data(_DECISION_PATH, {})
        except Exception as exc:
            raise EngineError(f"OPA at {self.url} unreachable: {_error_text(exc)}") from exc
        if status != 200 or not isinstance(body, dict) or "result" not in body:
            raise PolicyLoadError(f"OPA holds the policies but {ENTRYPOINT} does not evaluate: {body!r}")

    def _schedule_repush(self) -> None:
        if self._closed or (self._repush is not None and not self._repush.done()):
            return
        self._repush = asyncio.get_running_loop().create_task(self._repush_loop())

    async def _repush_loop(self) -> None:
        while not self._closed and not self._pushed:
            try:
                async with self._lock:
                    if not self._pushed:
                        await self._push(self._bundle, None)
            except (EngineError, PolicyLoadError) as exc:
                log.warning("policies not pushed to OPA at %s yet: %s", self.url, exc)
                await asyncio.sleep(_REPUSH_INTERVAL)

    def _require(self, client: _Client | None) -> _Client:
        if client is None:
            raise EngineError("the OPA engine is not started")
        return client


def _bind(fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Callable[[], Awaitable[Any]]:
    return lambda: fn(*args, **kwargs)


def _bundle_revision(provenance: Any) -> str | None:
    """The revision of the bundle(s) that decided: `rev`, or `name=rev,...` for several."""
    if not isinstance(provenance, dict):
        return None
    bundles = provenance.get("bundles")
    if not isinstance(bundles, dict) or not bundles:
        return None
    revisions = {name: (b or {}).get("revision") or "" for name, b in bundles.items()}
    if len(revisions) == 1:
        return next(iter(revisions.values())) or f"opa-bundle:{next(iter(revisions))}"
    return ",".join(f"{name}={rev}" for name, rev in sorted(revisions.items()))

"""The send path: request, normalize, admit, gather facts, evaluate, enforce, record.

Each step is a method of `SendPath`; `handle` only strings them together.
Every call ends in exactly one decision record, and a message is forwarded only
after its record is committed. Admission (state/admission.py) makes the decision
and its record one step per recipient: the facts a decision reads cannot change
under it, so caps stay exact however many sends arrive together.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from sendgate.config import Config
from sendgate.facts import FactSources, build_input, in_open_window
from sendgate.gateway.body import read_body
from sendgate.gateway.call import SendCall
from sendgate.gateway.counting import SendCounting
from sendgate.gateway.errors import CODE_ENGINE, CODE_INVALID, graph_error, policy_error
from sendgate.gateway.recorder import DecisionRecorder
from sendgate.gateway.upstream import UnsafePath, Upstream, UpstreamError, UpstreamResponse
from sendgate.ids import DecisionIds
from sendgate.messages import InvalidMessage, normalize
from sendgate.policy import EngineError, PolicyEngine
from sendgate.policy.params import ServingParams
from sendgate.state import SendRecord, StoreError
from sendgate.state.admission import Admission, AdmissionTimeout, AdmissionUnavailable, recipient_admission_key
from sendgate.state.counters import Counted, LocalCounters, SendCounters, SharedStateError

__all__ = ["SendPath", "parse_body"]

log = logging.getLogger("sendgate.gateway")


def parse_body(raw: bytes, max_depth: int) -> Any:
    """JSON with a nesting limit and each key once per object; raises InvalidMessage with the reason.

    orjson keeps the last of two equal keys; Meta's parser may keep the first. The policies
    must judge what Meta sends, so a body that names a key twice in one object is refused.
    """
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidMessage(f"request body is not valid JSON: {exc}") from exc
    if _has_duplicate_keys(raw, _count_keys(body, max_depth)):
        raise InvalidMessage(
            f"request body has duplicate key {_first_duplicate(raw)!r}: every key may appear once per object"
        )
    return body


def _count_keys(body: Any, max_depth: int) -> int:
    """The object keys in `body`, walked one nesting level at a time; refuses more than max_depth levels."""
    keys = 0
    level = [body] if isinstance(body, (dict, list)) else []
    depth = 0
    while level:
        depth += 1
        if depth > max_depth:
            raise InvalidMessage(f"request body is nested deeper than {max_depth} levels")
        inner: list[Any] = []
        for value in level:
            if type(value) is dict:
                keys += len(value)
                inner += [child for child in value.values() if type(child) is dict or type(child) is list]
            else:
                inner += [child for child in value if type(child) is dict or type(child) is list]
        level = inner
    return keys


def _has_duplicate_keys(raw: bytes, keys: int) -> bool:
    """Whether `raw` (valid JSON that parsed to `keys` object keys) names a key twice in one object.

    Each key is followed by one colon outside strings, so raw has more such colons than the
    parse has keys exactly when a duplicate collapsed. Counted with bytes methods only, not by
    a second, Python-level parse: this runs for every send.
    """
    colons = raw.count(b":")
    if colons == keys:  # no colon inside any string, and none to spare
        return False
    if b"\\" in raw:  # blank out escapes, so that every quote left opens or closes a string
        raw = raw.replace(b"\\\\", b"__").replace(b'\\"', b"__")
    return b"".join(raw.split(b'"')[::2]).count(b":") != keys


def _first_duplicate(raw: bytes) -> str:
    """The first key named twice in one object, for the error message (a slow parse, on refusal only)."""
    found: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in items:
            if key in seen and not found:
                found.append(key)
            seen.add(key)
        return dict(items)

    json.loads(raw, object_pairs_hook=pairs)
    return found[0] if found else "?"


class SendPath:
    def __init__(
        self,
        config: Config,
        engine: PolicyEngine,
        upstream: Upstream,
        recorder: DecisionRecorder,
        facts: FactSources,
        admission: Admission,
        clock: Callable[[], float] = time.time,
        counters: SendCounters | None = None,
    ) -> None:
        self.admission = admission
        # Throughput, messaging limit, same-content pacing (gateway/counting.py): in this process
        # unless the app passes its shared ones (`redis_url`).
        self.counting = SendCounting(config, counters if counters is not None else LocalCounters())
        # The serving policies' params (the pacing thresholds): none known, nothing is paced; the
        # decision itself then fails or not on its own.
        self._params = ServingParams(lambda: self.engine, reader="send path (pacing thresholds)", unknown={})
        self.clock = clock
        self._ids = DecisionIds()
        self.config = config
        self.engine = engine
        self.upstream = upstream
        self.recorder = recorder
        self.facts = facts
        self._store_errors = _ErrorLines()

    def _call(self, request: web.Request) -> SendCall:
        now = self.clock()
        return SendCall(
            id=self._ids.new(now),
            received_at=now,
            endpoint=request.match_info["endpoint"],
            api_version=request.match_info["version"],
            phone_number_id=request.match_info["phone_number_id"],
        )

    async def refuse(self, request: web.Request, reason: str) -> web.Response:
        """A send refused before it is read (app.py's request checks): a Graph 400, logged `invalid`."""
        call = self._call(request)
        try:
            return await self._invalid(call, reason)
        except StoreError as exc:
            return self._store_failed(call, exc)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        call = self._call(request)
        try:
            return await self._handle(call, request)
        except StoreError as exc:
            return self._store_failed(call, exc)

    async def _handle(self, call: SendCall, request: web.Request) -> web.StreamResponse:
        try:
            call.upstream_url = self.upstream.url_for(request.raw_path)
            call.raw_body = await read_body(request, self.config.max_body_bytes)
            call.body = parse_body(call.raw_body, self.config.max_json_depth)
            call.message = normalize(call.body, call.endpoint)
        except (InvalidMessage, UnsafePath) as exc:
            return await self._invalid(call, str(exc))

        # From reading the facts to committing the send record, no other send to this
        # recipient reads them: the decision and its record are one step per key.
        try:
            async with self.admission.hold(_admission_keys(call.message), self.config.admission_timeout):
                # What the decision counted (throughput, reach, pacing) counts only if the send is
                # forwarded: taken back, still under the hold, when it is refused or not recorded.
                counted: list[Counted] = []
                try:
                    rejection = await self._decide(call, counted)
                    if rejection is None:
                        await self._record_forward(call)  # committed before anything leaves
                except BaseException:
                    await self.counting.undo(counted)
                    raise
                if rejection is not None:
                    await self.counting.undo(counted)
        except AdmissionTimeout as exc:
            return await self._not_admitted(call, exc)
        except AdmissionUnavailable as exc:  # raised taking the keys only: nothing was decided
            return await self._admission_unavailable(call, exc)
        if rejection is not None:
            return rejection
        return await self._forward(call, request)

    async def _decide(self, call: SendCall, counted: list[Counted]) -> web.Response | None:
        """Evaluate; the recorded rejection to answer, or None when the message goes to Meta."""
        try:
            evaluated = await self._evaluate(call, counted)
        except SharedStateError as exc:
            return await self._shared_state_failed(call, exc)
        if not evaluated:
            if self.config.on_engine_error == "allow":
                return None
            await self.recorder.record(call)
            return self._call_error(
                call, 503, CODE_ENGINE, "Policy engine unavailable; the message was not sent",
                "SendgateEngineError", details=call.reasons[0]["message"],
            )  # fmt: skip
        assert call.decision is not None
        if call.outcome != "allow" and self.config.mode == "enforce":
            await self.recorder.record(call)
            return policy_error(call.id, self.config.mode, call.reasons, call.decision.retry_after if call.outcome == "defer" else None)
        return None

    async def _shared_state_failed(self, call: SendCall, exc: SharedStateError) -> web.Response:
        """Fail closed: a counter the rules read (Redis, with `redis_url`) did not answer, so the
        send is not decided: recorded as an `error`, nothing forwarded, 503 code 2."""
        self._store_errors.error("decision %s not sent: the send counters did not answer: %s", call.id, exc)
        call.outcome = "error"
        call.reasons = [{"rule": "counters.unavailable", "message": f"the send counters did not answer: {exc}"}]
        await self.recorder.record(call)
        return self._call_error(
            call, 503, CODE_ENGINE,
            "Service temporarily unavailable: the counters shared by the gateways (throughput, messaging limit, "
            "pacing) did not answer; the message was not sent, retry it",
            "SendgateSharedStateError", details=call.reasons[0]["message"],
        )  # fmt: skip

    async def _not_admitted(self, call: SendCall, exc: AdmissionTimeout) -> web.Response:
        return await self._refuse_unadmitted(
            call, {"rule": "admission.timeout", "message": f"not admitted: {exc}", "key": exc.key.split(":", 1)[0]},
            "other sends to this recipient are still being decided",
        )

    async def _admission_unavailable(self, call: SendCall, exc: AdmissionUnavailable) -> web.Response:
        """Fail closed: the keys are held across processes (PostgreSQL) and that could not be reached.
        The record says so; when the store is on the same database and down too, it cannot be
        written and `_store_failed` answers instead (its log line follows this one)."""
        self._store_errors.error("decision %s not admitted and not sent: %s", call.id, exc)
        return await self._refuse_unadmitted(
            call, {"rule": "admission.unavailable", "message": f"not admitted: {exc}"},
            "sends to this recipient could not be admitted (the database that admits them across processes "
            "did not answer)",
        )

    async def _refuse_unadmitted(self, call: SendCall, reason: dict[str, Any], why: str) -> web.Response:
        """A send that could not be admitted: recorded as an `error`, nothing forwarded, 503 code 2."""
        call.outcome = "error"
        call.reasons = [reason]
        await self.recorder.record(call)
        return self._call_error(
            call, 503, CODE_ENGINE, f"Service temporarily unavailable: {why}; the message was not sent, retry it",
            "SendgateAdmissionError", details=reason["message"],
        )

    def _call_error(
        self, call: SendCall, status: int, code: int, summary: str, kind: str, details: str | None = None
    ) -> web.Response:
        """A Graph error answering `call`, naming its decision and its reasons."""
        return graph_error(
            status, code, summary, kind=kind, trace_id=call.id, details=details,
            extra={"decision_id": call.id, "mode": self.config.mode, "reasons": call.reasons},
        )  # fmt: skip

    def _store_failed(self, call: SendCall, exc: StoreError) -> web.Response:
        """Fail closed: the record was not committed, so nothing was forwarded (`_forward` records
        first, and what it writes after forwarding is queued, never awaited). The record of this
        failure cannot be written either: the log line is its only trace."""
        self._store_errors.error(
            "decision %s not recorded and not sent: the store failed: %s", call.id, exc
        )
        return graph_error(
            503,
            CODE_ENGINE,
            "The decision log could not be written, so the message was not sent",
            kind="SendgateStoreError",
            trace_id=call.id,
            details=str(exc),
            extra={"decision_id": call.id, "mode": self.config.mode},
        )

    async def _invalid(self, call: SendCall, reason: str) -> web.Response:
        call.outcome = "invalid"
        call.reasons = [{"rule": "request.invalid", "message": reason}]
        await self.recorder.record(call)
        return self._call_error(call, 400, CODE_INVALID, f"Invalid parameter: {reason}", "SendgateRequestError")

    async def _evaluate(self, call: SendCall, counted: list[Counted]) -> bool:
        """Gather facts and evaluate; False when the engine failed (call.outcome is then 'error').
        The counts the facts took are added to `counted`; SharedStateError when they could not be."""
        assert call.message is not None
        try:
            call.input = await build_input(
                self.config,
                self.facts,
                call.endpoint,
                call.api_version,
                call.phone_number_id,
                call.message,
                call.received_at,
            )
            counted += await self.counting.count(call.input, await self._params.get(), call.received_at)
            started = time.perf_counter()
            call.decision = await self.engine.evaluate(call.input)
            call.eval_us = (time.perf_counter() - started) * 1e6
        except EngineError as exc:
            call.outcome = "error"
            call.reasons = [{"rule": "engine.error", "message": str(exc)}]
            logged = self.recorder.loggable(str(exc), call.message.get("recipient"))
            log.error("policy engine failed for decision %s: %s", call.id, logged)
            return False
        call.outcome = call.decision.outcome
        call.reasons = call.decision.deny or call.decision.defer
        return True

    async def _record_forward(self, call: SendCall) -> None:
        """The record of a message about to go to Meta, with its send-history row, committed."""
        call.forwarded = True
        send = None
        message = call.message or {}
        if not message.get("is_status") and message.get("recipient"):
            account = self.config.account(call.phone_number_id)
            send = SendRecord(
                decision_id=call.id,
                phone_number_id=call.phone_number_id,
                waba_id=account.waba_id if account else None,
                recipient=message["recipient"],
                category=call.category,
                sent_at=call.received_at,
                in_window=in_open_window(call.input, call.received_at),
            )
        await self.recorder.record(call, send)

    async def _forward(self, call: SendCall, request: web.Request) -> web.StreamResponse:
        try:
            assert call.upstream_url is not None
            response = await self.upstream.send("POST", call.upstream_url, request.headers, call.raw_body)
        except UpstreamError as exc:
            self.recorder.upstream_failed(call, exc.detail)
            return self._call_error(
                call, 504 if exc.timed_out else 502, CODE_ENGINE, "The message was allowed but Meta could not be reached",
                "SendgateUpstreamError", details=exc.detail,
            )  # fmt: skip
        self.recorder.upstream_answered(call, response)
        return _relay(call, response, self.config.mode)


def _admission_keys(message: dict[str, Any]) -> list[str]:
    """The keys whose shared state this message's decision reads: its recipient's, for now
    (consent, window, caps, pair rate). Status calls read no recipient state."""
    recipient = message.get("recipient")
    if recipient is None or message.get("is_status"):
        return []
    return [recipient_admission_key(recipient)]


def _relay(call: SendCall, response: UpstreamResponse, mode: str) -> web.Response:
    headers = {"X-Sendgate-Decision-Id": call.id}
    if call.outcome != "allow":
        headers["X-Sendgate-Decision"] = f"{call.outcome}; mode={mode}"
    out = web.Response(status=response.status, body=response.body, headers=headers)
    if response.content_type:
        out.headers["Content-Type"] = response.content_type
    return out


class _ErrorLines:
    """ERROR lines for a fault that may hit every request: `burst` at once, then one a second;
    the next line logged says how many were left out."""

    def __init__(self, burst: int = 10, per_second: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._burst = float(burst)
        self._rate = per_second
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()
        self._left_out = 0

    def error(self, message: str, *args: Any) -> None:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1:
            self._left_out += 1
            return
        self._tokens -= 1
        if self._left_out:
            message, args = message + " (%d more like it not logged)", (*args, self._left_out)
            self._left_out = 0
        log.error(message, *args)

"""`/admin/v1`: JSON, bearer-token only. No token configured means no admin API."""

from __future__ import annotations

import hmac
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson
from aiohttp import web

from sendgate.admin.records import consent_from_json, decision_query, parse_consent_import, parse_time
from sendgate.admin.throttle import GuessThrottle, SharedStateError
from sendgate.masking import shown_record
from sendgate.messages import normalize_recipient
from sendgate.policy import EngineError, PolicyEngine, PolicyLoadError
from sendgate.policy.watch import PolicyReloader
from sendgate.state import (
    ConsentLedger,
    DecisionLog,
    InvalidRecord,
    ReviewRecord,
    ReviewTrail,
    StoreError,
    TemplateCatalog,
    WebhookState,
)

__all__ = ["AdminGuard", "admin_routes"]

log = logging.getLogger("sendgate.admin")
_MAX_IMPORT_BYTES = 64 * 1024 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(value), content_type="application/json")


def _error(status: int, message: str, kind: str = "SendgateAdminError") -> web.Response:
    return _json({"error": {"message": message, "type": kind, "code": status}}, status)


async def _body(request: web.Request) -> Any:
    try:
        return orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise InvalidRecord(f"body is not valid JSON: {exc}") from exc


class AdminGuard:
    """The one token check every `/admin/v1` route goes through (these and the monitoring ones).

    An offered token that is wrong counts against the client address in `throttle` (shared with
    the sign-in page); a blocked address gets 429 with `Retry-After`, even with the right token.
    A request without `Authorization` is no guess: 401, not counted. A shared throttle (Redis) that
    does not answer: 503 for every token, the right one too.
    """

    def __init__(self, token: str | None, throttle: GuessThrottle, clock: Callable[[], float] = time.time) -> None:
        self._token = None if token is None else token.encode()
        self._throttle = throttle
        self._clock = clock

    def __call__(self, handler: Handler) -> Handler:
        async def check(request: web.Request) -> web.StreamResponse:
            if self._token is None:
                return _error(404, "the admin API is off: set admin_token to enable it")
            given = request.headers.get("Authorization")
            if given is None:
                return _error(401, "admin API needs Authorization: Bearer <admin_token>")
            valid = given.startswith("Bearer ") and hmac.compare_digest(
                given.removeprefix("Bearer ").encode(), self._token
            )
            client = request.remote or "?"
            try:
                wait = await self._throttle.attempt(client, self._clock(), failed=not valid)
            except SharedStateError as exc:  # fail closed: no token is accepted while guesses cannot be counted
                log.error("admin API: the guessing throttle failed: %s", exc)  # where Redis is: the log only
                message = "the admin API is unavailable: its shared state (Redis) is not answering; retry shortly"
                return _error(503, message, "SendgateSharedStateError")
            if wait is not None:
                seconds = max(1, math.ceil(wait))
                response = _error(429, f"too many wrong admin tokens from this address; retry after {seconds} s")
                response.headers["Retry-After"] = str(seconds)
                return response
            if not valid:
                log.warning("admin API: wrong token from %s", client)
                return _error(401, "admin API needs Authorization: Bearer <admin_token>")
            try:
                return await handler(request)
            except InvalidRecord as exc:
                return _error(400, str(exc))
            except StoreError as exc:  # the disk is full or read-only...: say so, never a plain 500
                route = request.match_info.route.resource  # its template: logged paths carry no numbers
                log.error("admin API %s %s: the store failed: %s", request.method, route and route.canonical, exc)
                message = f"the store could not do this; nothing was changed: {exc}"
                return _error(503, message, "SendgateStoreError")

        return check


class AdminStore(ConsentLedger, TemplateCatalog, WebhookState, DecisionLog, ReviewTrail, Protocol):
    """What the admin API reads and writes: consent, catalogs, inbound messages, the log and its reviews."""


def admin_routes(
    guarded: AdminGuard,
    store_of: Callable[[], AdminStore],
    engine: Callable[[], PolicyEngine],
    reloader: PolicyReloader | None = None,
    mask_recipients: bool = False,
) -> list[web.RouteDef]:
    """The admin routes, each wrapped in `guarded`. The callables return the live store and engine.

    Policy reloads go through `reloader` (the one the file watch and SIGHUP use) when given,
    so `GET /admin/v1/policy` reports its status.
    """

    async def put_consent(request: web.Request) -> web.Response:
        record = consent_from_json(request.match_info["recipient"], await _body(request))
        await store_of().record_consent(record)
        return await get_consent(request)

    async def get_consent(request: web.Request) -> web.Response:
        recipient = normalize_recipient(request.match_info["recipient"])
        history = await store_of().consent_history(recipient)
        if not history:
            return _error(404, f"no consent records for {recipient}")
        return _json({"recipient": recipient, "current": history[-1].as_json(), "history": [r.as_json() for r in history]})

    async def import_consent(request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > _MAX_IMPORT_BYTES:
            return _error(413, f"import is larger than {_MAX_IMPORT_BYTES} bytes; split it")
        try:
            text = (await request.read()).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidRecord("import must be UTF-8") from exc
        records = parse_consent_import(text)
        count = await store_of().import_consent(records)
        return _json({"imported": count})

    async def put_templates(request: web.Request) -> web.Response:
        count = await store_of().put_templates(request.match_info["waba_id"], await _body(request))
        return _json({"waba_id": request.match_info["waba_id"], "templates": count})

    async def get_templates(request: web.Request) -> web.Response:
        catalog = await store_of().templates(request.match_info["waba_id"])
        if catalog is None:
            return _error(404, f"no templates loaded for WABA {request.match_info['waba_id']}")
        return _json(catalog)

    async def post_inbound(request: web.Request) -> web.Response:
        body = await _body(request)
        if not isinstance(body, dict):
            raise InvalidRecord("body must be a JSON object")
        for key in ("phone_number_id", "from"):
            if not isinstance(body.get(key), str) or not body[key]:
                raise InvalidRecord(f"{key} is required")
        at = parse_time(body["timestamp"]) if body.get("timestamp") is not None else time.time()
        recipient = normalize_recipient(body["from"])
        await store_of().record_inbound(body["phone_number_id"], recipient, at)
        return _json({"phone_number_id": body["phone_number_id"], "from": recipient, "timestamp": at})

    async def list_decisions(request: web.Request) -> web.Response:
        query = decision_query(request.query)
        records = await store_of().decisions(query)
        paging: dict[str, Any] = {}
        if records:
            paging["cursors"] = {"before": records[0].id, "after": records[-1].id}
            if len(records) == query.limit:
                paging["next"] = str(request.url.update_query(before=records[-1].id))
        shown = [shown_record(r, mask_recipients).as_json() for r in records]
        return _json({"data": shown, "paging": paging})

    async def get_decision(request: web.Request) -> web.Response:
        record = await store_of().decision(request.match_info["decision_id"])
        if record is None:
            return _error(404, f"no decision {request.match_info['decision_id']}")
        return _json(shown_record(record, mask_recipients).as_json())

    async def get_reviews(request: web.Request) -> web.Response:
        decision_id = request.match_info["decision_id"]
        if await store_of().decision(decision_id) is None:
            return _error(404, f"no decision {decision_id}")
        trail = (await store_of().reviews([decision_id])).get(decision_id, [])
        return _json({"decision_id": decision_id, "reviews": [r.as_json() for r in trail]})

    async def post_review(request: web.Request) -> web.Response:
        body = await _body(request)
        if not isinstance(body, dict):
            raise InvalidRecord("body must be a JSON object")
        note, reviewer = body.get("note", ""), body.get("reviewer", "admin")
        if not isinstance(note, str) or not isinstance(reviewer, str) or not reviewer.strip():
            raise InvalidRecord("note and reviewer must be strings")
        decision_id = request.match_info["decision_id"]
        saved = await store_of().add_review(ReviewRecord(decision_id, reviewer.strip(), note.strip(), time.time()))
        if saved is None:
            return _error(404, f"no decision {decision_id}")
        return _json(saved.as_json(), 201)

    async def get_stats(request: web.Request) -> web.Response:
        from sendgate.admin.review import summarize

        unknown = sorted(set(request.query) - {"since", "until"})
        if unknown:
            raise InvalidRecord(f"unknown parameters: {', '.join(unknown)}")
        now = time.time()
        since = parse_time(request.query["since"]) if "since" in request.query else now - 30 * 86400
        until = parse_time(request.query["until"]) if "until" in request.query else now + 1
        summary = summarize(await store_of().decision_counts(since, until))
        return _json({"since": since, "until": until, **summary.as_json()})

    async def reload_policy(request: web.Request) -> web.Response:
        current = engine()
        if reloader is not None:
            reloaded, revision, error = await reloader.reload("admin")
            if not reloaded:
                return _json({"reloaded": False, "revision": revision, "error": error}, 422)
            return _json({"reloaded": True, "revision": revision})
        try:
            revision = await current.reload()
        except (PolicyLoadError, EngineError) as exc:
            log.error("policy reload refused, still serving %s: %s", current.revision, exc)
            return _json({"reloaded": False, "revision": current.revision, "error": str(exc)}, 422)
        return _json({"reloaded": True, "revision": revision})

    async def get_policy(request: web.Request) -> web.Response:
        current = engine()
        body: dict[str, Any] = {"revision": current.revision}
        if reloader is not None:
            body["reload"] = reloader.status().as_json()  # as /readyz and the metrics tell it
        body["engine"] = await current.health()
        return _json(body)

    base = "/admin/v1"
    return [
        web.put(f"{base}/consent/{{recipient}}", guarded(put_consent)),
        web.post(f"{base}/consent/import", guarded(import_consent)),
        web.get(f"{base}/consent/{{recipient}}", guarded(get_consent)),
        web.put(f"{base}/templates/{{waba_id}}", guarded(put_templates)),
        web.get(f"{base}/templates/{{waba_id}}", guarded(get_templates)),
        web.post(f"{base}/inbound", guarded(post_inbound)),
        web.get(f"{base}/decisions", guarded(list_decisions)),
        web.get(f"{base}/decisions/{{decision_id}}", guarded(get_decision)),
        web.get(f"{base}/decisions/{{decision_id}}/reviews", guarded(get_reviews)),
        web.post(f"{base}/decisions/{{decision_id}}/reviews", guarded(post_review)),
        web.get(f"{base}/stats", guarded(get_stats)),
        web.post(f"{base}/policy/reload", guarded(reload_policy)),
        web.get(f"{base}/policy", guarded(get_policy)),
    ]

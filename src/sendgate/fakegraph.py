"""A fake Meta Graph API (WhatsApp Cloud API) for tests and benchmarks.

Meta cannot be reached from here, so sendgate is exercised against this server. It answers
with Meta's shapes and Meta's error codes (FACTS.md §1, §2, §6 and the OpenAPI examples):

* ``POST /{version}/{phone_number_id}/messages`` and ``/marketing_messages``: a send gets
  ``{"messaging_product", "contacts": [{"input", "wa_id"}], "messages": [{"id": "wamid.…",
  "message_status": "accepted"}]}``; a read receipt / typing indicator gets ``{"success": true}``.
* ``POST /{version}/{phone_number_id}/media`` gets ``{"id": "<digits>"}``;
  ``GET /{version}/{media_id}`` gets the media URL object, ``DELETE`` gets ``{"success": true}``.
* ``GET /{version}/{waba_id}/message_templates`` pages ``templates[waba_id]`` with Graph cursors.
* No ``Authorization: Bearer …`` → code 190 (HTTP 401); unknown paths → code 2500 (HTTP 400, as
  Graph answers); unknown object ids → code 100 / subcode 33 (HTTP 400).
  The ``{version}/`` prefix is optional, as on Graph.

Faults (error, stall, drop, slow) are set from Python (:meth:`FakeGraph.fail_next`,
:meth:`FakeGraph.set_fault`) or over HTTP (``POST /__fake/faults``) so that a fake in another
process can be steered; ``GET /__fake/received`` and ``POST /__fake/reset`` complete the control
API. Every Graph request is appended to :attr:`FakeGraph.received` (control requests are not).

Run as a process: ``python -m sendgate.fakegraph --host 127.0.0.1 --port 8999 [--templates FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import itertools
import re
import secrets
import signal
import sys
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from email import policy as email_policy
from email.parser import BytesParser
from typing import Any, Literal, cast, get_args

import orjson
from aiohttp import web

__all__ = ["ERRORS", "FakeGraph", "Fault", "FaultMode", "FaultScope", "Received", "main"]

FaultMode = Literal["ok", "error", "stall", "drop", "slow"]
FaultScope = Literal["send", "all"]

_MODES: frozenset[str] = frozenset(get_args(FaultMode))
_SCOPES: frozenset[str] = frozenset(get_args(FaultScope))
_DEFAULT_DELAY: dict[str, float] = {"stall": 30.0, "slow": 1.0}
_VERSION = re.compile(r"v\d+\.\d+")
_NON_DIGITS = re.compile(r"\D+")
_SEND_EDGES = frozenset({"messages", "marketing_messages"})
_JSON = "application/json"
# The file types Meta's upload endpoint takes, in the order its error lists them (code 100, "Param file
# must be a file with one of the following types: ...": fbsamples/whatsapp-api-examples#10,
# MissaelAnda/laravel-whatsapp#4). It judges the file part's Content-Type, not the `type` field.
_UPLOAD_TYPES = (
    "audio/aac", "audio/mp4", "audio/mpeg", "audio/amr", "audio/ogg", "audio/opus", "application/vnd.ms-powerpoint",
    "application/msword", "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "application/pdf", "text/plain",
    "application/vnd.ms-excel", "image/jpeg", "image/png", "image/webp", "video/mp4", "video/3gpp",
)  # fmt: skip

# Meta's error table (FACTS.md §2, mirrored from Meta's error-codes page): code -> (title, HTTP, details).
ERRORS: dict[int, tuple[str, int, str]] = {
    0: ("AuthException", 401, "We were unable to authenticate the app user."),
    1: ("API Unknown", 400, "Invalid request or possible server error."),
    2: ("API Service", 503, "Temporary due to downtime or due to being overloaded."),
    3: ("API Method", 500, "Capability or permissions issue."),
    4: ("API Too Many Calls", 400, "The app has reached its API call rate limit."),
    10: ("Permission Denied", 403, "Permission is either not granted or has been removed."),
    33: ("Parameter value is not valid", 400, "The business phone number has been deleted."),
    100: ("Invalid parameter", 400, "The request included one or more unsupported or misspelled parameters."),
    190: ("Access token has expired", 401, "Your access token has expired."),
    200: ("API Permission", 403, "Permission is either not granted or has been removed."),
    368: (
        "Temporarily blocked for policies violations",
        403,
        "The WhatsApp Business Account associated with the app has been restricted or disabled"
        " for violating a platform policy.",
    ),
    80007: ("Rate limit issues", 400, "The WhatsApp Business Account has reached its rate limit."),
    130429: (
        "Rate limit hit",
        400,
        "Message failed to send because there were too many messages sent from this phone number"
        " in a short period of time",
    ),
    130472: ("User's number is part of an experiment", 400, "Message was not sent as part of an experiment."),
    130497: (
        "Business account is restricted from messaging users in this country",
        403,
        "The business account is restricted from messaging users in this country.",
    ),
    131000: ("Something went wrong", 500, "Message failed to send due to an unknown error."),
    131005: ("Access denied", 403, "Permission is either not granted or has been removed."),
    131008: ("Required parameter is missing", 400, "The request is missing a required parameter."),
    131009: ("Parameter value is not valid", 400, "One or more parameter values are invalid."),
    131016: ("Service unavailable", 500, "A service is temporarily unavailable."),
    131021: ("Recipient cannot be sender", 400, "Sender and recipient phone number is the same."),
    131026: ("Message Undeliverable", 400, "Unable to deliver message."),
    131030: ("Recipient phone number not in allowed list", 400, "Add recipient phone number to recipient list."),
    131031: (
        "Account has been locked",
        403,
        "The WhatsApp Business Account associated with the app has been restricted or disabled.",
    ),
    131042: ("Business eligibility payment issue", 400, "There was an error related to your payment method."),
    131045: ("Incorrect certificate", 500, "Message failed to send due to a phone number registration error."),
    131047: (
        "Re-engagement message",
        400,
        "Message failed to send because more than 24 hours have passed since the customer last"
        " replied to this number.",
    ),
    131048: (
        "Spam rate limit hit",
        400,
        "Message failed to send because there are restrictions on how many messages can be sent"
        " from this phone number.",
    ),
    131049: (
        "This message was not delivered to maintain healthy ecosystem engagement.",
        400,
        "In order to maintain a healthy ecosystem engagement, the message failed to be delivered.",
    ),
    131050: (
        "Unable to deliver the message. This recipient has chosen to stop receiving marketing"
        " messages on WhatsApp from your business.",
        400,
        "The recipient has stopped marketing messages from your business.",
    ),
    131051: ("Unsupported message type", 400, "Message type is not currently supported."),
    131052: ("Media download error", 400, "Unable to download the media sent by the user."),
    131053: ("Media upload error", 400, "Unable to upload the media used in the message."),
    131056: (
        "(Business Account, Consumer Account) pair rate limit hit",
        400,
        "Message failed to send because there were too many messages sent from this phone number"
        " to the same phone number in a short period of time.",
    ),
    131057: ("Account in maintenance mode", 500, "Business Account is in maintenance mode."),
    # pywa's errors.py (FACTS.md §2); Meta's table gives no HTTP status: 400, as its other recipient errors
    131062: ("Business-scoped user ID recipient not supported", 400,
             "This message cannot be sent to a business-scoped user ID; use the phone number."),
    132000: (
        "Number of parameters does not match the expected number of params",
        400,
        "The number of variable parameter values included in the request did not match the number"
        " of variable parameters defined in the template.",
    ),
    132001: (
        "Template name does not exist in the translation",
        404,
        "The template does not exist in the specified language or the template has not been approved.",
    ),
    132005: ("Template Hydrated Text Too Long", 400, "Translated text is too long."),
    132007: ("Template Format Character Policy Violated", 400, "Template content violates a WhatsApp policy."),
    132012: ("Template Parameter Format Mismatch", 400, "Variable parameter values formatted incorrectly."),
    132015: ("Template is Paused", 400, "Template is paused due to low quality so it cannot be sent."),
    132016: ("Template is Disabled", 400, "Template has been paused too many times due to low quality."),
    132018: ("Template Parameters Issue", 400,
             "Param text cannot have new-line/tab characters or more than 4 consecutive spaces."),
    132068: ("Flow is blocked", 400, "Flow is in blocked state."),
    132069: ("Flow is throttled", 400, "Flow is in throttled state."),
    133010: ("Phone number Not Registered", 400, "Phone number not registered on the WhatsApp Business Platform."),
    133016: (
        "Account register deregister rate limit exceeded",
        400,
        "Registration or Deregistration failed because there were too many attempts.",
    ),
    135000: ("Generic user error", 400, "Message failed to send because of an unknown error with your request."),
}


def _error_info(code: int) -> tuple[str, int, str]:
    known = ERRORS.get(code)
    if known is not None:
        return known
    if 200 <= code <= 299:
        return ERRORS[200]
    return ("Unknown error", 400, "An unknown error occurred.")


def _trace_id() -> str:
    return secrets.token_urlsafe(17)  # 23 chars, like "Az8or2yhqkZfEZ-_4Qn_Bam"


def _cursor(index: int) -> str:
    """Graph's cursor encoding: base64 of the decimal offset with '=' written as 'ZD' ("MAZDZD" is 0)."""
    return base64.b64encode(str(index).encode()).decode().replace("=", "ZD")


def _uncursor(cursor: str) -> int:
    stripped = cursor
    pads = 0
    while stripped.endswith("ZD") and pads < 2:
        stripped, pads = stripped[:-2], pads + 1
    value = int(base64.b64decode(stripped + "=" * pads, validate=True).decode())
    if value < 0:
        raise ValueError("negative cursor")
    return value


def _json(payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type=_JSON, headers=headers)


def _has_token(request: web.Request) -> bool:
    auth = request.headers.get("Authorization")
    if auth is not None:
        scheme, _, token = auth.partition(" ")
        return scheme.lower() in ("bearer", "oauth") and bool(token.strip())
    return bool(request.query.get("access_token"))  # Graph also accepts the token as a parameter


def _parse_body(raw: bytes) -> Any:
    if not raw:
        return None
    if raw[:1] in (b"{", b"["):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            return raw
    return raw


@dataclass(slots=True, eq=False)
class Received:
    """One Graph request as received. `headers` is the request's own case-insensitive mapping."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: Any  # parsed JSON, raw bytes (not JSON: multipart uploads, garbage), or None when empty
    time: float
    message_id: str | None = None  # the wamid answered, for a successful send
    status: int | None = None  # HTTP status answered; None while pending or when dropped/stalled
    fault: str | None = None  # the fault mode applied ("error", "stall", "drop", "slow"), if any

    @property
    def authorization_present(self) -> bool:
        return "Authorization" in self.headers

    @property
    def to(self) -> str | None:
        body = self.body
        return body.get("to") if isinstance(body, dict) else None

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready view; never includes the token."""
        body = self.body
        if isinstance(body, bytes):
            body = body.decode("utf-8", "replace")
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "time": self.time,
            "body": body,
            "to": self.to,
            "message_id": self.message_id,
            "status": self.status,
            "fault": self.fault,
            "authorization_present": self.authorization_present,
        }


@dataclass(slots=True)
class Fault:
    """What to do with the next matching request(s).

    error: Meta error `code` with HTTP `status` (Meta's status for the code when None).
    stall: answer nothing for `delay` seconds (default 30), then close the connection.
    drop:  close the TCP connection without a response.
    slow:  answer normally after `delay` seconds (default 1).
    ok:    answer normally (a queued "ok" lets one request through).
    `count`: how many requests it applies to; None = persistent until changed.
    `scope`: "send" = only POST …/messages and …/marketing_messages; "all" = every Graph request.
    """

    mode: FaultMode = "ok"
    code: int = 131000
    status: int | None = None
    details: str | None = None
    title: str | None = None
    delay: float | None = None
    count: int | None = None
    scope: FaultScope = "send"

    def as_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "code": self.code,
            "status": self.status,
            "details": self.details,
            "title": self.title,
            "delay": self.delay,
            "count": self.count,
            "scope": self.scope,
        }

    @classmethod
    def from_json(cls, data: Any) -> Fault:
        """Validate a `POST /__fake/faults` body; raises ValueError with the reason."""
        if not isinstance(data, dict):
            raise ValueError("body must be a JSON object")
        unknown = set(data) - {"mode", "code", "status", "details", "title", "delay", "count", "scope"}
        if unknown:
            raise ValueError(f"unknown fields: {sorted(unknown)}")
        mode = data.get("mode", "error")
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {sorted(_MODES)}")
        scope = data.get("scope", "send")
        if scope not in _SCOPES:
            raise ValueError(f"scope must be one of {sorted(_SCOPES)}")
        for name in ("code", "status", "count"):
            value = data.get(name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise ValueError(f"{name} must be an integer or null")
        delay = data.get("delay")
        if delay is not None and (not isinstance(delay, int | float) or isinstance(delay, bool) or delay < 0):
            raise ValueError("delay must be a non-negative number or null")
        for name in ("details", "title"):
            if data.get(name) is not None and not isinstance(data[name], str):
                raise ValueError(f"{name} must be a string or null")
        count = data.get("count")
        if count is not None and count < 1:
            raise ValueError("count must be >= 1 or null")
        code = data.get("code")
        return cls(
            mode=cast(FaultMode, mode),
            code=131000 if code is None else code,
            status=data.get("status"),
            details=data.get("details"),
            title=data.get("title"),
            delay=None if delay is None else float(delay),
            count=count,
            scope=cast(FaultScope, scope),
        )


class FakeGraph:
    """State of the fake plus the aiohttp application serving it (see the module docstring)."""

    def __init__(self, templates: Mapping[str, Any] | None = None) -> None:
        self.received: list[Received] = []
        self.templates: dict[str, list[dict[str, Any]]] = {}
        self.media: dict[str, dict[str, Any]] = {}
        self._queue: deque[Fault] = deque()
        self._persistent: Fault | None = None
        self._seq = itertools.count(1)
        self._wamid_prefix = secrets.token_hex(3).upper()
        self._media_base = 1_000_000_000_000_000 + secrets.randbelow(8_000_000_000_000_000)
        self._closing: asyncio.Event | None = None
        if templates:
            self.load_templates(templates)

    # ----------------------------------------------------------------- Python control API

    def load_templates(self, templates: Mapping[str, Any]) -> None:
        """Set templates per WABA from `{waba_id: {"data": [...]}}` or `{waba_id: [...]}`."""
        for waba_id, value in templates.items():
            items = value.get("data") if isinstance(value, Mapping) else value
            if not isinstance(items, list):
                raise ValueError(f"templates for WABA {waba_id!r} must be a list or {{'data': [...]}}")
            self.templates[str(waba_id)] = list(items)

    def set_fault(
        self,
        mode: FaultMode,
        *,
        code: int = 131000,
        status: int | None = None,
        details: str | None = None,
        title: str | None = None,
        delay: float | None = None,
        count: int | None = None,
        scope: FaultScope = "send",
    ) -> None:
        """Queue a fault for the next `count` matching requests, or (count=None) set the persistent mode.

        Queued faults run in order before the persistent mode applies. A persistent "ok" also
        clears the queue: it means "back to normal".
        """
        fault = Fault(mode, code, status, details, title, delay, count, scope)
        if mode not in _MODES or scope not in _SCOPES:
            raise ValueError(f"bad fault {fault!r}")
        if count is None:
            if mode == "ok":
                self.clear_faults()
            else:
                self._persistent = fault
        elif count >= 1:
            self._queue.append(fault)
        else:
            raise ValueError("count must be >= 1 or None")

    def fail_next(
        self,
        n: int = 1,
        code: int = 131056,
        status: int | None = None,
        details: str | None = None,
        *,
        scope: FaultScope = "send",
    ) -> None:
        """Answer the next `n` sends with Meta error `code` (HTTP `status`, Meta's own when None)."""
        self.set_fault("error", code=code, status=status, details=details, count=n, scope=scope)

    def clear_faults(self) -> None:
        self._queue.clear()
        self._persistent = None

    def faults(self) -> dict[str, Any]:
        """The persistent fault (None = ok) and the queue, as JSON-ready data."""
        return {
            "persistent": self._persistent.as_json() if self._persistent else None,
            "queue": [f.as_json() for f in self._queue],
        }

    def reset(self) -> None:
        """Forget received requests, uploaded media and faults. Templates stay; wamids stay unique."""
        self.received.clear()
        self.media.clear()
        self.clear_faults()

    @property
    def sent(self) -> list[Received]:
        """Requests answered with a wamid (successful sends), in arrival order."""
        return [r for r in self.received if r.message_id is not None]

    # ----------------------------------------------------------------- application

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        app.router.add_post("/__fake/faults", self._http_set_fault)
        app.router.add_get("/__fake/faults", self._http_get_faults)
        app.router.add_get("/__fake/received", self._http_received)
        app.router.add_post("/__fake/reset", self._http_reset)
        app.router.add_post("/__fake/templates", self._http_templates)
        app.router.add_route("*", "/{tail:.*}", self._graph)
        return app

    async def _on_startup(self, _app: web.Application) -> None:
        self._closing = asyncio.Event()

    async def _on_shutdown(self, _app: web.Application) -> None:
        if self._closing is not None:
            self._closing.set()  # end stalls and slow answers now rather than at their deadline

    async def _pause(self, delay: float) -> None:
        if delay <= 0:
            return
        closing = self._closing
        if closing is None:
            await asyncio.sleep(delay)
            return
        try:
            async with asyncio.timeout(delay):
                await closing.wait()
        except TimeoutError:
            pass

    def _take_fault(self, is_send: bool) -> Fault | None:
        queue = self._queue
        if queue:
            head = queue[0]
            if is_send or head.scope == "all":
                assert head.count is not None
                head.count -= 1
                if head.count <= 0:
                    queue.popleft()
                return head
        persistent = self._persistent
        if persistent is not None and (is_send or persistent.scope == "all"):
            return persistent
        return None

    async def _graph(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = _parse_body(raw)
        record = Received(request.method, request.path, request.query_string, request.headers, body, time.time())
        self.received.append(record)

        parts = request.path.strip("/").split("/")
        version = parts[0] if _VERSION.fullmatch(parts[0]) else None
        if version is not None:
            parts = parts[1:]
        is_send = request.method == "POST" and len(parts) == 2 and parts[1] in _SEND_EDGES
        headers = {"facebook-api-version": version} if version else None

        if self._queue or self._persistent is not None:
            fault = self._take_fault(is_send)
            if fault is not None and fault.mode != "ok":
                record.fault = fault.mode
                if fault.mode == "slow":
                    await self._pause(_DEFAULT_DELAY["slow"] if fault.delay is None else fault.delay)
                elif fault.mode == "error":
                    title, meta_status, meta_details = _error_info(fault.code)
                    return self._error(
                        record,
                        fault.code,
                        fault.status or meta_status,
                        fault.details or meta_details,
                        title=fault.title or title,
                    )
                else:  # stall or drop
                    if fault.mode == "stall":
                        await self._pause(_DEFAULT_DELAY["stall"] if fault.delay is None else fault.delay)
                    if request.transport is not None:
                        request.transport.close()
                    return web.Response()  # never written: the transport is closed

        if not _has_token(request):
            return self._graph_error(
                record,
                401,
                "Invalid OAuth access token - Cannot parse access token",
                "OAuthException",
                190,
                headers={"WWW-Authenticate": 'OAuth "Facebook Platform" "invalid_token" "Invalid OAuth access token"'},
            )

        if is_send:
            response = self._send(record, body)
        elif len(parts) == 2 and parts[1] == "media" and request.method == "POST":
            response = self._upload(record, request, raw)
        elif len(parts) == 2 and parts[1] == "message_templates" and request.method == "GET":
            response = self._list_templates(record, request, parts[0])
        elif len(parts) == 1 and parts[0] in self.media and request.method in ("GET", "DELETE"):
            response = self._media_object(record, request, parts[0])
        elif len(parts) == 1 and parts[0]:
            response = self._no_object(record, request.method, parts[0])
        else:
            response = self._graph_error(
                record, 400, f"Unknown path components: /{'/'.join(parts)}", "OAuthException", 2500
            )
        if headers:
            response.headers.update(headers)
        return response

    # ----------------------------------------------------------------- responses

    def _error(self, record: Received, code: int, status: int, details: str, title: str | None = None) -> web.Response:
        """Meta's WhatsApp error shape: message "(#code) title", error_data.details, fbtrace_id."""
        trace = _trace_id()
        record.status = status
        payload = {
            "error": {
                "message": f"(#{code}) {title or _error_info(code)[0]}",
                "type": "OAuthException",
                "code": code,
                "error_data": {"messaging_product": "whatsapp", "details": details},
                "fbtrace_id": trace,
            }
        }
        return _json(payload, status, {"x-fb-trace-id": trace})

    def _graph_error(
        self,
        record: Received,
        status: int,
        message: str,
        kind: str,
        code: int,
        subcode: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> web.Response:
        """A plain Graph error (no error_data), as Graph answers auth and routing failures."""
        trace = _trace_id()
        record.status = status
        error: dict[str, Any] = {"message": message, "type": kind, "code": code}
        if subcode is not None:
            error["error_subcode"] = subcode
        error["fbtrace_id"] = trace
        return _json({"error": error}, status, {"x-fb-trace-id": trace, **(headers or {})})

    def _invalid(self, record: Received, details: str) -> web.Response:
        return self._error(record, 100, 400, details)

    def _no_object(self, record: Received, method: str, object_id: str) -> web.Response:
        return self._graph_error(
            record,
            400,
            f"Unsupported {method.lower()} request. Object with ID '{object_id}' does not exist, cannot be"
            " loaded due to missing permissions, or does not support this operation. Please read the"
            " Graph API documentation at https://developers.facebook.com/docs/graph-api",
            "GraphMethodException",
            100,
            subcode=33,
        )

    def _new_wamid(self, recipient: str) -> str:
        seq = next(self._seq)
        ident = f"{self._wamid_prefix}{seq:012X}".encode()
        who = recipient.encode()[:255]
        raw = b"\x1c\x18" + bytes((len(who),)) + who + b"\x15\x02\x00\x11\x18\x12" + ident + b"\x00"
        return "wamid." + base64.b64encode(raw).decode()

    def _send(self, record: Received, body: Any) -> web.Response:
        if not isinstance(body, dict):
            return self._invalid(record, "The request body must be a JSON object.")
        if body.get("messaging_product") != "whatsapp":
            return self._invalid(record, "The parameter messaging_product is required and must be 'whatsapp'.")
        if "status" in body:
            if body["status"] != "read":
                return self._invalid(record, "Param status must be 'read'.")
            if not isinstance(body.get("message_id"), str) or not body["message_id"]:
                return self._invalid(record, "The parameter message_id is required.")
            record.status = 200
            return _json({"success": True})
        to = body.get("to")
        if to is None:
            recipient = body.get("recipient")  # 2026 business-scoped user id (BSUID) instead of `to`
            if not isinstance(recipient, str) or not recipient:
                return self._invalid(record, "The parameter to is required.")
            contact: dict[str, str] = {"input": recipient, "user_id": recipient}
            who = recipient
        else:
            if not isinstance(to, str) or not to:
                return self._invalid(record, "Param to must be a non-empty string.")
            wa_id = to if to.isdigit() else _NON_DIGITS.sub("", to) or to
            contact = {"input": to, "wa_id": wa_id}
            who = wa_id
        wamid = self._new_wamid(who)
        record.message_id = wamid
        record.status = 200
        return _json(
            {
                "messaging_product": "whatsapp",
                "contacts": [contact],
                "messages": [{"id": wamid, "message_status": "accepted"}],
            }
        )

    def _upload(self, record: Received, request: web.Request, raw: bytes) -> web.Response:
        fields: dict[str, str] = {}
        mime_type = "application/octet-stream"
        content = raw
        file_part = False
        if request.content_type.startswith("multipart/"):
            header = f"Content-Type: {request.headers.get('Content-Type', '')}\r\n\r\n".encode()
            message = BytesParser(policy=email_policy.HTTP).parsebytes(header + raw)
            if message.is_multipart():
                for part in message.iter_parts():
                    name = part.get_param("name", header="content-disposition")
                    decoded = part.get_payload(decode=True)  # bytes for a non-multipart part
                    payload = decoded if isinstance(decoded, bytes) else b""
                    if part.get_filename() is not None or name == "file":
                        content = payload
                        mime_type = part.get_content_type()
                        file_part = True
                    elif isinstance(name, str):
                        fields[name] = payload.decode("utf-8", "replace")
        elif isinstance(record.body, dict):
            fields = {k: v for k, v in record.body.items() if isinstance(v, str)}
        if fields.get("messaging_product") != "whatsapp":
            return self._invalid(record, "The parameter messaging_product is required and must be 'whatsapp'.")
        if file_part and mime_type not in _UPLOAD_TYPES:
            return self._graph_error(
                record, 400, f"(#100) Param file must be a file with one of the following types: "
                f"{', '.join(_UPLOAD_TYPES)}. Received file of type '{mime_type}'.", "OAuthException", 100,
            )  # fmt: skip
        media_id = str(self._media_base + next(self._seq))
        self.media[media_id] = {
            "messaging_product": "whatsapp",
            "url": f"https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid={media_id}"
            f"&ext={int(time.time())}&hash={secrets.token_urlsafe(12)}",
            "mime_type": fields.get("type") or mime_type,
            "sha256": hashlib.sha256(content).hexdigest(),
            "file_size": str(len(content)),
            "id": media_id,
        }
        record.status = 200
        return _json({"id": media_id})

    def _media_object(self, record: Received, request: web.Request, media_id: str) -> web.Response:
        record.status = 200
        if request.method == "DELETE":
            del self.media[media_id]
            return _json({"success": True})
        return _json(self.media[media_id])

    def _list_templates(self, record: Received, request: web.Request, waba_id: str) -> web.Response:
        items = self.templates.get(waba_id)
        if items is None:
            return self._no_object(record, "GET", waba_id)
        query = request.query
        for key in ("name", "status", "category", "language"):
            wanted = query.get(key)
            if wanted:
                if key == "name":  # Graph's name filter matches substrings
                    items = [t for t in items if wanted in str(t.get("name", ""))]
                else:
                    items = [t for t in items if str(t.get(key, "")).upper() == wanted.upper()]
        try:
            limit = int(query.get("limit", "25"))
            if limit < 1:
                raise ValueError("limit")
            if "after" in query:
                start = _uncursor(query["after"]) + 1
                end = start + limit
            elif "before" in query:
                end = _uncursor(query["before"])
                start = max(0, end - limit)
            else:
                start, end = 0, limit
        except (ValueError, TypeError):
            return self._invalid(record, "Invalid limit or paging cursor.")
        end = min(end, len(items))
        page = items[start:end]
        fields = query.get("fields")
        if fields:
            keep = {f.split("{", 1)[0].strip() for f in fields.split(",")} | {"id"}
            page = [{k: v for k, v in t.items() if k in keep} for t in page]
        record.status = 200
        if not page:
            return _json({"data": []})
        paging: dict[str, Any] = {"cursors": {"before": _cursor(start), "after": _cursor(end - 1)}}
        base = request.url.with_query([(k, v) for k, v in query.items() if k not in ("after", "before")])
        if start > 0:
            paging["previous"] = str(base.update_query(before=_cursor(start)))
        if end < len(items):
            paging["next"] = str(base.update_query(after=_cursor(end - 1)))
        return _json({"data": page, "paging": paging})

    # ----------------------------------------------------------------- HTTP control API

    async def _http_set_fault(self, request: web.Request) -> web.Response:
        try:
            fault = Fault.from_json(orjson.loads(await request.read()))
        except (orjson.JSONDecodeError, ValueError) as exc:
            return _json({"error": str(exc)}, 400)
        self.set_fault(**fault.as_json())
        return _json(self.faults())

    async def _http_get_faults(self, _request: web.Request) -> web.Response:
        return _json(self.faults())

    async def _http_received(self, request: web.Request) -> web.Response:
        try:
            since = int(request.query.get("since", "0"))
        except ValueError:
            return _json({"error": "since must be an integer"}, 400)
        return _json([r.as_json() for r in self.received[max(0, since) :]])

    async def _http_reset(self, _request: web.Request) -> web.Response:
        self.reset()
        return _json({"ok": True})

    async def _http_templates(self, request: web.Request) -> web.Response:
        try:
            data = orjson.loads(await request.read())
            if not isinstance(data, dict):
                raise ValueError("body must be {waba_id: {\"data\": [...]}}")
            self.load_templates(data)
        except (orjson.JSONDecodeError, ValueError) as exc:
            return _json({"error": str(exc)}, 400)
        return _json({"ok": True, "wabas": sorted(self.templates)})


# --------------------------------------------------------------------- process entry point


async def _serve(fake: FakeGraph, host: str, port: int) -> None:
    runner = web.AppRunner(fake.app(), access_log=None, handle_signals=False, shutdown_timeout=5.0)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        site = web.TCPSite(runner, host, port, backlog=2048)
        await site.start()
        bound_port = runner.addresses[0][1] if runner.addresses else port
        print(f"fakegraph listening on http://{host}:{bound_port}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()


def _read_templates(path: str) -> dict[str, Any]:
    with open(path, "rb") as handle:
        data = orjson.loads(handle.read())
    if not isinstance(data, dict):
        raise SystemExit(f"{path}: expected {{\"<waba_id>\": {{\"data\": [...]}}}}")
    return data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sendgate.fakegraph", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8999, help="0 picks a free port (printed on start)")
    parser.add_argument("--templates", help='JSON file {"<waba_id>": {"data": [...]}}')
    args = parser.parse_args(argv)
    fake = FakeGraph(_read_templates(args.templates) if args.templates else None)
    try:
        asyncio.run(_serve(fake, args.host, args.port))
    except KeyboardInterrupt:  # pragma: no cover - SIGINT before the handler is installed
        pass
    sys.stdout.flush()


if __name__ == "__main__":
    main()

"""The review pages under `/admin/`: server-rendered HTML for the compliance team.

Sign in at `/admin/login` with the admin token or a reviewer token (`reviewer_tokens`); the
session lives in this process, or in Redis with `redis_url` (`sessions.py`), in a cookie that is
HttpOnly, SameSite=Strict and expires after `session_ttl`. Without a session there is no page
and no data. Every POST form carries the session's CSRF token (the sign-in form a cookie-bound
one). Pages send a Content-Security-Policy that allows nothing but this server's stylesheet: no
scripts at all, charts are inline SVG.

Reviewer tokens read the log and append review notes; they do not open the JSON admin API.
Tokens and session ids are never logged. Wrong tokens are throttled per client address, with
the admin API's count (`sendgate/admin/throttle.py`). When Redis does not answer, sign-in and
every page answer 503: nobody is let in, or counted, while it is down.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import math
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from importlib import resources
from typing import Any
from urllib.parse import urlencode

import aiohttp_jinja2
import jinja2
import orjson
from aiohttp import web

from sendgate.admin.charts import PALETTE_SIZE, Bar, bar_chart, series_class, stacked_chart
from sendgate.admin.records import FILTERS, decision_query, parse_time
from sendgate.admin.review import (
    ReviewedLog,
    ReviewView,
    csv_text,
    fmt_duration,
    fmt_time,
    iter_decisions,
    rule_series,
    rules_of,
    summarize,
)
from sendgate.admin.sessions import MemorySessions, Session, SessionStore, session_digest
from sendgate.admin.throttle import GuessThrottle, MemoryGuessThrottle, SharedStateError
from sendgate.config import Config
from sendgate.messages import normalize
from sendgate.state import DecisionQuery, DecisionRecord, InvalidRecord, ReviewRecord, StoreError

__all__ = ["JINJA", "SESSION_COOKIE", "ReviewPages", "setup_review_pages"]

log = logging.getLogger("sendgate.admin.pages")

JINJA = web.AppKey("sendgate_review_jinja", jinja2.Environment)
SESSION_COOKIE = "sendgate_session"
LOGIN_COOKIE = "sendgate_login"  # binds the sign-in form's CSRF token to this browser
LOGIN_FORM_TTL = 1800
PAGE_SIZE = 50
MAX_FORM_BYTES = 64 * 1024
SUGGESTIONS_TTL = 60.0
HOUR = 3600
DAY = 86400

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
DECISION_CHOICES = (
    ("", "all rejections"),
    ("deny", "deny"),
    ("defer", "defer"),
    ("invalid", "invalid"),
    ("error", "error"),
    ("shadow", "shadow (would-be deny/defer)"),
)
REVIEWED_CHOICES = (("", "any"), ("no", "unreviewed"), ("yes", "reviewed"))


_digest = session_digest  # tokens and CSRF tokens are compared as digests: constant time, any length
SHARED_DOWN = "Sign-in is unavailable: the session store (Redis) is not answering. Try again shortly."

SESSION = web.RequestKey("review_session", Session)
FORM = web.RequestKey("review_form", dict[str, str])


def _safe_next(value: str | None) -> str:
    """Where to go after sign-in: only a path of these pages."""
    if (
        value
        and value.startswith("/admin/")
        and not value.startswith("/admin/v1")
        and "//" not in value
        and "\\" not in value
        and not any(ord(ch) < 32 for ch in value)
    ):
        return value
    return "/admin/decisions"


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _input_time(value: str) -> str:
    """A filter time as the `datetime-local` input shows it (UTC)."""
    try:
        return dt.datetime.fromtimestamp(parse_time(value), dt.timezone.utc).strftime("%Y-%m-%dT%H:%M")
    except (InvalidRecord, ValueError, OverflowError, OSError):
        return value


class ReviewPages:
    def __init__(
        self,
        config: Config,
        store_of: Callable[[], ReviewedLog],
        clock: Callable[[], float] = time.time,
        revision_of: Callable[[], str | None] = lambda: None,
        throttle: GuessThrottle | None = None,
        sessions: SessionStore | None = None,
    ) -> None:
        self.config = config
        self.store_of = store_of
        self.clock = clock
        self.revision_of = revision_of
        self.view = ReviewView(config)
        self.sessions = MemorySessions(config.session_ttl, clock) if sessions is None else sessions
        self.throttle = MemoryGuessThrottle() if throttle is None else throttle  # wrong tokens per address
        self._suggestions: tuple[float, dict[str, list[str]]] | None = None
        self._tokens: list[tuple[str, str, bytes]] = []
        if config.admin_token is not None:
            self._tokens.append(("admin", "admin", _digest(config.admin_token)))
        self._tokens += [(r.name, "reviewer", _digest(r.token)) for r in config.reviewer_tokens]

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    # -- plumbing -------------------------------------------------------------------

    def _identify(self, token: str) -> tuple[str, str] | None:
        given = _digest(token)
        match = None
        for name, role, expected in self._tokens:  # compare with every token: no early exit
            if hmac.compare_digest(given, expected) and match is None:
                match = (name, role)
        return match

    def _render(
        self, request: web.Request, template: str, context: Mapping[str, Any], status: int = 200
    ) -> web.Response:
        session: Session | None = request.get(SESSION)
        base = {"session": session, "csrf": session.csrf if session else "", "nav": "", "title": "sendgate review"}
        response = aiohttp_jinja2.render_template(template, request, {**base, **context}, status=status, app_key=JINJA)
        response.headers.update(SECURITY_HEADERS)
        return response

    def _error(self, request: web.Request, status: int, message: str) -> web.Response:
        return self._render(
            request, "error.html", {"status": status, "message": message, "title": "sendgate review"}, status
        )

    def _cookie(
        self, response: web.StreamResponse, request: web.Request, name: str, value: str, max_age: int, path: str
    ) -> None:
        response.set_cookie(
            name, value, max_age=max_age, path=path, httponly=True, samesite="Strict", secure=request.secure
        )

    async def _form(self, request: web.Request) -> dict[str, str]:
        if request.content_length is None or request.content_length > MAX_FORM_BYTES:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_FORM_BYTES, actual_size=request.content_length or 0)
        form = await request.post()
        return {k: v for k, v in form.items() if isinstance(v, str)}

    def signed_in(
        self, handler: Callable[[web.Request, Session], Awaitable[web.StreamResponse]], post: bool = False
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """No page, no data without a session; POSTs also need the session's CSRF token."""

        async def check(request: web.Request) -> web.StreamResponse:
            if not self.enabled:
                return self._off(request)
            try:
                session = await self.sessions.get(request.cookies.get(SESSION_COOKIE))
            except SharedStateError as exc:
                return self._shared_down(request, exc)
            if session is None:
                target = (
                    "/admin/login?" + urlencode({"next": request.path_qs})
                    if request.method == "GET"
                    else "/admin/login"
                )
                raise web.HTTPSeeOther(target, headers=SECURITY_HEADERS)
            request[SESSION] = session
            if post:
                form = await self._form(request)
                if not hmac.compare_digest(_digest(form.get("csrf_token", "")), _digest(session.csrf)):
                    return self._error(
                        request,
                        403,
                        "This form has expired or did not come from this page. Go back, reload and try again.",
                    )
                request[FORM] = form
            try:
                return await handler(request, session)
            except InvalidRecord as exc:
                return self._error(request, 400, str(exc))
            except StoreError as exc:
                route = request.match_info.route.resource  # its template: logged paths carry no numbers
                log.error("review page %s %s: the store failed: %s", request.method, route and route.canonical, exc)
                return self._error(request, 503, f"The decision log could not be read or written just now: {exc}")

        return check

    def _shared_down(self, request: web.Request, exc: SharedStateError) -> web.Response:
        route = request.match_info.route.resource  # its template: logged paths carry no numbers
        log.error("review page %s %s: %s", request.method, route and route.canonical, exc)
        return self._error(request, 503, SHARED_DOWN)

    def _off(self, request: web.Request) -> web.Response:
        return self._error(request, 404, "The review pages are off: set admin_token or reviewer_tokens to enable them.")

    # -- sign-in --------------------------------------------------------------------

    async def login_form(self, request: web.Request) -> web.StreamResponse:
        if not self.enabled:
            return self._off(request)
        try:
            signed_in = await self.sessions.get(request.cookies.get(SESSION_COOKIE))
        except SharedStateError as exc:
            return self._shared_down(request, exc)
        if signed_in is not None:
            raise web.HTTPSeeOther(_safe_next(request.query.get("next")), headers=SECURITY_HEADERS)
        return self._login_page(request, None, 200)

    def _login_page(self, request: web.Request, error: str | None, status: int) -> web.Response:
        form_token = secrets.token_urlsafe(32)
        response = self._render(
            request,
            "login.html",
            {
                "error": error,
                "form_token": form_token,
                "next": _safe_next(request.query.get("next")),
                "title": "Sign in",
            },
            status,
        )
        self._cookie(response, request, LOGIN_COOKIE, form_token, LOGIN_FORM_TTL, "/admin/login")
        return response

    async def login(self, request: web.Request) -> web.StreamResponse:
        if not self.enabled:
            return self._off(request)
        client = request.remote or "?"
        form = await self._form(request)
        expected = request.cookies.get(LOGIN_COOKIE, "")
        if not expected or not hmac.compare_digest(_digest(form.get("csrf_token", "")), _digest(expected)):
            return self._login_page(request, "The sign-in form expired. Please try again.", 400)
        who = self._identify(form.get("token", ""))
        # Checked and counted in one call, after the form is read: concurrent guesses cannot all pass.
        signed: tuple[str, Session] | None = None
        try:
            wait = await self.throttle.attempt(client, self.clock(), failed=who is None)
            if who is not None and wait is None:
                signed = await self.sessions.create(*who)
        except SharedStateError as exc:  # fail closed: no sign-in while the throttle cannot count
            log.error("review pages: sign-in from %s refused: %s", client, exc)
            return self._login_page(request, SHARED_DOWN, 503)
        if wait is not None:
            response = self._login_page(request, "Too many failed sign-ins from here. Wait a few minutes.", 429)
            response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
            return response
        if signed is None:
            log.warning("review pages: failed sign-in from %s", client)
            return self._login_page(request, "That token is not valid.", 401)
        raw, session = signed
        log.info("review pages: %s (%s) signed in from %s", session.name, session.role, client)
        response = web.HTTPSeeOther(_safe_next(form.get("next")), headers=SECURITY_HEADERS)
        self._cookie(response, request, SESSION_COOKIE, raw, self.config.session_ttl, "/admin")
        response.del_cookie(LOGIN_COOKIE, path="/admin/login")
        raise response

    async def logout(self, request: web.Request, session: Session) -> web.StreamResponse:
        try:
            await self.sessions.drop(request.cookies.get(SESSION_COOKIE))
        except SharedStateError as exc:  # not signed out anywhere: say so rather than pretend
            return self._shared_down(request, exc)
        response = web.HTTPSeeOther("/admin/login", headers=SECURITY_HEADERS)
        response.del_cookie(SESSION_COOKIE, path="/admin")
        raise response

    # -- the list -------------------------------------------------------------------

    def _filters(self, request: web.Request) -> dict[str, str]:
        """The filters as given (empty fields dropped); the page lists rejections unless told otherwise."""
        return {k: v.strip() for k, v in request.query.items() if k in FILTERS and v.strip()}

    def _query(self, filters: Mapping[str, str], limit: int = PAGE_SIZE, **paging: str) -> DecisionQuery:
        params = {**filters, **{k: v for k, v in paging.items() if v}}
        params.setdefault("decision", "rejected")
        params["limit"] = str(limit)
        return decision_query(params)

    async def list_page(self, request: web.Request, session: Session) -> web.StreamResponse:
        filters = self._filters(request)
        before, after = request.query.get("before", ""), request.query.get("after", "")
        try:
            query = self._query(filters, PAGE_SIZE + 1, before=before, after=after if not before else "")
        except InvalidRecord as exc:
            return await self._list_response(request, filters, [], {}, str(exc), None, None, 400)
        store = self.store_of()
        records = await store.decisions(query)
        newer = older = None
        if query.after_id:
            if len(records) > PAGE_SIZE:
                records = records[1:]
                newer = records[0].id
            older = records[-1].id if records else query.after_id
        else:
            if len(records) > PAGE_SIZE:
                records = records[:PAGE_SIZE]
                older = records[-1].id
            if query.before_id:
                newer = records[0].id if records else query.before_id
        trail = await store.reviews([r.id for r in records])
        return await self._list_response(request, filters, records, trail, None, newer, older, 200)

    async def _list_response(
        self,
        request: web.Request,
        filters: dict[str, str],
        records: list[DecisionRecord],
        trail: dict[str, list[ReviewRecord]],
        error: str | None,
        newer: str | None,
        older: str | None,
        status: int,
    ) -> web.Response:
        qs = urlencode(filters)
        rows = []
        for record in records:
            row = self.view.row(record, trail.get(record.id))
            shown = self.view.shown(record)
            row["rule_list"] = rules_of(shown)
            row["reason_count"] = len(shown.reasons)
            row["first_reason"] = next((str(r.get("message", "")) for r in shown.reasons if isinstance(r, dict)), "")
            row["account_label"] = self.view.account_label(record.account)
            row["href"] = f"/admin/decisions/{record.id}" + (f"?{urlencode({'back': qs})}" if qs else "")
            rows.append(row)
        context = {
            "nav": "list",
            "title": "Rejected sends",
            "rows": rows,
            "error": error,
            "filters": filters,
            "form": {
                **filters,
                "since": _input_time(filters["since"]) if "since" in filters else "",
                "until": _input_time(filters["until"]) if "until" in filters else "",
            },
            "decision_choices": DECISION_CHOICES,
            "reviewed_choices": REVIEWED_CHOICES,
            "suggestions": await self._suggest(),
            "newer": f"/admin/decisions?{urlencode({**filters, 'after': newer})}" if newer else None,
            "older": f"/admin/decisions?{urlencode({**filters, 'before': older})}" if older else None,
            "first": f"/admin/decisions?{qs}" if newer else None,
            "export_csv": f"/admin/export.csv?{qs}",
            "export_jsonl": f"/admin/export.jsonl?{qs}",
            "mask": self.view.mask,
            "page_size": PAGE_SIZE,
        }
        return self._render(request, "list.html", context, status)

    async def _suggest(self) -> dict[str, list[str]]:
        """Known accounts, rules and templates of the last 30 days, for the filter inputs (cached a minute)."""
        now = self.clock()
        if self._suggestions is not None and self._suggestions[0] > now:
            return self._suggestions[1]
        counts = await self.store_of().decision_counts(now - 30 * DAY, now + 1)
        found: dict[str, Counter[str]] = {"account": Counter(), "rule": Counter(), "template": Counter()}
        for c in counts:
            if c.dimension in found:
                found[c.dimension][c.key] += c.count
        for account in self.view.account_names:
            found["account"][account] += 0
        suggestions = {dim: sorted(keys) for dim, keys in found.items()}
        self._suggestions = (now + SUGGESTIONS_TTL, suggestions)
        return suggestions

    # -- one decision ---------------------------------------------------------------

    async def detail_page(self, request: web.Request, session: Session) -> web.StreamResponse:
        store = self.store_of()
        record = await store.decision(request.match_info["decision_id"])
        if record is None:
            return self._error(request, 404, "There is no decision with that id (it may have been pruned).")
        reviews = (await store.reviews([record.id])).get(record.id, [])
        shown = self.view.shown(record)
        serving = self.revision_of()
        back = request.query.get("back", "")
        context = {
            "nav": "list",
            "title": f"Decision {record.id}",
            "r": shown,
            "account_label": self.view.account_label(record.account),
            "reasons": [_reason(r) for r in shown.reasons],
            "warnings": [_reason(w) for w in shown.warnings],
            "facts": _facts_view(shown),
            "facts_json": _pretty(shown.facts) if shown.facts is not None else None,
            "content": _content_text(shown.content),
            "texts": _texts(shown),
            "reviews": reviews,
            "serving_revision": serving,
            "back": "/admin/decisions" + (f"?{back}" if back and "//" not in back and "\\" not in back else ""),
            "note_max": 4000,
        }
        return self._render(request, "detail.html", context)

    async def review(self, request: web.Request, session: Session) -> web.StreamResponse:
        form = request[FORM]
        decision_id = request.match_info["decision_id"]
        note = form.get("note", "").strip().replace("\r\n", "\n")
        saved = await self.store_of().add_review(ReviewRecord(decision_id, session.name, note, self.clock()))
        if saved is None:
            return self._error(request, 404, "There is no decision with that id (it may have been pruned).")
        log.info("decision %s reviewed by %s", decision_id, session.name)
        back = form.get("back", "")
        target = f"/admin/decisions/{decision_id}" + (f"?{urlencode({'back': back})}" if back else "") + "#reviews"
        raise web.HTTPSeeOther(target, headers=SECURITY_HEADERS)

    # -- overview -------------------------------------------------------------------

    async def overview_page(self, request: web.Request, session: Session) -> web.StreamResponse:
        now = self.clock()
        store = self.store_of()
        hour_end = int(now // HOUR) * HOUR + HOUR
        day_end = int(now // DAY) * DAY + DAY
        hours = [float(hour_end - HOUR * i) for i in range(24, 0, -1)]
        days = [float(day_end - DAY * i) for i in range(30, 0, -1)]
        hourly = await store.decision_counts(hours[0], hour_end, HOUR, "rule")
        daily = await store.decision_counts(days[0], day_end, DAY, "rule")
        day = summarize(await store.decision_counts(hours[0], hour_end))
        month = summarize(await store.decision_counts(days[0], day_end))
        span = request.query.get("range", "30d")
        if span not in ("24h", "30d"):
            span = "30d"
        top = day if span == "24h" else month
        since_top = hours[0] if span == "24h" else days[0]
        keys = [rule for rule, _ in month.rules.most_common(PALETTE_SIZE)]
        legend = [{"key": k, "css": series_class(i), "count": month.rules[k]} for i, k in enumerate(keys)]
        if len(month.rules) > len(keys):
            legend.append(
                {
                    "key": "other rules",
                    "css": "other",
                    "count": sum(month.rules.values()) - sum(month.rules[k] for k in keys),
                }
            )

        def list_href(since: float, until: float, **filters: str) -> str:
            return "/admin/decisions?" + urlencode({**filters, "since": _iso(since), "until": _iso(until)})

        def bucket_href(size: int) -> Callable[[float, str | None], str]:
            return lambda b, rule: list_href(b, b + size, **({"rule": rule} if rule else {}))

        hourly_chart = stacked_chart(
            hours, rule_series(hourly), keys,
            label=lambda b: dt.datetime.fromtimestamp(b, dt.timezone.utc).strftime("%H:00"),
            title=lambda b: fmt_time(b, seconds=False) + " UTC, 1 h",
            href=bucket_href(HOUR), label_every=3,
        )  # fmt: skip
        daily_chart = stacked_chart(
            days, rule_series(daily), keys,
            label=lambda b: dt.datetime.fromtimestamp(b, dt.timezone.utc).strftime("%m-%d"),
            title=lambda b: dt.datetime.fromtimestamp(b, dt.timezone.utc).strftime("%Y-%m-%d") + " UTC",
            href=bucket_href(DAY), label_every=3,
        )  # fmt: skip
        color = {k: series_class(i) for i, k in enumerate(keys)}
        top_rules = bar_chart(
            [Bar(rule, n, list_href(since_top, now + 1, rule=rule), color.get(rule, "other"))
             for rule, n in top.rules.most_common(10)]
        )  # fmt: skip
        top_templates = bar_chart(
            [Bar(t, n, list_href(since_top, now + 1, template=t), "tpl") for t, n in top.templates.most_common(10)]
        )
        top_accounts = bar_chart(
            [
                Bar(self.view.account_name(a) or a, n, list_href(since_top, now + 1, account=a), "acct",
                    f"{n / top.account_totals[a]:.0%} of {top.account_totals[a]:,}" if top.account_totals[a] else "",
                    self.view.account_label(a))
                for a, n in top.accounts.most_common(10)
            ]
        )  # fmt: skip
        context = {
            "nav": "overview",
            "title": "Overview",
            "now": now,
            "day": day,
            "month": month,
            "span": span,
            "legend": legend,
            "hourly_chart": hourly_chart,
            "daily_chart": daily_chart,
            "top_rules": top_rules,
            "top_templates": top_templates,
            "top_accounts": top_accounts,
            "unreviewed_day": "/admin/decisions?" + urlencode({"reviewed": "no", "since": _iso(hours[0])}),
            "shadow_href": "/admin/decisions?" + urlencode({"decision": "shadow", "since": _iso(days[0])}),
        }
        return self._render(request, "overview.html", context)

    # -- exports --------------------------------------------------------------------

    async def export(self, request: web.Request, session: Session) -> web.StreamResponse:
        kind = request.match_info["kind"]
        query = self._query(self._filters(request), limit=1)
        stamp = dt.datetime.fromtimestamp(self.clock(), dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        response = web.StreamResponse(
            headers={
                **SECURITY_HEADERS,
                "Content-Type": "text/csv; charset=utf-8" if kind == "csv" else "application/x-ndjson; charset=utf-8",
                "Content-Disposition": f'attachment; filename="sendgate-decisions-{stamp}.{kind}"',
            }
        )
        await response.prepare(request)
        first = True
        async for page in iter_decisions(self.store_of(), query):
            if kind == "csv":
                chunk = csv_text((self.view.row(r, rv) for r, rv in page), header=first)
            else:
                chunk = "".join(orjson.dumps(self.view.record_json(r, rv)).decode() + "\n" for r, rv in page)
            first = False
            await response.write(chunk.encode())
        if first and kind == "csv":
            await response.write(csv_text([]).encode())  # no records: the header alone
        log.info(
            "review pages: %s exported %s (%s)", session.name, kind, ", ".join(sorted(request.query)) or "no filters"
        )
        await response.write_eof()
        return response

    # -- the rest -------------------------------------------------------------------

    async def home(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPSeeOther("/admin/decisions", headers=SECURITY_HEADERS)

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in _STATIC:
            return self._error(request, 404, "Not found.")
        body = resources.files("sendgate.admin").joinpath("static", name).read_bytes()
        return web.Response(
            body=body,
            content_type=_STATIC[name],
            headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
        )

    async def not_found(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith("/admin/v1/"):
            return web.json_response(
                {"error": {"message": f"no admin API path {request.path}", "type": "SendgateAdminError", "code": 404}},
                status=404,
            )
        return self._error(request, 404, "There is no such page.")


_STATIC = {"review.css": "text/css"}


def _pretty(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()


def _content_text(content: Any) -> str | None:
    if content is None:
        return None
    if isinstance(content, str):  # a body that was not JSON, kept as text
        return content
    return _pretty(content)


def _texts(record: DecisionRecord) -> list[str]:
    """The words of the message as the content rules read them (bodies, captions, parameters)."""
    if not isinstance(record.content, dict):
        return []
    try:
        message = normalize(record.content, record.endpoint)
    except Exception:  # noqa: BLE001 - InvalidMessage or worse: the raw content is shown anyway
        return []
    return [t for t in message.get("texts") or [] if isinstance(t, str) and t.strip()]


def _reason(reason: Any) -> dict[str, Any]:
    if not isinstance(reason, dict):
        return {"rule": "?", "message": str(reason), "extra": []}
    extra = [
        (k, v if isinstance(v, str) else orjson.dumps(v).decode())
        for k, v in reason.items()
        if k not in ("rule", "message")
    ]
    return {"rule": str(reason.get("rule", "?")), "message": str(reason.get("message", "")), "extra": extra}


def _ago(at: Any, now: float) -> str:
    if not isinstance(at, (int, float)):
        return ""
    delta = now - at
    return f"{fmt_duration(delta)} {'before' if delta >= 0 else 'after'} this send"


def _facts_view(record: DecisionRecord) -> dict[str, Any] | None:
    """The facts the policy saw, as reviewers read them (the raw JSON is shown beside)."""
    facts = record.facts
    if not isinstance(facts, dict):
        return None
    now = record.timestamp
    out: dict[str, Any] = {"recipient": None, "template": None}
    recipient = facts.get("recipient")
    if isinstance(recipient, dict):
        consent = recipient.get("consent")
        history = found if isinstance(found := recipient.get("history"), dict) else {}
        marketing = [t for t in history.get("marketing_sent_at") or [] if isinstance(t, (int, float))]
        local = recipient.get("local_time")
        out["recipient"] = {
            "id": recipient.get("id"),
            "place": ", ".join(str(v) for v in (recipient.get("country"), recipient.get("timezone")) if v) or "unknown",
            "local_time": f"{local['hour']:02d}:{local['minute']:02d}" if isinstance(local, dict)
            and isinstance(local.get("hour"), int) and isinstance(local.get("minute"), int) else None,
            "consent": None if not isinstance(consent, dict) else {
                "status": consent.get("status"),
                "categories": ", ".join(str(c) for c in consent.get("categories") or []) or "none",
                "source": consent.get("source"),
                "updated_at": fmt_time(consent.get("updated_at")) if isinstance(consent.get("updated_at"), (int, float)) else "",
                "ago": _ago(consent.get("updated_at"), now),
            },
            "last_inbound_at": fmt_time(recipient.get("last_inbound_at")) if isinstance(recipient.get("last_inbound_at"), (int, float)) else None,
            "inbound_ago": _ago(recipient.get("last_inbound_at"), now),
            "last_sent_at": fmt_time(history.get("last_sent_at")) if isinstance(history.get("last_sent_at"), (int, float)) else None,
            "sent_ago": _ago(history.get("last_sent_at"), now),
            "marketing_24h": sum(1 for t in marketing if now - 86400 < t <= now),
            "marketing_7d": sum(1 for t in marketing if now - 7 * 86400 < t <= now),
            "marketing_30d": len(marketing),
        }  # fmt: skip
    template = facts.get("template")
    if isinstance(template, dict):
        placeholders = template.get("placeholders") or {}
        out["template"] = {
            "found": template.get("found"),
            "language_found": template.get("language_found"),
            "languages": ", ".join(str(x) for x in template.get("languages") or []) or "none",
            "status": template.get("status"),
            "category": template.get("category"),
            "placeholders": ", ".join(f"{k}: {v}" for k, v in placeholders.items())
            if isinstance(placeholders, dict)
            else "",
        }
    return out


def setup_review_pages(
    app: web.Application,
    config: Config,
    store_of: Callable[[], ReviewedLog],
    clock: Callable[[], float] = time.time,
    revision_of: Callable[[], str | None] = lambda: None,
    throttle: GuessThrottle | None = None,
    sessions: SessionStore | None = None,
) -> ReviewPages:
    """Add the review pages to `app`; call before any catch-all route. `throttle`: shared with the admin API."""
    pages = ReviewPages(config, store_of, clock, revision_of, throttle, sessions)
    env = aiohttp_jinja2.setup(
        app,
        app_key=JINJA,
        loader=jinja2.PackageLoader("sendgate.admin", "templates"),
        autoescape=True,  # every template, whatever its name
        undefined=jinja2.StrictUndefined,
        auto_reload=False,
        default_helpers=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["time"] = fmt_time
    env.filters["num"] = lambda n: f"{n:,}"
    env.filters["pct"] = lambda part, whole: f"{part / whole:.1%}" if whole else "0%"
    app.router.add_routes(
        [
            web.get("/admin", pages.home),
            web.get("/admin/", pages.home),
            web.get("/admin/login", pages.login_form),
            web.post("/admin/login", pages.login),
            web.post("/admin/logout", pages.signed_in(pages.logout, post=True)),
            web.get("/admin/decisions", pages.signed_in(pages.list_page)),
            web.get("/admin/decisions/{decision_id}", pages.signed_in(pages.detail_page)),
            web.post("/admin/decisions/{decision_id}/review", pages.signed_in(pages.review, post=True)),
            web.get("/admin/overview", pages.signed_in(pages.overview_page)),
            web.get("/admin/export.{kind:csv|jsonl}", pages.signed_in(pages.export)),
            web.get("/admin/static/{name}", pages.static),
            # Anything else under /admin stays here: never relayed to Meta.
            web.route("*", "/admin/{tail:.*}", pages.not_found),
        ]
    )
    return pages

"""The review pages over HTTP (no browser): sessions, CSRF, escaping, filters, exports, masking."""

from __future__ import annotations

import csv
import io
import json
import re
from http.cookies import SimpleCookie

import pytest
from aiohttp.test_utils import TestClient

from sendgate.admin.pages import SESSION_COOKIE
from sendgate.admin.throttle import FAILURES
from sendgate.fakegraph import FakeGraph
from sendgate.state import DecisionQuery

from .conftest import (
    ADMIN_TOKEN,
    AFTERNOON,
    PHONE_NUMBER_ID,
    STORE_BACKENDS,
    US_RECIPIENT,
    Clock,
    GatewayFactory,
    admin,
    send,
    store_of,
    template_message,
    text_message,
)
from .review_seed import seed

REVIEWER = {"name": "ana", "token": "ana-reviewer-token"}
HTML_BODY = '<script>document.title="pwned"</script><b>bold</b> & "quotes"'


async def login(client: TestClient, token: str = ADMIN_TOKEN, next_: str = "") -> tuple[int, str]:
    """Sign in like a browser: fetch the form (and its cookie), post the token. Returns the final status and page."""
    form = await client.get("/admin/login" + (f"?next={next_}" if next_ else ""))
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', await form.text())
    assert csrf is not None
    response = await client.post("/admin/login", data={"csrf_token": csrf[1], "token": token, "next": next_})
    return response.status, await response.text()


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match is not None
    return match[1]


@pytest.fixture(params=sorted(STORE_BACKENDS))
def state_backend(request: pytest.FixtureRequest) -> str:
    """The pages' listing, counts and trail on every backend (`gateway_factory`'s state)."""
    name: str = request.param
    return name


@pytest.fixture
async def pages(gateway_factory: GatewayFactory) -> TestClient:
    return await gateway_factory(reviewer_tokens=[REVIEWER], session_ttl=3600)


async def test_nothing_without_a_session(pages: TestClient) -> None:
    await send(pages, text_message())
    record_id = (await store_of(pages).decisions(DecisionQuery()))[0].id
    for path in ("/admin/decisions", f"/admin/decisions/{record_id}", "/admin/overview", "/admin/export.csv",
                 "/admin/export.jsonl"):  # fmt: skip
        response = await pages.get(path, allow_redirects=False)
        assert response.status == 303, path
        assert response.headers["Location"].startswith("/admin/login"), path
        assert US_RECIPIENT not in await response.text()
    response = await pages.post(f"/admin/decisions/{record_id}/review", data={"note": "x"}, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/admin/login"
    assert await store_of(pages).reviews([record_id]) == {}
    # The stylesheet is not data: the sign-in page needs it.
    assert (await pages.get("/admin/static/review.css")).status == 200


async def test_sign_in_sets_a_strict_httponly_expiring_cookie(pages: TestClient) -> None:
    form = await pages.get("/admin/login")
    assert form.status == 200
    page = await form.text()
    assert '<input id="token" name="token" type="password"' in page
    response = await pages.post(
        "/admin/login", data={"csrf_token": csrf_of(page), "token": ADMIN_TOKEN, "next": "/admin/overview"},
        allow_redirects=False,
    )  # fmt: skip
    assert response.status == 303 and response.headers["Location"] == "/admin/overview"
    cookies = [h for h in response.headers.getall("Set-Cookie") if h.startswith(SESSION_COOKIE + "=")]
    assert len(cookies) == 1
    cookie = SimpleCookie(cookies[0])[SESSION_COOKIE]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["max-age"] == "3600"
    assert cookie["path"] == "/admin"
    assert ADMIN_TOKEN not in cookies[0]
    overview = await pages.get("/admin/overview")
    assert overview.status == 200 and "<svg" in await overview.text()


async def test_wrong_tokens_and_forged_sign_in_forms(pages: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    status, page = await login(pages, "not-the-token")
    assert status == 401 and "not valid" in page
    # Without the form's cookie (a cross-site post), the right token does not sign in either.
    pages.session.cookie_jar.clear()
    response = await pages.post(
        "/admin/login", data={"csrf_token": "guess", "token": ADMIN_TOKEN}, allow_redirects=False
    )
    assert response.status == 400 and SESSION_COOKIE not in response.cookies
    # An open redirect through `next` is refused.
    status, page = await login(pages, ADMIN_TOKEN, next_="//evil.example/x")
    assert status == 200 and "Rejected sends" in page
    assert ADMIN_TOKEN not in caplog.text and "not-the-token" not in caplog.text


async def test_sign_in_attempts_are_throttled(pages: TestClient) -> None:
    for _ in range(FAILURES):
        assert (await login(pages, "wrong"))[0] == 401
    status, page = await login(pages, ADMIN_TOKEN)
    assert status == 429 and "Too many failed sign-ins" in page


async def test_sessions_expire_and_sign_out(pages: TestClient, clock: Clock) -> None:
    assert (await login(pages))[0] == 200
    assert (await pages.get("/admin/decisions", allow_redirects=False)).status == 200
    clock.advance(3601)
    assert (await pages.get("/admin/decisions", allow_redirects=False)).status == 303
    status, page = await login(pages)
    assert status == 200
    # Signing out is a POST with the session's CSRF token.
    assert (await pages.post("/admin/logout", data={"csrf_token": "wrong"})).status == 403
    assert (await pages.get("/admin/decisions", allow_redirects=False)).status == 200
    response = await pages.post("/admin/logout", data={"csrf_token": csrf_of(page)}, allow_redirects=False)
    assert response.status == 303
    assert (await pages.get("/admin/decisions", allow_redirects=False)).status == 303


async def test_review_needs_csrf_and_lands_in_the_trail(pages: TestClient) -> None:
    await send(pages, text_message())
    [record] = await store_of(pages).decisions(DecisionQuery(decision="rejected"))
    status, page = await login(pages, REVIEWER["token"])
    assert status == 200 and "ana" in page and "reviewer" in page
    detail = await (await pages.get(f"/admin/decisions/{record.id}")).text()
    assert "Not reviewed yet" in detail
    for token in ("", "forged"):
        response = await pages.post(f"/admin/decisions/{record.id}/review", data={"csrf_token": token, "note": "x"})
        assert response.status == 403
    assert await store_of(pages).reviews([record.id]) == {}
    response = await pages.post(
        f"/admin/decisions/{record.id}/review", data={"csrf_token": csrf_of(detail), "note": "Called the customer <3"}
    )
    assert response.status == 200  # after the redirect back to the decision
    page = await response.text()
    assert "Called the customer &lt;3" in page and "Add a note" in page
    [review] = (await store_of(pages).reviews([record.id]))[record.id]
    assert (review.reviewer, review.note) == ("ana", "Called the customer <3")
    listed = await (await pages.get("/admin/decisions?reviewed=yes")).text()
    assert record.id in listed
    assert record.id not in await (await pages.get("/admin/decisions?reviewed=no")).text()
    # The reviewer token is for these pages only: the JSON admin API does not take it.
    assert (await admin(pages, "GET", "/decisions", token=REVIEWER["token"]))[0] == 401


async def test_message_content_is_shown_as_text(pages: TestClient) -> None:
    await send(pages, text_message(body=HTML_BODY))  # outside the window: denied, content kept
    [record] = await store_of(pages).decisions(DecisionQuery(decision="rejected"))
    await login(pages)
    response = await pages.get(f"/admin/decisions/{record.id}")
    page = await response.text()
    assert "<script>document" not in page and "<b>bold</b>" not in page
    assert "&lt;script&gt;document.title=" in page and "&lt;b&gt;bold&lt;/b&gt;" in page
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    assert response.headers["X-Frame-Options"] == "DENY" and response.headers["Cache-Control"] == "no-store"
    assert "<script" not in page.replace("&lt;script", "")  # the pages carry no script of their own
    assert 'src="http' not in page and 'href="http' not in page  # nothing from outside


async def test_detail_shows_the_facts_and_upstream(pages: TestClient) -> None:
    await admin(
        pages, "PUT", f"/consent/{US_RECIPIENT}", {"status": "opted_in", "categories": ["utility"], "source": "web"}
    )
    await send(pages, template_message("pending_notice", components=[]))  # template not approved
    [record] = await store_of(pages).decisions(DecisionQuery(decision="rejected"))
    assert record.facts is not None and record.facts["recipient"]["consent"]["status"] == "opted_in"
    assert record.facts["template"]["status"] == "PENDING"
    await login(pages)
    page = await (await pages.get(f"/admin/decisions/{record.id}")).text()
    assert "template.not_approved" in page and "opted_in" in page and "PENDING" in page
    assert record.policy_revision is not None and record.policy_revision in page and "serving now" in page
    assert 'id="delivery"' not in page  # no webhook status yet: no row for it
    # Once the webhook code records Meta's delivery status of a forwarded message, its page shows it.
    store = store_of(pages)
    await store.record_inbound(PHONE_NUMBER_ID, US_RECIPIENT, AFTERNOON - 60)  # the window is open
    assert (await send(pages, text_message()))[0] == 200
    await store.flush()  # Meta's answer completes the record after the send returns
    [forwarded] = await store.decisions(DecisionQuery(decision="allow"))
    page = await (await pages.get(f"/admin/decisions/{forwarded.id}")).text()
    assert 'id="delivery"' not in page and forwarded.upstream_message_id is not None
    changed = await store.record_delivery_status(
        forwarded.upstream_message_id, "failed", forwarded.timestamp + 60, "131026 undeliverable"
    )
    assert changed is not None
    page = await (await pages.get(f"/admin/decisions/{forwarded.id}")).text()
    assert 'id="delivery"' in page and "131026 undeliverable" in page


async def test_list_filters_and_pages(pages: TestClient, clock: Clock) -> None:
    records = await seed(store_of(pages), clock.now, 300, span=2 * 86400)
    rejected = sorted((r for r in records if r.decision != "allow"), key=lambda r: r.id, reverse=True)
    await login(pages)
    page = await (await pages.get("/admin/decisions")).text()
    shown = re.findall(r'href="/admin/decisions/([0-9A-Z]{26})', page)
    assert shown == [r.id for r in rejected[:50]]
    older = re.search(r'href="(/admin/decisions\?before=[^"]+)"', page)
    assert older is not None
    page2 = await (await pages.get(older[1].replace("&amp;", "&"))).text()
    assert re.findall(r'href="/admin/decisions/([0-9A-Z]{26})', page2) == [r.id for r in rejected[50:100]]
    # Filters: rule + template + decision, and the form shows them back.
    page = await (await pages.get("/admin/decisions?rule=template.paused&decision=deny&template=paused_promo")).text()
    expected = [r.id for r in rejected if r.decision == "deny" and r.template == "paused_promo"
                and any(x["rule"] == "template.paused" for x in r.reasons)]  # fmt: skip
    assert re.findall(r'href="/admin/decisions/([0-9A-Z]{26})', page) == expected[:50]
    assert 'value="template.paused"' in page and '<option value="deny" selected>' in page
    # A bad filter is a message on the page, not an error.
    response = await pages.get("/admin/decisions?since=yesterday")
    assert response.status == 400 and "not a time" in await response.text()


async def test_exports_follow_the_filter(pages: TestClient, clock: Clock) -> None:
    records = await seed(store_of(pages), clock.now, 200, span=86400)
    await send(pages, text_message(body='=HYPERLINK("http://evil.example")'))
    await login(pages)
    response = await pages.get("/admin/export.csv?rule=window.closed")
    assert response.status == 200 and response.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(await response.text())))
    expected = {r.id for r in records if r.decision != "allow" and any(x["rule"] == "window.closed" for x in r.reasons)}
    assert {row["id"] for row in rows} - expected and len(rows) == len(expected) + 1  # + the sent one
    assert all("window.closed" in row["rules"].split(";") for row in rows)
    response = await pages.get("/admin/export.jsonl?decision=defer")
    lines = [json.loads(line) for line in (await response.text()).splitlines()]
    assert {line["id"] for line in lines} == {r.id for r in records if r.decision == "defer"}
    assert all(line["decision"] == "defer" and "reviews" in line for line in lines)
    empty = await (await pages.get("/admin/export.csv?template=no-such-template")).text()
    assert empty.splitlines()[0].startswith("id,time,decision")


async def test_masking_applies_to_records_logged_before_it_was_on(gateway_factory: GatewayFactory) -> None:
    plain = await gateway_factory()
    await send(plain, text_message(body="hello"))
    await plain.close()
    masked = await gateway_factory(log={"mask_recipients": True})
    await login(masked)
    [record] = await store_of(masked).decisions(DecisionQuery(decision="rejected"))
    assert record.recipient == US_RECIPIENT  # stored before masking was on
    for path in ("/admin/decisions", f"/admin/decisions/{record.id}", "/admin/export.csv", "/admin/export.jsonl"):
        body = await (await masked.get(path)).text()
        assert US_RECIPIENT not in body, path
        assert "*******1234" in body, path
    # Filtering by the full number still finds it.
    assert record.id in await (await masked.get(f"/admin/decisions?recipient=%2B{US_RECIPIENT}")).text()


async def test_overview_counts_rules_in_pictures(pages: TestClient, clock: Clock) -> None:
    records = await seed(store_of(pages), clock.now, 400, span=20 * 86400)
    await login(pages)
    page = await (await pages.get("/admin/overview")).text()
    assert page.count("<svg") == 5  # hourly, daily, top rules, templates, accounts
    month = [r for r in records if r.decision != "allow" and r.timestamp >= clock.now - 30 * 86400]
    assert f'<span class="value">{len(month):,}</span>' in page
    assert "window.closed" in page and "<title>" in page
    assert 'href="/admin/decisions?rule=window.closed&amp;since=' in page
    assert (await pages.get("/admin/overview?range=24h")).status == 200


async def test_unknown_admin_paths_stay_here(pages: TestClient, fake_graph: tuple[FakeGraph, str]) -> None:
    fake, _ = fake_graph
    before = len(fake.received)
    assert (await pages.get("/admin/no-such-page")).status == 404
    response = await pages.get("/admin/v1/no-such-call")
    assert response.status == 404 and (await response.json())["error"]["code"] == 404
    assert len(fake.received) == before


async def test_pages_are_off_without_tokens(gateway_factory: GatewayFactory) -> None:
    client = await gateway_factory(admin_token=None)
    response = await client.get("/admin/login")
    assert response.status == 404 and "review pages are off" in await response.text()
    assert (await client.get("/admin/decisions", allow_redirects=False)).status == 404


async def test_a_reviewer_token_alone_enables_the_pages(gateway_factory: GatewayFactory) -> None:
    client = await gateway_factory(admin_token=None, reviewer_tokens=[REVIEWER["token"]])
    status, page = await login(client, REVIEWER["token"])
    assert status == 200 and "reviewer1" in page
    client.session.cookie_jar.clear()
    assert (await login(client, ADMIN_TOKEN))[0] == 401
    assert PHONE_NUMBER_ID  # the gateway itself is unaffected

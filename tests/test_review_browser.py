"""The review pages in a real browser: Debian's headless Chromium, driven by Playwright for Python.

Playwright launches `/usr/bin/chromium` (`SENDGATE_CHROMIUM` overrides it); it never downloads a
browser. Without Chromium these tests skip on a laptop and fail under `CI=true` (`.ci/run`
installs it). Screenshots of the list, a decision and the overview go to `tests/artifacts/`.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from .conftest import US_RECIPIENT, Clock, GatewayFactory, send, store_of, template_message, text_message
from .review_seed import seed

CHROMIUM = os.environ.get("SENDGATE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]  # fmt: skip
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
REVIEWER = {"name": "ana", "token": "ana-reviewer-token"}
HTML_BODY = '<script>document.title="pwned";window.pwned=1</script><b>bold</b> <img src=x onerror="window.pwned=2">'


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _unavailable(reason: str) -> None:
    if _in_ci():
        pytest.fail(f"browser tests cannot run under CI: {reason}")
    pytest.skip(reason)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not Path(CHROMIUM).exists():
        _unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[test]')")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def site(gateway_factory: GatewayFactory, clock: Clock) -> TestClient:
    """A gateway with a month of decisions, real rejections among them (one carrying HTML)."""
    client = await gateway_factory(reviewer_tokens=[REVIEWER], log={"mask_recipients": True})
    await seed(store_of(client), clock.now, 600)
    assert (await send(client, text_message(body=HTML_BODY)))[0] == 400  # window closed
    assert (await send(client, template_message("paused_promo", components=[])))[0] == 400  # paused: 132015
    assert (await send(client, template_message("spring_sale")))[0] == 403  # no consent
    return client


async def _page(browser: Any) -> tuple[Any, list[str]]:
    """A laptop-sized page, and the script errors it raises (there should be none: the pages have no script)."""
    context = await browser.new_context(viewport={"width": 1366, "height": 850}, accept_downloads=True)
    page = await context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return page, errors


def url(site: TestClient, path: str) -> str:
    return str(site.make_url(path))


async def sign_in(page: Any, site: TestClient, token: str) -> None:
    await page.goto(url(site, "/admin/decisions"))
    assert "/admin/login" in page.url  # no page without a session
    await page.fill("input[name=token]", token)
    await page.click("button[type=submit]")
    await page.wait_for_url("**/admin/decisions")


async def test_review_journey_in_a_browser(browser: Any, site: TestClient) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page, errors = await _page(browser)
    await sign_in(page, site, REVIEWER["token"])
    assert "ana" in await page.inner_text("header")
    assert await page.locator("table.log tbody tr").count() == 50
    await page.screenshot(path=str(ARTIFACTS / "review-list.png"))

    # Filter: denials for window.closed.
    await page.select_option("select[name=decision]", "deny")
    await page.fill("input[name=rule]", "window.closed")
    await page.click("form.filters button[type=submit]")
    await page.wait_for_url("**rule=window.closed**")
    rows = page.locator("table.log tbody tr")
    assert await rows.count() > 0
    for i in range(await rows.count()):
        assert "window.closed" in await rows.nth(i).locator("td").nth(6).inner_text()
        assert await rows.nth(i).locator(".badge").first.inner_text() == "deny"

    # The real rejection with HTML in its body: found by the full number although it is shown masked.
    await page.fill("input[name=recipient]", "+" + US_RECIPIENT)
    await page.select_option("select[name=decision]", "")
    await page.fill("input[name=rule]", "window.closed")
    await page.click("form.filters button[type=submit]")
    await page.wait_for_url("**recipient=**")
    assert await rows.count() == 1
    assert "*******1234" in await rows.first.inner_text()
    await rows.first.locator("a.open").click()
    await page.wait_for_url("**/admin/decisions/*")
    assert await page.inner_text("ul.texts li") == HTML_BODY  # the words of the message, as text
    assert '<script>document.title=\\"pwned\\";window.pwned=1</script><b>bold</b>' in await page.inner_text(
        "pre.content"
    )
    assert await page.locator("pre.content b, pre.content img, pre.content script").count() == 0
    assert await page.evaluate("window.pwned === undefined") and await page.title() != "pwned"
    assert US_RECIPIENT not in await page.inner_text("main")
    assert "window.closed" in await page.inner_text("#reasons")
    assert "never wrote to this number" in await page.inner_text("#facts")

    # Mark it reviewed, with a note.
    await page.fill("textarea[name=note]", "Asked the team to use the re-engagement template <ok>")
    await page.click("#reviews button[type=submit]")
    await page.wait_for_url("**#reviews")
    trail = await page.inner_text("table.trail")
    assert "ana" in trail and "re-engagement template <ok>" in trail
    await page.screenshot(path=str(ARTIFACTS / "review-detail.png"), full_page=True)
    await page.click("text=Rejected sends >> nth=1")  # the back link keeps the filter
    await page.select_option("select[name=reviewed]", "yes")
    await page.click("form.filters button[type=submit]")
    await page.wait_for_url("**reviewed=yes**")
    assert await rows.count() == 1 and "ana" in await rows.first.inner_text()

    # Export the current filter.
    async with page.expect_download() as download_info:
        await page.click("a.button:has-text('CSV')")
    download = await download_info.value
    exported = list(csv.DictReader(io.StringIO(Path(await download.path()).read_text())))
    assert len(exported) == 1 and exported[0]["reviewed"] == "true" and exported[0]["recipient"] == "*******1234"
    async with page.expect_download() as download_info:
        await page.click("a.button:has-text('JSON lines')")
    lines = Path(await (await download_info.value).path()).read_text().splitlines()
    assert [json.loads(line)["reviews"][0]["reviewer"] for line in lines] == ["ana"]
    assert errors == []


async def test_overview_in_a_browser(browser: Any, site: TestClient) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page, errors = await _page(browser)
    await sign_in(page, site, REVIEWER["token"])
    await page.click("nav.main-nav >> text=Overview")
    await page.wait_for_url("**/admin/overview")
    assert await page.locator("svg.chart").count() == 2 and await page.locator("svg.bars").count() == 3
    assert await page.locator("svg.chart rect.s0").count() > 0
    await page.screenshot(path=str(ARTIFACTS / "review-overview.png"), full_page=True)
    # A bar in the top-rules chart opens the list of those rejections.
    await page.locator("svg.bars a").first.click()
    await page.wait_for_url("**/admin/decisions?rule=**")
    assert await page.locator("table.log tbody tr").count() > 0
    assert errors == []

"""Templates from Meta: `sendgate templates sync`, the periodic sync, and the sync a webhook about
an unknown template triggers; all through the upstream (the fake Graph API), every page."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from sendgate.cli import main
from sendgate.fakegraph import FakeGraph
from sendgate.webhooks.receiver import TEMPLATE_SYNC

from .conftest import CATALOG, WABA_ID, Clock, GatewayFactory, store_of
from .webhook_support import post_webhook, template_status, webhook_config

TOKEN = "EAAG-system-user-token"


def meta_catalog(n: int) -> list[dict[str, Any]]:
    """`n` templates as Graph lists them; the first is paused, the rest approved."""
    return [
        {"name": f"tpl_{i:03d}", "language": "en_US", "status": "PAUSED" if i == 0 else "APPROVED",
         "category": "UTILITY", "id": str(5000 + i), "quality_score": {"score": "GREEN", "date": 1795000000},
         "components": [{"type": "BODY", "text": "Hi {{1}}, order {{2}}"}]}
        for i in range(n)
    ]  # fmt: skip


async def catalog_names(client: Any) -> list[str]:
    catalog = await store_of(client).templates(WABA_ID)
    assert catalog is not None
    return sorted(t["name"] for t in catalog["data"])


async def test_sync_fetches_every_page_through_the_upstream(
    gateway_factory: GatewayFactory, fake_graph: tuple[FakeGraph, str]
) -> None:
    fake, _ = fake_graph
    fake.load_templates({WABA_ID: meta_catalog(23)})
    client = await gateway_factory(template_sync={"token": TOKEN, "page_size": 10})
    result = await client.app[TEMPLATE_SYNC].sync(WABA_ID)
    assert result.ok and result.templates == 23
    assert await catalog_names(client) == [f"tpl_{i:03d}" for i in range(23)]  # replaced: CATALOG's names are gone
    requests = [r for r in fake.received if r.path.endswith("/message_templates")]
    assert len(requests) == 3  # 10 + 10 + 3
    assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in requests)
    assert "after=" not in requests[0].query and all("after=" in r.query for r in requests[1:])
    facts = await store_of(client).template_facts(WABA_ID, "tpl_000", "en_US")
    assert facts.status == "PAUSED" and facts.placeholders == {"header": 0, "body": 2}
    # The components reach the policy input, and the quality score Graph lists.
    assert facts.quality == "GREEN"
    assert facts.components == {"header": None, "footer": None, "buttons": [], "body": {
        "text": "Hi {{1}}, order {{2}}", "parameter_names": ["1", "2"], "fixed_length": 11,
        "placeholder_counts": {"1": 1, "2": 1}}}  # fmt: skip
    metrics = await (await client.get("/metrics")).text()
    assert f'sendgate_template_syncs_total{{result="ok",waba="{WABA_ID}"}} 1.0' in metrics


async def test_failed_sync_keeps_the_old_catalog_and_says_so(
    gateway_factory: GatewayFactory, fake_graph: tuple[FakeGraph, str], caplog: pytest.LogCaptureFixture
) -> None:
    fake, _ = fake_graph
    fake.load_templates({WABA_ID: meta_catalog(23)})
    client = await gateway_factory(template_sync={"token": TOKEN, "page_size": 10})
    # The second page fails: nothing of the first may replace the catalog.
    fake.set_fault("ok", count=1, scope="all")
    fake.set_fault("error", code=190, count=1, scope="all")
    result = await client.app[TEMPLATE_SYNC].sync(WABA_ID)
    assert not result.ok and "190" in (result.error or "")
    assert result.templates == len(CATALOG["data"])
    assert await catalog_names(client) == sorted(t["name"] for t in CATALOG["data"])
    assert "kept the old catalog" in caplog.text
    metrics = await (await client.get("/metrics")).text()
    assert f'sendgate_template_syncs_total{{result="failed",waba="{WABA_ID}"}} 1.0' in metrics


async def test_sync_without_token_fails_without_calling_meta(
    gateway_factory: GatewayFactory, fake_graph: tuple[FakeGraph, str]
) -> None:
    fake, _ = fake_graph
    client = await gateway_factory()
    result = await client.app[TEMPLATE_SYNC].sync(WABA_ID)
    assert not result.ok and "template_sync.token" in (result.error or "")
    assert fake.received == []


async def test_periodic_sync(gateway_factory: GatewayFactory, fake_graph: tuple[FakeGraph, str]) -> None:
    fake, _ = fake_graph
    fake.load_templates({WABA_ID: meta_catalog(3)})
    client = await gateway_factory(template_sync={"token": TOKEN, "interval": 0.05})
    for _ in range(500):  # polls; no timing is asserted
        if await catalog_names(client) == ["tpl_000", "tpl_001", "tpl_002"]:
            break
        await asyncio.sleep(0.01)
    assert await catalog_names(client) == ["tpl_000", "tpl_001", "tpl_002"]
    fake.load_templates({WABA_ID: meta_catalog(4)})  # Meta approved one more
    for _ in range(500):
        if len(await catalog_names(client)) == 4:
            break
        await asyncio.sleep(0.01)
    assert len(await catalog_names(client)) == 4


async def test_webhook_about_an_unknown_template_triggers_a_sync(
    gateway_factory: GatewayFactory, fake_graph: tuple[FakeGraph, str], clock: Clock
) -> None:
    fake, _ = fake_graph
    fake.load_templates({WABA_ID: meta_catalog(2)})
    client = await gateway_factory(webhooks=webhook_config(), template_sync={"token": TOKEN})
    payload = template_status("APPROVED", clock.now, name="tpl_001", template_id=5001)
    assert (await post_webhook(client, payload))[0] == 200
    for _ in range(500):
        if "tpl_001" in await catalog_names(client):
            break
        await asyncio.sleep(0.01)
    assert await catalog_names(client) == ["tpl_000", "tpl_001"]


async def test_cli_sync(fake_graph: tuple[FakeGraph, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake, upstream = fake_graph
    fake.load_templates({WABA_ID: meta_catalog(12)})
    config = tmp_path / "sendgate.yaml"
    config.write_text(
        f"state: sqlite:///{tmp_path / 'state.db'}\nupstream_url: {upstream}\n"
        f"accounts: [{{phone_number_id: '106540352242922', waba_id: '{WABA_ID}'}}]\n"
        f"template_sync: {{token: {TOKEN}, page_size: 5}}\n"
    )
    code = await asyncio.to_thread(main, ["-c", str(config), "templates", "sync"])
    out = capsys.readouterr()
    assert code == 0 and f"synced 12 templates for WABA {WABA_ID}" in out.out
    assert len([r for r in fake.received if r.path.endswith("/message_templates")]) == 3
    # Meta refuses the token: exit 1, the catalog stays.
    fake.set_fault("error", code=190, count=1, scope="all")
    code = await asyncio.to_thread(main, ["-c", str(config), "templates", "sync", "--waba", WABA_ID])
    out = capsys.readouterr()
    assert code == 1 and "kept the old catalog (12 templates)" in out.err
    code = await asyncio.to_thread(main, ["-c", str(config), "templates", "show", "--waba", WABA_ID])
    assert code == 0 and "tpl_011" in capsys.readouterr().out


async def test_a_sync_keeps_the_flag_a_webhook_gave(
    gateway_factory: GatewayFactory, fake_graph: tuple[FakeGraph, str], clock: Clock
) -> None:
    fake, _ = fake_graph
    fake.load_templates({WABA_ID: meta_catalog(2)})
    client = await gateway_factory(webhooks=webhook_config(), template_sync={"token": TOKEN})
    assert (await client.app[TEMPLATE_SYNC].sync(WABA_ID)).ok
    payload = template_status("FLAGGED", clock.now, name="tpl_001", template_id=5001)
    payload["entry"][0]["changes"][0]["value"]["disable_info"] = {"disable_date": int(clock.now + 86400)}
    assert (await post_webhook(client, payload))[0] == 200
    assert (await client.app[TEMPLATE_SYNC].sync(WABA_ID)).ok  # Graph lists it APPROVED, no flag
    facts = await store_of(client).template_facts(WABA_ID, "tpl_001", "en_US")
    assert (facts.status, facts.flagged, facts.flagged_until) == ("APPROVED", True, int(clock.now + 86400))

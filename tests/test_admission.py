"""Exact under concurrency: bursts forward exactly what the rules allow, every run.

Each burst is fired at once (asyncio.gather over one client's connection pool, so the
gateway has them all in flight together) with the tests' clock standing still: the rules
then allow an exact number, and the fake Graph API counts what reached Meta.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient

from sendgate.fakegraph import FakeGraph
from sendgate.policy import Decision, PolicyEngine
from sendgate.state import ConsentRecord
from sendgate.state.admission import AdmissionTimeout, LocalAdmission

from .conftest import (
    ENGINES_AND_BACKENDS,
    AFTERNOON,
    APP_TOKEN,
    PHONE_NUMBER_ID,
    POLICIES,
    CA_RECIPIENT,
    US_RECIPIENT,
    GatewayFactory,
    send,
    store_of,
    template_message,
    text_message,
)

# Sends to one recipient take turns; on a loaded machine 200 of them can take longer than the
# default admission_timeout, which is not what these tests are about.
PATIENT = {"admission_timeout": 300}
PARAMS = json.loads((POLICIES / "data.json").read_text())["sendgate"]["params"]
DAILY_MARKETING_CAP = min(c["max"] for c in PARAMS["frequency"]["marketing_caps"] if c["window_seconds"] <= 86400)
HEADERS = {"Authorization": f"Bearer {APP_TOKEN}", "Content-Type": "application/json"}
PAIR_BURST = PARAMS["frequency"]["pair_rate"]["burst"]
PAIR_INTERVAL = PARAMS["frequency"]["pair_rate"]["interval_seconds"]


@pytest.fixture(params=ENGINES_AND_BACKENDS, ids="-".join)
def gateway_kind(request: pytest.FixtureRequest) -> tuple[str, str]:
    """Every test here runs three times: on the embedded engine and against a real OPA server on
    SQLite, and on PostgreSQL."""
    kind: tuple[str, str] = request.param
    return kind


def _recipients(n: int) -> list[str]:
    return [f"1416555{i:04d}" for i in range(n)]  # Toronto: marketing to US numbers is paused


async def _consent(client: TestClient, recipients: list[str]) -> None:
    await store_of(client).import_consent(
        [ConsentRecord(r, "opted_in", ("marketing", "utility"), "test", None, AFTERNOON - 86400 * 30) for r in recipients]
    )


async def _open_windows(client: TestClient, recipients: list[str]) -> None:
    for recipient in recipients:
        await store_of(client).record_inbound(PHONE_NUMBER_ID, recipient, AFTERNOON - 60)


async def _burst(client: TestClient, bodies: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any], Any]]:
    """Every body at once, each on a connection of its own (no client-side pool limit)."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one(body: dict[str, Any]) -> tuple[int, dict[str, Any], Any]:
            url = client.make_url(f"/v23.0/{PHONE_NUMBER_ID}/messages")
            async with session.post(url, data=orjson.dumps(body), headers=HEADERS) as response:
                return response.status, dict(response.headers), orjson.loads(await response.read())

        return await asyncio.gather(*(one(body) for body in bodies))


def _forwarded_to(fake: FakeGraph) -> Counter[str]:
    return Counter(r.to for r in fake.sent if r.to is not None)


@pytest.mark.parametrize("size", [20, 200])
async def test_marketing_burst_to_one_recipient_forwards_exactly_the_cap(
    gateway_factory: GatewayFactory, fake_graph: tuple[FakeGraph, str], size: int
) -> None:
    fake, _ = fake_graph
    client = await gateway_factory(**PATIENT)
    await _consent(client, [CA_RECIPIENT])
    results = await _burst(client, [template_message("spring_sale", to=CA_RECIPIENT) for _ in range(size)])
    statuses = Counter(status for status, _, _ in results)
    assert _forwarded_to(fake) == {CA_RECIPIENT: DAILY_MARKETING_CAP}
    assert statuses[200] == DAILY_MARKETING_CAP
    denied = [body for status, _, body in results if status != 200]
    assert len(denied) == size - DAILY_MARKETING_CAP
    assert {body["error"]["code"] for body in denied} == {131049}
    # The log agrees with Meta: one forwarded record per message Meta received.
    await store_of(client).flush()
    records = [await store_of(client).decision(headers["X-Sendgate-Decision-Id"]) for _, headers, _ in results]
    assert sum(1 for r in records if r is not None and r.forwarded) == DAILY_MARKETING_CAP


@pytest.mark.parametrize("size", [20, 200])
async def test_text_burst_to_one_recipient_forwards_exactly_the_pair_burst(
    gateway_factory: GatewayFactory, fake_graph: tuple[FakeGraph, str], size: int
) -> None:
    fake, _ = fake_graph
    client = await gateway_factory(**PATIENT)
    await _open_windows(client, [US_RECIPIENT])
    results = await _burst(client, [text_message(body=f"reply {i}") for i in range(size)])
    assert sum(_forwarded_to(fake).values()) == PAIR_BURST
    deferred = [(headers, body) for status, headers, body in results if status == 429]
    assert len(deferred) == size - PAIR_BURST
    assert {body["error"]["code"] for _, body in deferred} == {131056}
    # The burst went out at one instant: the next message fits one interval later, for each of them.
    assert {headers["Retry-After"] for headers, _ in deferred} == {str(PAIR_INTERVAL)}


async def test_burst_across_many_recipients_forwards_the_cap_for_each(
    gateway_factory: GatewayFactory, fake_graph: tuple[FakeGraph, str]
) -> None:
    fake, _ = fake_graph
    client = await gateway_factory(**PATIENT)
    recipients = _recipients(50)
    await _consent(client, recipients)
    bodies = [template_message("spring_sale", to=r) for r in recipients for _ in range(4)]
    results = await _burst(client, bodies)
    forwarded = _forwarded_to(fake)
    assert len(forwarded) == len(recipients)
    assert set(forwarded.values()) == {DAILY_MARKETING_CAP}
    assert sum(1 for status, _, _ in results if status == 200) == len(recipients) * DAILY_MARKETING_CAP


class _GatedEngine:
    """The default engine, except that decisions for `gated` wait until the test opens the gate."""

    def __init__(self, inner: PolicyEngine, gated: str) -> None:
        self._inner = inner
        self._gated = gated
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def evaluate(self, document: dict[str, Any]) -> Decision:
        if document["message"].get("recipient") == self._gated:
            self.waiting.set()
            await self.gate.wait()
        return await self._inner.evaluate(document)


async def test_a_recipient_held_up_does_not_hold_up_others(
    gateway_factory: GatewayFactory, default_engine: PolicyEngine, fake_graph: tuple[FakeGraph, str]
) -> None:
    fake, _ = fake_graph
    engine = _GatedEngine(default_engine, US_RECIPIENT)
    client = await gateway_factory(policy_engine=engine)
    other = "16505559999"
    await _open_windows(client, [US_RECIPIENT, other])
    stuck = asyncio.ensure_future(send(client, text_message()))
    await asyncio.wait_for(engine.waiting.wait(), 10)
    # While the first recipient's decision is in progress, another recipient is served at once.
    status, _, _ = await send(client, text_message(to=other))
    assert status == 200
    assert not stuck.done()
    engine.gate.set()
    assert (await stuck)[0] == 200
    assert sum(_forwarded_to(fake).values()) == 2


async def test_a_send_that_cannot_be_admitted_in_time_gets_503_and_a_record(
    gateway_factory: GatewayFactory, default_engine: PolicyEngine, fake_graph: tuple[FakeGraph, str]
) -> None:
    fake, _ = fake_graph
    engine = _GatedEngine(default_engine, US_RECIPIENT)
    client = await gateway_factory(policy_engine=engine, admission_timeout=0.2)
    await _open_windows(client, [US_RECIPIENT])
    first = asyncio.ensure_future(send(client, text_message()))
    await asyncio.wait_for(engine.waiting.wait(), 10)
    status, headers, body = await send(client, text_message(body="second"))
    assert status == 503
    assert body["error"]["code"] == 2
    assert body["error"]["type"] == "SendgateAdmissionError"
    assert "other sends to this recipient" in body["error"]["message"]
    assert body["error"]["error_data"]["details"].startswith("not admitted")
    await store_of(client).flush()
    record = await store_of(client).decision(headers["X-Sendgate-Decision-Id"])
    assert record is not None
    assert record.decision == "error"
    assert not record.forwarded
    assert record.reasons[0]["rule"] == "admission.timeout"
    engine.gate.set()
    assert (await first)[0] == 200
    assert [r.body["text"]["body"] for r in fake.sent] == ["Your table is ready."]


# -- the in-process admission itself ---------------------------------------------------------


async def _most_inside_at_once(admission: LocalAdmission, keys: list[str], pause: float) -> int:
    """Hold each key (one task per entry of `keys`, all at once); how many were inside together."""
    inside = 0
    most = 0

    async def one(key: str) -> None:
        nonlocal inside, most
        async with admission.hold([key], timeout=10):
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(pause)
            inside -= 1

    await asyncio.gather(*(one(key) for key in keys))
    return most


async def test_local_admission_serialises_one_key_and_frees_its_memory() -> None:
    admission = LocalAdmission()
    assert await _most_inside_at_once(admission, ["recipient:1"] * 200, 0) == 1
    await _most_inside_at_once(admission, [f"recipient:{i}" for i in range(10_000)], 0)
    assert admission.held() == 0


async def test_local_admission_lets_distinct_keys_in_together() -> None:
    admission = LocalAdmission()
    assert await _most_inside_at_once(admission, [f"recipient:{i}" for i in range(100)], 0.01) == 100


async def test_local_admission_overlapping_keys_in_any_order_never_deadlock() -> None:
    admission = LocalAdmission()
    held: set[str] = set()

    async def one(keys: list[str]) -> None:
        async with admission.hold(keys, timeout=10):
            assert not held & set(keys)
            held.update(keys)
            await asyncio.sleep(0)
            held.difference_update(keys)

    orders = [["a", "b", "c"], ["c", "b", "a"], ["b", "a"], ["c", "a"], ["a", "a", "b"]]
    await asyncio.wait_for(asyncio.gather(*(one(orders[i % len(orders)]) for i in range(500))), 30)
    assert admission.held() == 0


async def test_local_admission_timeout_names_the_key_and_leaves_nothing_behind() -> None:
    admission = LocalAdmission()
    release = asyncio.Event()

    async def holder() -> None:
        async with admission.hold(["recipient:1"], timeout=1):
            await release.wait()

    task = asyncio.ensure_future(holder())
    await asyncio.sleep(0)
    with pytest.raises(AdmissionTimeout) as caught:
        async with admission.hold(["recipient:0", "recipient:1"], timeout=0.05):
            pass
    assert caught.value.key == "recipient:1"
    release.set()
    await task
    assert admission.held() == 0


async def test_local_admission_is_first_come_first_served() -> None:
    admission = LocalAdmission()
    order: list[int] = []
    release = asyncio.Event()

    async def first() -> None:
        async with admission.hold(["k"], timeout=5):
            await release.wait()

    async def later(i: int) -> None:
        async with admission.hold(["k"], timeout=5):
            order.append(i)

    head = asyncio.ensure_future(first())
    await asyncio.sleep(0)
    rest = [asyncio.ensure_future(later(i)) for i in range(20)]
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(head, *rest)
    assert order == list(range(20))


async def test_local_admission_a_cancelled_waiter_passes_the_key_on() -> None:
    admission = LocalAdmission()
    release = asyncio.Event()
    got: list[str] = []

    async def holder() -> None:
        async with admission.hold(["k"], timeout=5):
            await release.wait()

    async def waiter(name: str) -> None:
        async with admission.hold(["k"], timeout=5):
            got.append(name)

    head = asyncio.ensure_future(holder())
    await asyncio.sleep(0)
    cancelled = asyncio.ensure_future(waiter("cancelled"))
    kept = asyncio.ensure_future(waiter("kept"))
    await asyncio.sleep(0)
    cancelled.cancel()
    release.set()
    await asyncio.gather(head, kept)
    assert got == ["kept"]
    assert admission.held() == 0

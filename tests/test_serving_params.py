"""`ServingParams`: the serving policies' params, asked again per revision and age, the last known
ones while the engine cannot answer."""

from __future__ import annotations

from typing import Any

import pytest

from sendgate.policy import EngineError
from sendgate.policy.params import ServingParams


class _Engine:
    def __init__(self) -> None:
        self.revision = "r1"
        self.asked = 0
        self.fails = False

    async def params(self) -> dict[str, Any]:
        self.asked += 1
        if self.fails:
            raise EngineError("OPA is not answering")
        return {"revision": self.revision}


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _params(engine: _Engine, clock: _Clock, **options: Any) -> ServingParams:
    return ServingParams(lambda: engine, reader="test", clock=clock, **options)


async def test_asked_again_on_a_new_revision_and_after_max_age() -> None:
    engine, clock = _Engine(), _Clock()
    params = _params(engine, clock)
    assert await params.get() == {"revision": "r1"} and engine.asked == 1
    clock.now += 59
    assert await params.get() == {"revision": "r1"} and engine.asked == 1  # fresh
    engine.revision = "r2"
    assert await params.get() == {"revision": "r2"} and engine.asked == 2  # a reload
    clock.now += 60
    await params.get()
    assert engine.asked == 3  # a minute old: OPA may have changed its bundle unseen


async def test_the_last_known_serve_while_the_engine_fails_and_it_is_asked_again_after_retry() -> None:
    engine, clock = _Engine(), _Clock()
    params = _params(engine, clock, retry=5.0)
    await params.get()
    clock.now += 60
    engine.fails = True
    assert await params.get() == {"revision": "r1"} and engine.asked == 2
    clock.now += 4
    assert await params.get() == {"revision": "r1"} and engine.asked == 2  # not asked within retry
    clock.now += 1
    assert await params.get() == {"revision": "r1"} and engine.asked == 3
    engine.fails = False
    clock.now += 5
    engine.revision = "r2"
    assert await params.get() == {"revision": "r2"}


async def test_none_known_raises_or_answers_unknown() -> None:
    engine, clock = _Engine(), _Clock()
    engine.fails = True
    strict = _params(engine, clock, retry=0.0)
    with pytest.raises(EngineError):
        await strict.get()
    with pytest.raises(EngineError):
        await strict.get()
    assert engine.asked == 2  # asked on every call: nothing to serve in between
    lenient = _params(engine, clock, retry=5.0, unknown={})
    assert await lenient.get() == {} and engine.asked == 3
    assert await lenient.get() == {} and engine.asked == 3  # asked again only after retry
    clock.now += 5
    engine.fails = False
    assert await lenient.get() == {"revision": "r1"} and engine.asked == 4

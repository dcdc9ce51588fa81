"""Redis (`redis_url`): the hot state every replica shares, where a durable database is the wrong tool.

`open_redis` makes the app's one client; `state/redis/counters.py` keeps the rate and pacing
counters, `state/redis/rolling.py` the alerts' rolling counts, and `admin/shared.py` the review
sessions and the guessing throttle. Every key is under `PREFIX` and has a TTL. A Redis that does
not answer within `TIMEOUT` raises `SharedStateError` (`answering()`); each caller says what it
does then, failing closed wherever the state guards a limit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as ConnectionLost
from redis.exceptions import RedisError

from sendgate.state.counters import SharedStateError

__all__ = ["PREFIX", "TIMEOUT", "answering", "open_redis"]

PREFIX = "sendgate:"
TIMEOUT = 2.0  # seconds to connect or answer: a dead Redis gets a quick refusal, not a hung request


def open_redis(url: str) -> aioredis.Redis:
    """The app's one client (a connection pool); connects on first use, reconnects after a restart.

    A connection error is retried once, at once, on a new connection: after Redis restarts, every
    pooled connection fails once. (Should the lost answer's command have run, running it again
    errs on the safe side for every caller: a count higher, a session written twice.) A timeout
    is not retried: a Redis that does not answer is refused within `TIMEOUT`.
    """
    once = Retry(NoBackoff(), 1, supported_errors=(ConnectionLost,))
    return aioredis.from_url(url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT, retry=once)


@contextlib.contextmanager
def answering() -> Iterator[None]:
    """Redis's faults, as `SharedStateError`."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise SharedStateError(f"Redis did not answer: {exc}") from exc

"""The guessing throttle and the review sessions in Redis (`redis_url`), shared by every replica.

Same meaning as the in-process ones (`throttle.py`, `sessions.py`). Every key has a TTL, so
Redis keeps at most `FAILURES` timestamps per address for `WINDOW` seconds, a block until it
ends, and a session until `session_ttl`. Times are the caller's (`now`, the gateway clock);
the TTLs only bound memory. When Redis does not answer, `SharedStateError`: the callers fail
closed (503), never "allowed because Redis is down".
"""

from __future__ import annotations

from collections.abc import Callable

import orjson
import redis.asyncio as aioredis

from sendgate.admin.sessions import Session, new_session, session_digest
from sendgate.admin.throttle import FAILURES, WINDOW
from sendgate.state.redis import PREFIX, answering, open_redis

__all__ = ["RedisGuessThrottle", "RedisSessions", "open_redis"]

# One script per attempt: check the block, count the failure, block at FAILURES; atomic in Redis,
# so concurrent guesses on any number of replicas get FAILURES in all.
# KEYS: the address's failures (a list of times, oldest first), its block (until when).
# ARGV: now, failed (1|0), FAILURES, WINDOW. Returns the seconds left to wait, or nil.
_ATTEMPT = """
local now = tonumber(ARGV[1])
local until_ = redis.call('GET', KEYS[2])
if until_ and tonumber(until_) > now then
  return tostring(tonumber(until_) - now)
end
if ARGV[2] ~= '1' then
  return false
end
local failures, window = tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('RPUSH', KEYS[1], ARGV[1])
while true do
  local oldest = redis.call('LINDEX', KEYS[1], 0)
  if not oldest or tonumber(oldest) > now - window then break end
  redis.call('LPOP', KEYS[1])
end
redis.call('LTRIM', KEYS[1], -failures, -1)
if redis.call('LLEN', KEYS[1]) >= failures then
  local blocked_until = tonumber(redis.call('LINDEX', KEYS[1], 0)) + window
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], tostring(blocked_until), 'PX', math.ceil((blocked_until - now) * 1000) + 1000)
else
  redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000) + 1000)
end
return false
"""


class RedisGuessThrottle:
    """`GuessThrottle` in Redis: one count per address for the whole fleet."""

    def __init__(
        self, client_of: Callable[[], aioredis.Redis], failures: int = FAILURES, window: float = WINDOW
    ) -> None:
        if failures < 1 or window <= 0:
            raise ValueError("failures and window must be positive")
        self.failures = failures
        self.window = window
        self._client_of = client_of

    async def attempt(self, address: str, now: float, *, failed: bool) -> float | None:
        client = self._client_of()
        key = f"{PREFIX}guess:{{{address}}}"  # one hash slot per address: both keys in one script
        with answering():
            wait = await client.eval(
                _ATTEMPT, 2, f"{key}:failures", f"{key}:blocked",
                repr(now), "1" if failed else "0", str(self.failures), repr(self.window),
            )  # fmt: skip
        return None if wait is None else float(wait)


class RedisSessions:
    """`SessionStore` in Redis: a sign-in on one replica is served, and signed out, by every other."""

    def __init__(self, client_of: Callable[[], aioredis.Redis], ttl: int, clock: Callable[[], float]) -> None:
        self.ttl = ttl
        self._client_of = client_of
        self._clock = clock

    @staticmethod
    def _key(raw: str) -> str:
        return f"{PREFIX}session:{session_digest(raw).hex()}"  # the cookie value is never stored

    async def create(self, name: str, role: str) -> tuple[str, Session]:
        raw, session = new_session(name, role, self._clock(), self.ttl)
        value = orjson.dumps({"name": name, "role": role, "csrf": session.csrf, "expires": session.expires})
        with answering():
            await self._client_of().set(self._key(raw), value, ex=self.ttl)
        return raw, session

    async def get(self, raw: str | None) -> Session | None:
        if not raw:
            return None
        with answering():
            value = await self._client_of().get(self._key(raw))
        if value is None:
            return None
        fields = orjson.loads(value)
        session = Session(str(fields["name"]), str(fields["role"]), str(fields["csrf"]), float(fields["expires"]))
        if session.expires <= self._clock():
            await self.drop(raw)
            return None
        return session

    async def drop(self, raw: str | None) -> None:
        if not raw:
            return
        with answering():
            await self._client_of().delete(self._key(raw))

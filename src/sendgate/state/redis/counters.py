"""`SendCounters` in Redis (`redis_url`): one window per key for every replica.

Same meaning as `LocalCounters` (see `state/counters.py`). A key's window is a sorted set under
`sendgate:count:<key>`, member -> when it leaves, trimmed by every call, and expiring when its
last member leaves (plus a second): a TTL of `window` seconds from its newest add. One Lua script per call checks and adds, or
undoes, so concurrent calls from any number of replicas are exact. Times travel as `repr` of
the caller's floats and come back as Redis's score strings, both exact; the retry time is
computed here, with the same arithmetic as in process.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from sendgate.state.counters import Counted, check_limits
from sendgate.state.redis import PREFIX, answering

__all__ = ["RedisCounters"]

# KEYS: the window. ARGV: member, now, now + window, limit, TTL in ms. Returns {admitted, count,
# when the member leaves (admitted) or when the first member does (refused), previous}.
_ADD = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
local previous = redis.call('ZSCORE', KEYS[1], ARGV[1])
local count = redis.call('ZCARD', KEYS[1])
if not previous and count >= tonumber(ARGV[4]) then
  return {0, count, redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2], false}
end
redis.call('ZADD', KEYS[1], 'GT', ARGV[3], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[5]) then redis.call('PEXPIRE', KEYS[1], ARGV[5]) end
if not previous then count = count + 1 end
return {1, count, redis.call('ZSCORE', KEYS[1], ARGV[1]), previous}
"""

# KEYS: the window. ARGV: member, when it leaves after the add, before it ('' = it was new).
_UNDO = """
local until_ = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not until_ or tonumber(until_) ~= tonumber(ARGV[2]) then return 0 end
if ARGV[3] == '' then redis.call('ZREM', KEYS[1], ARGV[1]) else redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1]) end
return 1
"""


class RedisCounters:
    """`SendCounters` in Redis, shared by every replica on it."""

    def __init__(self, client_of: Callable[[], aioredis.Redis]) -> None:
        self._client_of = client_of
        self._add_script: AsyncScript | None = None
        self._undo_script: AsyncScript | None = None

    @staticmethod
    def _key(key: str) -> str:
        return f"{PREFIX}count:{key}"

    async def take(self, key: str, *, limit: int, window: float, now: float) -> Counted:
        return await self._add(key, f"take:{secrets.token_hex(8)}", limit, window, now)

    async def add_distinct(self, key: str, member: str, *, limit: int, window: float, now: float) -> Counted:
        return await self._add(key, member, limit, window, now)

    async def _add(self, key: str, member: str, limit: int, window: float, now: float) -> Counted:
        check_limits(limit, window)
        client = self._client_of()
        if self._add_script is None:
            self._add_script = client.register_script(_ADD)
        ttl = math.ceil(window * 1000) + 1000
        with answering():  # EVALSHA, loading the script again after a Redis restart
            admitted, count, until, previous = await self._add_script(
                [self._key(key)], [member, repr(now), repr(now + window), limit, ttl], client=client
            )
        if not admitted:
            return Counted(False, int(count), float(until) - now, key, member, now + window, None)
        return Counted(True, int(count), 0.0, key, member, float(until), None if previous is None else float(previous))

    async def undo(self, counted: Counted) -> None:
        if not counted.admitted:
            return
        client = self._client_of()
        if self._undo_script is None:
            self._undo_script = client.register_script(_UNDO)
        previous = "" if counted.previous is None else repr(counted.previous)
        with answering():
            await self._undo_script([self._key(counted.key)], [counted.member, repr(counted.until), previous], client=client)

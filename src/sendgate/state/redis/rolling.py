"""The alerts' rolling counts of the whole fleet, and their episodes, one per fleet, in Redis.

Each replica counts in process and pushes what it counted since its last push (`push`); every
replica reads the sums (`read`), so a threshold sees the fleet, not one replica's share. An
alert episode is one key per (account, alert): the replica that `claim`s it announces the
episode, the others follow it; the one that `release`s it announces its end.

Keys (`{<account>}`: one hash slot per account, so each script's keys are together):

- `sendgate:alerts:{<account>}:count:<name>`: a hash, bucket start -> count; buckets older than
  the horizon are dropped by the pushes; TTL: the horizon plus a bucket, from the last push.
- `sendgate:alerts:{<account>}:names`: the names counted (sorted set, name -> newest bucket).
- `sendgate:alerts:accounts`: the accounts counted (account -> newest bucket).
- `sendgate:alerts:{<account>}:episode:<alert>`: the episode's start time while it fires; TTL
  given by the caller, refreshed by every `read` that sees it.
- `sendgate:alerts:{<account>}:ended:<alert>`: the start time of the episode that ended last, for
  as long (so a replica can tell an episode another one ended from one a Redis restart forgot).

Times are the caller's. Faults raise `SharedStateError`; what an alert does then is the caller's
(`monitoring.py`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import cast

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from sendgate.state.redis import PREFIX, answering

__all__ = ["RedisRollingCounts"]

# KEYS: the name's buckets, the account's names. ARGV: drop buckets at or before this start, TTL
# in ms, the most buckets to keep without a sweep, the name, its newest bucket, then (start, n)...
_PUSH = """
for i = 6, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
if redis.call('HLEN', KEYS[1]) > tonumber(ARGV[3]) then
  local oldest = tonumber(ARGV[1])
  for _, start in ipairs(redis.call('HKEYS', KEYS[1])) do
    if tonumber(start) <= oldest then redis.call('HDEL', KEYS[1], start) end
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], 'GT', ARGV[5], ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
"""

# KEYS: the episode, its ended record. ARGV: the record's TTL in ms. Returns the episode's start, or nil.
_RELEASE = """
local started = redis.call('GETDEL', KEYS[1])
if started then redis.call('SET', KEYS[2], started, 'PX', ARGV[1]) end
return started
"""

Deltas = Mapping[tuple[str, str], Mapping[float, int]]  # (account, name) -> bucket start -> count


class RedisRollingCounts:
    """Counts per (account, name) in `bucket`-second buckets kept for `horizon` seconds, for the fleet."""

    def __init__(self, client_of: Callable[[], aioredis.Redis], bucket: float, horizon: float) -> None:
        self.bucket = bucket
        self.horizon = horizon
        self._client_of = client_of
        self._push_script: AsyncScript | None = None
        self._release_script: AsyncScript | None = None
        self._ttl = math.ceil((horizon + bucket) * 1000)

    @staticmethod
    def _account(account: str) -> str:
        return f"{PREFIX}alerts:{{{account}}}"

    def _dropped(self, now: float) -> float:
        """Buckets starting at or before this are past the horizon (as in `monitoring.RollingCounts`)."""
        return now - self.horizon - self.bucket

    async def push(self, deltas: Deltas, now: float) -> None:
        """Add what this replica counted; all of it or (a fault) none of it."""
        client = self._client_of()
        if self._push_script is None:
            self._push_script = client.register_script(_PUSH)
        dropped = repr(self._dropped(now))
        most = math.ceil(self.horizon / self.bucket) + 2
        accounts: dict[str, float] = {}
        with answering():
            async with client.pipeline(transaction=True) as pipe:
                for (account, name), buckets in deltas.items():
                    if not buckets:
                        continue
                    newest = max(buckets)
                    accounts[account] = max(newest, accounts.get(account, newest))
                    pairs = [part for start, n in sorted(buckets.items()) for part in (repr(start), n)]
                    base = self._account(account)
                    await self._push_script([f"{base}:count:{name}", f"{base}:names"],
                                            [dropped, self._ttl, most, name, repr(newest), *pairs], client=pipe)
                if not accounts:
                    return
                index = f"{PREFIX}alerts:accounts"
                pipe.zadd(index, accounts, gt=True)
                pipe.zremrangebyscore(index, "-inf", dropped)
                pipe.pexpire(index, self._ttl)
                await pipe.execute()

    async def read(
        self, account: str, names: Iterable[str], episodes: Mapping[str, float]
    ) -> tuple[dict[str, dict[float, int]], dict[str, tuple[float | None, float | None]]]:
        """One snapshot of `account`: each name's buckets, and for each alert (start of the episode
        firing or None, start of the one that ended last or None); an episode that is firing gets
        its TTL (`episodes[alert]` seconds) again."""
        base = self._account(account)
        names = list(names)
        with answering():
            async with self._client_of().pipeline(transaction=True) as pipe:
                for name in names:
                    pipe.hgetall(f"{base}:count:{name}")
                for alert, ttl in episodes.items():
                    pipe.get(f"{base}:episode:{alert}")
                    pipe.get(f"{base}:ended:{alert}")
                    pipe.pexpire(f"{base}:episode:{alert}", math.ceil(ttl * 1000))
                replies = await pipe.execute()
        buckets = {name: {float(s): int(n) for s, n in reply.items()} for name, reply in zip(names, replies)}
        times = [None if t is None else float(t) for t in replies[len(names) :]]
        return buckets, {alert: (times[3 * i], times[3 * i + 1]) for i, alert in enumerate(episodes)}

    async def names(self, account: str, now: float) -> list[str]:
        """The names `account` has counts for within the horizon."""
        with answering():
            found = await self._client_of().zrangebyscore(
                f"{self._account(account)}:names", f"({self._dropped(now)!r}", "+inf"
            )
        return [name.decode() for name in cast("list[bytes]", found)]

    async def accounts(self, now: float) -> list[str]:
        """The accounts with counts within the horizon."""
        with answering():
            found = await self._client_of().zrangebyscore(f"{PREFIX}alerts:accounts", f"({self._dropped(now)!r}", "+inf")
        return [account.decode() for account in cast("list[bytes]", found)]

    async def claim(self, account: str, alert: str, started_at: float, ttl: float) -> float | None:
        """Start the episode if none is firing: None if this call started it, else the firing one's start."""
        key = f"{self._account(account)}:episode:{alert}"
        with answering():
            held = await self._client_of().set(key, repr(started_at), nx=True, get=True, px=math.ceil(ttl * 1000))
        return None if held is None else float(held)

    async def release(self, account: str, alert: str, ttl: float) -> float | None:
        """End the episode: its start if this call ended it (kept `ttl` seconds as the one that
        ended last), None if it was not firing."""
        client = self._client_of()
        if self._release_script is None:
            self._release_script = client.register_script(_RELEASE)
        base = self._account(account)
        with answering():
            held = await self._release_script([f"{base}:episode:{alert}", f"{base}:ended:{alert}"],
                                              [math.ceil(ttl * 1000)], client=client)  # fmt: skip
        return None if held is None else float(held)

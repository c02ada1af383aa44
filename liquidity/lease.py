"""A lease in Redis so that one watcher per network is active and the others stand by.

Not a lock that guards correctness: every watcher action is idempotent (signals, ledger commits,
cursor), so two briefly overlapping holders (a paused holder whose lease ran out) do no harm.
The lease only keeps N standby watchers from doubling the RPC load. Compare-and-set scripts make
sure a holder renews or gives up only its own lease."""

from __future__ import annotations

from typing import Any

# KEYS[1] lease key; ARGV[1] holder, ARGV[2] ttl_ms. Take a free lease or extend our own.
_HOLD = """
local owner = redis.call('GET', KEYS[1])
if owner == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if owner == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Lease:
    def __init__(self, redis: Any, key: str, *, holder: str, ttl_ms: int) -> None:
        self._redis = redis
        self._key = key
        self._holder = holder
        self._ttl_ms = ttl_ms
        self._hold = redis.register_script(_HOLD)
        self._release = redis.register_script(_RELEASE)

    @property
    def holder(self) -> str:
        return self._holder

    async def hold(self) -> bool:
        """Take the lease if it is free, extend it if it is ours; False while another holds it."""
        return bool(await self._hold(keys=[self._key], args=[self._holder, self._ttl_ms]))

    async def release(self) -> None:
        """Give the lease up at shutdown so a standby takes over at once, not after the TTL."""
        await self._release(keys=[self._key], args=[self._holder])

    async def owner(self) -> str | None:
        value = await self._redis.get(self._key)
        return value.decode() if isinstance(value, bytes) else value

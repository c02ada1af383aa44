"""Refusals that must not become an Idempotency-Key's answer: `pool_unknown` (the ledger lost
the pool, or could not make a grant durable; it fails closed until the reconciler restores the
pool) says Retry-After, so a retry with the same key must be able to get a real answer.

The server deduplicates the open by update id inside one loan workflow, and a closed loan is
never started again, so a key's stored refusal would answer every retry. Instead each key has
an attempt number in Redis: attempt 0 is the key's loan as always (loan id uuid5(key), update
id = key); a transient refusal moves the key to the next attempt, whose loan id and update id
are derived from the key and the number, so the next retry opens a fresh loan. Requests racing
on one attempt meet in one workflow as before. The move is a compare-and-set: a stale request
still holding an older attempt's refusal cannot move the key past a loan that a newer attempt
opened (that would let one key reserve twice)."""

from __future__ import annotations

import uuid

from liquidity.connection import RedisClient

TRANSIENT_CODES = frozenset({"pool_unknown"})
# A key's attempt is remembered as long as a client may sensibly retry it.
ATTEMPT_TTL_S = 7 * 86400

_ADVANCE = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current == tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], current + 1, 'EX', ARGV[2])
  return current + 1
end
return current
"""


def attempt_loan_id(base_loan_id: str, attempt: int, namespace: uuid.UUID) -> str:
    return base_loan_id if attempt == 0 else str(uuid.uuid5(namespace, f"{base_loan_id}#{attempt}"))


def attempt_update_id(idempotency_key: str, attempt: int) -> str:
    return idempotency_key if attempt == 0 else f"{idempotency_key}#{attempt}"


class KeyAttempts:
    def __init__(self, redis: RedisClient, *, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    def _key(self, base_loan_id: str) -> str:
        return f"{self._prefix}:idem:{{{base_loan_id}}}:attempt"

    async def current(self, base_loan_id: str) -> int:
        value = await self._redis.get(self._key(base_loan_id))
        return int(value or 0)

    async def refused_transiently(self, base_loan_id: str, attempt: int) -> None:
        """`attempt` ended in a transient refusal: the key's next request opens the next one."""
        await self._redis.eval(
            _ADVANCE, 1, self._key(base_loan_id), str(attempt), str(ATTEMPT_TTL_S)
        )

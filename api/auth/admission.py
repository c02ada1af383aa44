"""Admission control for POST /v1/loans, against squatting: one caller must not be able to hold
a pool's liquidity with reservations nobody signs. Per API key and per borrower account, in
Redis, each check one atomic script (admission.lua):

- a rate limit (admitted requests per sliding minute), refused with how long to wait;
- a cap on open unsigned reservations: loans reserved and not yet submitted. A loan counts from
  its admission until it is submitted, cancelled, refused, or its reservation expires (the
  score of its entry), so the count never needs a sweep to be right about expired ones.

Nothing here knows HTTP or Temporal: api/squatting.py calls it around the loan workflow and
keeps the sets in line with what the loans did."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from liquidity.connection import RedisClient
from liquidity.lua import Script

WINDOW_MS = 60_000
_SCRIPT = (Path(__file__).parent / "admission.lua").read_text()


@dataclass(frozen=True)
class Admitted:
    added: bool  # False: the loan id was already counted (a replay)


@dataclass(frozen=True)
class RateLimited:
    retry_after_ms: int


@dataclass(frozen=True)
class CapReached:
    open_count: int


Verdict = Admitted | RateLimited | CapReached


class Admission:
    def __init__(self, redis: RedisClient, *, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self._script = Script(redis, _SCRIPT)

    def _keys(self, who: str) -> tuple[str, str]:
        tag = f"{self._prefix}:q:{{{who}}}"
        return f"{tag}:rate", f"{tag}:open"

    async def admit(
        self, who: str, loan_id: str, *, rate_per_minute: int, cap: int, hold_until_ms: int
    ) -> Verdict:
        """`who` names the principal ("key:<id>" or "account:<G...>")."""
        args = (rate_per_minute, WINDOW_MS, cap, loan_id, hold_until_ms, secrets.token_hex(6))
        kind, value = await self._script(self._keys(who), args)
        if kind == "ok":
            return Admitted(added=int(value) == 1)
        if kind == "rate_limited":
            return RateLimited(int(value))
        return CapReached(int(value))

    async def hold_until(self, who: str, loan_id: str, until_ms: int) -> None:
        """The loan's exact expiry, once known (only if it is still counted)."""
        await self._redis.zadd(self._keys(who)[1], {loan_id: until_ms}, xx=True)

    async def release(self, who: str, loan_id: str) -> None:
        await self._redis.zrem(self._keys(who)[1], loan_id)

    async def open_loans(self, who: str) -> list[str]:
        return cast(list[str], await self._redis.zrange(self._keys(who)[1], 0, -1))

    async def may_prune(self, who: str, every_ms: int) -> bool:
        """At most one pruning per principal per `every_ms` (pruning costs a query per loan)."""
        key = f"{self._prefix}:q:{{{who}}}:pruned"
        return bool(await self._redis.set(key, "1", px=every_ms, nx=True))

    async def remember_opener(self, loan_id: str, key_id: str, until_ms: int) -> None:
        await self._redis.set(f"{self._prefix}:q:opener:{loan_id}", key_id, pxat=until_ms)

    async def opener(self, loan_id: str) -> str | None:
        value = await self._redis.get(f"{self._prefix}:q:opener:{loan_id}")
        return cast(str | None, value)

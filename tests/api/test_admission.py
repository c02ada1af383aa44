"""The admission script on the real Redis, hammered: 200 concurrent requests never admit more
than the rate limit or the cap allow, replays of a counted loan are admitted without counting
twice, and the Retry-After it computes is when the oldest admitted request leaves the window."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from api.auth.admission import Admission, Admitted, CapReached, RateLimited
from liquidity.connection import RedisClient, connect_redis
from tests.fixtures.redis import REDIS_URL


@pytest.fixture
async def pooled() -> AsyncIterator[RedisClient]:
    """The product's client (a blocking pool): 200 requests in flight wait for a connection."""
    client = connect_redis(REDIS_URL)
    yield client
    await client.aclose()


async def test_concurrent_admissions_respect_the_cap_and_the_rate(
    pooled: aioredis.Redis, key_prefix: str
) -> None:
    gate = Admission(pooled, prefix=key_prefix)
    hold = int(time.time() * 1000) + 60_000
    verdicts = await asyncio.gather(
        *[
            gate.admit("key:k1", f"L{i}", rate_per_minute=1_000, cap=10, hold_until_ms=hold)
            for i in range(200)
        ]
    )
    assert sum(isinstance(v, Admitted) for v in verdicts) == 10
    assert sum(isinstance(v, CapReached) for v in verdicts) == 190
    assert len(await gate.open_loans("key:k1")) == 10

    # A replay of a counted loan: admitted, not counted again, even at the cap.
    counted = (await gate.open_loans("key:k1"))[0]
    again = await gate.admit("key:k1", counted, rate_per_minute=1_000, cap=10, hold_until_ms=hold)
    assert again == Admitted(added=False)

    verdicts = await asyncio.gather(
        *[
            gate.admit("account:G1", f"M{i}", rate_per_minute=7, cap=1_000, hold_until_ms=hold)
            for i in range(200)
        ]
    )
    assert sum(isinstance(v, Admitted) for v in verdicts) == 7
    limited = [v for v in verdicts if isinstance(v, RateLimited)]
    assert len(limited) == 193
    assert all(55_000 < v.retry_after_ms <= 60_000 for v in limited)


async def test_expired_loans_stop_counting_and_release_frees(
    redis_client: aioredis.Redis, key_prefix: str
) -> None:
    gate = Admission(redis_client, prefix=key_prefix)
    now = int(time.time() * 1000)
    assert await gate.admit(
        "key:k2", "A", rate_per_minute=100, cap=2, hold_until_ms=now + 300
    ) == Admitted(True)
    assert await gate.admit(
        "key:k2", "B", rate_per_minute=100, cap=2, hold_until_ms=now + 60_000
    ) == Admitted(True)
    assert isinstance(
        await gate.admit("key:k2", "C", rate_per_minute=100, cap=2, hold_until_ms=now + 60_000),
        CapReached,
    )
    await asyncio.sleep(0.5)  # A's reservation expired
    assert await gate.admit(
        "key:k2", "C", rate_per_minute=100, cap=2, hold_until_ms=now + 60_000
    ) == Admitted(True)
    await gate.release("key:k2", "B")
    assert sorted(await gate.open_loans("key:k2")) == ["C"]

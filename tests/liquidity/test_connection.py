"""The project's Redis client makes callers beyond its pool size wait instead of failing: a busy
worker or API must not turn a burst of loans into MaxConnectionsError."""

import asyncio
import uuid

from liquidity.connection import connect_redis
from tests.fixtures.redis import REDIS_URL


async def test_more_concurrent_commands_than_connections_all_succeed() -> None:
    """One node only: the blocking pool is the single-node client's (a cluster client keeps a
    pool per node)."""
    key_prefix = f"test-{uuid.uuid4().hex[:12]}"
    client = connect_redis(REDIS_URL, max_connections=8)
    try:
        # BLPOP holds its connection for the whole timeout: 40 of them need 5 rounds of 8.
        results = await asyncio.gather(
            *[client.blpop([f"{key_prefix}:empty"], timeout=0.2) for _ in range(40)]
        )
        assert results == [None] * 40
        await client.set(f"{key_prefix}:k", "v")
        assert await client.get(f"{key_prefix}:k") == "v"
    finally:
        await client.delete(f"{key_prefix}:k")
        await client.aclose()

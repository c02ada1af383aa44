"""The one way the project opens its Redis client.

redis-py's default asyncio pool raises MaxConnectionsError once 100 commands are in flight, which
a busy worker (up to 200 concurrent activities) or API would turn into failed loans. A blocking
pool makes a caller beyond the limit wait for a free connection instead."""

from __future__ import annotations

import redis.asyncio as aioredis


def connect_redis(
    url: str, *, max_connections: int = 256, wait_timeout: float = 10.0
) -> aioredis.Redis:
    """A client with decode_responses=True (as every module here expects) that owns its pool."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url, decode_responses=True, max_connections=max_connections, timeout=wait_timeout
    )
    return aioredis.Redis.from_pool(pool)

"""The one way the project opens its Redis client: one node, a Redis Cluster, or a
Sentinel-managed primary.

- One node (the default): redis-py's default asyncio pool raises MaxConnectionsError once 100
  commands are in flight, which a busy worker (up to 200 concurrent activities) or API would turn
  into failed loans. A blocking pool makes a caller beyond the limit wait for a free connection.
- Cluster (`REDIS_CLUSTER=true`, `REDIS_URL` naming any node): redis-py's RedisCluster discovers
  the other nodes and routes every command by its keys' slot. Every script of the project names
  every key it touches in KEYS and keeps them in one slot (liquidity/keys.py), so nothing here
  ever sends a cross-slot command.
- Sentinel (`REDIS_SENTINELS=host:port,...`, `REDIS_SENTINEL_SERVICE`): redis-py's Sentinel asks
  the sentinels for the current primary; on a connection error or a READONLY reply (the old
  primary came back as a replica) the command is retried with backoff against whatever primary
  the sentinels name then, so a failover is followed without a restart. Retried operations are
  the ledger's scripts, idempotent by loan id, so a retry after a lost reply does no harm.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias
from urllib.parse import urlparse

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

# What every module of the project accepts: both speak the same command API for what we use.
RedisClient: TypeAlias = aioredis.Redis | RedisCluster

# A failover (sentinels' down-after + election) takes a few seconds; ~20 s of bounded retries
# covers it, and a caller still gets an error rather than waiting forever.
FAILOVER_RETRIES = 40
SOCKET_TIMEOUT = 10.0


def parse_sentinels(spec: str) -> list[tuple[str, int]]:
    """`host:port,host:port` -> [(host, port), ...]; ValueError on anything else."""
    nodes: list[tuple[str, int]] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        host, sep, port = part.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"REDIS_SENTINELS entry {part!r} is not host:port")
        nodes.append((host, int(port)))
    if not nodes:
        raise ValueError("REDIS_SENTINELS names no sentinel")
    return nodes


def connect_redis(
    url: str,
    *,
    max_connections: int = 256,
    wait_timeout: float = 10.0,
    cluster: bool = False,
    sentinels: str = "",
    sentinel_service: str = "",
    timeout: float = SOCKET_TIMEOUT,
) -> RedisClient:
    """A client with decode_responses=True (as every module here expects) that owns its pool.
    `timeout` bounds each command's socket wait and the wait for a pooled connection."""
    if cluster and sentinels:
        raise ValueError("REDIS_CLUSTER and REDIS_SENTINELS are exclusive")
    if cluster:
        return RedisCluster.from_url(
            url,
            decode_responses=True,
            max_connections=max_connections,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )
    if sentinels:
        if not sentinel_service:
            raise ValueError("REDIS_SENTINELS needs REDIS_SENTINEL_SERVICE (the master's name)")
        parsed = urlparse(url)
        db = int(parsed.path.lstrip("/") or 0)
        sentinel = Sentinel(
            parse_sentinels(sentinels),
            sentinel_kwargs={"socket_timeout": 2.0, "socket_connect_timeout": 2.0},
            socket_timeout=timeout,
            socket_connect_timeout=min(timeout, 2.0),
        )
        client: aioredis.Redis = sentinel.master_for(
            sentinel_service,
            db=db,
            password=parsed.password,
            decode_responses=True,
            max_connections=max_connections,
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), FAILOVER_RETRIES),
            retry_on_error=[RedisConnectionError, RedisTimeoutError, ReadOnlyError],
        )
        return client
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        decode_responses=True,
        max_connections=max_connections,
        timeout=min(wait_timeout, timeout),
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
    )
    return aioredis.Redis.from_pool(pool)


async def get_many(redis: RedisClient, keys: Sequence[str]) -> list[Any]:
    """GET of many keys in one call: MGET on one node; on a cluster the keys live in many slots,
    so redis-py splits them per slot (one MGET per node, sent concurrently)."""
    if not keys:
        return []
    if isinstance(redis, RedisCluster):
        return list(await redis.mget_nonatomic(list(keys)))
    return list(await redis.mget(list(keys)))

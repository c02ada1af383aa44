"""The one place that builds the runtime clients from settings: Redis and what sits on it (the
reservation ledger with its safety buffer, the tx index, the reconciler's reports, the watcher's
lease), the chain client and the Temporal client. Built here and nowhere else, every process
(worker, watcher, API, tools, tests, benches) uses the same prefix, safety buffer and fee."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from chain.client import ChainClient
from channels.pool import ChannelPool
from core.settings import Settings
from core.telemetry.exporter import temporal_runtime
from liquidity.connection import RedisClient, connect_redis
from liquidity.history import LiquidityHistory
from liquidity.lease import Lease
from liquidity.ledger import Ledger
from liquidity.tx_index import TxIndex
from reconcile.reconciler import ReportStore
from runtime.temporal_bounds import RpcTimeoutInterceptor


def redis_client(settings: Settings, *, max_connections: int | None = None) -> RedisClient:
    """One node, a Redis Cluster (REDIS_CLUSTER) or a Sentinel primary (REDIS_SENTINELS), as
    the settings say. Connects lazily: building it reaches nothing until the first command."""
    return connect_redis(
        settings.redis_url,
        max_connections=256 if max_connections is None else max_connections,
        cluster=settings.redis_cluster,
        sentinels=settings.redis_sentinels,
        sentinel_service=settings.redis_sentinel_service,
        timeout=settings.redis_timeout_seconds,
    )


def ledger(settings: Settings, redis: RedisClient) -> Ledger:
    """With the durability the topology allows: REDIS_MIN_REPLICAS acks (one primary only), and
    on a Sentinel primary without acks the replication-id check that fails pools closed after a
    failover that may have lost writes."""
    if settings.redis_cluster and settings.redis_min_replicas:
        raise ValueError(
            "REDIS_MIN_REPLICAS needs one primary (single node or Sentinel): WAIT must follow a "
            "write on its own connection, which a cluster client does not pin"
        )
    return Ledger(
        redis,
        prefix=settings.ledger_prefix,
        safety_buffer=settings.safety_buffer_stroops,
        min_replicas=settings.redis_min_replicas,
        replica_timeout_ms=settings.redis_replica_timeout_ms,
        failover_check=bool(settings.redis_sentinels) and settings.redis_min_replicas == 0,
    )


def tx_index(settings: Settings, redis: RedisClient) -> TxIndex:
    return TxIndex(redis, prefix=settings.ledger_prefix)


def report_store(settings: Settings, redis: RedisClient) -> ReportStore:
    return ReportStore(redis, prefix=settings.ledger_prefix)


def liquidity_history(settings: Settings, redis: RedisClient) -> LiquidityHistory:
    """The dashboard chart's samples per pool (written by the active watcher)."""
    return LiquidityHistory(
        redis, prefix=settings.ledger_prefix, window_ms=settings.history_window_seconds * 1000
    )


def watcher_lease(settings: Settings, redis: RedisClient) -> Lease:
    """One active watcher per network: whoever holds this lease works, the others stand by."""
    return Lease(
        redis,
        f"{settings.ledger_prefix}:watcher:lease",
        holder=settings.watcher_id or f"{socket.gethostname()}:{os.getpid()}",
        ttl_ms=settings.watcher_lease_seconds * 1000,
    )


def channel_pool(settings: Settings, redis: RedisClient, chain: ChainClient) -> ChannelPool | None:
    """The channel accounts of sponsored funding; None in source_account mode."""
    if settings.funding_mode != "sponsored":
        return None
    return ChannelPool(
        redis,
        chain,
        settings.channel_secret_list,
        prefix=settings.ledger_prefix,
        wait_seconds=settings.channel_wait_seconds,
        grace_seconds=settings.settlement_grace_seconds,
    )


def chain_client(settings: Settings) -> ChainClient:
    return ChainClient(
        settings.rpc_url,
        settings.network_passphrase,
        base_fee=settings.base_fee,
        timeout=settings.rpc_timeout_seconds,
    )


async def temporal_client(settings: Settings) -> Client:
    """With the pydantic data converter every workflow and activity payload here needs, and
    the process's SDK Runtime when it made one (its metrics endpoint and log forwarding)."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        runtime=temporal_runtime(),
        # query / signal / describe ... bounded (runtime/temporal_bounds.py)
        interceptors=[
            RpcTimeoutInterceptor(timedelta(seconds=settings.temporal_rpc_timeout_seconds))
        ],
    )


@dataclass
class Clients:
    """Process-wide clients shared by everything in a process (one Redis pool, one RPC
    session). `build` does not own what it is handed; `open_clients` owns what it opens."""

    settings: Settings
    redis: RedisClient
    ledger: Ledger
    chain: ChainClient
    tx_index: TxIndex
    reports: ReportStore

    @classmethod
    def build(cls, settings: Settings, redis: RedisClient, chain: ChainClient) -> Clients:
        return cls(
            settings=settings,
            redis=redis,
            ledger=ledger(settings, redis),
            chain=chain,
            tx_index=tx_index(settings, redis),
            reports=report_store(settings, redis),
        )

    @classmethod
    def open(cls, settings: Settings) -> Clients:
        """New Redis and chain clients; the caller closes them with `close()`."""
        return cls.build(settings, redis_client(settings), chain_client(settings))

    async def close(self) -> None:
        try:
            await self.chain.close()
        finally:
            await self.redis.aclose()


@asynccontextmanager
async def open_clients(settings: Settings) -> AsyncIterator[Clients]:
    clients = Clients.open(settings)
    try:
        yield clients
    finally:
        await clients.close()

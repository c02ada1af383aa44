"""Ledger fixtures: a Ledger under the test's own key prefix, on the real single Redis node AND on
a real 3-master Redis Cluster: `redis_client` is parametrized, so every ledger test runs on both
(the ledger's promise is the same on both; only the cluster would catch a cross-slot script)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from liquidity import Ledger
from liquidity.connection import RedisClient
from tests.fixtures.redis import client_for

BIG = 10**15  # a borrower limit that never binds


@pytest.fixture
async def redis_client(redis_topology: tuple[str, str]) -> AsyncIterator[RedisClient]:
    client = client_for(redis_topology)
    await client.ping()
    yield client
    await client.aclose()


@pytest.fixture
def ledger(redis_client: RedisClient, key_prefix: str) -> Ledger:
    return Ledger(redis_client, prefix=key_prefix)


@pytest.fixture
async def wide_ledger(redis_topology: tuple[str, str], key_prefix: str) -> AsyncIterator[Ledger]:
    """A ledger whose client holds up to 300 connections, so the concurrency tests' 200+ calls
    are really in flight at once rather than queued for a connection."""
    client = client_for(redis_topology, max_connections=300)
    yield Ledger(client, prefix=key_prefix)
    await client.aclose()


@pytest.fixture
def pool() -> str:
    return f"pool-{uuid.uuid4().hex[:8]}"


async def establish(ledger: Ledger, pool_id: str, available: int, *, ledger_seq: int = 100) -> None:
    """Makes the pool known with `available` stroops of chain liquidity."""
    result = await ledger.apply_snapshot(
        pool_id, ledger=ledger_seq, total=available, locked=0, available=available, establish=True
    )
    assert result.outcome == "applied"

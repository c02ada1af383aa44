"""Chain snapshots (ordering, pending commits counted once) and the fail-closed unknown pool."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from liquidity import Ledger, Reserved, RestoreResult, SnapshotResult, UnknownPool
from tests.fixtures.redis import forget_pool
from tests.liquidity.conftest import BIG, establish
from tests.liquidity.invariants import check


async def test_an_older_snapshot_is_ignored(ledger: Ledger, pool: str) -> None:
    await establish(ledger, pool, 1_000, ledger_seq=200)
    stale = await ledger.apply_snapshot(pool, ledger=199, total=5, locked=0, available=5)
    assert stale == SnapshotResult(outcome="stale", ledger=200)
    status = await ledger.status(pool)
    assert (status.snapshot_ledger, status.chain_available) == (200, 1_000)
    same = await ledger.apply_snapshot(pool, ledger=200, total=1_000, locked=10, available=990)
    assert same == SnapshotResult(outcome="applied", ledger=200)
    assert (await ledger.status(pool)).chain_available == 990


async def test_a_commit_after_the_snapshot_is_counted_once(
    ledger: Ledger, pool: str, redis_client: aioredis.Redis
) -> None:
    await establish(ledger, pool, 1_000, ledger_seq=200)
    await ledger.reserve(pool, "L1", "alice", 300, ttl_ms=60_000, borrower_limit=BIG)
    await ledger.commit(pool, "L1", ledger=203)
    assert (await ledger.status(pool)).available == 700
    # A snapshot from before the settlement's ledger: the chain figures do not include it yet.
    await ledger.apply_snapshot(pool, ledger=202, total=1_000, locked=0, available=1_000)
    status = await ledger.status(pool)
    assert (status.pending_commits, status.available) == (300, 700)
    # The snapshot at the settlement's ledger includes it: pending drops, counted once.
    await ledger.apply_snapshot(pool, ledger=203, total=1_000, locked=300, available=700)
    status = await ledger.status(pool)
    assert (status.pending_commits, status.chain_available, status.available) == (0, 700, 700)
    await check(redis_client, ledger, pool)


async def test_a_commit_at_or_before_the_held_snapshot_is_not_pending(
    ledger: Ledger, pool: str
) -> None:
    await ledger.apply_snapshot(
        pool, ledger=210, total=1_000, locked=0, available=1_000, establish=True
    )
    await ledger.reserve(pool, "L1", "alice", 300, ttl_ms=60_000, borrower_limit=BIG)
    # The watcher saw the settlement at ledger 209 after a snapshot at 210 that includes it.
    await ledger.apply_snapshot(pool, ledger=210, total=1_000, locked=300, available=700)
    assert (await ledger.status(pool)).available == 400  # reservation still held
    await ledger.commit(pool, "L1", ledger=209)
    status = await ledger.status(pool)
    assert (status.pending_commits, status.reserved, status.available) == (0, 0, 700)
    # Exactly at the snapshot's ledger: already inside the chain figures too.
    await ledger.reserve(pool, "L2", "alice", 100, ttl_ms=60_000, borrower_limit=BIG)
    await ledger.apply_snapshot(pool, ledger=211, total=1_000, locked=400, available=600)
    await ledger.commit(pool, "L2", ledger=211)
    status = await ledger.status(pool)
    assert (status.pending_commits, status.reserved, status.available) == (0, 0, 600)


async def test_unknown_pool_stays_closed_until_established(
    ledger: Ledger, pool: str, redis_client: aioredis.Redis
) -> None:
    await establish(ledger, pool, 1_000)
    await ledger.reserve(pool, "L1", "alice", 600, ttl_ms=60_000, borrower_limit=BIG)
    await forget_pool(redis_client, ledger, pool)  # Redis lost the pool's keys

    refused = await ledger.reserve(pool, "L2", "bob", 1, ttl_ms=60_000, borrower_limit=BIG)
    assert isinstance(refused, UnknownPool)
    watcher = await ledger.apply_snapshot(pool, ledger=300, total=1_000, locked=0, available=1_000)
    assert watcher == SnapshotResult(outcome="unknown_pool", ledger=0)
    assert not (await ledger.status(pool)).known

    # The reconciler re-asserts every open loan, then establishes a fresh snapshot.
    restored = await ledger.restore(
        pool, "L1", borrower="alice", amount=600, expires_at_ms=2**42, hold_until_ms=2**42 + 5
    )
    assert restored == RestoreResult(outcome="restored", overcommit=0)
    again = await ledger.reserve(pool, "L2", "bob", 1, ttl_ms=60_000, borrower_limit=BIG)
    assert isinstance(again, UnknownPool)  # restore alone does not open the pool
    await ledger.apply_snapshot(
        pool, ledger=300, total=1_000, locked=0, available=1_000, establish=True
    )
    status = await ledger.status(pool)
    assert (status.known, status.reserved, status.available) == (True, 600, 400)
    refused_big = await ledger.reserve(pool, "L2", "bob", 401, ttl_ms=60_000, borrower_limit=BIG)
    assert refused_big.kind == "insufficient"
    assert isinstance(
        await ledger.reserve(pool, "L3", "bob", 400, ttl_ms=60_000, borrower_limit=BIG), Reserved
    )
    kept = await ledger.reservation(pool, "L1")
    assert kept is not None and (kept.expires_at_ms, kept.hold_until_ms) == (2**42, 2**42 + 5)
    await check(redis_client, ledger, pool)


async def test_restore_is_idempotent_and_flags_overcommit(
    ledger: Ledger, pool: str, redis_client: aioredis.Redis
) -> None:
    await establish(ledger, pool, 1_000)
    args: dict[str, Any] = {"borrower": "alice", "expires_at_ms": 2**42, "hold_until_ms": 2**42}
    assert await ledger.restore(pool, "A", amount=700, **args) == RestoreResult(
        outcome="restored", overcommit=0
    )
    assert await ledger.restore(pool, "A", amount=700, **args) == RestoreResult(
        outcome="already_active", overcommit=0
    )
    over = await ledger.restore(pool, "B", amount=500, **args)
    assert over == RestoreResult(outcome="restored", overcommit=200)
    status = await ledger.status(pool)
    assert (status.reserved, status.available, status.overcommit) == (1_200, -200, 200)
    await ledger.release(pool, "B", reason="orphan")
    assert await ledger.restore(pool, "B", amount=500, **args) == RestoreResult(
        outcome="already_terminal", overcommit=0
    )
    audit = [a.action for a in await ledger.audit(pool)]
    assert audit.count("restore") == 2
    await check(redis_client, ledger, pool)

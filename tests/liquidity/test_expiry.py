"""Expiry on Redis time with short TTLs: counted until hold_until, then swept and released."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis

from liquidity import AlreadyTerminal, Ledger, Reserved
from tests.liquidity.conftest import BIG, establish
from tests.liquidity.invariants import check


async def test_expired_reservation_is_swept_by_the_next_reserve(
    ledger: Ledger, pool: str, redis_client: aioredis.Redis
) -> None:
    await establish(ledger, pool, 1_000)
    short = await ledger.reserve(pool, "S", "alice", 800, ttl_ms=40, borrower_limit=BIG)
    assert isinstance(short, Reserved)
    await asyncio.sleep(0.08)
    # Still counted until something sweeps (errs on the refusing side) ...
    assert (await ledger.status(pool)).reserved == 800
    # ... and the next reserve sweeps it first, so this 900 fits.
    granted = await ledger.reserve(pool, "N", "bob", 900, ttl_ms=60_000, borrower_limit=BIG)
    assert isinstance(granted, Reserved)
    status = await ledger.status(pool)
    assert (status.reserved, status.active_reservations) == (900, 1)
    expire = [a for a in await ledger.audit(pool) if a.action == "expire"]
    assert [(a.loan_id, a.amount, a.reserved_before, a.reserved_after) for a in expire] == [
        ("S", 800, 800, 0)
    ]
    again = await ledger.reserve(pool, "S", "alice", 800, ttl_ms=60_000, borrower_limit=BIG)
    assert again == AlreadyTerminal(state="released")
    late = await ledger.commit(pool, "S", ledger=101)
    assert late.outcome == "late_commit"
    assert (await ledger.audit(pool, count=1))[0].alarm
    await check(redis_client, ledger, pool)


async def test_grace_keeps_the_amount_counted_past_expires_at(ledger: Ledger, pool: str) -> None:
    await establish(ledger, pool, 1_000)
    r = await ledger.reserve(pool, "G", "alice", 500, ttl_ms=30, grace_ms=400, borrower_limit=BIG)
    assert isinstance(r, Reserved)
    await asyncio.sleep(0.1)  # past expires_at, inside the grace
    assert await ledger.sweep(pool) == []
    assert (await ledger.status(pool)).reserved == 500
    await asyncio.sleep(0.4)
    assert await ledger.sweep(pool) == ["G"]
    assert await ledger.sweep(pool) == []
    assert (await ledger.status(pool)).reserved == 0


async def test_commit_inside_the_grace_is_a_normal_commit(ledger: Ledger, pool: str) -> None:
    await establish(ledger, pool, 1_000)
    await ledger.reserve(pool, "G", "alice", 500, ttl_ms=20, grace_ms=300, borrower_limit=BIG)
    await asyncio.sleep(0.05)
    result = await ledger.commit(pool, "G", ledger=101)
    assert result.outcome == "committed"
    assert not (await ledger.audit(pool, count=1))[0].alarm


async def test_sweep_releases_only_the_expired(ledger: Ledger, pool: str) -> None:
    await establish(ledger, pool, 10_000)
    for i in range(5):
        await ledger.reserve(pool, f"K{i}", "bob", 10, ttl_ms=60_000, borrower_limit=BIG)
    # Every reserve sweeps first: the short holds come last, with a TTL well beyond the time
    # their burst takes, so only the sweep below finds them expired.
    shorts = [
        await ledger.reserve(pool, f"S{i}", "alice", 10, ttl_ms=300, borrower_limit=BIG)
        for i in range(5)
    ]
    assert all(isinstance(r, Reserved) for r in shorts)
    last_hold_ms = max(r.hold_until_ms for r in shorts if isinstance(r, Reserved))
    await asyncio.sleep(max(last_hold_ms / 1000 - time.time(), 0) + 0.05)
    assert sorted(await ledger.sweep(pool)) == [f"S{i}" for i in range(5)]
    assert sorted(r.loan_id for r in await ledger.reservations(pool)) == [f"K{i}" for i in range(5)]
    assert (await ledger.status(pool)).reserved == 50


async def test_terminal_markers_are_forgotten_after_retention(
    redis_client: aioredis.Redis, key_prefix: str, pool: str
) -> None:
    ledger = Ledger(redis_client, prefix=key_prefix, terminal_retention_ms=50)
    await establish(ledger, pool, 1_000)
    await ledger.reserve(pool, "L1", "alice", 10, ttl_ms=60_000, borrower_limit=BIG)
    await ledger.release(pool, "L1", reason="x")
    assert (await ledger.release(pool, "L1", reason="x")).outcome == "already_released"
    await asyncio.sleep(0.1)
    await ledger.sweep(pool)
    assert (await ledger.release(pool, "L1", reason="x")).outcome == "unknown_loan"


async def test_sweep_releases_more_than_one_script_batch(ledger: Ledger, pool: str) -> None:
    """The sweep script releases a bounded batch per call and says when more may be due; the
    ledger calls it until none is: every expired hold is released by one sweep."""
    await establish(ledger, pool, 10_000)
    hold_until = int(time.time() * 1000) + 500
    loans = [f"R{i}" for i in range(1_001 + 7)]
    for loan in loans:
        await ledger.restore(
            pool,
            loan,
            borrower="alice",
            amount=1,
            expires_at_ms=hold_until,
            hold_until_ms=hold_until,
        )
    await asyncio.sleep(max(hold_until / 1000 - time.time(), 0) + 0.2)
    assert sorted(await ledger.sweep(pool)) == sorted(loans)
    assert (await ledger.status(pool)).reserved == 0

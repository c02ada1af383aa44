"""reserve(): every outcome, the exact arithmetic, and what it records."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from liquidity import (
    AlreadyTerminal,
    BorrowerLimitExceeded,
    Frozen,
    Insufficient,
    Ledger,
    Reserved,
    UnknownPool,
)
from tests.liquidity.conftest import BIG, establish
from tests.liquidity.invariants import check


async def redis_now_ms(redis: aioredis.Redis) -> int:
    sec, usec = await redis.time()
    return sec * 1000 + usec // 1000


async def test_unknown_pool_is_refused_and_recorded(ledger: Ledger, pool: str) -> None:
    result = await ledger.reserve(pool, "L1", "alice", 10, ttl_ms=60_000, borrower_limit=BIG)
    assert isinstance(result, UnknownPool)
    blocked = await ledger.blocked(pool)
    assert [(b.loan_id, b.reason, b.required) for b in blocked] == [("L1", "unknown_pool", 10)]
    status = await ledger.status(pool)
    assert not status.known and status.reserved == 0 and status.active_reservations == 0


async def test_reserved_carries_redis_time_expiry_hold_and_fence(
    ledger: Ledger, pool: str, redis_client: aioredis.Redis
) -> None:
    await establish(ledger, pool, 1_000)
    before = await redis_now_ms(redis_client)
    first = await ledger.reserve(
        pool, "L1", "alice", 100, ttl_ms=60_000, grace_ms=5_000, borrower_limit=BIG
    )
    after = await redis_now_ms(redis_client)
    second = await ledger.reserve(pool, "L2", "bob", 200, ttl_ms=60_000, borrower_limit=BIG)
    assert isinstance(first, Reserved) and isinstance(second, Reserved)
    assert before + 60_000 <= first.expires_at_ms <= after + 60_000
    assert first.hold_until_ms == first.expires_at_ms + 5_000
    assert second.hold_until_ms == second.expires_at_ms
    assert second.fence > first.fence
    assert not first.replayed
    status = await ledger.status(pool)
    assert (status.reserved, status.available, status.active_reservations) == (300, 700, 2)
    stored = await ledger.reservation(pool, "L1")
    assert stored is not None
    assert (stored.borrower, stored.amount, stored.fence) == ("alice", 100, first.fence)
    audit = await ledger.audit(pool, count=2)
    rows = [(a.action, a.loan_id, a.amount, a.reserved_before, a.reserved_after) for a in audit]
    assert rows == [
        ("reserve", "L2", 200, 100, 300),
        ("reserve", "L1", 100, 0, 100),
    ]
    await check(redis_client, ledger, pool)


async def test_repeat_returns_the_original_first_wins(ledger: Ledger, pool: str) -> None:
    await establish(ledger, pool, 1_000)
    first = await ledger.reserve(pool, "L1", "alice", 100, ttl_ms=60_000, borrower_limit=BIG)
    again = await ledger.reserve(pool, "L1", "alice", 999, ttl_ms=1, borrower_limit=BIG)
    assert isinstance(first, Reserved) and isinstance(again, Reserved)
    assert again.replayed
    assert again.model_dump(exclude={"replayed"}) == first.model_dump(exclude={"replayed"})
    assert (await ledger.status(pool)).reserved == 100
    assert len(await ledger.audit(pool)) == 2  # snapshot + one reserve: a replay is no mutation


async def test_insufficient_reports_available_required_shortage(ledger: Ledger, pool: str) -> None:
    await establish(ledger, pool, 1_000)
    assert isinstance(
        await ledger.reserve(pool, "L1", "alice", 700, ttl_ms=60_000, borrower_limit=BIG), Reserved
    )
    refused = await ledger.reserve(pool, "L2", "bob", 301, ttl_ms=60_000, borrower_limit=BIG)
    assert refused == Insufficient(available=300, required=301, shortage=1)
    exact = await ledger.reserve(pool, "L3", "bob", 300, ttl_ms=60_000, borrower_limit=BIG)
    assert isinstance(exact, Reserved)  # an exact fit is granted
    assert (await ledger.status(pool)).available == 0
    blocked = await ledger.blocked(pool)
    assert [(b.loan_id, b.reason, b.required, b.available, b.shortage) for b in blocked] == [
        ("L2", "insufficient", 301, 300, 1)
    ]


async def test_safety_buffer_is_kept_back(
    redis_client: aioredis.Redis, key_prefix: str, pool: str
) -> None:
    ledger = Ledger(redis_client, prefix=key_prefix, safety_buffer=100)
    await establish(ledger, pool, 1_000)
    assert (await ledger.status(pool)).available == 900
    refused = await ledger.reserve(pool, "L1", "alice", 901, ttl_ms=60_000, borrower_limit=BIG)
    assert refused == Insufficient(available=900, required=901, shortage=1)
    granted = await ledger.reserve(pool, "L2", "alice", 900, ttl_ms=60_000, borrower_limit=BIG)
    assert isinstance(granted, Reserved)


async def test_amounts_beyond_double_precision_are_exact(
    ledger: Ledger, pool: str, redis_client: aioredis.Redis
) -> None:
    """2**60 + 1 is not representable as a double; Lua numbers would round it."""
    big, limit = 2**60 + 1, 2**62
    await establish(ledger, pool, big)
    refused = await ledger.reserve(pool, "L0", "alice", big + 1, ttl_ms=9_000, borrower_limit=limit)
    assert refused == Insufficient(available=big, required=big + 1, shortage=1)
    granted = await ledger.reserve(pool, "L1", "alice", big - 1, ttl_ms=9_000, borrower_limit=limit)
    assert isinstance(granted, Reserved) and granted.amount == big - 1
    assert (await ledger.status(pool)).available == 1
    refused = await ledger.reserve(pool, "L2", "bob", 2, ttl_ms=9_000, borrower_limit=limit)
    assert refused == Insufficient(available=1, required=2, shortage=1)
    await check(redis_client, ledger, pool)


async def test_frozen_pool_refuses_but_commit_and_release_go_through(
    ledger: Ledger, pool: str
) -> None:
    await establish(ledger, pool, 1_000)
    for loan in ("L1", "L2"):
        assert isinstance(
            await ledger.reserve(pool, loan, "alice", 10, ttl_ms=60_000, borrower_limit=BIG),
            Reserved,
        )
    await ledger.freeze(pool, reason="drift")
    await ledger.freeze(pool, reason="drift")  # idempotent
    refused = await ledger.reserve(pool, "L3", "bob", 10, ttl_ms=60_000, borrower_limit=BIG)
    assert refused == Frozen(reason="drift")
    replay = await ledger.reserve(pool, "L1", "alice", 10, ttl_ms=60_000, borrower_limit=BIG)
    assert isinstance(replay, Reserved) and replay.replayed
    assert (await ledger.commit(pool, "L1", ledger=101)).outcome == "committed"
    assert (await ledger.release(pool, "L2", reason="failed")).outcome == "released"
    status = await ledger.status(pool)
    assert status.frozen and status.frozen_reason == "drift"
    await ledger.unfreeze(pool, reason="explained")
    await ledger.unfreeze(pool, reason="explained")
    status = await ledger.status(pool)
    assert not status.frozen and status.frozen_reason is None
    assert isinstance(
        await ledger.reserve(pool, "L3", "bob", 10, ttl_ms=60_000, borrower_limit=BIG), Reserved
    )
    actions = [a.action for a in await ledger.audit(pool)]
    assert actions.count("freeze") == 1 and actions.count("unfreeze") == 1
    assert [b.reason for b in await ledger.blocked(pool)] == ["frozen"]


async def test_borrower_limit_counts_active_reservations_only(ledger: Ledger, pool: str) -> None:
    await establish(ledger, pool, 10_000)
    ok = await ledger.reserve(pool, "L1", "alice", 600, ttl_ms=60_000, borrower_limit=1_000)
    assert isinstance(ok, Reserved)
    refused = await ledger.reserve(pool, "L2", "alice", 401, ttl_ms=60_000, borrower_limit=1_000)
    assert refused == BorrowerLimitExceeded(exposure=600, required=401, limit=1_000)
    other = await ledger.reserve(pool, "L3", "bob", 900, ttl_ms=60_000, borrower_limit=1_000)
    assert isinstance(other, Reserved)  # exposure is per borrower
    exact = await ledger.reserve(pool, "L4", "alice", 400, ttl_ms=60_000, borrower_limit=1_000)
    assert isinstance(exact, Reserved)
    await ledger.release(pool, "L1", reason="cancelled")
    again = await ledger.reserve(pool, "L5", "alice", 600, ttl_ms=60_000, borrower_limit=1_000)
    assert isinstance(again, Reserved)  # released funds no longer count as exposure
    blocked = await ledger.blocked(pool)
    assert [(b.reason, b.required, b.available, b.shortage) for b in blocked] == [
        ("borrower_limit_exceeded", 401, 400, 1)
    ]


async def test_reserve_after_terminal_is_refused(ledger: Ledger, pool: str) -> None:
    await establish(ledger, pool, 1_000)
    for loan in ("C", "R"):
        await ledger.reserve(pool, loan, "alice", 10, ttl_ms=60_000, borrower_limit=BIG)
    await ledger.commit(pool, "C", ledger=101)
    await ledger.release(pool, "R", reason="cancel")
    c = await ledger.reserve(pool, "C", "alice", 10, ttl_ms=60_000, borrower_limit=BIG)
    r = await ledger.reserve(pool, "R", "alice", 10, ttl_ms=60_000, borrower_limit=BIG)
    assert c == AlreadyTerminal(state="committed")
    assert r == AlreadyTerminal(state="released")
    assert (await ledger.status(pool)).reserved == 0


@pytest.mark.parametrize("amount", [0, -5, 2**62 + 1])
async def test_out_of_range_amounts_are_rejected_before_redis(
    ledger: Ledger, pool: str, amount: int
) -> None:
    with pytest.raises(ValueError):
        await ledger.reserve(pool, "L1", "alice", amount, ttl_ms=60_000, borrower_limit=BIG)


async def test_float_amount_is_a_type_error(ledger: Ledger, pool: str) -> None:
    with pytest.raises(TypeError):
        await ledger.reserve(pool, "L1", "alice", 1.5, ttl_ms=60_000, borrower_limit=BIG)  # type: ignore[arg-type]

"""Audit and blocked streams: newest first, paged with `before`, capped in length."""

from __future__ import annotations

import redis.asyncio as aioredis

from liquidity import Ledger
from liquidity.types import BlockReason
from tests.liquidity.conftest import BIG, establish


async def test_audit_pages_newest_first_without_repeats(ledger: Ledger, pool: str) -> None:
    await establish(ledger, pool, 10_000)
    for i in range(7):
        await ledger.reserve(pool, f"L{i}", "alice", 10 + i, ttl_ms=60_000, borrower_limit=BIG)
    page1 = await ledger.audit(pool, count=3)
    page2 = await ledger.audit(pool, count=3, before=page1[-1].id)
    page3 = await ledger.audit(pool, count=3, before=page2[-1].id)
    loans = [e.loan_id for e in page1 + page2 + page3]
    assert loans == ["L6", "L5", "L4", "L3", "L2", "L1", "L0", None]
    assert page3[-1].action == "snapshot"
    assert [e.reserved_after for e in page1] == [
        sum(range(10, 17)),
        sum(range(10, 16)),
        sum(range(10, 15)),
    ]


async def test_blocked_records_every_refusal(ledger: Ledger, pool: str) -> None:
    await ledger.reserve(pool, "U", "alice", 5, ttl_ms=60_000, borrower_limit=BIG)
    await establish(ledger, pool, 100)
    await ledger.reserve(pool, "I", "alice", 101, ttl_ms=60_000, borrower_limit=BIG)
    await ledger.reserve(pool, "B", "alice", 50, ttl_ms=60_000, borrower_limit=10)
    await ledger.freeze(pool, reason="ops")
    await ledger.reserve(pool, "F", "alice", 5, ttl_ms=60_000, borrower_limit=BIG)
    entries = await ledger.blocked(pool)
    assert [(e.loan_id, e.reason) for e in entries] == [
        ("F", "frozen"),
        ("B", "borrower_limit_exceeded"),
        ("I", "insufficient"),
        ("U", "unknown_pool"),
    ]
    older = await ledger.blocked(pool, count=2, before=entries[1].id)
    assert [e.loan_id for e in older] == ["I", "U"]


async def test_blocked_figures_from_named_and_positional_fields(
    ledger: Ledger, pool: str, redis_client: aioredis.Redis
) -> None:
    """What a refused borrower could have had, from the named figures reserve.lua writes and
    from the positional x1/x2 that entries written by earlier versions still carry."""
    await establish(ledger, pool, 100)
    await ledger.reserve(pool, "I", "alice", 101, ttl_ms=60_000, borrower_limit=BIG)
    await ledger.reserve(pool, "B", "bob", 50, ttl_ms=60_000, borrower_limit=10)
    stream = ledger.keys(pool).blocked
    for loan, reason, x1, x2 in (
        ("OI", "insufficient", 100, 101),
        ("OB", "borrower_limit_exceeded", 0, -40),
    ):
        await redis_client.xadd(
            stream,
            {
                "loan": loan,
                "borrower": "carol",
                "reason": reason,
                "required": "50" if loan == "OB" else "101",
                "x1": str(x1),
                "x2": str(x2),
                "at": "1",
            },
        )
    figures = {e.loan_id: (e.reason, e.available, e.shortage) for e in await ledger.blocked(pool)}
    assert figures == {
        "I": (BlockReason.INSUFFICIENT, 100, 1),
        "OI": (BlockReason.INSUFFICIENT, 100, 1),
        "B": (BlockReason.BORROWER_LIMIT_EXCEEDED, 10, 40),
        "OB": (BlockReason.BORROWER_LIMIT_EXCEEDED, 10, 40),
    }

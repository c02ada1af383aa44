"""A pool with more open reservations than Lua's unpack() takes at once (~8,000): listing them
(what the reconciler reads every run) returns every one, soonest hold end first, instead of the
script error that failed the reconciliation of a 10,000-loan pool (found by make bench-scale)."""

from __future__ import annotations

import asyncio

from liquidity import Ledger, Reserved
from tests.liquidity.conftest import BIG, establish

OPEN = 9_000


async def test_listing_more_reservations_than_unpack_takes(ledger: Ledger, pool: str) -> None:
    await establish(ledger, pool, BIG)
    gate = asyncio.Semaphore(64)

    async def reserve(i: int) -> None:
        async with gate:
            # later loans expire later: the listing's order is known
            got = await ledger.reserve(
                pool, f"L{i:05d}", f"b{i % 97}", 1, ttl_ms=600_000 + i, borrower_limit=BIG
            )
            assert isinstance(got, Reserved)

    await asyncio.gather(*(reserve(i) for i in range(OPEN)))
    listed = await ledger.reservations(pool, limit=10_000)
    assert len(listed) == OPEN
    assert {r.loan_id for r in listed} == {f"L{i:05d}" for i in range(OPEN)}
    assert all(r.amount == 1 for r in listed)
    ends = [r.hold_until_ms for r in listed]
    assert ends == sorted(ends)
    assert [r.loan_id for r in await ledger.reservations(pool, limit=3)] == [
        r.loan_id for r in listed[:3]
    ]
    assert (await ledger.status(pool)).active_reservations == OPEN

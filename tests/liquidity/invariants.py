"""White-box invariant check: one MULTI/EXEC read of the pool's raw keys, so the figures come from
a single instant even while other clients are writing."""

from __future__ import annotations

from dataclasses import dataclass

from liquidity import Ledger
from liquidity.connection import RedisClient


@dataclass
class Snapshot:
    reserved: int
    headroom: int
    chain: int
    pending: int
    active: dict[str, int]  # loan id -> amount
    exposure: dict[str, int]  # borrower -> amount
    pending_amounts: dict[str, int]


async def read(redis: RedisClient, ledger: Ledger, pool_id: str) -> Snapshot:
    k = ledger.keys(pool_id)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hmget(k.state, ["reserved", "headroom", "chain", "pending"])
        pipe.hgetall(k.res)
        pipe.hgetall(k.bexp)
        pipe.hgetall(k.pamt)
        counters, res, bexp, pamt = await pipe.execute()
    reserved, headroom, chain, pending = (int(x or 0) for x in counters)
    active = {loan: int(rec.split("|", 1)[0]) for loan, rec in res.items()}
    return Snapshot(
        reserved=reserved,
        headroom=headroom,
        chain=chain,
        pending=pending,
        active=active,
        exposure={b: int(v) for b, v in bexp.items()},
        pending_amounts={loan: int(v) for loan, v in pamt.items()},
    )


async def check(redis: RedisClient, ledger: Ledger, pool_id: str) -> Snapshot:
    """reserved == sum of active reservations == sum of borrower exposures; pending == sum of
    pending commits; headroom == chain - pending - reserved."""
    s = await read(redis, ledger, pool_id)
    assert s.reserved == sum(s.active.values()), s
    assert s.reserved == sum(s.exposure.values()), s
    assert all(v > 0 for v in s.exposure.values()), s
    assert s.pending == sum(s.pending_amounts.values()), s
    assert s.headroom == s.chain - s.pending - s.reserved, s
    return s

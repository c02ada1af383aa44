"""The peers' designs of the same reservation, on this machine's PostgreSQL (asyncpg), for
`make bench-ledger`: measured from the same Python client concurrency as the Redis ledger.

- conditional row (CoinHubX's liquidity lock, Fineract's approach): one `pools` row per pool;
  a reserve is one transaction `UPDATE pools SET available = available - $amount WHERE id = $pool
  AND available >= $amount` plus the hold's INSERT; a commit marks the hold committed.
- advisory lock + sum of pending holds (Fiber Link's approach): a reserve takes
  `pg_advisory_xact_lock(pool)`, sums the pool's pending holds, checks against the pool's total
  and inserts the hold; a commit marks it committed.

Each at 10 and at 100,000 open (pending) holds in the pool. Tables are this run's own
(`bench_l17_<random>_*`) and dropped afterwards. PostgreSQL at PG_DSN (default
postgresql://postgres@127.0.0.1:5432/test, trust auth)."""

from __future__ import annotations

import os
import random
import time
import uuid
from typing import Any

from bench.ledger import BIG, CLIENTS, Run, _ms, loan_id, timed_loop

PG_DSN = os.environ.get("PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


class PgPeers:
    def __init__(self, pool: Any) -> None:
        self.db = pool
        tag = f"bench_l17_{uuid.uuid4().hex[:8]}"
        self.pools, self.holds = f"{tag}_pools", f"{tag}_holds"

    async def create(self) -> None:
        await self.db.execute(
            f"CREATE TABLE {self.pools} (id text PRIMARY KEY, total bigint NOT NULL, "
            f"available bigint NOT NULL)"
        )
        await self.db.execute(
            f"CREATE TABLE {self.holds} (loan_id text PRIMARY KEY, pool_id text NOT NULL, "
            f"amount bigint NOT NULL, status text NOT NULL)"
        )
        await self.db.execute(f"CREATE INDEX ON {self.holds} (pool_id) WHERE status = 'pending'")

    async def drop(self) -> None:
        await self.db.execute(f"DROP TABLE IF EXISTS {self.holds}, {self.pools}")

    async def add_pool(self, pool: str, open_holds: int) -> None:
        await self.db.execute(f"INSERT INTO {self.pools} VALUES ($1, $2, $2)", pool, BIG)
        if open_holds:
            await self.db.execute(
                f"INSERT INTO {self.holds} SELECT $1 || '-fill-' || g, $1, 1, 'pending' "
                f"FROM generate_series(1, $2) g",
                pool,
                open_holds,
            )
            await self.db.execute(
                f"UPDATE {self.pools} SET available = available - $2 WHERE id = $1",
                pool,
                open_holds,
            )
        await self.db.execute(f"ANALYZE {self.holds}")

    # ---- conditional UPDATE ... WHERE available >= amount ------------------------------------

    async def row_reserve(self, pool: str, loan: str, amount: int) -> bool:
        async with self.db.acquire() as conn, conn.transaction():
            left = await conn.fetchval(
                f"UPDATE {self.pools} SET available = available - $2 "
                f"WHERE id = $1 AND available >= $2 RETURNING available",
                pool,
                amount,
            )
            if left is None:
                return False
            await conn.execute(
                f"INSERT INTO {self.holds} VALUES ($1, $2, $3, 'pending')", loan, pool, amount
            )
            return True

    async def row_commit(self, loan: str) -> None:
        await self.db.execute(
            f"UPDATE {self.holds} SET status = 'committed' WHERE loan_id = $1 "
            f"AND status = 'pending'",
            loan,
        )

    # ---- advisory lock + sum of pending holds ------------------------------------------------

    async def lock_reserve(self, pool: str, loan: str, amount: int) -> bool:
        async with self.db.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", pool)
            total = await conn.fetchval(f"SELECT total FROM {self.pools} WHERE id = $1", pool)
            held = await conn.fetchval(
                f"SELECT coalesce(sum(amount), 0) FROM {self.holds} "
                f"WHERE pool_id = $1 AND status = 'pending'",
                pool,
            )
            if total - held < amount:
                return False
            await conn.execute(
                f"INSERT INTO {self.holds} VALUES ($1, $2, $3, 'pending')", loan, pool, amount
            )
            return True

    async def lock_commit(self, loan: str) -> None:
        await self.row_commit(loan)


async def pg_pairs(peers: PgPeers, kind: str, open_holds: int) -> Run:
    pool = f"{kind}-{open_holds}-{uuid.uuid4().hex[:6]}"
    await peers.add_pool(pool, open_holds)
    reserve = peers.row_reserve if kind == "row" else peers.lock_reserve
    commit = peers.row_commit if kind == "row" else peers.lock_commit

    async def pair(rng: random.Random) -> float:
        loan = loan_id()
        t0 = time.perf_counter()
        ok = await reserve(pool, loan, rng.randint(1, 10_000))
        first = _ms(t0)
        assert ok
        await commit(loan)
        return first

    label = {"row": "pg conditional UPDATE row", "lock": "pg advisory lock + sum"}[kind]
    return await timed_loop(Run(f"{label}, {open_holds:,} open holds"), pair)


async def pg_runs() -> list[Run]:
    """Every peer at 10 and 100,000 open holds; [] (with a note) when PostgreSQL is absent."""
    import asyncpg

    db = await asyncpg.create_pool(PG_DSN, min_size=CLIENTS, max_size=CLIENTS)
    peers = PgPeers(db)
    try:
        await peers.create()
        return [await pg_pairs(peers, kind, n) for kind in ("row", "lock") for n in (10, 100_000)]
    finally:
        await peers.drop()
        await db.close()

"""Benchmark of the reservation ledger against the real Redis, from one Python client.

Measured in one run, all with 50 concurrent clients unless said otherwise:
- ledger reserve+commit pairs/s on one hot pool and spread over 100 pools, with latency;
- ledger reserve-only rate versus the floor (a one-line Lua script: one EVALSHA round trip);
- the same reserve/commit logic done the "distributed lock" way (SET NX, read, check, write, DEL);
- over-commits: stroops granted beyond availability, on a pool that runs dry under contention;
- reserve p50 with 10 and with 100,000 active reservations in the pool (measured alternately);
- the peers' designs on PostgreSQL (bench/ledger_pg.py: a conditional UPDATE row, an advisory
  lock + sum of pending holds) at 10 and 100,000 open holds, beside the ledger's pairs at the
  same sizes.

Prints a table, then one JSON object of figures as the last line. Uses its own key prefix and
deletes its keys. Run: `make bench-ledger` (or `.venv/bin/python -m bench.ledger`)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from liquidity import Insufficient, Ledger, Reserved

# bench/ledger_pg.py imports this module's helpers; imported lazily in main() to avoid a cycle.

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CLIENTS = 50
DURATION_S = float(os.environ.get("BENCH_DURATION_S", "4"))
POOLS = 100
BIG = 10**15
TTL_MS = 600_000


@dataclass
class Run:
    name: str
    ops: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)  # of the first op of each unit
    unit_ms: list[float] = field(default_factory=list)  # of each whole unit (e.g. a pair)
    overcommit: int = 0
    extra: str = ""

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0

    def pct(self, q: float, data: list[float] | None = None) -> float:
        values = sorted(self.latencies_ms if data is None else data)
        if not values:
            return 0.0
        return values[min(len(values) - 1, int(q * len(values)))]


async def timed_loop(
    run: Run,
    step: Callable[[random.Random], Awaitable[float | None]],
    clients: int = CLIENTS,
    seconds: float = DURATION_S,
) -> Run:
    """`clients` workers call `step` until the deadline; a step returns its first op's latency.
    Called again on the same Run, it accumulates (used to interleave runs)."""
    deadline = time.perf_counter() + seconds

    async def worker(seed: int) -> None:
        rng = random.Random(seed)
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            first = await step(rng)
            run.unit_ms.append((time.perf_counter() - t0) * 1000)
            if first is not None:
                run.latencies_ms.append(first)
            run.ops += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(run.ops + i) for i in range(clients)))
    run.seconds += time.perf_counter() - start
    return run


_ids = itertools.count()


def loan_id() -> str:
    """Cheap unique ids: uuid4 per call would be client work the floor does not do."""
    return f"loan-{next(_ids)}"


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


# --- the ledger ---------------------------------------------------------------------------


async def establish(ledger: Ledger, pool: str, available: int) -> None:
    await ledger.apply_snapshot(
        pool, ledger=1, total=available, locked=0, available=available, establish=True
    )


async def ledger_pairs(ledger: Ledger, name: str, pools: list[str]) -> Run:
    for p in pools:
        await establish(ledger, p, BIG)
    granted: dict[str, int] = dict.fromkeys(pools, 0)

    async def pair(rng: random.Random) -> float:
        pool = pools[0] if len(pools) == 1 else rng.choice(pools)
        loan = loan_id()
        amount = rng.randint(1, 10_000)
        t0 = time.perf_counter()
        r = await ledger.reserve(pool, loan, "b", amount, ttl_ms=TTL_MS, borrower_limit=BIG)
        first = _ms(t0)
        assert isinstance(r, Reserved), r
        granted[pool] += amount
        c = await ledger.commit(pool, loan, ledger=2)
        assert c.outcome == "committed", c
        return first

    run = await timed_loop(Run(name), pair)
    for p in pools:  # every stroop accounted for exactly once
        s = await ledger.status(p)
        assert s.reserved == 0 and s.pending_commits == granted[p], (s, granted[p])
        run.overcommit += max(0, granted[p] - BIG)
    return run


async def reserve_vs_floor(redis: aioredis.Redis, ledger: Ledger, pool: str) -> tuple[Run, Run]:
    """Alternating windows of the floor and of ledger reserves, so load from other processes on
    this shared machine hits both alike."""
    await establish(ledger, pool, BIG)
    script = redis.register_script("return 1")

    async def floor_op(_: random.Random) -> float:
        t0 = time.perf_counter()
        await script(keys=["bench-floor"], args=[])
        return _ms(t0)

    async def reserve_op(rng: random.Random) -> float:
        t0 = time.perf_counter()
        r = await ledger.reserve(
            pool, loan_id(), "b", rng.randint(1, 10_000), ttl_ms=TTL_MS, borrower_limit=BIG
        )
        first = _ms(t0)
        assert isinstance(r, Reserved)
        return first

    floor_run = Run("floor: one-line Lua (EVALSHA)")
    reserve_run = Run("ledger reserve only, hot pool")
    for _ in range(4):
        await timed_loop(floor_run, floor_op, seconds=DURATION_S / 4)
        await timed_loop(reserve_run, reserve_op, seconds=DURATION_S / 4)
    return floor_run, reserve_run


async def ledger_dry_pool(ledger: Ledger, pool: str, available: int) -> Run:
    """50 clients race for scarce funds until each has been refused 5 times."""
    await establish(ledger, pool, available)
    granted = 0
    run = Run("ledger, pool running dry")

    async def client(seed: int) -> None:
        nonlocal granted
        rng, refusals = random.Random(seed), 0
        while refusals < 5:
            amount = rng.randint(1, 5_000)
            r = await ledger.reserve(
                pool, loan_id(), f"b{seed}", amount, ttl_ms=TTL_MS, borrower_limit=BIG
            )
            run.ops += 1
            if isinstance(r, Reserved):
                granted += amount
            else:
                assert isinstance(r, Insufficient), r
                refusals += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(CLIENTS)))
    run.seconds = time.perf_counter() - t0
    status = await ledger.status(pool)
    assert status.reserved == granted
    run.overcommit = max(0, granted - available)
    run.extra = f"granted {granted} of {available}"
    return run


# --- the naive "distributed lock" version of the same logic ---------------------------------


class NaiveLedger:
    """SET NX lock, read, check in Python, write, unlock: the usual distributed-lock approach.
    Correct while the lock holds, but every decision costs several round trips under the lock."""

    def __init__(self, redis: aioredis.Redis, prefix: str) -> None:
        self.r, self.prefix = redis, prefix

    def _k(self, pool: str, what: str) -> str:
        return f"{self.prefix}:naive:{{{pool}}}:{what}"

    async def setup(self, pool: str, available: int) -> None:
        await self.r.hset(
            self._k(pool, "state"), mapping={"chain": available, "reserved": 0, "pending": 0}
        )

    async def _lock(self, pool: str) -> str:
        token = uuid.uuid4().hex
        # Polling is the point: this is how a SET NX lock is acquired across processes.
        while not await self.r.set(self._k(pool, "lock"), token, nx=True, px=2_000):  # noqa: ASYNC110
            await asyncio.sleep(0.001)
        return token

    async def _unlock(self, pool: str, token: str) -> None:
        key = self._k(pool, "lock")
        if await self.r.get(key) == token:
            await self.r.delete(key)

    async def reserve(self, pool: str, loan: str, amount: int) -> bool:
        token = await self._lock(pool)
        try:
            chain, reserved, pending = await self.r.hmget(
                self._k(pool, "state"), ["chain", "reserved", "pending"]
            )
            if int(chain or 0) - int(pending or 0) - int(reserved or 0) < amount:
                return False
            await self.r.hset(self._k(pool, "res"), loan, amount)
            await self.r.hincrby(self._k(pool, "state"), "reserved", amount)
            return True
        finally:
            await self._unlock(pool, token)

    async def commit(self, pool: str, loan: str) -> None:
        token = await self._lock(pool)
        try:
            amount = int(await self.r.hget(self._k(pool, "res"), loan) or 0)
            await self.r.hdel(self._k(pool, "res"), loan)
            await self.r.hincrby(self._k(pool, "state"), "reserved", -amount)
            await self.r.hincrby(self._k(pool, "state"), "pending", amount)
        finally:
            await self._unlock(pool, token)


async def naive_pairs(naive: NaiveLedger, name: str, pools: list[str]) -> Run:
    for p in pools:
        await naive.setup(p, BIG)

    async def pair(rng: random.Random) -> float:
        pool = pools[0] if len(pools) == 1 else rng.choice(pools)
        loan = loan_id()
        t0 = time.perf_counter()
        ok = await naive.reserve(pool, loan, rng.randint(1, 10_000))
        first = _ms(t0)
        assert ok
        await naive.commit(pool, loan)
        return first

    return await timed_loop(Run(name), pair)


# --- reserve latency with 10 vs 100,000 active reservations ---------------------------------


async def populate(ledger: Ledger, pool: str, n: int) -> None:
    await establish(ledger, pool, BIG)
    sem = asyncio.Semaphore(CLIENTS)

    async def one(i: int) -> None:
        async with sem:
            await ledger.reserve(
                pool, f"fill-{i}", f"b{i % 1000}", 1 + i % 1000, ttl_ms=TTL_MS, borrower_limit=BIG
            )

    await asyncio.gather(*(one(i) for i in range(n)))
    assert (await ledger.status(pool)).active_reservations == n


async def size_latency(ledger: Ledger, small: str, large: str, samples: int) -> tuple[float, float]:
    """Sequential reserve (then release, keeping the size constant) on each pool, alternating so
    background load on the shared machine hits both the same way."""
    lat: dict[str, list[float]] = {small: [], large: []}
    for i in range(samples):
        for pool in (small, large) if i % 2 else (large, small):
            loan = f"probe-{i}"
            t0 = time.perf_counter()
            r = await ledger.reserve(pool, loan, "probe", 5, ttl_ms=TTL_MS, borrower_limit=BIG)
            lat[pool].append(_ms(t0))
            assert isinstance(r, Reserved)
            await ledger.release(pool, loan, reason="probe")
    return statistics.median(lat[small]), statistics.median(lat[large])


# --- main ---------------------------------------------------------------------------------


async def ledger_pairs_on(ledger: Ledger, name: str, pool: str) -> Run:
    """reserve+commit pairs on an existing pool that keeps its open reservations."""

    async def pair(rng: random.Random) -> float:
        loan = loan_id()
        t0 = time.perf_counter()
        r = await ledger.reserve(
            pool, loan, "pairs", rng.randint(1, 10_000), ttl_ms=TTL_MS, borrower_limit=BIG
        )
        first = _ms(t0)
        assert isinstance(r, Reserved), r
        await ledger.commit(pool, loan, ledger=2)
        return first

    return await timed_loop(Run(name), pair)


async def main() -> dict[str, float | int]:
    prefix = f"bench-{uuid.uuid4().hex[:10]}"
    client = aioredis.from_url(REDIS_URL, decode_responses=True, max_connections=200)
    ledger = Ledger(client, prefix=prefix)
    naive = NaiveLedger(client, prefix)
    spread = [f"spread-{i}" for i in range(POOLS)]
    try:
        runs = [
            *(await reserve_vs_floor(client, ledger, "hot-r")),
            await ledger_pairs(ledger, "ledger reserve+commit, hot pool", ["hot"]),
            await ledger_pairs(ledger, f"ledger reserve+commit, {POOLS} pools", spread),
            await naive_pairs(naive, "naive lock reserve+commit, hot pool", ["hot"]),
            await naive_pairs(naive, f"naive lock reserve+commit, {POOLS} pools", spread),
            await ledger_dry_pool(ledger, "dry", 2_000_000),
        ]
        print("populating 100,000 active reservations ...", file=sys.stderr)
        await populate(ledger, "size-10", 10)
        await populate(ledger, "size-100k", 100_000)
        p50_10, p50_100k = await size_latency(ledger, "size-10", "size-100k", 1_500)
        at_size = [
            await ledger_pairs_on(ledger, "ledger reserve+commit, 10 open", "size-10"),
            await ledger_pairs_on(ledger, "ledger reserve+commit, 100,000 open", "size-100k"),
        ]
        print("PostgreSQL peers ...", file=sys.stderr)
        from bench.ledger_pg import pg_runs

        pg = await pg_runs()
    finally:
        async for key in client.scan_iter(match=f"{prefix}*", count=1000):
            await client.delete(key)
        await client.aclose()

    floor_run, reserves, hot, spread_run, naive_hot, naive_spread, dry = runs
    print(
        f"\nReservation ledger benchmark ({CLIENTS} concurrent clients, {DURATION_S:.0f} s each,"
        f" redis {REDIS_URL})\n"
    )
    header = f"{'run':44} {'units/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'unit p50':>9} {'over':>6}"
    print(header)
    print("-" * len(header))
    for r in [*runs, *at_size, *pg]:
        if r.latencies_ms:
            lat = f"{r.pct(0.5):8.2f} {r.pct(0.99):8.2f} {r.pct(0.5, r.unit_ms):9.2f}"
        else:
            lat = f"{'-':>8} {'-':>8} {'-':>9}"
        print(f"{r.name:44} {r.rate:10.0f} {lat} {r.overcommit:6d} {r.extra}")
    print(
        "\n(p50/p99: latency of the reserve (or the floor call); unit: the whole pair;"
        " over: stroops granted beyond availability)"
    )
    print(f"reserve p50 with 10 active: {p50_10:.3f} ms; with 100,000 active: {p50_100k:.3f} ms")
    ratio_floor = reserves.rate / floor_run.rate
    print(
        f"ledger reserve rate / floor rate: {ratio_floor:.2f} (target >= 0.7); "
        f"ledger pairs / naive pairs (hot pool): {hot.rate / naive_hot.rate:.1f}x (target >= 10)"
    )
    pg_fig: dict[str, float] = {}
    for r, (kind, n) in zip(
        pg, [(k, n) for k in ("row", "lock") for n in (10, 100_000)], strict=True
    ):
        pg_fig[f"pg_{kind}_pairs_per_s_{n}"] = round(r.rate, 1)
        pg_fig[f"pg_{kind}_p50_ms_{n}"] = round(r.pct(0.5), 3)
    ledger10, ledger100k = at_size
    for kind in ("row", "lock"):
        for n, mine in ((10, ledger10), (100_000, ledger100k)):
            peer = pg_fig[f"pg_{kind}_pairs_per_s_{n}"]
            pg_fig[f"ledger_vs_pg_{kind}_{n}"] = round(mine.rate / peer, 2) if peer else 0.0
    print(
        "ledger pairs/s vs PostgreSQL peers: "
        + ", ".join(
            f"{k.removeprefix('ledger_vs_pg_')}: {v}x"
            for k, v in pg_fig.items()
            if k.startswith("ledger_vs_pg_")
        )
    )
    return {
        **pg_fig,
        "ledger_pairs_per_s_10_open": round(ledger10.rate, 1),
        "ledger_pairs_per_s_100k_open": round(ledger100k.rate, 1),
        "ledger_pairs_per_s": round(hot.rate, 1),
        "naive_pairs_per_s": round(naive_hot.rate, 1),
        "floor_ops_per_s": round(floor_run.rate, 1),
        "p50_ms": round(hot.pct(0.5), 3),
        "p99_ms": round(hot.pct(0.99), 3),
        "overcommits": hot.overcommit + spread_run.overcommit + dry.overcommit,
        "p50_ratio_100k_vs_10": round(p50_100k / p50_10, 3),
        "ledger_reserves_per_s": round(reserves.rate, 1),
        "reserve_vs_floor": round(ratio_floor, 3),
        "ledger_pairs_per_s_100_pools": round(spread_run.rate, 1),
        "naive_pairs_per_s_100_pools": round(naive_spread.rate, 1),
        "p50_ms_10_active": round(p50_10, 3),
        "p50_ms_100k_active": round(p50_100k, 3),
    }


if __name__ == "__main__":
    figures = asyncio.run(main())
    print(json.dumps(figures))

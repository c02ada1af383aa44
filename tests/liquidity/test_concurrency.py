"""Real concurrency against real Redis: many clients at once, invariants checked atomically
while they run."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from liquidity import Insufficient, Ledger, Reserved, ReserveResult
from tests.liquidity.conftest import BIG, establish
from tests.liquidity.invariants import Snapshot, check


@dataclass
class Chain:
    """The settlement side of the mixed test: ledgers close, settlements land in the open one.
    Single-threaded asyncio makes "pick the ledger and record the settlement" one step."""

    start: int
    ledger: int = 1
    commits: dict[str, tuple[int, int]] = field(default_factory=dict)  # loan -> (ledger, amount)

    def available(self, upto: int) -> int:
        return self.start - sum(a for lg, a in self.commits.values() if lg <= upto)

    def settle(self, loan: str, amount: int) -> int:
        self.commits[loan] = (self.ledger + 1, amount)
        return self.ledger + 1


async def _checker(
    redis: aioredis.Redis,
    ledger: Ledger,
    pool: str,
    done: asyncio.Event,
    *,
    counted_twice: Callable[[Snapshot], int] = lambda s: 0,
    progress: tuple[list[int], asyncio.Condition] | None = None,
) -> int:
    """Checks the invariants over and over until the workers finish; returns how many times
    (also published through `progress`, so workers can pace themselves on it).

    A grant needs headroom >= its amount, so grants alone never make headroom negative. A chain
    snapshot can, conservatively: one whose ledger already holds a settlement whose commit has
    not reached the ledger yet counts that loan twice (in the chain figure and as reserved) until
    the commit lands. `counted_twice` gives the amount so counted; headroom plus it never goes
    below zero unless a grant over-granted."""
    checks = 0
    while not done.is_set():
        s = await check(redis, ledger, pool)
        assert s.headroom + counted_twice(s) >= 0, f"a grant made available negative: {s}"
        checks += 1
        if progress is not None:
            count, changed = progress
            async with changed:
                count[0] = checks
                changed.notify_all()
    return checks


async def test_200_concurrent_reservers_never_over_grant(
    wide_ledger: Ledger, pool: str, redis_client: aioredis.Redis
) -> None:
    ledger = wide_ledger
    available = 60_000
    await establish(ledger, pool, available)
    rng = random.Random(7)
    amounts = [rng.randint(1, 1_000) for _ in range(200)]  # ~100k asked for 60k
    done = asyncio.Event()
    checked = [0]
    changed = asyncio.Condition()
    checker = asyncio.create_task(
        _checker(
            redis_client,
            ledger,
            pool,
            done,
            progress=(checked, changed),
        )
    )
    delays = [rng.random() * 0.3 for _ in amounts]  # spread, so checks interleave with grants

    async def reserver(i: int, amount: int) -> ReserveResult:
        await asyncio.sleep(delays[i])
        # Paced on the checker, whatever the machine's load: the i-th grant waits for i // 10
        # checks, so at least 19 run while grants are still being made.
        async with changed:
            await changed.wait_for(lambda: checked[0] >= i // 10)
        return await ledger.reserve(
            pool, f"L{i}", f"b{i % 17}", amount, ttl_ms=60_000, borrower_limit=BIG
        )

    reservers = asyncio.ensure_future(
        asyncio.gather(*(reserver(i, a) for i, a in enumerate(amounts)))
    )
    waited: set[asyncio.Future[Any]] = {reservers, checker}
    await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
    if checker.done():  # a broken invariant ends the check early: report it, not a hang
        reservers.cancel()
        checker.result()
    results = await reservers
    done.set()
    checks = await checker
    print(f"invariants checked {checks} times during the run")
    assert checks >= 20

    granted = [r.amount for r in results if isinstance(r, Reserved)]
    refused = [(r.required, r.available) for r in results if isinstance(r, Insufficient)]
    assert len(granted) + len(refused) == 200
    assert refused, "the test must actually run out of liquidity"
    assert sum(granted) <= available
    status = await ledger.status(pool)
    assert status.reserved == sum(granted)
    assert status.active_reservations == len(granted)
    assert status.available == available - sum(granted) >= 0
    # Nothing was refused while it would have fitted, and no capacity leaked: available only fell
    # during the run, so every refused amount exceeds what is left.
    for required, seen in refused:
        assert seen < required
        assert status.available < required
    s = await check(redis_client, ledger, pool)
    assert sum(s.active.values()) == sum(granted)


async def test_mixed_concurrent_lifecycles_keep_the_books_exact(
    wide_ledger: Ledger, pool: str, redis_client: aioredis.Redis
) -> None:
    ledger = wide_ledger
    """200 loans reserve, then commit (settled on a simulated chain), release, or expire, while
    snapshots of that chain arrive; at the end every stroop is accounted for exactly once."""
    start = 150_000
    await establish(ledger, pool, start, ledger_seq=1)
    chain = Chain(start)
    rng = random.Random(11)
    done = asyncio.Event()

    async def apply(n: int) -> None:
        await ledger.apply_snapshot(
            pool,
            ledger=n,
            total=start,
            locked=start - chain.available(n),
            available=chain.available(n),
        )

    async def snapshotter() -> None:
        while not done.is_set():
            chain.ledger += 1
            await apply(chain.ledger)
            await asyncio.sleep(0.005)

    async def loan(i: int) -> None:
        amount = rng.randint(1, 2_000)
        fate = rng.choice(["commit", "release", "expire"])
        ttl = 30 if fate == "expire" else 60_000
        r = await ledger.reserve(pool, f"L{i}", f"b{i % 9}", amount, ttl_ms=ttl, borrower_limit=BIG)
        if not isinstance(r, Reserved):
            return
        await asyncio.sleep(rng.random() * 0.02)
        if fate == "commit":
            settled_at = chain.settle(f"L{i}", amount)
            result = await ledger.commit(pool, f"L{i}", ledger=settled_at)
            assert result.outcome == "committed"
        elif fate == "release":
            assert (await ledger.release(pool, f"L{i}", reason="failed")).outcome == "released"

    snap = asyncio.create_task(snapshotter())
    checker = asyncio.create_task(
        _checker(
            redis_client,
            ledger,
            pool,
            done,
            counted_twice=lambda s: sum(a for loan, a in s.active.items() if loan in chain.commits),
        )
    )
    await asyncio.gather(*(loan(i) for i in range(200)))
    await asyncio.sleep(0.05)
    await ledger.sweep(pool)
    done.set()
    await snap
    assert await checker > 0

    await apply(chain.ledger + 1)
    status = await ledger.status(pool)
    assert chain.commits, "some loans must have settled"
    assert (status.reserved, status.pending_commits, status.active_reservations) == (0, 0, 0)
    assert status.available == start - sum(a for _, a in chain.commits.values())
    await check(redis_client, ledger, pool)

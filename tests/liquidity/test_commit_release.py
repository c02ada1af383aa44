"""commit() and release(): terminal, exclusive, and idempotent; late commits alarm."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from liquidity import CommitResult, Ledger, ReleaseResult, Reserved
from tests.liquidity.conftest import BIG, establish
from tests.liquidity.invariants import check


async def reserve(ledger: Ledger, pool: str, loan: str, amount: int) -> None:
    result = await ledger.reserve(pool, loan, "alice", amount, ttl_ms=60_000, borrower_limit=BIG)
    assert isinstance(result, Reserved)


async def test_commit_moves_the_amount_to_pending_until_a_snapshot_covers_it(
    ledger: Ledger, pool: str, redis_client: aioredis.Redis
) -> None:
    await establish(ledger, pool, 1_000, ledger_seq=100)
    await reserve(ledger, pool, "L1", 300)
    result = await ledger.commit(pool, "L1", ledger=105)
    assert result == CommitResult(outcome="committed", amount=300)
    status = await ledger.status(pool)
    assert (status.reserved, status.pending_commits, status.available) == (0, 300, 700)
    assert await ledger.reservation(pool, "L1") is None
    audit = (await ledger.audit(pool, count=1))[0]
    assert (audit.action, audit.amount, audit.ledger, audit.alarm) == ("commit", 300, 105, False)
    await check(redis_client, ledger, pool)


async def test_commit_repeats_are_idempotent(ledger: Ledger, pool: str) -> None:
    await establish(ledger, pool, 1_000)
    await reserve(ledger, pool, "L1", 300)
    await ledger.commit(pool, "L1", ledger=105)
    again = await ledger.commit(pool, "L1", ledger=106)
    assert again == CommitResult(outcome="already_committed", amount=300)
    assert (await ledger.status(pool)).pending_commits == 300
    assert await ledger.release(pool, "L1", reason="x") == ReleaseResult(
        outcome="already_committed", amount=300
    )


async def test_commit_of_unknown_loan_changes_nothing(ledger: Ledger, pool: str) -> None:
    await establish(ledger, pool, 1_000)
    before = await ledger.status(pool)
    assert await ledger.commit(pool, "nope", ledger=105) == CommitResult(
        outcome="unknown_loan", amount=0
    )
    assert await ledger.release(pool, "nope", reason="x") == ReleaseResult(
        outcome="unknown_loan", amount=0
    )
    assert await ledger.status(pool) == before
    assert [a.action for a in await ledger.audit(pool)] == ["snapshot"]


async def test_release_gives_the_funds_back_once(ledger: Ledger, pool: str) -> None:
    await establish(ledger, pool, 1_000)
    await reserve(ledger, pool, "L1", 400)
    first = await ledger.release(pool, "L1", reason="settlement_failed")
    again = await ledger.release(pool, "L1", reason="settlement_failed")
    assert first == ReleaseResult(outcome="released", amount=400)
    assert again == ReleaseResult(outcome="already_released", amount=400)
    status = await ledger.status(pool)
    assert (status.reserved, status.available, status.active_reservations) == (0, 1_000, 0)
    releases = [a for a in await ledger.audit(pool) if a.action == "release"]
    assert [(a.reason, a.reserved_before, a.reserved_after) for a in releases] == [
        ("settlement_failed", 400, 0)
    ]


async def test_commit_after_release_is_a_late_commit_that_alarms_and_counts(
    ledger: Ledger, pool: str, redis_client: aioredis.Redis
) -> None:
    await establish(ledger, pool, 1_000, ledger_seq=100)
    await reserve(ledger, pool, "L1", 400)
    await ledger.release(pool, "L1", reason="expired")
    late = await ledger.commit(pool, "L1", ledger=104)
    assert late == CommitResult(outcome="late_commit", amount=400)
    status = await ledger.status(pool)
    assert (status.pending_commits, status.available) == (400, 600)  # the chain consumed it
    entry = (await ledger.audit(pool, count=1))[0]
    assert (entry.action, entry.alarm, entry.amount) == ("late_commit", True, 400)
    assert entry.ledger == 104
    again = await ledger.commit(pool, "L1", ledger=104)
    assert again == CommitResult(outcome="already_committed", amount=400)
    assert (await ledger.status(pool)).pending_commits == 400
    await check(redis_client, ledger, pool)


async def test_concurrent_repeats_of_every_operation_take_effect_once(
    ledger: Ledger, pool: str, redis_client: aioredis.Redis
) -> None:
    await establish(ledger, pool, 10_000)
    reserves = await asyncio.gather(
        *(
            ledger.reserve(pool, "L1", "alice", 100 + i, ttl_ms=60_000, borrower_limit=BIG)
            for i in range(30)
        )
    )
    assert all(isinstance(r, Reserved) for r in reserves)
    granted = [r for r in reserves if isinstance(r, Reserved) and not r.replayed]
    assert len(granted) == 1
    assert {r.fence for r in reserves if isinstance(r, Reserved)} == {granted[0].fence}
    assert (await ledger.status(pool)).reserved == granted[0].amount

    commits = await asyncio.gather(*(ledger.commit(pool, "L1", ledger=200) for _ in range(30)))
    assert sorted(c.outcome for c in commits) == ["already_committed"] * 29 + ["committed"]
    assert (await ledger.status(pool)).pending_commits == granted[0].amount

    await reserve(ledger, pool, "L2", 50)
    releases = await asyncio.gather(*(ledger.release(pool, "L2", reason="x") for _ in range(30)))
    assert sorted(r.outcome for r in releases) == ["already_released"] * 29 + ["released"]

    for _ in range(3):
        await ledger.freeze(pool, reason="f")
    await asyncio.gather(*(ledger.unfreeze(pool, reason="u") for _ in range(10)))
    actions = [a.action for a in await ledger.audit(pool, count=1000)]
    assert actions.count("reserve") == 2 and actions.count("commit") == 1
    assert actions.count("release") == 1
    assert actions.count("freeze") == 1 and actions.count("unfreeze") == 1
    await check(redis_client, ledger, pool)


async def test_racing_commit_and_release_end_committed_and_counted_once(
    ledger: Ledger, pool: str, redis_client: aioredis.Redis
) -> None:
    """Whichever lands first, the chain's settlement wins and the amount is counted exactly once."""
    await establish(ledger, pool, 100_000, ledger_seq=100)
    n = 40
    for i in range(n):
        await reserve(ledger, pool, f"L{i}", 1_000)
    results = await asyncio.gather(
        *(
            op
            for i in range(n)
            for op in (
                ledger.commit(pool, f"L{i}", ledger=101),
                ledger.release(pool, f"L{i}", reason="timeout"),
            )
        )
    )
    for i in range(n):
        commit, release = results[2 * i], results[2 * i + 1]
        assert isinstance(commit, CommitResult) and isinstance(release, ReleaseResult)
        assert (commit.outcome, release.outcome) in {
            ("committed", "already_committed"),
            ("late_commit", "released"),
        }
    status = await ledger.status(pool)
    assert (status.reserved, status.pending_commits) == (0, n * 1_000)
    assert status.available == 100_000 - n * 1_000
    await check(redis_client, ledger, pool)

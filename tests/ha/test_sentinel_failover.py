"""A Redis primary dies under load and the sentinels promote its replica.

REDIS_MIN_REPLICAS=1: a reservation is offered only after a replica acknowledged it (WAIT), so
every loan that got an XDR still holds its reservation on the promoted replica, nothing is
over-committed (every offered transaction lands on chain), and the loans complete once a replica
is back (the killed primary, restarted, rejoins as a replica of the new one).

REDIS_MIN_REPLICAS=0: acknowledged writes can be lost. The test makes the loss certain (the
replica's link to the primary is cut and the replica paused while loans are opened, then the
primary is killed): the promoted replica lacks those reservations. The ledger notices the
primary's replication id changed, the pool fails closed (503 pool_unknown), the reconciler
re-asserts every open loan's reservation, and still nothing is over-committed."""

from __future__ import annotations

import asyncio
import os
import signal

from core.models import LoanOffer, LoanRefusal, LoanState, Submitted
from core.money import UNIT
from devnet.kit import wait_for_tx
from tests.ha.conftest import wait_until
from tests.saga.helpers import open_test_loan, signed, terms_for, wait_state
from tools.redis_servers import restart
from workflows.loan_client import signal_submitted
from workflows.reconcile_client import reconcile_now

FUNDED = 5 * UNIT


async def _open(stack, pool, borrower, vendor, funded=FUNDED):
    return await open_test_loan(
        stack.client,
        stack.task_queue,
        pool_id=pool.pool_id,
        creditline_id=pool.creditline_id,
        terms=terms_for(borrower.public_key, vendor.public_key, funded),
        ttl_seconds=300,
    )


async def _settle_all(stack, offers):
    """Every offered loan signs and submits; every transaction must land (no over-commit:
    the chain would refuse one with InsufficientLiquidity) and every loan ends funded."""
    passphrase = stack.settings.network_passphrase
    sent = await asyncio.gather(
        *(stack.chain.submit(signed(o, b.secret, passphrase)) for _, o, b in offers)
    )
    assert all(s.status == "pending" for s in sent), sent
    for (loan_id, _, _), s in zip(offers, sent, strict=True):
        await signal_submitted(stack.client, loan_id, Submitted(tx_hash=s.tx_hash))
    landed = await asyncio.gather(*(wait_for_tx(stack.chain, s.tx_hash, 30) for s in sent))
    assert [t.status for t in landed] == ["success"] * len(sent), landed
    for loan_id, _, _ in offers:
        await wait_state(stack.client, loan_id, LoanState.FUNDED, within=60)


async def test_replica_acked_reservations_survive_a_primary_kill(
    sentinel_group, sentinel_stack, deploy_pool, new_borrower
):
    group = sentinel_group()
    old_port = group.primary.port
    loans, fundable = 24, 12
    async with sentinel_stack(group, redis_min_replicas=1, redis_replica_timeout_ms=500) as stack:
        pool = await deploy_pool(liquidity=fundable * FUNDED)
        await stack.add_pool(pool)
        vendor = await new_borrower()
        borrowers = await asyncio.gather(*(new_borrower(pool) for _ in range(loans)))

        offers: list = []

        async def one(b, delay):
            await asyncio.sleep(delay)
            loan_id, result = await _open(stack, pool, b, vendor)
            if isinstance(result, LoanOffer):
                offers.append((loan_id, result, b))
            return loan_id, result

        tasks = [asyncio.create_task(one(b, i * 0.05)) for i, b in enumerate(borrowers)]
        await wait_until(lambda: len(offers) >= 3, 30, "the first offers")
        group.primary.kill()  # SIGKILL by PID, mid-load
        new_port = await asyncio.to_thread(group.wait_master_not, old_port, 30)
        assert new_port == group.replicas[0].port
        results = await asyncio.gather(*tasks)
        # The offered loans' reservations, as the promoted replica holds them.
        for loan_id, _, _ in offers:
            held = await stack.ledger.reservation(pool.pool_id, loan_id)
            assert held is not None and held.amount == FUNDED, (loan_id, held)
        refusals = [r for _, r in results if isinstance(r, LoanRefusal)]
        assert {r.code for r in refusals} <= {"insufficient_liquidity", "pool_unknown"}, refusals
        # With no replica left to acknowledge, grants were given back instead of offered (the
        # ones still waiting for their ack meanwhile made others short: fail closed).
        assert any(r.details.get("reason") == "not_replicated" for r in refusals), refusals
        status = await stack.ledger.status(pool.pool_id)
        assert status.reserved == len(offers) * FUNDED <= fundable * FUNDED
        assert status.overcommit == 0

        # The killed primary comes back empty and the sentinels make it a replica of the new
        # primary: ledger writes are acknowledged again and the loans complete.
        group.primary = restart(group.primary)
        await wait_until(
            lambda: "connected_slaves:1" in group.replicas[0].command("INFO", "replication"),
            30,
            "the old primary to rejoin as a replica",
        )
        await _settle_all(stack, offers)
        stats = await stack.chain.pool_stats(pool.pool_id)
        assert stats.locked_liquidity == len(offers) * FUNDED


async def test_unacked_loss_is_detected_pools_fail_closed_then_restored(
    sentinel_group, sentinel_stack, deploy_pool, new_borrower
):
    # down-after 3 s: the replica, paused for ~1 s below, is not judged down meanwhile.
    group = sentinel_group(down_after_ms=3000)
    old_port = group.primary.port
    replica = group.replicas[0]
    async with sentinel_stack(group, redis_min_replicas=0) as stack:
        pool = await deploy_pool(liquidity=10 * FUNDED)
        await stack.add_pool(pool)
        vendor = await new_borrower()
        borrowers = await asyncio.gather(*(new_borrower(pool) for _ in range(10)))

        before = []  # opened while the replica follows: replicated
        for b in borrowers[:2]:
            loan_id, offer = await _open(stack, pool, b, vendor)
            assert isinstance(offer, LoanOffer)
            before.append((loan_id, offer, b))
        await wait_until(
            lambda: _offset(group.primary) == _slave_offset(group.primary), 10, "replica in sync"
        )

        # Cut the replica off (it drops its link and is paused before it can reconnect), open
        # loans on the primary alone (acknowledged to their callers), then kill the primary.
        for _ in range(5):
            replica.command("CLIENT", "KILL", "TYPE", "master")
            os.kill(replica.pid, signal.SIGSTOP)
            if "connected_slaves:0" in group.primary.command("INFO", "replication"):
                break
            os.kill(replica.pid, signal.SIGCONT)
            await asyncio.sleep(0.2)
        else:
            raise AssertionError("could not cut the replica off")
        try:
            lost = []
            for b in borrowers[2:5]:
                loan_id, offer = await _open(stack, pool, b, vendor)
                assert isinstance(offer, LoanOffer)
                lost.append((loan_id, offer, b))
            group.primary.kill()
        finally:
            os.kill(replica.pid, signal.SIGCONT)
        await asyncio.to_thread(group.wait_master_not, old_port, 40)

        # The promoted replica never saw the last three reservations...
        for loan_id, _, _ in lost:
            assert await stack.ledger.reservation(pool.pool_id, loan_id) is None
        # ...and the ledger does not grant from that state: the pool fails closed.
        _, refused = await _open(stack, pool, borrowers[5], vendor)
        assert isinstance(refused, LoanRefusal) and refused.code == "pool_unknown", refused
        assert refused.details.get("reason") == "failover"
        assert not (await stack.ledger.status(pool.pool_id)).known

        # The reconciler re-asserts every open loan's reservation and re-establishes the pool.
        run = await reconcile_now(stack.client, stack.settings, pool_ids=[pool.pool_id])
        assert not run.failures, run.failures
        (report,) = run.reports
        assert report.established
        assert set(report.restored) == {loan_id for loan_id, _, _ in lost}
        status = await stack.ledger.status(pool.pool_id)
        assert status.known and status.reserved == 5 * FUNDED and status.overcommit == 0

        # The rest of the pool is granted, exactly: 5 more loans, the sixth refused.
        after = []
        for b in borrowers[5:10]:
            loan_id, offer = await _open(stack, pool, b, vendor)
            assert isinstance(offer, LoanOffer), offer
            after.append((loan_id, offer, b))
        extra = await new_borrower(pool)
        _, short = await _open(stack, pool, extra, vendor)
        assert isinstance(short, LoanRefusal) and short.code == "insufficient_liquidity"
        await _settle_all(stack, before + lost + after)
        stats = await stack.chain.pool_stats(pool.pool_id)
        assert stats.locked_liquidity == 10 * FUNDED


def _offset(server) -> int:
    for line in server.command("INFO", "replication").splitlines():
        if line.startswith("master_repl_offset:"):
            return int(line.split(":")[1])
    return -1


def _slave_offset(server) -> int:
    for line in server.command("INFO", "replication").splitlines():
        if line.startswith("slave0:"):
            fields = dict(p.split("=") for p in line.split(":", 1)[1].split(","))
            return int(fields["offset"])
    return -2

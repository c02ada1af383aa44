"""The seed's race, fixed: concurrent loans against a pool that can fund exactly half of them.

Without the reservation, every request passes the liquidity check and half the signed
transactions fail on chain with InsufficientLiquidity. With it, exactly the fundable half gets an
XDR, the rest get a typed refusal before anyone signs, and every signed transaction lands."""

from __future__ import annotations

import asyncio

from core.models import LoanOffer, LoanRefusal, LoanState
from core.money import UNIT
from devnet.kit import wait_for_tx
from tests.saga.helpers import open_test_loan, signed, terms_for, wait_state, watcher_snapshot

LOANS = 20
FUNDABLE = 10
FUNDED = 7 * UNIT


async def test_twenty_concurrent_loans_for_ten_loans_of_liquidity(
    any_saga_stack, deploy_pool, new_borrower
):
    stack = any_saga_stack
    pool = await deploy_pool(liquidity=FUNDABLE * FUNDED)
    await stack.add_pool(pool)
    borrowers = await asyncio.gather(*(new_borrower(pool) for _ in range(LOANS)))
    vendor = await new_borrower()

    results = await asyncio.gather(
        *(
            open_test_loan(
                stack.client,
                stack.task_queue,
                pool_id=pool.pool_id,
                creditline_id=pool.creditline_id,
                terms=terms_for(b.public_key, vendor.public_key, FUNDED),
            )
            for b in borrowers
        )
    )
    offers = [
        (lid, r, b)
        for (lid, r), b in zip(results, borrowers, strict=True)
        if isinstance(r, LoanOffer)
    ]
    refusals = [r for _, r in results if isinstance(r, LoanRefusal)]
    assert len(offers) == FUNDABLE and len(refusals) == LOANS - FUNDABLE
    assert {r.code for r in refusals} == {"insufficient_liquidity"}
    assert all(r.details["available"] < FUNDED for r in refusals)
    status = await stack.ledger.status(pool.pool_id)
    assert status.reserved == FUNDABLE * FUNDED and status.available == 0

    passphrase = stack.settings.network_passphrase
    sent = await asyncio.gather(
        *(stack.chain.submit(signed(offer, b.secret, passphrase)) for _, offer, b in offers)
    )
    assert all(s.status == "pending" for s in sent), sent
    landed = await asyncio.gather(*(wait_for_tx(stack.chain, s.tx_hash, 20) for s in sent))
    assert [t.status for t in landed] == ["success"] * FUNDABLE, landed
    assert not any(t.reason == "insufficient_liquidity" for t in landed)

    for loan_id, _, _ in offers:
        await wait_state(stack.client, loan_id, LoanState.FUNDED)
    stats = await stack.chain.pool_stats(pool.pool_id)
    assert stats.available_liquidity == 0 and stats.locked_liquidity == FUNDABLE * FUNDED
    status = await watcher_snapshot(stack.ledger, pool.pool_id, max(t.ledger or 0 for t in landed))
    assert (status.reserved, status.pending_commits, status.available) == (0, 0, 0)
    assert status.overcommit == 0

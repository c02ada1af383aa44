"""A loan from offer to funded on a real chain: the borrower signs the XDR the saga handed out,
submits it to the devnet, the watcher sees it land, and the reservation becomes a commit."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from core.models import LoanOffer, LoanState, Submitted
from core.money import UNIT
from devnet.kit import wait_for_tx
from tests.saga.helpers import open_test_loan, signed, terms_for, wait_state, watcher_snapshot
from workflows.loan_client import loan_handle, signal_submitted
from workflows.search_attributes import AMOUNT_STROOPS, BORROWER, EXPIRES_AT, LOAN_STATE, POOL_ID


async def test_loan_is_funded_and_ledger_matches_chain(any_saga_stack, deploy_pool, new_borrower):
    stack = any_saga_stack
    pool = await deploy_pool(liquidity=100 * UNIT)
    await stack.add_pool(pool)
    borrower = await new_borrower(pool)
    vendor = await new_borrower()
    funded = 40 * UNIT

    loan_id, offer = await open_test_loan(
        stack.client,
        stack.task_queue,
        pool_id=pool.pool_id,
        creditline_id=pool.creditline_id,
        terms=terms_for(borrower.public_key, vendor.public_key, funded),
    )
    assert isinstance(offer, LoanOffer), offer
    assert offer.reserved_amount == funded
    assert offer.state == LoanState.RESERVED
    reservation = await stack.ledger.reservation(pool.pool_id, loan_id)
    assert reservation is not None and reservation.amount == funded
    assert reservation.expires_at_ms // 1000 == offer.funding.expires_at
    # What operators filter loans by in the Temporal UI, as the update returns.
    indexed = (await loan_handle(stack.client, loan_id).describe()).typed_search_attributes
    assert indexed.get(LOAN_STATE) == LoanState.RESERVED.value
    assert indexed.get(POOL_ID) == pool.pool_id
    assert indexed.get(BORROWER) == borrower.public_key
    assert indexed.get(AMOUNT_STROOPS) == funded
    assert indexed.get(EXPIRES_AT) == datetime.fromtimestamp(offer.funding.expires_at, tz=UTC)
    status = await stack.ledger.status(pool.pool_id)
    assert status.available == 60 * UNIT

    submit = await stack.chain.submit(
        signed(offer, borrower.secret, stack.settings.network_passphrase)
    )
    assert submit.status == "pending", submit
    assert submit.tx_hash == offer.funding.tx_hash
    await signal_submitted(stack.client, loan_id, Submitted(tx_hash=submit.tx_hash))
    landed = await wait_for_tx(stack.chain, submit.tx_hash, timeout=15)
    assert landed.status == "success", landed

    view = await wait_state(stack.client, loan_id, LoanState.FUNDED)
    assert view.settled_ledger == landed.ledger
    assert await stack.ledger.reservation(pool.pool_id, loan_id) is None
    stats = await stack.chain.pool_stats(pool.pool_id)
    assert stats.locked_liquidity == funded
    assert stats.available_liquidity == 60 * UNIT
    # After the watcher's snapshot the ledger agrees with the chain: nothing reserved, nothing
    # pending, availability equal to the chain's.
    assert landed.ledger is not None
    status = await watcher_snapshot(stack.ledger, pool.pool_id, landed.ledger)
    assert (status.reserved, status.pending_commits) == (0, 0)
    assert status.available == stats.available_liquidity
    assert [e.state for e in view.history][-1] == LoanState.FUNDED
    for _ in range(50):  # the closing workflow task may trail the query by a moment
        indexed = (await loan_handle(stack.client, loan_id).describe()).typed_search_attributes
        if indexed.get(LOAN_STATE) == LoanState.FUNDED.value:
            break
        await asyncio.sleep(0.1)
    assert indexed.get(LOAN_STATE) == LoanState.FUNDED.value
    assert (indexed.get(POOL_ID), indexed.get(AMOUNT_STROOPS)) == (pool.pool_id, funded)

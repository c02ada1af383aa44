"""Changes of locked_liquidity that are not our loans, produced on the devnet for real: a loan
created on chain around the API (which over-commits our open reservation), repayments, and a
change whose events the RPC no longer keeps (unexplained drift: the pool freezes until an admin
unfreezes it; commits and releases still go through meanwhile)."""

from __future__ import annotations

import asyncio

from core.models import Cancel, LoanOffer, LoanRefusal, LoanState
from core.money import UNIT
from devnet.kit import create_loan_direct, repay_loan
from tests.reconcile.conftest import World
from tests.saga.helpers import terms_for
from workflows.loan_client import signal_cancel


async def test_external_loan_repayments_overcommit_and_unexplained_drift_freeze(
    world: World, new_borrower
):
    w = world
    rpc, phrase = w.settings.rpc_url, w.settings.network_passphrase
    vendor, ours, outsider = (
        await new_borrower(),
        await new_borrower(w.pool),
        await new_borrower(w.pool),
    )
    await w.reconcile()  # baseline

    loan_id, offer = await w.open(ours, vendor, 60 * UNIT)
    assert isinstance(offer, LoanOffer)

    # Around the API: 50 units funded straight on chain, although 60 of 100 are reserved.
    direct = await create_loan_direct(
        rpc,
        phrase,
        w.pool.creditline_id,
        terms_for(outsider.public_key, vendor.public_key, 50 * UNIT),
        outsider.secret,
    )
    assert direct.status == "success" and direct.chain_loan_id is not None, direct
    report = await w.reconcile()
    exp = report.explanation
    assert exp is not None
    assert (exp.locked_delta, exp.funded_external, exp.funded_ours) == (50 * UNIT, 50 * UNIT, 0)
    assert [(f.tx_hash, f.amount, f.loan_id) for f in exp.external] == [
        (direct.tx_hash, 50 * UNIT, None)
    ]
    assert report.counts["external_loans"] == 1
    assert (exp.unexplained_locked, exp.unexplained_total) == (0, 0)
    assert (report.reserved, report.overcommit) == (60 * UNIT, 10 * UNIT)
    assert not report.frozen  # explained: reported, not frozen
    _, refused = await w.open(await new_borrower(w.pool), vendor, 1 * UNIT)
    assert isinstance(refused, LoanRefusal) and refused.code == "insufficient_liquidity"

    # A repayment of 20 gives the pool back enough: the over-commit clears, loans are admitted.
    repaid = await repay_loan(
        rpc, phrase, w.pool.creditline_id, outsider.secret, direct.chain_loan_id, 20 * UNIT
    )
    assert repaid.status == "success", repaid
    report = await w.reconcile()
    exp = report.explanation
    assert exp is not None
    assert (exp.locked_delta, exp.repaid, exp.funded_external) == (-20 * UNIT, 20 * UNIT, 0)
    assert (exp.unexplained_locked, exp.unexplained_total) == (0, 0)
    assert (report.overcommit, report.frozen) == (0, False)
    small_id, small = await w.open(await new_borrower(w.pool), vendor, 1 * UNIT)
    assert isinstance(small, LoanOffer)

    # The RPC keeps events for a window of ledgers; a repayment older than the window cannot be
    # explained any more: unexplained drift above the threshold (0) freezes the pool.
    w.settings.reconcile_event_window_ledgers = 1
    repaid = await repay_loan(
        rpc, phrase, w.pool.creditline_id, outsider.secret, direct.chain_loan_id, 10 * UNIT
    )
    assert repaid.status == "success", repaid
    await asyncio.sleep(2)  # a few ledgers pass
    report = await w.reconcile()
    exp = report.explanation
    assert exp is not None and not exp.events_complete
    assert (exp.locked_delta, exp.repaid, exp.unexplained_locked) == (-10 * UNIT, 0, -10 * UNIT)
    assert report.froze and report.frozen
    assert report.frozen_reason and "unexplained drift" in report.frozen_reason
    _, refused = await w.open(await new_borrower(w.pool), vendor, 1 * UNIT)
    assert isinstance(refused, LoanRefusal) and refused.code == "pool_frozen"

    # Frozen, yet releases still go through (Fineract's bypass for repairs).
    await signal_cancel(w.stack.client, loan_id, Cancel(reason="changed my mind"))
    await signal_cancel(w.stack.client, small_id, Cancel(reason="changed my mind"))
    await w.wait_terminal(loan_id, LoanState.CANCELLED)
    await w.wait_terminal(small_id, LoanState.CANCELLED)

    # The next run has a fresh baseline: no new drift, and it does not unfreeze on its own.
    w.settings.reconcile_event_window_ledgers = 17_280
    report = await w.reconcile()
    assert report.explanation is not None and report.explanation.drift == 0
    assert report.frozen and not report.froze and report.reserved == 0
    await w.ledger.unfreeze(w.pool_id, reason="admin: drift understood")
    report = await w.reconcile()
    assert not report.frozen
    _, admitted = await w.open(await new_borrower(w.pool), vendor, 1 * UNIT)
    assert isinstance(admitted, LoanOffer)

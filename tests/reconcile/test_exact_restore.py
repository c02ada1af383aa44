"""Restore is exact, also for a loan opened in the second before the loss.

Redis loses the pool's keys AND the funding transaction index right after a loan got its XDR
(before Temporal visibility necessarily lists it). The reconciler finds the loan through the
open-loan journal (a durable Temporal workflow the reserve activity records every grant in before
the XDR leaves), restores its reservation, re-maps its funding hash, and when the funding lands
the next run counts it as the project's own, not as an external loan."""

from __future__ import annotations

from core.models import LoanOffer
from core.money import UNIT
from devnet.kit import wait_for_tx
from tests.reconcile.conftest import World
from tests.saga.helpers import signed
from workflows.loan_journal_client import TemporalLoanJournal


async def test_a_loan_opened_just_before_the_loss_is_restored_and_recognised(
    world: World, new_borrower
):
    w = world
    vendor = await new_borrower()
    early, late = await new_borrower(w.pool), await new_borrower(w.pool)
    await w.reconcile()  # the baseline report the explanation is measured from
    early_id, early_offer = await w.open(early, vendor, 10 * UNIT)
    late_id, late_offer = await w.open(late, vendor, 20 * UNIT)
    assert isinstance(early_offer, LoanOffer) and isinstance(late_offer, LoanOffer)

    # The loss, at once: the pool's keys and both funding hashes' index entries.
    prefix = w.settings.ledger_prefix
    lost = [k async for k in w.stack.redis.scan_iter(match=f"{prefix}:{{{w.pool_id}}}:*")]
    lost += [f"{prefix}:tx:{o.funding.tx_hash}" for o in (early_offer, late_offer)]
    await w.stack.redis.delete(*lost)
    assert await w.tx_index.lookup(late_offer.funding.tx_hash) is None

    # The journal already knows both (strongly consistent: the query follows the signals).
    journal = TemporalLoanJournal(
        w.stack.client, task_queue=w.settings.task_queue, shards=w.settings.loan_journal_shards
    )
    assert {e.loan_id for e in await journal.entries(w.pool_id)} >= {early_id, late_id}

    report = await w.reconcile()
    assert report.established
    assert sorted(report.restored) == sorted([early_id, late_id])
    status = await w.ledger.status(w.pool_id)
    assert (status.reserved, status.overcommit) == (30 * UNIT, 0)
    ref = await w.tx_index.lookup(late_offer.funding.tx_hash)
    assert ref is not None and ref.loan_id == late_id

    # The late loan's funding lands; the next run explains it as ours (and commits it).
    sent = await w.stack.chain.submit(
        signed(late_offer, late.secret, w.settings.network_passphrase)
    )
    landed = await wait_for_tx(w.stack.chain, sent.tx_hash, 15)
    assert landed.status == "success", landed
    # The baseline went with the pool's keys: one run sets it, the next explains the landing.
    again = await w.reconcile()
    assert again.committed == [late_id]
    assert again.explanation is not None
    assert [f.loan_id for f in again.explanation.ours] == [late_id]
    assert again.explanation.external == []
    status = await w.ledger.status(w.pool_id)
    assert (status.reserved, status.locked) == (10 * UNIT, 20 * UNIT)


async def test_the_funding_of_a_restored_loan_is_its_own_in_the_explanation(
    world: World, new_borrower
):
    """The tx index entry alone is lost (a cluster node's slot, say), the pool is not: the next
    run re-maps the open loan's hash, so its landing is explained as ours."""
    w = world
    vendor = await new_borrower()
    borrower = await new_borrower(w.pool)
    await w.reconcile()
    loan_id, offer = await w.open(borrower, vendor, 15 * UNIT)
    assert isinstance(offer, LoanOffer)
    await w.stack.redis.delete(f"{w.settings.ledger_prefix}:tx:{offer.funding.tx_hash}")
    await w.reconcile()  # re-maps the open loan's funding hash
    ref = await w.tx_index.lookup(offer.funding.tx_hash)
    assert ref is not None and ref.loan_id == loan_id
    sent = await w.stack.chain.submit(signed(offer, borrower.secret, w.settings.network_passphrase))
    assert (await wait_for_tx(w.stack.chain, sent.tx_hash, 15)).status == "success"
    report = await w.reconcile()
    assert report.explanation is not None
    assert [f.loan_id for f in report.explanation.ours] == [loan_id]
    assert report.explanation.external == []
    assert report.explanation.unexplained_locked == 0

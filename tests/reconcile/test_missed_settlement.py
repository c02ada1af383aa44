"""A settlement the watcher never saw (no watcher runs, the borrower submitted straight to the
chain so no `submitted` signal either): the next reconcile commits the reservation and tells the
loan, which reaches FUNDED; the locked change is explained by our own funding."""

from __future__ import annotations

from core.models import LoanOffer, LoanState
from core.money import UNIT
from devnet.kit import wait_for_tx
from tests.reconcile.conftest import World
from tests.saga.helpers import signed
from workflows.loan_client import loan_view


async def test_settlement_hidden_from_the_watcher_is_committed_and_the_loan_told(
    world: World, new_borrower
):
    w = world
    first = await w.reconcile()
    assert first.previous_ledger is None and first.explanation is None  # no baseline yet
    assert first.counts == dict.fromkeys(first.counts, 0)

    borrower, vendor = await new_borrower(w.pool), await new_borrower()
    loan_id, offer = await w.open(borrower, vendor, 30 * UNIT)
    assert isinstance(offer, LoanOffer)
    sent = await w.stack.chain.submit(signed(offer, borrower.secret, w.settings.network_passphrase))
    landed = await wait_for_tx(w.stack.chain, sent.tx_hash, 15)
    assert landed.status == "success", landed
    view = await loan_view(w.stack.client, loan_id)
    assert view is not None and view.state == LoanState.RESERVED  # nobody told the loan

    report = await w.reconcile()
    assert report.committed == [loan_id]
    assert report.counts["committed"] == 1
    assert report.counts["orphans_released"] == report.counts["swept"] == 0
    assert report.previous_ledger == first.chain.ledger
    exp = report.explanation
    assert exp is not None and exp.events_complete
    assert (exp.locked_delta, exp.funded_ours, exp.funded_external) == (30 * UNIT, 30 * UNIT, 0)
    assert [(f.loan_id, f.tx_hash, f.amount) for f in exp.ours] == [
        (loan_id, sent.tx_hash, 30 * UNIT)
    ]
    assert (exp.unexplained_locked, exp.unexplained_total) == (0, 0)
    assert (report.reserved, report.overcommit, report.frozen) == (0, 0, False)

    view = await w.wait_terminal(loan_id, LoanState.FUNDED)
    assert view.settled_ledger == landed.ledger
    status = await w.ledger.status(w.pool_id)
    assert (status.locked, status.reserved, status.available) == (30 * UNIT, 0, 70 * UNIT)

    # Idempotent: a second run finds nothing left to repair and no movement to explain.
    again = await w.reconcile()
    assert again.counts == dict.fromkeys(again.counts, 0)
    assert again.explanation is not None and again.explanation.locked_delta == 0
    commits = [e for e in await w.ledger.audit(w.pool_id) if e.action == "commit"]
    assert [e.loan_id for e in commits] == [loan_id]
    assert await w.reports.latest(w.pool_id) == again

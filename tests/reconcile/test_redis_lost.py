"""Redis loses the pool (every key of its hash tag deleted, as a restart without persistence or
a flush would) while loans are open: the pool is unknown and refuses loans until the reconciler
restores every open loan's reservation from its workflow and applies a fresh chain snapshot.
One of the open loans settled on chain meanwhile: restored, then committed in the same run."""

from __future__ import annotations

from core.models import Cancel, LoanOffer, LoanRefusal, LoanState
from core.money import UNIT
from devnet.kit import wait_for_tx
from tests.reconcile.conftest import World
from tests.saga.helpers import signed
from workflows.loan_client import signal_cancel


async def test_lost_pool_is_refused_then_rebuilt_from_the_open_loans(world: World, new_borrower):
    w = world
    vendor = await new_borrower()
    borrowers = [await new_borrower(w.pool) for _ in range(4)]
    await w.reconcile()
    open_ids: list[str] = []
    offers: list[LoanOffer] = []
    for b, funded in zip(borrowers[:3], (10, 20, 30), strict=True):
        loan_id, offer = await w.open(b, vendor, funded * UNIT)
        assert isinstance(offer, LoanOffer)
        open_ids.append(loan_id)
        offers.append(offer)
    held = {r.loan_id: r for r in await w.ledger.reservations(w.pool_id)}
    assert set(held) == set(open_ids)

    # The third borrower's transaction lands on chain; no watcher runs to tell anyone.
    sent = await w.stack.chain.submit(
        signed(offers[2], borrowers[2].secret, w.settings.network_passphrase)
    )
    landed = await wait_for_tx(w.stack.chain, sent.tx_hash, 15)
    assert landed.status == "success", landed

    pattern = f"{w.settings.ledger_prefix}:{{{w.pool_id}}}:*"  # every key of the pool's tag
    lost = [k async for k in w.stack.redis.scan_iter(match=pattern)]
    assert lost
    await w.stack.redis.delete(*lost)
    assert not (await w.ledger.status(w.pool_id)).known
    _, refused = await w.open(borrowers[3], vendor, 1 * UNIT)
    assert isinstance(refused, LoanRefusal) and refused.code == "pool_unknown"

    report = await w.reconcile()
    assert report.established and report.previous_ledger is None  # the last report went too
    assert sorted(report.restored) == sorted(open_ids)
    assert report.committed == [open_ids[2]]  # restored, then found settled on chain
    status = await w.ledger.status(w.pool_id)
    assert status.known and not status.frozen
    assert (status.locked, status.reserved, status.overcommit) == (30 * UNIT, 30 * UNIT, 0)
    assert status.available == 100 * UNIT - 30 * UNIT - 30 * UNIT
    restored = {r.loan_id: r for r in await w.ledger.reservations(w.pool_id)}
    assert set(restored) == set(open_ids[:2])
    for loan_id in open_ids[:2]:
        # Same amount and borrower; the hold never ends earlier than the original one.
        assert (restored[loan_id].amount, restored[loan_id].borrower) == (
            held[loan_id].amount,
            held[loan_id].borrower,
        )
        assert restored[loan_id].hold_until_ms >= held[loan_id].hold_until_ms

    # Known again: loans are admitted, and the restored reservations end like any other.
    new_id, admitted = await w.open(borrowers[3], vendor, 1 * UNIT)
    assert isinstance(admitted, LoanOffer)
    view = await w.wait_terminal(open_ids[2], LoanState.FUNDED)
    assert view.settled_ledger == landed.ledger
    for loan_id in (open_ids[0], open_ids[1], new_id):
        await signal_cancel(w.stack.client, loan_id, Cancel(reason="done"))
        view = await w.wait_terminal(loan_id, LoanState.CANCELLED)
        assert "ledger release: released" in view.history[-1].detail
    status = await w.ledger.status(w.pool_id)
    assert (status.reserved, status.active_reservations) == (0, 0)

    again = await w.reconcile()  # nothing left to repair
    assert not again.established and again.counts == dict.fromkeys(again.counts, 0)

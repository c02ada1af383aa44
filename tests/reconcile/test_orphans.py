"""The worker SIGKILLed after reserving (a real `python worker.py` subprocess): while its loans'
workflows are alive the reconciler keeps their reservations (an expired one is swept); once a
loan's workflow is closed without compensating (an operator terminated it) or never existed,
its reservation is an orphan and is released. A restarted worker ends the rest."""

from __future__ import annotations

import asyncio
import uuid

from core.models import LoanOffer, LoanState
from tests.reconcile.conftest import UNIT, World
from workflows.loan_client import loan_handle

HOLD_S = 2 + 2  # ttl 2 s + settlement grace 2 s


async def test_killed_worker_expired_swept_and_orphans_released(world: World, new_borrower):
    w = world
    loans_settings = w.settings.model_copy(update={"task_queue": f"loans-{uuid.uuid4().hex[:8]}"})
    worker = w.spawn("worker.py", loans_settings)
    vendor = await new_borrower()
    short_b, long_b = await new_borrower(w.pool), await new_borrower(w.pool)
    short_id, short = await w.open(short_b, vendor, 10 * UNIT, ttl=2,
                                   task_queue=loans_settings.task_queue)
    long_id, long_ = await w.open(long_b, vendor, 20 * UNIT, task_queue=loans_settings.task_queue)
    assert isinstance(short, LoanOffer) and isinstance(long_, LoanOffer)
    # A reservation nobody owns (its workflow does not exist, e.g. long gone from retention).
    ghost = f"ghost-{uuid.uuid4().hex}"
    await w.ledger.reserve(w.pool_id, ghost, long_b.public_key, 5 * UNIT, ttl_ms=600_000,
                           borrower_limit=10**15)
    worker.kill()
    await asyncio.sleep(HOLD_S + 0.5)

    report = await w.reconcile()
    assert report.swept == [short_id]  # its hold passed: released although nobody ran it
    assert report.orphans_released == [ghost]
    assert report.undetermined == [long_id]  # running, but no worker answers its query
    assert report.counts["swept"] == report.counts["orphans_released"] == 1
    assert [r.loan_id for r in await w.ledger.reservations(w.pool_id)] == [long_id]

    await loan_handle(w.stack.client, long_id).terminate(reason="operator: stuck loan")
    report = await w.reconcile()
    assert report.orphans_released == [long_id] and report.swept == []
    assert (report.reserved, report.active_reservations) == (0, 0)
    reasons = {e.loan_id: e.reason for e in await w.ledger.audit(w.pool_id)
               if e.action == "release"}
    assert reasons == {ghost: "orphan: no loan workflow",
                       long_id: "orphan: loan workflow closed"}

    # The restarted worker resumes the short loan: past its hold, nothing landed -> EXPIRED.
    w.spawn("worker.py", loans_settings)
    view = await w.wait_terminal(short_id, LoanState.EXPIRED, within=60)
    assert "already_released" in view.history[-1].detail
    status = await w.ledger.status(w.pool_id)
    assert (status.reserved, status.active_reservations, status.available) == (0, 0, 100 * UNIT)
    again = await w.reconcile()
    assert again.counts == dict.fromkeys(again.counts, 0)

"""The worker SIGKILLed after reserving (a real `python worker.py` subprocess): while its loans'
workflows are alive the reconciler keeps their reservations (an expired one is swept); once a
loan's workflow is closed without compensating (an operator terminated it) or never existed,
its reservation is an orphan and is released. A restarted worker ends the rest."""

from __future__ import annotations

import asyncio
import uuid

from core.models import LoanOffer, LoanState
from core.money import UNIT
from tests.reconcile.conftest import World
from workflows.loan_client import loan_handle

HOLD_S = 2 + 2  # ttl 2 s + settlement grace 2 s


async def test_killed_worker_expired_swept_and_orphans_released(world: World, new_borrower):
    w = world
    loans_settings = w.settings.model_copy(update={"task_queue": f"loans-{uuid.uuid4().hex[:8]}"})
    worker = w.spawn("worker.py", loans_settings)
    vendor = await new_borrower()
    short_b, long_b = await new_borrower(w.pool), await new_borrower(w.pool)
    short_id, short = await w.open(
        short_b, vendor, 10 * UNIT, ttl=2, task_queue=loans_settings.task_queue
    )
    long_id, long_ = await w.open(long_b, vendor, 20 * UNIT, task_queue=loans_settings.task_queue)
    assert isinstance(short, LoanOffer) and isinstance(long_, LoanOffer)
    # A reservation nobody owns (its workflow does not exist, e.g. long gone from retention).
    ghost = f"ghost-{uuid.uuid4().hex}"
    await w.ledger.reserve(
        w.pool_id, ghost, long_b.public_key, 5 * UNIT, ttl_ms=600_000, borrower_limit=10**15
    )
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
    reasons = {
        e.loan_id: e.reason for e in await w.ledger.audit(w.pool_id) if e.action == "release"
    }
    assert reasons == {ghost: "orphan: no loan workflow", long_id: "orphan: loan workflow closed"}

    # The restarted worker resumes the short loan: past its hold, nothing landed -> EXPIRED.
    w.spawn("worker.py", loans_settings)
    view = await w.wait_terminal(short_id, LoanState.EXPIRED, within=60)
    assert "already_released" in view.history[-1].detail
    status = await w.ledger.status(w.pool_id)
    assert (status.reserved, status.active_reservations, status.available) == (0, 0, 100 * UNIT)
    again = await w.reconcile()
    assert again.counts == dict.fromkeys(again.counts, 0)


async def test_concurrent_runs_release_each_orphan_once_and_keep_live_loans(
    world: World, new_borrower
):
    """A scheduled run and an admin run may overlap: every repair is idempotent, so together they
    release each orphan exactly once and never touch a live loan's reservation."""
    w = world
    vendor = await new_borrower()
    live = []
    for _ in range(3):
        loan_id, offer = await w.open(await new_borrower(w.pool), vendor, 5 * UNIT)
        assert isinstance(offer, LoanOffer)
        live.append(loan_id)
    ghosts = [f"ghost-{uuid.uuid4().hex}" for _ in range(30)]
    await asyncio.gather(
        *(
            w.ledger.reserve(
                w.pool_id, g, f"G-{i % 4}", UNIT, ttl_ms=600_000, borrower_limit=10**15
            )
            for i, g in enumerate(ghosts)
        )
    )
    assert (await w.ledger.status(w.pool_id)).reserved == 45 * UNIT

    first, second = await asyncio.gather(w.reconcile(), w.reconcile())
    released = first.orphans_released + second.orphans_released
    assert sorted(released) == sorted(ghosts)  # each exactly once, between the two runs
    releases = [
        e.loan_id or ""
        for e in await w.ledger.audit(w.pool_id, count=1000)
        if e.action == "release"
    ]
    assert sorted(releases) == sorted(ghosts)
    status = await w.ledger.status(w.pool_id)
    assert (status.reserved, status.active_reservations) == (15 * UNIT, 3)
    assert sorted(r.loan_id for r in await w.ledger.reservations(w.pool_id)) == sorted(live)
    assert status.available == 100 * UNIT - 15 * UNIT

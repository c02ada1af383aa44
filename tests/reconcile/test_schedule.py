"""`python worker.py` makes sure the reconcile Schedule exists: a second start (with another
interval) neither fails nor duplicates it, it updates it; and the Schedule's action really runs
ReconcileWorkflow on the worker's task queue (triggered here rather than waited for)."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta
from typing import Any

from temporalio.client import ScheduleActionStartWorkflow, ScheduleOverlapPolicy
from temporalio.service import RPCError

from tests.reconcile.conftest import World
from workflows.reconcile_client import schedule_id


async def _describe(client: Any, sid: str, every: timedelta, within: float = 30) -> Any:
    deadline = time.monotonic() + within
    while True:
        try:
            desc = await client.get_schedule_handle(sid).describe()
            if [i.every for i in desc.schedule.spec.intervals] == [every]:
                return desc
        except RPCError:
            pass  # not created yet
        if time.monotonic() > deadline:
            raise AssertionError(f"schedule {sid} never showed an interval of {every}")
        await asyncio.sleep(0.2)


async def test_worker_started_twice_keeps_one_schedule_and_it_runs(world: World):
    w, client = world, world.stack.client
    settings = w.settings.model_copy(
        update={
            "task_queue": f"sched-{uuid.uuid4().hex[:8]}",
            "reconcile_schedule_enabled": True,
            "reconcile_interval_seconds": 3600,
        }
    )
    sid = schedule_id(settings)
    assert sid == f"reconcile-{settings.task_queue}"
    try:
        first = w.spawn("worker.py", settings)
        await _describe(client, sid, timedelta(hours=1))
        first.stop()  # (its exit code is not checked: the SDK may abort at interpreter exit)
        assert f"reconcile schedule {sid} every 3600s" in first.log(), first.log()
        assert "Traceback" not in first.log(), first.log()

        settings.reconcile_interval_seconds = 1800
        second = w.spawn("worker.py", settings)
        desc = await _describe(client, sid, timedelta(minutes=30))
        assert desc.schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
        action = desc.schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        assert (action.workflow, action.task_queue) == ("ReconcileWorkflow", settings.task_queue)
        assert "Traceback" not in second.log()

        listed: list[str] = []
        for _ in range(50):  # visibility is eventually consistent
            listed = [s.id async for s in await client.list_schedules() if s.id == sid]
            if listed:
                break
            await asyncio.sleep(0.2)
        assert listed == [sid]  # one schedule, not two

        # The action is runnable: trigger it and the second worker reconciles the pool.
        await client.get_schedule_handle(sid).trigger()
        report = None
        for _ in range(150):
            report = await w.reports.latest(w.pool_id)
            if report is not None and report.run_id.startswith(sid):
                break
            await asyncio.sleep(0.2)
        assert report is not None and report.run_id.startswith(sid), report
        assert report.chain.total == 100 * 10_000_000
    finally:
        await client.get_schedule_handle(sid).delete()

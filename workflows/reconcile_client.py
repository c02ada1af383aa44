"""Client-side helpers for ReconcileWorkflow: the Schedule the worker keeps in place, and a run
on demand (the admin API). Not workflow code: this talks to the Temporal server."""

from __future__ import annotations

import uuid
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from core.settings import Settings

from .reconcile import ReconcileRequest, ReconcileRun, ReconcileWorkflow


def schedule_id(settings: Settings) -> str:
    return settings.reconcile_schedule_id or f"reconcile-{settings.task_queue}"


def reconcile_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            ReconcileWorkflow.run,
            ReconcileRequest(),
            id=schedule_id(settings),  # the server appends the scheduled time
            task_queue=settings.task_queue,
            execution_timeout=timedelta(minutes=10),
        ),
        spec=ScheduleSpec(
            intervals=[
                ScheduleIntervalSpec(every=timedelta(seconds=settings.reconcile_interval_seconds))
            ]
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_reconcile_schedule(client: Client, settings: Settings) -> str:
    """Create the Schedule, or bring an existing one in line with the settings: idempotent, so
    every worker start (and every worker of a fleet) may call it."""
    sid = schedule_id(settings)
    schedule = reconcile_schedule(settings)
    try:
        await client.create_schedule(sid, schedule)
    except ScheduleAlreadyRunningError:

        def update(current: ScheduleUpdateInput) -> ScheduleUpdate:
            schedule.state = current.description.schedule.state  # keep a pause set by an operator
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(sid).update(update)
    return sid


async def reconcile_now(
    client: Client,
    settings: Settings,
    *,
    pool_ids: list[str] | None = None,
    run_timeout: timedelta = timedelta(minutes=5),
) -> ReconcileRun:
    """Run a reconciliation now and wait for its result."""
    return await client.execute_workflow(
        ReconcileWorkflow.run,
        ReconcileRequest(pool_ids=pool_ids),
        id=f"reconcile-now-{uuid.uuid4().hex}",
        task_queue=settings.task_queue,
        execution_timeout=run_timeout,
    )

"""ReconcileWorkflow: one reconciliation pass over every configured pool (or the ones asked for).

Started by a Temporal Schedule (interval from settings, overlap SKIP) and on demand by the admin
API. The workflow only orchestrates: the pool list and each pool's repair are activities (all
I/O, all Redis / chain / Temporal reads there), pools are reconciled concurrently, and a pool
that fails is reported as failed without holding the others back. The result (one report per
pool) is what operators see in the Temporal UI; each report is also kept in Redis by the activity.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.reconcile import PoolRequest, ReconcileActivities
    from reconcile.reconciler import PoolReport

    from .activity_failures import ACTIVITY_FAILURES, failure_text

_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=3,
)
# A pool's run checks every open reservation (a describe and a query each), so its length grows
# with the pool's open loans (docs/benchmarks.md: minutes at 10,000): it heartbeats per
# reservation and is judged stuck by the heartbeat; the overall bound only stops a runaway.
_POOL_TIMEOUT = timedelta(minutes=30)
_POOL_HEARTBEAT = timedelta(seconds=30)


class ReconcileRequest(BaseModel):
    pool_ids: list[str] | None = None  # None: every configured pool


class ReconcileRun(BaseModel):
    started_at: datetime
    reports: list[PoolReport] = Field(default_factory=list)
    failures: dict[str, str] = Field(default_factory=dict)  # pool id -> why it failed


@workflow.defn
class ReconcileWorkflow:
    @workflow.run
    async def run(self, request: ReconcileRequest) -> ReconcileRun:
        result = ReconcileRun(started_at=workflow.now())
        configured = await workflow.execute_activity_method(
            ReconcileActivities.pools,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=_RETRY,
        )
        wanted = configured
        if request.pool_ids is not None:
            wanted = [p for p in configured if p in request.pool_ids]
            for missing in sorted(set(request.pool_ids) - set(configured)):
                result.failures[missing] = "pool is not configured"
        outcomes = await asyncio.gather(*(self._pool(p) for p in wanted))
        for pool_id, outcome in zip(wanted, outcomes, strict=True):
            if isinstance(outcome, PoolReport):
                result.reports.append(outcome)
            else:
                result.failures[pool_id] = outcome
        return result

    async def _pool(self, pool_id: str) -> PoolReport | str:
        try:
            return await workflow.execute_activity_method(
                ReconcileActivities.reconcile_pool,
                PoolRequest(pool_id=pool_id, run_id=workflow.info().workflow_id),
                start_to_close_timeout=_POOL_TIMEOUT,
                heartbeat_timeout=_POOL_HEARTBEAT,
                retry_policy=_RETRY,
            )
        except ACTIVITY_FAILURES as err:  # the same on replay (workflows/activity_failures.py)
            return failure_text(err)
